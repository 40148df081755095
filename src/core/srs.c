/*
 * srs.c - SRS0/SRS1 addresses (see srs.h and docs/srs.md).
 *
 * Compatibility with libsrs2 (and so postsrsd) is the point of every
 * detail here: the field order fed to the HMAC, the lower-casing, the two
 * alphabets, the separators.  Must not: keep state between calls; the key,
 * the shift and the time come in as arguments.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "mem.h"
#include "srs.h"

#define SRS_DAY 86400
#define SRS_STAMP_SLOTS 1024   /* two base32 characters */
#define SRS_SHA1_LEN 20

static const char srs_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char srs_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789+/";

/* A piece of the input; the fields of an address are not NUL-terminated. */
struct srs_span {
    const char *p;
    size_t n;
};

/* An SRS address cut into its fields (which ones are set depends on tag). */
struct srs_parts {
    char tag;               /* '0' or '1' */
    struct srs_span hash, stamp, host, user;
};

/* ASCII only, as libsrs2 in the C locale, and without a branch on the data:
 * the hash comparison below runs in constant time. */
static unsigned char srs_lower(unsigned char c)
{
    return (unsigned char)(c + (((unsigned)(c - 'A') < 26u) << 5));
}

static struct srs_span srs_lit(const char *s)
{
    struct srs_span sp = { s, strlen(s) };
    return sp;
}

/* The local part of addr: everything before its last '@' (a domain has
 * none), or all of it when there is no '@'. */
static struct srs_span srs_local(const char *addr)
{
    const char *at = strrchr(addr, '@');
    struct srs_span sp = { addr, at ? (size_t)(at - addr) : strlen(addr) };
    return sp;
}

/*
 * What may go into a rewritten address: a local part of printable ASCII
 * without the specials that would need quoting, a domain of name
 * characters (or an address literal).  Anything else (a quoted local
 * part, a stray '@', a '=' that would move the fields) keeps the
 * original sender.
 */
static int srs_plain(const char *p, size_t n, int domain)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (domain ? !(isalnum(c) || strchr(".-_[]:", c))
                   : c <= 0x20 || c >= 0x7f || strchr("\"\\()<>,;:@[]", c))
            return 0;
    }
    return n > 0;
}

/* libsrs2 accepts any of these after the tag; what follows is '=' only. */
static int srs_tagged(struct srs_span local, char digit)
{
    return local.n >= 5 && srs_lower((unsigned char)local.p[0]) == 's' &&
           srs_lower((unsigned char)local.p[1]) == 'r' &&
           srs_lower((unsigned char)local.p[2]) == 's' && local.p[3] == digit &&
           strchr("=+-", local.p[4]) != NULL && local.p[4] != '\0';
}

int srs_is_srs(const char *addr)
{
    struct srs_span local;

    if (addr == NULL)
        return 0;
    local = srs_local(addr);
    return srs_tagged(local, '0') || srs_tagged(local, '1');
}

/* Srs_shift 0 is the bare secret, so postsrsd with the same secret agrees;
 * any other shift appends one byte, which changes every hash. */
static unsigned char *srs_hmac_key(const char *key, uint8_t shift, size_t *len)
{
    size_t n = strlen(key);
    unsigned char *k = mem_alloc(n + 1);

    memcpy(k, key, n);
    k[n] = shift;
    *len = shift ? n + 1 : n;
    return k;
}

/* Feeds one field lower-cased, as libsrs2 does, so that an MTA that
 * lower-cases local parts does not break the hash. */
static int srs_mac_field(EVP_MAC_CTX *ctx, struct srs_span f)
{
    unsigned char chunk[64];

    for (size_t done = 0; done < f.n;) {
        size_t k = f.n - done < sizeof chunk ? f.n - done : sizeof chunk;
        for (size_t i = 0; i < k; i++)
            chunk[i] = srs_lower((unsigned char)f.p[done + i]);
        if (!EVP_MAC_update(ctx, chunk, k))
            return 0;
        done += k;
    }
    return 1;
}

