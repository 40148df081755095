/*
 * test_pwscheme.c - unit tests of modules/common/pwscheme.c, the password
 * schemes the passwd and pgsql modules share: reading "{SCHEME}secret",
 * the shape check of stored hashes, and password checks with each scheme
 * (hashes made here with crypt_rn, so no fixed hash can go stale).
 * Must not: depend on the machine's accounts or files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../modules/common/pwscheme.h"

static void t_hash(const char *password, const char *prefix, char *out, size_t len)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    const char *h;

    assert_non_null(cd);
    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof(salt)));
    h = crypt_rn(password, salt, cd, sizeof(*cd));
    assert_non_null(h);
    assert_true(h[0] != '*');
    snprintf(out, len, "%s", h);
    free(cd);
}

static int t_parse(const char *field, const char **secret)
{
    const char *name;
    size_t n;

    return pwscheme_parse(field, secret, &name, &n);
}

static void test_parse(void **unused)
{
    const char *secret, *name;
    size_t n;

    assert_int_equal(t_parse("{PLAIN}x", &secret), PWSCHEME_PLAIN);
    assert_string_equal(secret, "x");
    assert_int_equal(t_parse("{plain}", &secret), PWSCHEME_PLAIN);
    assert_int_equal(t_parse("{SHA512-CRYPT}$6$a$b", &secret), PWSCHEME_SHA512);
    assert_string_equal(secret, "$6$a$b");
    assert_int_equal(t_parse("{Sha256-Crypt}$5$a", &secret), PWSCHEME_SHA256);
    assert_int_equal(t_parse("{BLF-CRYPT}$2y$", &secret), PWSCHEME_BLF);
    assert_int_equal(t_parse("{CRYPT}ab01", &secret), PWSCHEME_CRYPT);
    /* no braces: CRYPT, as Dovecot; empty: none */
    assert_int_equal(t_parse("$6$salt$hash", &secret), PWSCHEME_CRYPT);
    assert_string_equal(secret, "$6$salt$hash");
    assert_int_equal(t_parse("", &secret), PWSCHEME_NONE);
    assert_int_equal(t_parse("{PLAIN", &secret), PWSCHEME_UNTERMINATED);
    assert_int_equal(pwscheme_parse("{MD5}abc", &secret, &name, &n), PWSCHEME_UNKNOWN);
    assert_int_equal(n, 3);
    assert_memory_equal(name, "MD5", 3);
    assert_string_equal(secret, "abc");
    /* a prefix of a name is not the name */
    assert_int_equal(t_parse("{PLAI}x", &secret), PWSCHEME_UNKNOWN);
    assert_int_equal(t_parse("{SHA512}x", &secret), PWSCHEME_UNKNOWN);
    assert_string_equal(pwscheme_name(PWSCHEME_BLF), "BLF-CRYPT");
}

static void test_check_secret(void **unused)
{
    char h6[256], h5[256], h2[256];

    t_hash("x", "$6$", h6, sizeof(h6));
    t_hash("x", "$5$", h5, sizeof(h5));
    t_hash("x", "$2b$", h2, sizeof(h2));
    assert_null(pwscheme_check_secret(PWSCHEME_SHA512, h6));
    assert_null(pwscheme_check_secret(PWSCHEME_SHA256, h5));
    assert_null(pwscheme_check_secret(PWSCHEME_BLF, h2));
    assert_null(pwscheme_check_secret(PWSCHEME_CRYPT, h6));
    assert_null(pwscheme_check_secret(PWSCHEME_CRYPT, h2));
    assert_null(pwscheme_check_secret(PWSCHEME_PLAIN, "secret"));
    assert_null(pwscheme_check_secret(PWSCHEME_NONE, ""));
    /* a hash under the wrong scheme's name, or no hash at all */
    assert_non_null(pwscheme_check_secret(PWSCHEME_SHA512, h5));
    assert_non_null(pwscheme_check_secret(PWSCHEME_BLF, h6));
    assert_non_null(pwscheme_check_secret(PWSCHEME_SHA256, "secret"));
    assert_non_null(pwscheme_check_secret(PWSCHEME_CRYPT, "!"));
    assert_non_null(pwscheme_check_secret(PWSCHEME_PLAIN, ""));
    assert_non_null(pwscheme_check_secret(PWSCHEME_UNKNOWN, "x"));
}

static void t_scheme_matches(int scheme, const char *prefix)
{
    char h[256];

    t_hash("correct horse", prefix, h, sizeof(h));
    assert_int_equal(pwscheme_is_crypt(scheme), 1);
    assert_int_equal(pwscheme_match(scheme, "correct horse", h), 1);
    assert_int_equal(pwscheme_match(scheme, "correct hors", h), 0);
    assert_int_equal(pwscheme_match(scheme, "correct horsE", h), 0);
    assert_int_equal(pwscheme_match(scheme, "", h), 0);
}

static void test_match_each_scheme(void **unused)
{
    t_scheme_matches(PWSCHEME_SHA512, "$6$");
    t_scheme_matches(PWSCHEME_SHA256, "$5$");
    t_scheme_matches(PWSCHEME_BLF, "$2b$");
    t_scheme_matches(PWSCHEME_CRYPT, "$y$");     /* yescrypt, libxcrypt's default */
    assert_int_equal(pwscheme_is_crypt(PWSCHEME_PLAIN), 0);
    assert_int_equal(pwscheme_match(PWSCHEME_PLAIN, "pw", "pw"), 1);
    assert_int_equal(pwscheme_match(PWSCHEME_PLAIN, "pw", "pW"), 0);
    assert_int_equal(pwscheme_match(PWSCHEME_PLAIN, "pw", "pw "), 0);
    assert_int_equal(pwscheme_match(PWSCHEME_PLAIN, "", ""), 0);
    assert_int_equal(pwscheme_match(PWSCHEME_NONE, "", ""), 0);
    /* an empty or locked hash never matches */
    assert_int_equal(pwscheme_match_crypt("x", ""), 0);
    assert_int_equal(pwscheme_match_crypt("x", "*"), 0);
    assert_int_equal(pwscheme_match_crypt("x", "!$6$abc$def"), 0);
}

static void test_equal_ct(void **unused)
{
    assert_true(pwscheme_equal_ct("", ""));
    assert_true(pwscheme_equal_ct("abc", "abc"));
    assert_false(pwscheme_equal_ct("abc", "abd"));
    assert_false(pwscheme_equal_ct("abc", "ab"));
    assert_false(pwscheme_equal_ct("ab", "abc"));
    assert_false(pwscheme_equal_ct("", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_check_secret),
        cmocka_unit_test(test_match_each_scheme),
        cmocka_unit_test(test_equal_ct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
