/*
 * addr.c - mail address syntax (see addr.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

/* RFC 5322 atext: the characters of an unquoted local part besides dots. */
static int addr_atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int addr_valid_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' && s[i + 1] == '.')
            return 0;
        if (s[i] != '.' && !addr_atext((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

static int addr_valid_quoted(const char *s, size_t n)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return 0;
    for (size_t i = 1; i < n - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            if (++i >= n - 1 || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
                return 0;
        } else if (c == '"' || c < 0x20 || c > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/*
 * [1.2.3.4] or [IPv6:...].  Every byte is looked at before inet_pton sees
 * the text: it stops at a NUL, so "[127.0.0.1\0\x1b...]" would otherwise
 * pass as 127.0.0.1 with the rest smuggled along.
 */
static int addr_valid_literal(const char *d, size_t n)
{
    char tmp[ADDR_DOMAIN_MAX + 1];
    unsigned char bin[16];

    if (n < 3 || n > ADDR_DOMAIN_MAX || d[n - 1] != ']')
        return 0;
    for (size_t i = 1; i < n - 1; i++)
        if (!isalnum((unsigned char)d[i]) && d[i] != '.' && d[i] != ':')
            return 0;
    memcpy(tmp, d + 1, n - 2);
    tmp[n - 2] = '\0';
    if (strncasecmp(tmp, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, tmp + 5, bin) == 1;
    return inet_pton(AF_INET, tmp, bin) == 1;
}

int addr_valid_domain(const char *d, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > ADDR_DOMAIN_MAX)
        return 0;
    if (d[0] == '[')
        return addr_valid_literal(d, n);
    if (d[n - 1] == '.')
        n--;  /* a trailing root dot is allowed */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || (c == '-' && label > 0)) || ++label > 63)
            return 0;
    }
    return label > 0 && d[n - 1] != '-';
}

/* Skips "@a,@b:" at the start; returns the offset of the mailbox. */
static size_t addr_skip_route(const char *s, size_t n)
{
    size_t colon;

    if (n == 0 || s[0] != '@')
        return 0;
    for (colon = 0; colon < n && s[colon] != ':'; colon++)
        ;
    return colon < n ? colon + 1 : 0;
}

/* The @ that separates local part and domain: the last one outside quotes. */
static const char *addr_find_at(const char *s, size_t n)
{
    const char *at = NULL;
    int quoted = 0;

    for (size_t i = 0; i < n; i++) {
        if (quoted && s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '"')
            quoted = !quoted;
        else if (s[i] == '@' && !quoted)
            at = s + i;
    }
    return at;
}

enum addr_err addr_parse(const char *s, size_t n, struct addr *out)
{
    size_t skip = addr_skip_route(s, n), ln, dn;
    const char *at;

    s += skip;
    n -= skip;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] > 0x7e)
            return ADDR_E8BIT;
    if (n > ADDR_PATH_MAX)
        return ADDR_ETOOLONG;
    at = addr_find_at(s, n);
    ln = at ? (size_t)(at - s) : n;
    dn = at ? n - ln - 1 : 0;
    if (ln > ADDR_LOCAL_MAX || dn > ADDR_DOMAIN_MAX)
        return ADDR_ETOOLONG;
    if (!addr_valid_dot_atom(s, ln) && !addr_valid_quoted(s, ln))
        return ADDR_ESYNTAX;
    if (at && !addr_valid_domain(at + 1, dn)) {
        /* Kept (printable bytes only) so the reply can name it. */
        size_t k = 0;
        for (size_t i = 0; i < dn; i++)
            if ((unsigned char)at[1 + i] > 0x20 && (unsigned char)at[1 + i] < 0x7f)
                out->domain[k++] = at[1 + i];
        out->domain[k] = '\0';
        return ADDR_EDOMAIN;
    }
    memcpy(out->local, s, ln);
    out->local[ln] = '\0';
    memcpy(out->domain, at ? at + 1 : "", dn);
    out->domain[dn] = '\0';
    if (dn && out->domain[dn - 1] == '.' && out->domain[0] != '[')
        out->domain[dn - 1] = '\0';
    addr_lower(out->domain);
    return ADDR_OK;
}

void addr_format(const struct addr *a, char *out, size_t outlen)
{
    if (a->domain[0])
        snprintf(out, outlen, "%s@%s", a->local, a->domain);
    else
        snprintf(out, outlen, "%s", a->local);
}

void addr_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

const char *addr_strerror(enum addr_err e)
{
    switch (e) {
    case ADDR_OK: return "ok";
    case ADDR_ESYNTAX: return "bad address syntax";
    case ADDR_EDOMAIN: return "bad domain";
    case ADDR_ETOOLONG: return "address too long";
    case ADDR_E8BIT: return "non-ASCII address";
    }
    return "?";
}