static int srs_mac(const unsigned char *k, size_t klen,
                   const struct srs_span *fields, int nfields,
                   unsigned char md[SRS_SHA1_LEN])
{
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    size_t mdlen = 0;
    int ok = ctx != NULL && EVP_MAC_init(ctx, k, klen, params);

    for (int i = 0; ok && i < nfields; i++)
        ok = srs_mac_field(ctx, fields[i]);
    ok = ok && EVP_MAC_final(ctx, md, &mdlen, SRS_SHA1_LEN) &&
         mdlen == SRS_SHA1_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

/* The first SRS_HASH_LEN characters of the base64 HMAC-SHA1 of the
 * lower-cased fields: four characters are the first three bytes. */
static int srs_hash(const char *key, uint8_t shift,
                    const struct srs_span *fields, int nfields,
                    char out[SRS_HASH_LEN + 1])
{
    unsigned char md[SRS_SHA1_LEN];
    size_t klen;
    unsigned char *k = srs_hmac_key(key, shift, &klen);
    int ok = srs_mac(k, klen, fields, nfields, md);

    OPENSSL_cleanse(k, klen);
    mem_free(k);
    if (!ok)
        return 0;
    out[0] = srs_b64[md[0] >> 2];
    out[1] = srs_b64[((md[0] & 0x03) << 4) | (md[1] >> 4)];
    out[2] = srs_b64[((md[1] & 0x0f) << 2) | (md[2] >> 6)];
    out[3] = srs_b64[md[2] & 0x3f];
    out[4] = '\0';
    OPENSSL_cleanse(md, sizeof md);
    return 1;
}

/* Days since the epoch, modulo 1024: what two base32 characters hold. */
static unsigned srs_day_slot(time_t now)
{
    long long day = now > 0 ? (long long)(now / SRS_DAY) : 0;

    return (unsigned)(day % SRS_STAMP_SLOTS);
}

static void srs_stamp(time_t now, char out[3])
{
    unsigned slot = srs_day_slot(now);

    out[0] = srs_b32[slot >> 5];
    out[1] = srs_b32[slot & 31];
    out[2] = '\0';
}

static int srs_b32_value(char c)
{
    const char *p;

    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    if (c == '\0' || (p = strchr(srs_b32, c)) == NULL)
        return -1;
    return (int)(p - srs_b32);
}

/*
 * The 1024-day wrap: the age is taken modulo 1024, as libsrs2 does, so a
 * stamp is valid for 21 days in every 1024-day cycle.  Unlike libsrs2 a
 * stamp up to SRS_FUTURE_DAYS ahead is accepted: nodes of a cluster whose
 * clocks straddle midnight must accept each other's addresses.
 */
static int srs_stamp_valid(struct srs_span st)
{
    return st.n == 2 && srs_b32_value(st.p[0]) >= 0 &&
           srs_b32_value(st.p[1]) >= 0;
}

static enum srs_status srs_stamp_check(struct srs_span st, time_t now)
{
    unsigned then = (unsigned)(srs_b32_value(st.p[0]) << 5 |
                               srs_b32_value(st.p[1]));
    unsigned age = (srs_day_slot(now) + SRS_STAMP_SLOTS - then) % SRS_STAMP_SLOTS;

    if (age <= SRS_MAX_AGE_DAYS || age >= SRS_STAMP_SLOTS - SRS_FUTURE_DAYS)
        return SRS_OK;
    return SRS_EXPIRED;
}

/* libsrs2 compares only the first hashlength characters, ignoring case
 * (local parts get lower-cased on the way); so do we, without an early
 * exit, so the time taken does not tell how much of a guess was right. */
static int srs_hash_equal(struct srs_span given, const char want[SRS_HASH_LEN + 1])
{
    unsigned diff = 0;

    for (int i = 0; i < SRS_HASH_LEN; i++)
        diff |= srs_lower((unsigned char)given.p[i]) ^
                srs_lower((unsigned char)want[i]);
    return diff == 0;
}

/* Cuts s at the next '=' into head (before) and s (after); 0 when there is
 * none or head would be empty. */
static int srs_cut(struct srs_span *s, struct srs_span *head)
{
    const char *eq = memchr(s->p, '=', s->n);

    if (eq == NULL || eq == s->p)
        return 0;
    head->p = s->p;
    head->n = (size_t)(eq - s->p);
    s->n -= head->n + 1;
    s->p = eq + 1;
    return 1;
}

/*
 * SRS0<sep>HASH=TT=HOST=USER and SRS1<sep>HASH=HOST=<rest of an SRS0>.
 * USER keeps any '=' it has.  SRS1's user is the first hop's SRS0 local
 * part without its "SRS0" tag, so it starts with that address's separator
 * (the second '=' of "hop1==HHHH"): libsrs2 hashes and returns it so.
 */
static enum srs_status srs_split(struct srs_span local, struct srs_parts *pt)
{
    struct srs_span rest;

    memset(pt, 0, sizeof *pt);
    if (srs_tagged(local, '0'))
        pt->tag = '0';
    else if (srs_tagged(local, '1'))
        pt->tag = '1';
    else
        return SRS_NOT_SRS;
    rest.p = local.p + 5;
    rest.n = local.n - 5;
    if (!srs_cut(&rest, &pt->hash) || pt->hash.n < SRS_HASH_LEN)
        return SRS_SYNTAX;
    if (pt->tag == '0' &&
        (!srs_cut(&rest, &pt->stamp) || !srs_stamp_valid(pt->stamp)))
        return SRS_SYNTAX;
    if (!srs_cut(&rest, &pt->host) || rest.n == 0)
        return SRS_SYNTAX;
    pt->user = rest;
    return SRS_OK;
}

static enum srs_status srs_verify(const char *key, uint8_t shift,
                                  const struct srs_parts *pt, time_t now)
{
    struct srs_span f[3];
    int n = 0;
    char want[SRS_HASH_LEN + 1];

    if (pt->tag == '0')
        f[n++] = pt->stamp;
    f[n++] = pt->host;
    f[n++] = pt->user;
    if (!srs_hash(key, shift, f, n, want) || !srs_hash_equal(pt->hash, want))
        return SRS_BAD_HASH;
    /* An SRS1 carries no stamp of its own: the first hop checks its SRS0. */
    return pt->tag == '0' ? srs_stamp_check(pt->stamp, now) : SRS_OK;
}

/* Writes the parts one after the other and a NUL; 0 when out cannot hold
 * them. */
static int srs_join(const struct srs_span *parts, int n, char *out,
                    size_t outlen)
{
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += parts[i].n;
    if (out == NULL || len + 1 > outlen)
        return 0;
    for (int i = 0; i < n; i++) {
        memcpy(out, parts[i].p, parts[i].n);
        out += parts[i].n;
    }
    *out = '\0';
    return 1;
}

enum srs_status srs_reverse(const char *key, uint8_t shift, const char *addr,
                            time_t now, char *out, size_t outlen)
{
    struct srs_parts pt;
    enum srs_status st;

    if (addr == NULL)
        return SRS_NOT_SRS;
    st = srs_split(srs_local(addr), &pt);
    if (st != SRS_OK)
        return st;
    if (key == NULL || *key == '\0')
        return SRS_BAD_HASH;
    st = srs_verify(key, shift, &pt, now);
    if (st != SRS_OK)
        return st;
    /* SRS1's user lacks the tag of the first hop's SRS0 (see srs_split). */
    struct srs_span p[4] = { srs_lit(pt.tag == '1' ? "SRS0" : ""), pt.user,
                             srs_lit("@"), pt.host };
    return srs_join(p, 4, out, outlen) ? SRS_OK : SRS_NO_ROOM;
}

/* The local part in parts[0..n-3], then "@domain" in the two free slots
 * at the end: the limits of RFC 5321 first (the caller keeps the original
 * sender then), the buffer second. */
static enum srs_fwd srs_emit(struct srs_span *parts, int n,
                             const char *domain, char *out, size_t outlen)
{
    size_t local = 0, dlen = strlen(domain);

    for (int i = 0; i < n - 2; i++)
        local += parts[i].n;
    if (local > SRS_LOCAL_MAX || local + 1 + dlen > SRS_ADDR_MAX)
        return SRS_FWD_TOO_LONG;
    parts[n - 2] = srs_lit("@");
    parts[n - 1] = srs_lit(domain);
    return srs_join(parts, n, out, outlen) ? SRS_FWD_OK : SRS_FWD_NO_ROOM;
}

/* SRS1=HASH=HOST=USER: libsrs2 hashes (host, user) and keeps the user as
 * it was, separator first. */
static enum srs_fwd srs_forward_srs1(const char *key, uint8_t shift,
                                     struct srs_span host, struct srs_span user,
                                     const char *domain, char *out, size_t outlen)
{
    struct srs_span f[2] = { host, user };
    char hash[SRS_HASH_LEN + 1];

    if (!srs_hash(key, shift, f, 2, hash))
        return SRS_FWD_INTERNAL;
    struct srs_span p[8] = { srs_lit("SRS1="), srs_lit(hash), srs_lit("="),
                             host, srs_lit("="), user };
    return srs_emit(p, 8, domain, out, outlen);
}

static enum srs_fwd srs_forward_srs0(const char *key, uint8_t shift,
                                     struct srs_span host, struct srs_span user,
                                     time_t now, const char *domain,
                                     char *out, size_t outlen)
{
    char stamp[3], hash[SRS_HASH_LEN + 1];

    srs_stamp(now, stamp);
    struct srs_span f[3] = { srs_lit(stamp), host, user };
    if (!srs_hash(key, shift, f, 3, hash))
        return SRS_FWD_INTERNAL;
    struct srs_span p[10] = { srs_lit("SRS0="), srs_lit(hash), srs_lit("="),
                              srs_lit(stamp), srs_lit("="), host, srs_lit("="),
                              user };
    return srs_emit(p, 10, domain, out, outlen);
}

enum srs_fwd srs_forward(const char *key, uint8_t shift, const char *sender,
                         const char *forwarder_domain, time_t now,
                         char *out, size_t outlen)
{
    struct srs_span local, host;
    struct srs_parts pt;

    /* The null sender gets no bounce, so there is nothing to route back. */
    if (sender == NULL || *sender == '\0')
        return SRS_FWD_KEEP;
    if (key == NULL || *key == '\0' || forwarder_domain == NULL ||
        *forwarder_domain == '\0' || strchr(sender, '@') == NULL)
        return SRS_FWD_INVALID;
    local = srs_local(sender);
    host = srs_lit(sender + local.n + 1);
    if (!srs_plain(local.p, local.n, 0) || !srs_plain(host.p, host.n, 1) ||
        !srs_plain(forwarder_domain, strlen(forwarder_domain), 1))
        return SRS_FWD_INVALID;
    /* Our own domain already passes SPF here, and bounces to it (our users
     * or our SRS addresses) already come back to us: as libsrs2. */
    if (strcasecmp(host.p, forwarder_domain) == 0)
        return SRS_FWD_KEEP;
    if (srs_tagged(local, '1') && local.n > 5) {
        /* A malformed SRS1 cannot be re-signed; libsrs2 refuses it too. */
        if (srs_split(local, &pt) != SRS_OK)
            return SRS_FWD_INVALID;
        return srs_forward_srs1(key, shift, pt.host, pt.user,
                                forwarder_domain, out, outlen);
    }
    if (srs_tagged(local, '0') && local.n > 5) {
        struct srs_span user = { local.p + 4, local.n - 4 };
        return srs_forward_srs1(key, shift, host, user, forwarder_domain,
                                out, outlen);
    }
    return srs_forward_srs0(key, shift, host, local, now, forwarder_domain,
                            out, outlen);
}

const char *srs_fwd_str(enum srs_fwd r)
{
    switch (r) {
    case SRS_FWD_OK: return "rewritten";
    case SRS_FWD_KEEP: return "not rewritten (null sender or own domain)";
    case SRS_FWD_INVALID: return "no key, no domain or no usable sender";
    case SRS_FWD_TOO_LONG: return "rewritten address too long";
    case SRS_FWD_NO_ROOM: return "output buffer too small";
    case SRS_FWD_INTERNAL: return "crypto library failure";
    }
    return "unknown";
}

const char *srs_status_str(enum srs_status s)
{
    switch (s) {
    case SRS_NOT_SRS: return "not an SRS address";
    case SRS_OK: return "valid SRS address";
    case SRS_BAD_HASH: return "invalid SRS address (bad hash)";
    case SRS_EXPIRED: return "invalid SRS address (expired)";
    case SRS_SYNTAX: return "invalid SRS address (syntax)";
    case SRS_NO_ROOM: return "output buffer too small";
    }
    return "unknown";
}
