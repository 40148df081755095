/*
 * spf_parse.c - an SPF record's grammar (RFC 7208 4.6, 5, 6) and the
 * address helpers the mechanisms share.
 *
 * A record is parsed whole before any of it is evaluated, so a syntax
 * error anywhere is a permerror even after a matching term (4.6).  Terms
 * point into the record's own copy of the text.  Must not: look anything
 * up, or accept what the grammar does not (a domain-spec must end in a
 * top label or a macro).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "spf.h"
#include "spf_parse.h"

int spf_is_record(const char *txt)
{
    return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == '\0' || txt[6] == ' ');
}

int spf_prefix_match(const unsigned char *a, const unsigned char *b, size_t len,
                     unsigned bits)
{
    size_t whole = bits / 8;
    unsigned rest = bits % 8;

    if (whole > len || (whole == len && rest))
        return 0;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int spf_parse_ip(const char *text, unsigned char ip[16], int *v6)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    memset(ip, 0, 16);
    if (inet_pton(AF_INET, text, ip) == 1) {
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, text, ip) != 1)
        return -1;
    *v6 = 1;
    if (memcmp(ip, mapped, 12) == 0) {   /* RFC 7208 5: checked as IPv4 */
        memmove(ip, ip + 12, 4);
        memset(ip + 4, 0, 12);
        *v6 = 0;
    }
    return 0;
}

int spf_name_ok(const char *name)
{
    size_t n = strlen(name), label = 0;

    if (n && name[n - 1] == '.')
        n--;
    if (n == 0 || n > SPF_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if (++label > 63) {
            return 0;
        }
    }
    return label > 0;
}

/* ---- macro-string syntax (7.1) ---- */

static int spf_is_delim(char c)
{
    return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/* Length of the macro-expand at s ("%{...}", "%%", "%_", "%-"), 0 if none. */
static size_t spf_macro_len(const char *s, size_t n, int explain)
{
    size_t i = 2;
    char l;

    if (n < 2 || s[0] != '%')
        return 0;
    if (s[1] == '%' || s[1] == '_' || s[1] == '-')
        return 2;
    if (s[1] != '{' || n < 4)
        return 0;
    l = (char)tolower((unsigned char)s[i++]);
    if (!strchr("slodiphv", l) && !(explain && strchr("crt", l)))
        return 0;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    if (i < n && (s[i] == 'r' || s[i] == 'R'))
        i++;
    while (i < n && spf_is_delim(s[i]))
        i++;
    return i < n && s[i] == '}' ? i + 1 : 0;
}

int spf_macro_valid(const char *s, size_t n, int explain)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            size_t k = spf_macro_len(s + i, n - i, explain);
            if (k == 0)
                return 0;
            i += k;
        } else if ((c >= 0x21 && c <= 0x7e) || (explain && c == ' ')) {
            i++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* toplabel (4.6.1): alphanumerics with at least one letter, or with inner
 * hyphens. */
static int spf_toplabel(const char *s, size_t n)
{
    int alpha = 0;

    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            alpha = 1;
        else if (isalpha((unsigned char)s[i]))
            alpha = 1;
        else if (!isdigit((unsigned char)s[i]))
            return 0;
    }
    return alpha;
}

/* domain-spec = macro-string domain-end; domain-end = "." toplabel ["."]
 * / macro-expand. */
static int spf_domain_spec_ok(const char *s, size_t n)
{
    size_t dot;

    if (n == 0 || !spf_macro_valid(s, n, 0))
        return 0;
    if (s[n - 1] == '}') {
        for (size_t i = n; i-- > 0;) {
            if (s[i] == '%' && i + 1 < n && s[i + 1] == '{')
                return spf_macro_len(s + i, n - i, 0) == n - i;
        }
        return 0;
    }
    if (s[n - 1] == '.')
        n--;
    for (dot = n; dot > 0 && s[dot - 1] != '.'; dot--)
        ;
    return dot > 1 && spf_toplabel(s + dot, n - dot);
}

/* ---- terms (4.6.1, 5, 6) ---- */

