/*
 * rules_match.c - how the conditions compare: addresses and names against
 * patterns, the client's IP against addresses, networks and prefixes, and
 * Itest?'s integer comparisons.
 *
 * Owns: the meaning of a pattern: an address matches itself (letter case
 * ignored), "@domain" every address of that domain, and `*` any run of
 * characters; an Ip? address, network (CIDR, IPv4 and IPv6) or textual
 * prefix ending in a dot ("200.200.200.").  Must not: look anything up.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rules_int.h"

/* `*` matches any run; everything else one character, case ignored.
 * Iterative with one backtrack point: linear in practice, never
 * exponential on hostile input. */
int rules_match_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat && tolower((unsigned char)*pat) == tolower((unsigned char)*s)) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

int rules_match_addr(const char *pattern, const char *addr)
{
    const char *at;

    if (addr == NULL)
        return 0;
    if (strcmp(pattern, "<>") == 0 || pattern[0] == '\0')
        return addr[0] == '\0';
    if (pattern[0] == '@' && strchr(pattern, '*') == NULL) {
        at = strrchr(addr, '@');
        return at && strcasecmp(at, pattern) == 0;
    }
    return rules_match_glob(pattern, addr);
}

int rules_ip_parse(const char *text, struct rules_item *it)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    int max;

    if (n == 0 || n >= sizeof(host))
        return -1;
    if (!slash && text[n - 1] == '.' && strspn(text, "0123456789.") == n) {
        it->ip_prefix = 1;       /* "200.200.200.": a textual prefix */
        it->u.prefix = text;
        return 0;
    }
    memcpy(host, text, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, host, it->u.ip.addr) == 1)
        it->u.ip.family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, host, it->u.ip.addr) == 1)
        it->u.ip.family = AF_INET6, max = 128;
    else
        return -1;
    it->u.ip.bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end || b < 0 || b > max)
            return -1;
        it->u.ip.bits = (int)b;
    }
    return 0;
}

int rules_ip_match(const struct rules_item *it, const char *ip)
{
    uint8_t a[16];
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET, bits = it->u.ip.bits;

    if (it->ip_prefix)
        return strncmp(ip, it->u.prefix, strlen(it->u.prefix)) == 0;
    /* An IPv4 client seen through an IPv6 socket ("::ffff:1.2.3.4"). */
    if (family == AF_INET6 && strncasecmp(ip, "::ffff:", 7) == 0 && strchr(ip, '.'))
        ip += 7, family = AF_INET;
    if (family != it->u.ip.family || inet_pton(family, ip, a) != 1)
        return 0;
    for (int i = 0; bits > 0; i++, bits -= 8) {
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        if ((a[i] & mask) != (it->u.ip.addr[i] & mask))
            return 0;
    }
    return 1;
}

/* The operator of "A op B": its position and length; -1 none. */
static int rules_itest_op(const char *e, size_t *pos, size_t *len, int *kind)
{
    static const char *ops[] = {"<=", ">=", "!=", "<", ">", "="};

    for (const char *p = e; *p; p++)
        for (int i = 0; i < 6; i++)
            if (strncmp(p, ops[i], strlen(ops[i])) == 0) {
                *pos = (size_t)(p - e);
                *len = strlen(ops[i]);
                *kind = i;
                return 0;
            }
    return -1;
}

static int rules_int(const char *s, size_t n, long *out)
{
    char tmp[32], *end;

    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    *out = strtol(tmp, &end, 10);
    return *end || errno ? -1 : 0;
}

int rules_itest(const char *e)
{
    size_t pos, len;
    int kind;
    long a, b;

    if (rules_itest_op(e, &pos, &len, &kind) < 0 || rules_int(e, pos, &a) < 0 ||
        rules_int(e + pos + len, strlen(e + pos + len), &b) < 0)
        return -1;
    switch (kind) {
    case 0: return a <= b;
    case 1: return a >= b;
    case 2: return a != b;
    case 3: return a < b;
    case 4: return a > b;
    default: return a == b;
    }
}

int rules_itest_check(const char *text)
{
    size_t pos, len;
    int kind;

    return rules_itest_op(text, &pos, &len, &kind) < 0 || pos == 0 ||
           text[pos + len] == '\0' ? -1 : 0;
}
