/*
 * smtp_cmd.c - SMTP command line syntax (see smtp_cmd.h).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "smtp_cmd.h"

static const struct {
    const char *name;
    enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_HELO}, {"EHLO", SMTP_EHLO}, {"MAIL", SMTP_MAIL},
    {"RCPT", SMTP_RCPT}, {"DATA", SMTP_DATA}, {"RSET", SMTP_RSET},
    {"NOOP", SMTP_NOOP}, {"QUIT", SMTP_QUIT}, {"VRFY", SMTP_VRFY},
    {"EXPN", SMTP_EXPN}, {"HELP", SMTP_HELP}, {"STARTTLS", SMTP_STARTTLS},
    {"AUTH", SMTP_AUTH},
};

const char *smtp_verb_name(enum smtp_verb v)
{
    for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++)
        if (smtp_verbs[i].verb == v)
            return smtp_verbs[i].name;
    return "?";
}

void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
    size_t v = 0;

    out->verb = SMTP_UNKNOWN;
    out->arg = "";
    out->arglen = 0;
    while (v < len && isalpha((unsigned char)line[v]))
        v++;
    if (v < 4 || v > 8 || (v < len && line[v] != ' '))
        return;
    for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++)
        if (strlen(smtp_verbs[i].name) == v && strncasecmp(line, smtp_verbs[i].name, v) == 0)
            out->verb = smtp_verbs[i].verb;
    while (v < len && line[v] == ' ')
        v++;
    while (len > v && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    out->arg = line + v;
    out->arglen = len - v;
}

static enum smtp_path_err smtp_path_addr(const char *s, size_t n,
                                         struct smtp_path *out)
{
    switch (addr_parse(s, n, &out->addr)) {
    case ADDR_OK: return SMTP_PATH_OK;
    case ADDR_EDOMAIN: return SMTP_PATH_DOMAIN;
    case ADDR_ETOOLONG: return SMTP_PATH_TOOLONG;
    case ADDR_E8BIT: return SMTP_PATH_8BIT;
    default: return SMTP_PATH_SYNTAX;
    }
}

/* End of a bracketed path: the '>' outside a quoted local part. */
static const char *smtp_path_close(const char *p, const char *end)
{
    int quoted = 0;

    for (; p < end; p++) {
        if (quoted && *p == '\\' && p + 1 < end) {
            p++;
            continue;
        }
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '>' && !quoted)
            return p;
    }
    return NULL;
}

enum smtp_path_err smtp_cmd_path(const char *arg, size_t len, const char *kw,
                                 int strict, struct smtp_path *out)
{
    size_t kwlen = strlen(kw);
    const char *p = arg + kwlen, *end = arg + len, *close, *a;
    enum smtp_path_err r;

    memset(out, 0, sizeof(*out));
    if (len < kwlen || strncasecmp(arg, kw, kwlen) != 0)
        return SMTP_PATH_SYNTAX;
    while (p < end && *p == ' ')
        p++;
    if (p < end && *p == '<') {
        close = smtp_path_close(p + 1, end);
        if (close == NULL)
            return SMTP_PATH_SYNTAX;
        a = p + 1;
        p = close + 1;
        if (p < end && *p != ' ')
            return SMTP_PATH_SYNTAX;
    } else {
        if (strict)
            return SMTP_PATH_BRACKETS;
        a = p;
        while (p < end && *p != ' ')
            p++;
        close = p;
        if (close == a)
            return SMTP_PATH_SYNTAX;
    }
    while (p < end && *p == ' ')
        p++;
    out->params = p;
    out->paramslen = (size_t)(end - p);
    if (close == a) {
        out->null = 1;
        return SMTP_PATH_OK;
    }
    r = smtp_path_addr(a, (size_t)(close - a), out);
    return r;
}

int smtp_cmd_next_param(const char **pp, const char *end, struct smtp_param *out)
{
    const char *p = *pp, *k, *v = NULL;
    size_t klen, vlen = 0;

    while (p < end && *p == ' ')
        p++;
    if (p >= end)
        return 0;
    k = p;
    while (p < end && (isalnum((unsigned char)*p) || *p == '-'))
        p++;
    klen = (size_t)(p - k);
    if (klen == 0 || klen >= sizeof(out->key) || !isalnum((unsigned char)*k))
        return -1;
    if (p < end && *p == '=') {
        v = ++p;
        while (p < end && *p != ' ' && *p != '=' && (unsigned char)*p > 0x20 &&
               (unsigned char)*p < 0x7f)
            p++;
        vlen = (size_t)(p - v);
        if (vlen == 0 || vlen >= sizeof(out->value))
            return -1;
    }
    if (p < end && *p != ' ')
        return -1;
    for (size_t i = 0; i < klen; i++)
        out->key[i] = (char)toupper((unsigned char)k[i]);
    out->key[klen] = '\0';
    if (v)
        memcpy(out->value, v, vlen);
    out->value[vlen] = '\0';
    *pp = p;
    return 1;
}

/* ---- AUTH responses ---- */

/* The value of a base64 digit, or -1. */
static int smtp_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int smtp_cmd_b64_decode(const char *in, size_t n, unsigned char *out, size_t max,
                        size_t *outlen)
{
    size_t o = 0;

    *outlen = 0;
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            /* '=' only at the end: "xx==" or "xxx=" */
            if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || in[i + 3] == '=')) {
                v[k] = 0;
                pad++;
                continue;
            }
            if ((v[k] = smtp_b64_value(c)) < 0)
                return -1;
        }
        if (o + 3 - (size_t)pad > max)
            return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (pad < 1)
            out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    *outlen = o;
    return 0;
}

int smtp_cmd_plain_split(const unsigned char *in, size_t n, struct smtp_plain *out)
{
    const unsigned char *nul1 = memchr(in, '\0', n), *nul2;

    memset(out, 0, sizeof(*out));
    if (nul1 == NULL)
        return -1;
    nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - in));
    if (nul2 == NULL || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - in)))
        return -1;
    out->authzid = in;
    out->authzid_len = (size_t)(nul1 - in);
    out->authcid = nul1 + 1;
    out->authcid_len = (size_t)(nul2 - nul1 - 1);
    out->password = nul2 + 1;
    out->password_len = n - (size_t)(nul2 + 1 - in);
    return out->authcid_len && out->password_len ? 0 : -1;
}
