/*
 * pwscheme.h - Dovecot-style password schemes ({PLAIN}, {CRYPT},
 * {SHA256-CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}), shared by the account
 * modules (passwd, pgsql) that compile pwscheme.c into their .so.
 *
 * Owns: reading "{SCHEME}secret", checking that a stored hash looks like
 * its scheme, and checking a password against it.
 * Must not: keep state, log, or know where the secret came from (a file,
 * a database row); pwscheme_match_crypt() is slow on purpose and must only
 * run on libuv's thread pool, never on an event loop thread.
 */
#ifndef SELOR_PWSCHEME_H
#define SELOR_PWSCHEME_H

#include <stddef.h>

/* Internal to the module's .so: only selor_module is exported, so nothing
 * here can meet a name of Selor's or of another module. */
#pragma GCC visibility push(hidden)

enum pwscheme {
    PWSCHEME_UNTERMINATED = -2,  /* "{" without "}" */
    PWSCHEME_UNKNOWN = -1,       /* "{NAME}" with a name not below */
    PWSCHEME_NONE = 0,           /* empty field: cannot log in */
    PWSCHEME_PLAIN,
    PWSCHEME_CRYPT,              /* any crypt(3) hash; also no {SCHEME} */
    PWSCHEME_SHA512,
    PWSCHEME_SHA256,
    PWSCHEME_BLF,
};

/* "{NAME}rest" -> the scheme, *secret = rest, *name and *namelen = NAME
 * (also for PWSCHEME_UNKNOWN, so a caller can accept names of its own).
 * No braces: PWSCHEME_CRYPT (Dovecot's default); "": PWSCHEME_NONE. */
int pwscheme_parse(const char *field, const char **secret, const char **name,
                   size_t *namelen);

/* The scheme's name as written between the braces ("SHA512-CRYPT"). */
const char *pwscheme_name(int scheme);

/* NULL when secret is a usable value of that scheme, else why not. */
const char *pwscheme_check_secret(int scheme, const char *secret);

/* Whether the scheme needs crypt(3), i.e. the thread pool. */
int pwscheme_is_crypt(int scheme);

/* Compares without an early exit: the time says nothing of the content. */
int pwscheme_equal_ct(const char *a, const char *b);

/* 1 when password hashes to hash with crypt_rn(3), 0 when not, -1 when
 * memory is short.  Slow: thread pool only.  Wipes its scratch memory. */
int pwscheme_match_crypt(const char *password, const char *hash);

/* 1, 0 or -1 as above, for any scheme: PLAIN at once, crypt schemes by
 * pwscheme_match_crypt (so: thread pool only unless the scheme is PLAIN). */
int pwscheme_match(int scheme, const char *password, const char *secret);

#pragma GCC visibility pop

#endif