/* A CIDR length "/N": no leading zero, at most max.  -1 if malformed. */
static int spf_cidr_num(const char *s, size_t n, int max)
{
    int v = 0;

    if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static size_t spf_digits_before(const char *s, size_t n)
{
    size_t k = 0;

    while (k < n && isdigit((unsigned char)s[n - 1 - k]))
        k++;
    return k;
}

/* The slashes before a trailing "/N" or "//N" of s (n bytes), 0 if none. */
static size_t spf_cidr_slashes(const char *s, size_t n, size_t k)
{
    if (k == 0 || k == n || s[n - k - 1] != '/')
        return 0;
    return n - k >= 2 && s[n - k - 2] == '/' ? 2 : 1;
}

/* Takes a trailing dual-cidr-length ("/24", "//64", "/24//64") off s. */
static int spf_dual_cidr(struct spf_term *t, const char *s, size_t *n)
{
    size_t k = spf_digits_before(s, *n), sl = spf_cidr_slashes(s, *n, k);
    int v;

    t->cidr4 = 32;
    t->cidr6 = 128;
    if (sl == 2) {
        if ((v = spf_cidr_num(s + *n - k, k, 128)) < 0)
            return -1;
        t->cidr6 = (unsigned char)v;
        *n -= k + 2;
        k = spf_digits_before(s, *n);
        sl = spf_cidr_slashes(s, *n, k);
    }
    if (sl == 2)
        return -1;
    if (sl == 1) {
        if ((v = spf_cidr_num(s + *n - k, k, 32)) < 0)
            return -1;
        t->cidr4 = (unsigned char)v;
        *n -= k + 1;
    }
    return 0;
}

static int spf_term_ip(struct spf_term *t, const char *s, size_t n)
{
    char ip[64];
    const char *slash = memchr(s, '/', n);
    size_t iplen = slash ? (size_t)(slash - s) : n;
    int family = t->mech == SPF_M_IP4 ? AF_INET : AF_INET6;
    int v, max = family == AF_INET ? 32 : 128;

    if (iplen == 0 || iplen >= sizeof(ip))
        return -1;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    if (inet_pton(family, ip, t->net) != 1)
        return -1;
    v = max;
    if (slash && (v = spf_cidr_num(slash + 1, n - iplen - 1, max)) < 0)
        return -1;
    t->cidr4 = t->cidr6 = (unsigned char)v;
    return 0;
}

static const struct { const char *name; enum spf_mech mech; } spf_mechs[] = {
    { "all", SPF_M_ALL }, { "include", SPF_M_INCLUDE }, { "a", SPF_M_A },
    { "mx", SPF_M_MX }, { "ptr", SPF_M_PTR }, { "ip4", SPF_M_IP4 },
    { "ip6", SPF_M_IP6 }, { "exists", SPF_M_EXISTS },
};

static int spf_mech_lookup(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(spf_mechs) / sizeof(spf_mechs[0]); i++) {
        if (strlen(spf_mechs[i].name) == n && strncasecmp(s, spf_mechs[i].name, n) == 0)
            return (int)spf_mechs[i].mech;
    }
    return -1;
}

/* What follows a mechanism's name: s (n bytes) starts at ':' or '/' or is
 * empty. */
static int spf_term_args(struct spf_term *t, const char *s, size_t n)
{
    int need = t->mech == SPF_M_INCLUDE || t->mech == SPF_M_EXISTS ||
               t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6;

    if (t->mech == SPF_M_ALL)
        return n == 0 ? 0 : -1;
    if (t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6)
        return n > 1 && s[0] == ':' ? spf_term_ip(t, s + 1, n - 1) : -1;
    if ((t->mech == SPF_M_A || t->mech == SPF_M_MX) && spf_dual_cidr(t, s, &n) < 0)
        return -1;
    if (n == 0)
        return need ? -1 : 0;
    if (s[0] != ':' || !spf_domain_spec_ok(s + 1, n - 1))
        return -1;
    t->spec = s + 1;
    t->spec_len = n - 1;
    return 0;
}

static int spf_qualifier(char c)
{
    switch (c) {
    case '+': return SPF_PASS;
    case '-': return SPF_FAIL;
    case '~': return SPF_SOFTFAIL;
    case '?': return SPF_NEUTRAL;
    default: return -1;
    }
}

static int spf_modifier(struct spf_record *r, const char *name, size_t nlen,
                        const char *v, size_t vlen)
{
    const char **slot = NULL;
    size_t *slen = NULL;

    if (nlen == 8 && strncasecmp(name, "redirect", 8) == 0) {
        slot = &r->redirect;
        slen = &r->redirect_len;
    } else if (nlen == 3 && strncasecmp(name, "exp", 3) == 0) {
        slot = &r->exp;
        slen = &r->exp_len;
    }
    if (slot == NULL)   /* unknown modifiers are ignored, if well formed (6) */
        return spf_macro_valid(v, vlen, 0) ? 0 : -1;
    if (*slot || !spf_domain_spec_ok(v, vlen))
        return -1;
    *slot = v;
    *slen = vlen;
    return 0;
}

static int spf_term(struct spf_record *r, const char *s, size_t n)
{
    struct spf_term t;
    size_t k = 0;
    int q = spf_qualifier(s[0]), m;

    memset(&t, 0, sizeof(t));
    t.qual = (unsigned char)(q < 0 ? SPF_PASS : q);
    if (q >= 0)
        s++, n--;
    if (n == 0 || !isalpha((unsigned char)s[0]))
        return -1;
    while (k < n && (isalnum((unsigned char)s[k]) || strchr("-_.", s[k])))
        k++;
    if (q < 0 && k < n && s[k] == '=')
        return spf_modifier(r, s, k, s + k + 1, n - k - 1);
    if ((m = spf_mech_lookup(s, k)) < 0)
        return -1;
    t.mech = (unsigned char)m;
    if (spf_term_args(&t, s + k, n - k) < 0)
        return -1;
    if (r->nterms == SPF_MAX_TERMS)
        return -1;
    r->terms[r->nterms++] = t;
    return 0;
}

int spf_record_parse(struct spf_record *r, const char *txt)
{
    size_t len = strlen(txt), i = 6;

    memset(r, 0, sizeof(*r));
    if (len > SPF_RECORD_MAX || !spf_is_record(txt))
        return -1;
    memcpy(r->text, txt, len + 1);
    r->terms = mem_alloc(SPF_MAX_TERMS * sizeof(*r->terms));
    while (r->text[i]) {
        size_t start;
        if (r->text[i] == ' ') {
            i++;
            continue;
        }
        if (r->text[i - 1] != ' ')
            return -1;
        for (start = i; r->text[i] && r->text[i] != ' '; i++)
            ;
        if (spf_term(r, r->text + start, i - start) < 0)
            return -1;
    }
    return 0;
}

void spf_record_free(struct spf_record *r)
{
    mem_free(r->terms);
    r->terms = NULL;
    r->nterms = 0;
}
