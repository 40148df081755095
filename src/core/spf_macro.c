/*
 * spf_macro.c - SPF macro expansion (RFC 7208 7).
 *
 * A macro's value is split on its delimiters, maybe reversed, cut to its
 * rightmost parts, joined with dots and, for an upper-case letter,
 * URL-escaped.  Values come from the client (sender, HELO), so every part
 * count and length is bounded and the output stops at its buffer's limit.
 * Must not: look anything up (spf.c finds %{p} first), or let a name grow
 * past SPF_NAME_MAX (labels go on the left).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "spf_parse.h"

/* Parts of one value: a value is at most a few hundred bytes, but a
 * client chooses it. */
#define SPF_MAX_PARTS 128

struct spf_part {
    const char *p;
    size_t n;
};

/* The value of letter l, in tmp when it has to be made. */
static const char *spf_macro_value(char l, const struct spf_macro_ctx *m, char *tmp,
                                   size_t size)
{
    size_t k = 0;

    switch (l) {
    case 's': return m->sender;
    case 'l': return m->local;
    case 'o': return m->sender_dom;
    case 'd': return m->domain;
    case 'h': return m->helo;
    case 'p': return m->p && m->p[0] ? m->p : "unknown";
    case 'v': return m->v6 ? "ip6" : "in-addr";
    case 'r': return m->receiver && m->receiver[0] ? m->receiver : "unknown";
    case 't': snprintf(tmp, size, "%lld", (long long)m->now); return tmp;
    case 'c':
        if (inet_ntop(m->v6 ? AF_INET6 : AF_INET, m->ip, tmp, (socklen_t)size) == NULL)
            tmp[0] = '\0';
        return tmp;
    case 'i':
        if (!m->v6) {
            snprintf(tmp, size, "%u.%u.%u.%u", m->ip[0], m->ip[1], m->ip[2], m->ip[3]);
            return tmp;
        }
        for (int i = 0; i < 16 && k + 4 < size; i++)
            k += (size_t)snprintf(tmp + k, size - k, "%s%x.%x", i ? "." : "",
                                  m->ip[i] >> 4, m->ip[i] & 15);
        return tmp;
    default: return "";
    }
}

static size_t spf_split(const char *v, const char *delims, size_t ndelims,
                        struct spf_part *parts)
{
    size_t n = 0;
    const char *start = v;

    for (const char *p = v;; p++) {
        if (*p == '\0' || memchr(delims, *p, ndelims)) {
            if (n == SPF_MAX_PARTS)
                return SIZE_MAX;
            parts[n].p = start;
            parts[n++].n = (size_t)(p - start);
            if (*p == '\0')
                return n;
            start = p + 1;
        }
    }
}

static int spf_put_escaped(struct buf *out, const char *s, size_t n, int escape)
{
    static const char hex[] = "0123456789ABCDEF";

    if (!escape)
        return buf_append(out, s, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (buf_putc(out, (char)c) < 0)
                return -1;
        } else if (buf_putc(out, '%') < 0 || buf_putc(out, hex[c >> 4]) < 0 ||
                   buf_putc(out, hex[c & 15]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* One "%{...}" at s (its length k, syntax already checked). */
static int spf_expand_one(const char *s, size_t k, const struct spf_macro_ctx *m,
                          struct buf *out)
{
    char tmp[80], delims[8];
    struct spf_part parts[SPF_MAX_PARTS];
    size_t i = 3, keep = 0, nd = 0, np, first;
    int rev = 0, escape = isupper((unsigned char)s[2]);
    const char *v = spf_macro_value((char)tolower((unsigned char)s[2]), m, tmp,
                                    sizeof(tmp));
    int digits = 0;

    for (; isdigit((unsigned char)s[i]); i++, digits = 1)
        keep = keep > 1000 ? keep : keep * 10 + (size_t)(s[i] - '0');
    if (digits && keep == 0)
        return -1;                        /* 7.3: a DIGIT must be nonzero */
    if (s[i] == 'r' || s[i] == 'R')
        rev = 1, i++;
    for (; i < k - 1 && nd < sizeof(delims); i++)
        if (!memchr(delims, s[i], nd))
            delims[nd++] = s[i];
    if (nd == 0)
        delims[nd++] = '.';
    if ((np = spf_split(v ? v : "", delims, nd, parts)) == SIZE_MAX)
        return -1;
    first = digits && keep < np ? np - keep : 0;
    for (size_t j = first; j < np; j++) {
        struct spf_part *p = &parts[rev ? np - 1 - j : j];
        if ((j > first && buf_putc(out, '.') < 0) ||
            spf_put_escaped(out, p->p, p->n, escape) < 0)
            return -1;
    }
    return 0;
}

/* The length of the macro-expand at s, or 0 (syntax is checked first). */
static size_t spf_expand_len(const char *s, size_t n)
{
    const char *close = memchr(s, '}', n);

    return close ? (size_t)(close - s) + 1 : 0;
}

/* 7.3: a name longer than SPF_NAME_MAX loses whole labels on the left. */
static void spf_cut_left(struct buf *out)
{
    size_t off = 0;

    while (out->len - off > SPF_NAME_MAX) {
        const char *dot = memchr(out->data + off, '.', out->len - off);
        off = dot ? (size_t)(dot - out->data) + 1 : out->len;
    }
    buf_consume(out, off);
}

int spf_macro_expand(const char *s, size_t n, const struct spf_macro_ctx *m, int explain,
                     struct buf *out)
{
    buf_reset(out);
    if (!spf_macro_valid(s, n, explain))
        return -1;
    for (size_t i = 0; i < n;) {
        int r = 0;
        size_t k = 1;
        if (s[i] != '%')
            r = buf_putc(out, s[i]);
        else if (s[i + 1] == '%')
            r = buf_putc(out, '%'), k = 2;
        else if (s[i + 1] == '_')
            r = buf_putc(out, ' '), k = 2;
        else if (s[i + 1] == '-')
            r = buf_puts(out, "%20"), k = 2;
        else
            r = spf_expand_one(s + i, k = spf_expand_len(s + i, n - i), m, out);
        if (r < 0)
            return -1;
        i += k;
    }
    if (!explain)
        spf_cut_left(out);
    buf_cstr(out);
    return 0;
}
