/*
 * pwscheme.c - Dovecot-style password schemes, shared by the account
 * modules (see pwscheme.h).
 *
 * Owns: the table of scheme names, the shape check of stored hashes, the
 * constant-time compare and the crypt_rn(3) check.
 * Must not: log, allocate anything that outlives a call, or be called on
 * an event loop thread for a crypt scheme (hashing is slow on purpose).
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pwscheme.h"

struct pwscheme_info {
    const char *name;
    int scheme;
    const char *prefix;   /* what a hash of this scheme starts with */
};

static const struct pwscheme_info pwscheme_table[] = {
    {"PLAIN", PWSCHEME_PLAIN, NULL},
    {"CRYPT", PWSCHEME_CRYPT, NULL},
    {"SHA512-CRYPT", PWSCHEME_SHA512, "$6$"},
    {"SHA256-CRYPT", PWSCHEME_SHA256, "$5$"},
    {"BLF-CRYPT", PWSCHEME_BLF, "$2"},
};

#define PWSCHEME_COUNT (sizeof(pwscheme_table) / sizeof(pwscheme_table[0]))

static const struct pwscheme_info *pwscheme_info(int scheme)
{
    for (size_t i = 0; i < PWSCHEME_COUNT; i++)
        if (pwscheme_table[i].scheme == scheme)
            return &pwscheme_table[i];
    return NULL;
}

int pwscheme_parse(const char *field, const char **secret, const char **name,
                   size_t *namelen)
{
    const char *close;
    size_t n;

    *secret = field;
    *name = "";
    *namelen = 0;
    if (field[0] == '\0')
        return PWSCHEME_NONE;
    if (field[0] != '{')
        return PWSCHEME_CRYPT;
    close = strchr(field, '}');
    if (close == NULL)
        return PWSCHEME_UNTERMINATED;
    n = (size_t)(close - field - 1);
    *secret = close + 1;
    *name = field + 1;
    *namelen = n;
    for (size_t i = 0; i < PWSCHEME_COUNT; i++)
        if (strlen(pwscheme_table[i].name) == n &&
            strncasecmp(pwscheme_table[i].name, field + 1, n) == 0)
            return pwscheme_table[i].scheme;
    return PWSCHEME_UNKNOWN;
}

const char *pwscheme_name(int scheme)
{
    const struct pwscheme_info *info = pwscheme_info(scheme);

    return info ? info->name : "?";
}

int pwscheme_is_crypt(int scheme)
{
    return scheme >= PWSCHEME_CRYPT && scheme <= PWSCHEME_BLF;
}

const char *pwscheme_check_secret(int scheme, const char *secret)
{
    const struct pwscheme_info *info = pwscheme_info(scheme);

    if (scheme == PWSCHEME_PLAIN && secret[0] == '\0')
        return "empty {PLAIN} password";
    if (!pwscheme_is_crypt(scheme))
        return info || scheme == PWSCHEME_NONE ? NULL : "unknown scheme";
    /* A hash of another scheme under this name would be a login that
     * works against what the administrator meant: refuse it. */
    if ((info->prefix && strncmp(secret, info->prefix, strlen(info->prefix)) != 0) ||
        crypt_checksalt(secret) == CRYPT_SALT_INVALID)
        return "not a valid hash of its scheme";
    return NULL;
}

int pwscheme_equal_ct(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
    volatile unsigned char diff = la != lb;

    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= x ^ y;
    }
    return diff == 0;
}

int pwscheme_match_crypt(const char *password, const char *hash)
{
    /* struct crypt_data is about 32 KB: too big for a worker's stack. */
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *out;
    int ok;

    if (cd == NULL)
        return -1;
    out = hash[0] ? crypt_rn(password, hash, cd, sizeof(*cd)) : NULL;
    ok = out != NULL && out[0] != '*' && pwscheme_equal_ct(out, hash);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

int pwscheme_match(int scheme, const char *password, const char *secret)
{
    if (scheme == PWSCHEME_PLAIN)
        return secret[0] != '\0' && pwscheme_equal_ct(password, secret);
    if (pwscheme_is_crypt(scheme))
        return pwscheme_match_crypt(password, secret);
    return 0;
}
