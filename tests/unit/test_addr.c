/*
 * test_addr.c - RFC 5321 mailbox syntax and limits (src/core/addr.c).
 *
 * Every input is copied into a heap block of exactly its length, with no
 * NUL after it, so AddressSanitizer catches a read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

static enum addr_err parse_n(const char *s, size_t n, struct addr *out)
{
    char *copy = malloc(n ? n : 1);
    enum addr_err e;

    assert_non_null(copy);
    memcpy(copy, s, n);
    e = addr_parse(copy, n, out);
    free(copy);
    return e;
}

static void expect_ok_n(const char *s, size_t n, const char *local,
                        const char *domain)
{
    struct addr a;
    enum addr_err e = parse_n(s, n, &a);

    if (e != ADDR_OK)
        fail_msg("\"%.*s\": %s, expected ok", (int)n, s, addr_strerror(e));
    assert_string_equal(a.local, local);
    assert_string_equal(a.domain, domain);
}

static void expect_ok(const char *s, const char *local, const char *domain)
{
    expect_ok_n(s, strlen(s), local, domain);
}

static void expect_err_n(const char *s, size_t n, enum addr_err want)
{
    struct addr a;
    enum addr_err e = parse_n(s, n, &a);

    if (e != want)
        fail_msg("\"%.*s\": %s, expected %s", (int)n, s, addr_strerror(e),
                 addr_strerror(want));
}

static void expect_err(const char *s, enum addr_err want)
{
    expect_err_n(s, strlen(s), want);
}

static int valid_domain(const char *d)
{
    size_t n = strlen(d);
    char *copy = malloc(n ? n : 1);
    int r;

    assert_non_null(copy);
    memcpy(copy, d, n);
    r = addr_valid_domain(copy, n);
    free(copy);
    return r;
}

/* A string of n copies of c (static storage, one at a time per slot). */
static const char *rep(int slot, char c, size_t n)
{
    static char s[4][600];

    assert_true(n < sizeof(s[slot]));
    memset(s[slot], c, n);
    s[slot][n] = '\0';
    return s[slot];
}

/* A valid domain of exactly n characters: labels of up to 50 'a's. */
static const char *domain_of(int slot, size_t n)
{
    static char s[4][600];
    size_t i = 0, label = 0;

    assert_true(n < sizeof(s[slot]));
    while (i < n) {
        /* never end on a dot, never start a label with one */
        if (label == 50 && i + 1 < n) {
            s[slot][i++] = '.';
            label = 0;
            continue;
        }
        s[slot][i++] = 'a';
        label++;
    }
    s[slot][n] = '\0';
    return s[slot];
}

/* The part of s before its last '@' (static storage). */
static char *local_part(const char *s)
{
    static char local[600];
    const char *at = strrchr(s, '@');
    size_t n = at ? (size_t)(at - s) : strlen(s);

    memcpy(local, s, n);
    local[n] = '\0';
    return local;
}

static void test_simple(void **state)
{
    (void)state;
    expect_ok("user@example.com", "user", "example.com");
    expect_ok("a@b", "a", "b");
    expect_ok("first.last@sub.example.org", "first.last", "sub.example.org");
    expect_ok("user+tag@example.com", "user+tag", "example.com");
    expect_ok("!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~",
              "example.com");
    expect_ok("x@a-b.c-d.example", "x", "a-b.c-d.example");
    expect_ok("x@xn--bcher-kva.example", "x", "xn--bcher-kva.example");
    expect_ok("x@123.example", "x", "123.example");
    expect_ok("0@0", "0", "0");
}

/* The domain is lower-cased; the local part is kept as given. */
static void test_case(void **state)
{
    (void)state;
    expect_ok("John.Doe@EXAMPLE.Com", "John.Doe", "example.com");
    expect_ok("POSTMASTER", "POSTMASTER", "");
}

static void test_bare_local(void **state)
{
    (void)state;
    expect_ok("postmaster", "postmaster", "");
    expect_ok("a.b", "a.b", "");
}

static void test_trailing_root_dot(void **state)
{
    (void)state;
    expect_ok("user@example.com.", "user", "example.com");
    expect_ok("user@a.", "user", "a");
    expect_err("user@.", ADDR_EDOMAIN);
    expect_err("user@example.com..", ADDR_EDOMAIN);
}

static void test_quoted_local(void **state)
{
    (void)state;
    expect_ok("\"john doe\"@example.com", "\"john doe\"", "example.com");
    expect_ok("\"a\\\"b\"@x.org", "\"a\\\"b\"", "x.org");
    expect_ok("\"a\\\\b\"@x.org", "\"a\\\\b\"", "x.org");
    expect_ok("\"a@b\"@x.org", "\"a@b\"", "x.org");   /* @ inside quotes */
    expect_ok("\"a>b,c:d\"@x.org", "\"a>b,c:d\"", "x.org");
    expect_ok("\"\"@x.org", "\"\"", "x.org");           /* empty quoted */
    expect_ok("\"..\"@x.org", "\"..\"", "x.org");
    expect_ok("\"quoted\"", "\"quoted\"", "");

    expect_err("\"abc@x.org", ADDR_ESYNTAX);        /* unbalanced */
    expect_err("abc\"@x.org", ADDR_ESYNTAX);
    expect_err("\"abc\\\"@x.org", ADDR_ESYNTAX);    /* escaped closing quote */
    expect_err("\"a\"b\"@x.org", ADDR_ESYNTAX);     /* bare quote inside */
    expect_err("\"a\"\"b\"@x.org", ADDR_ESYNTAX);
    expect_err("a.\"b\"@x.org", ADDR_ESYNTAX);      /* obsolete mixed form */
    expect_err("\"a\tb\"@x.org", ADDR_ESYNTAX);     /* no controls, even tab */
    expect_err("\"a\rb\"@x.org", ADDR_ESYNTAX);
    expect_err("\"a\\\nb\"@x.org", ADDR_ESYNTAX);   /* nor escaped ones */
    expect_err("\"\\\"@x.org", ADDR_ESYNTAX);
}

static void test_source_route(void **state)
{
    (void)state;
    expect_ok("@relay.example:user@example.com", "user", "example.com");
    expect_ok("@a.example,@b.example:User@Example.COM", "User", "example.com");
    expect_err("@a.example,user@example.com", ADDR_ESYNTAX);  /* no colon */
    expect_err("@a.example:", ADDR_ESYNTAX);                   /* no mailbox */
    expect_err("@a.example:@b", ADDR_ESYNTAX);
}

static void test_address_literals(void **state)
{
    (void)state;
    expect_ok("user@[192.0.2.1]", "user", "[192.0.2.1]");
    expect_ok("user@[IPv6:2001:db8::1]", "user", "[ipv6:2001:db8::1]");
    expect_ok("user@[ipv6:::1]", "user", "[ipv6:::1]");
    expect_err("user@[192.0.2]", ADDR_EDOMAIN);
    expect_err("user@[192.0.2.256]", ADDR_EDOMAIN);
    expect_err("user@[192.0.2.1", ADDR_EDOMAIN);
    expect_err("user@192.0.2.1]", ADDR_EDOMAIN);
    expect_err("user@[]", ADDR_EDOMAIN);
    expect_err("user@[", ADDR_EDOMAIN);
    expect_err("user@[2001:db8::1]", ADDR_EDOMAIN);   /* IPv6 needs the tag */
    expect_err("user@[IPv6:192.0.2.1]", ADDR_EDOMAIN);
    expect_err("user@[IPv6:zz::1]", ADDR_EDOMAIN);
    expect_err("user@[ 192.0.2.1]", ADDR_EDOMAIN);
    expect_err("user@[192.0.2.1].", ADDR_EDOMAIN);
    expect_err("user@[localhost]", ADDR_EDOMAIN);
    expect_err("user@[192.0.2.1\x1b[2J]", ADDR_EDOMAIN);
}

/* A NUL or control byte inside a literal: inet_pton would stop at the NUL
 * and pass "u@[127.0.0.1" with the rest smuggled along (finding 6). */
static void test_literal_with_nul(void **state)
{
    static const char nul[] = "u@[127.0.0.1\0\1\x1b[2J]";
    static const char ctl[] = "u@[127.0.0.1\r\n]";
    struct addr a;

    (void)state;
    assert_int_equal(addr_parse(nul, sizeof(nul) - 1, &a), ADDR_EDOMAIN);
    assert_int_equal(addr_parse(ctl, sizeof(ctl) - 1, &a), ADDR_EDOMAIN);
    assert_false(addr_valid_domain("[127.0.0.1\0]", 12));
    assert_true(addr_valid_domain("[127.0.0.1]", 11));
}

static void test_bad_local(void **state)
{
    (void)state;
    expect_err("", ADDR_ESYNTAX);
    expect_err("@", ADDR_ESYNTAX);
    expect_err("@example.com", ADDR_ESYNTAX);
    expect_err(".user@example.com", ADDR_ESYNTAX);
    expect_err("user.@example.com", ADDR_ESYNTAX);
    expect_err("us..er@example.com", ADDR_ESYNTAX);
    expect_err(".", ADDR_ESYNTAX);
    expect_err("us er@example.com", ADDR_ESYNTAX);
    expect_err("us,er@example.com", ADDR_ESYNTAX);
    expect_err("us(er)@example.com", ADDR_ESYNTAX);
    expect_err("us<er@example.com", ADDR_ESYNTAX);
    expect_err("user>@example.com", ADDR_ESYNTAX);
    expect_err("us[er]@example.com", ADDR_ESYNTAX);
    expect_err("us\\er@example.com", ADDR_ESYNTAX);
    expect_err("us:er@example.com", ADDR_ESYNTAX);
    expect_err("us;er@example.com", ADDR_ESYNTAX);
    expect_err("user@@example.com", ADDR_ESYNTAX);
    expect_err("a@b@example.com", ADDR_ESYNTAX);
    expect_err("us\ter@example.com", ADDR_ESYNTAX);
    expect_err("user\r\n@example.com", ADDR_ESYNTAX);
    expect_err(" user@example.com", ADDR_ESYNTAX);
    expect_err_n("us\0er@example.com", 15, ADDR_ESYNTAX);
}

static void test_bad_domain(void **state)
{
    (void)state;
    expect_err("user@", ADDR_EDOMAIN);
    expect_err("user@-example.com", ADDR_EDOMAIN);
    expect_err("user@example-.com", ADDR_EDOMAIN);
    expect_err("user@example.-com", ADDR_EDOMAIN);
    expect_err("user@example.com-", ADDR_EDOMAIN);
    expect_err("user@example..com", ADDR_EDOMAIN);
    expect_err("user@.example.com", ADDR_EDOMAIN);
    expect_err("user@exa_mple.com", ADDR_EDOMAIN);
    expect_err("user@exa mple.com", ADDR_EDOMAIN);
    expect_err("user@example.com ", ADDR_EDOMAIN);
    expect_err("user@example.com>", ADDR_EDOMAIN);
    expect_err("user@exa\tmple.com", ADDR_EDOMAIN);
    expect_err("user@example.com\r", ADDR_EDOMAIN);
    expect_err_n("user@exa\0mple.com", 17, ADDR_EDOMAIN);
}

/* Non-ASCII anywhere: SMTPUTF8 is not offered. */
static void test_8bit(void **state)
{
    (void)state;
    expect_err("us\xc3\xa9r@example.com", ADDR_E8BIT);
    expect_err("user@ex\xc3\xa4mple.com", ADDR_E8BIT);
    expect_err("\"\xc3\xa9\"@example.com", ADDR_E8BIT);
    expect_err("user@example.com\x80", ADDR_E8BIT);
    expect_err("\xff", ADDR_E8BIT);
    expect_err("us\x7fr@example.com", ADDR_E8BIT);
    expect_err("user@[IPv6:\xc3\xa9::1]", ADDR_E8BIT);
}

static void test_local_limit(void **state)
{
    char s[600];

    (void)state;
    snprintf(s, sizeof(s), "%s@example.com", rep(0, 'l', 64));
    expect_ok(s, rep(1, 'l', 64), "example.com");
    snprintf(s, sizeof(s), "%s@example.com", rep(0, 'l', 65));
    expect_err(s, ADDR_ETOOLONG);
    expect_ok(rep(0, 'l', 64), rep(1, 'l', 64), "");  /* bare local part */
    expect_err(rep(0, 'l', 65), ADDR_ETOOLONG);
    /* A quoted local part counts its quotes. */
    snprintf(s, sizeof(s), "\"%s\"@x.org", rep(0, 'q', 62));
    expect_ok(s, local_part(s), "x.org");
    snprintf(s, sizeof(s), "\"%s\"@x.org", rep(0, 'q', 63));
    expect_err(s, ADDR_ETOOLONG);
}

static void test_label_limit(void **state)
{
    char s[600];

    (void)state;
    snprintf(s, sizeof(s), "u@%s.example", rep(0, 'd', 63));
    expect_ok(s, "u", s + 2);
    snprintf(s, sizeof(s), "u@%s.example", rep(0, 'd', 64));
    expect_err(s, ADDR_EDOMAIN);
    snprintf(s, sizeof(s), "u@%s", rep(0, 'd', 63));
    expect_ok(s, "u", s + 2);
    snprintf(s, sizeof(s), "u@%s", rep(0, 'd', 64));
    expect_err(s, ADDR_EDOMAIN);
}

/* The mailbox as a whole is at most ADDR_PATH_MAX (256) characters. */
static void test_path_limit(void **state)
{
    char s[600];

    (void)state;
    snprintf(s, sizeof(s), "u@%s", domain_of(0, 254));  /* 256 in all */
    assert_int_equal(strlen(s), 256);
    expect_ok(s, "u", s + 2);
    snprintf(s, sizeof(s), "u@%s", domain_of(0, 255));  /* 257 */
    expect_err(s, ADDR_ETOOLONG);
    snprintf(s, sizeof(s), "%s@%s", rep(0, 'l', 64), domain_of(1, 191));
    assert_int_equal(strlen(s), 256);
    expect_ok(s, rep(2, 'l', 64), domain_of(3, 191));
    snprintf(s, sizeof(s), "%s@%s", rep(0, 'l', 64), domain_of(1, 192));
    expect_err(s, ADDR_ETOOLONG);
    /* A source route does not count against the mailbox. */
    snprintf(s, sizeof(s), "@%s:u@%s", domain_of(0, 100), domain_of(1, 254));
    expect_ok(s, "u", domain_of(2, 254));
    /* 8-bit is reported before the length. */
    snprintf(s, sizeof(s), "%s\xc3\xa9@x", rep(0, 'l', 300));
    expect_err(s, ADDR_E8BIT);
}

/* Only the n bytes given are read: the rest of the buffer is not looked at. */
static void test_not_nul_terminated(void **state)
{
    (void)state;
    expect_ok_n("user@example.comGARBAGE", 16, "user", "example.com");
    expect_ok_n("user@example.com>", 16, "user", "example.com");
    expect_ok_n("postmaster@", 10, "postmaster", "");
    expect_err_n("user@example.com", 5, ADDR_EDOMAIN);
    expect_err_n("\"quoted\"", 7, ADDR_ESYNTAX);
    expect_err_n("\"a\\\"", 3, ADDR_ESYNTAX);
    expect_err_n("@route:", 7, ADDR_ESYNTAX);
    expect_err_n("a.", 2, ADDR_ESYNTAX);
    expect_err_n("x@[1.2.3.4]", 10, ADDR_EDOMAIN);
    expect_err_n("", 0, ADDR_ESYNTAX);
}

static void test_valid_domain(void **state)
{
    char s[600];

    (void)state;
    assert_true(valid_domain("example.com"));
    assert_true(valid_domain("localhost"));
    assert_true(valid_domain("a"));
    assert_true(valid_domain("a."));
    assert_true(valid_domain("a-b"));
    assert_true(valid_domain("a--b.c"));
    assert_true(valid_domain("[127.0.0.1]"));
    assert_true(valid_domain("[IPv6:::1]"));
    assert_false(valid_domain(""));
    assert_false(valid_domain("."));
    assert_false(valid_domain(".."));
    assert_false(valid_domain("a.."));
    assert_false(valid_domain("-a"));
    assert_false(valid_domain("a-"));
    assert_false(valid_domain("a-."));
    assert_false(valid_domain("a_b"));
    assert_false(valid_domain("a b"));
    assert_false(valid_domain("a@b"));
    assert_false(valid_domain("[]"));
    assert_false(valid_domain("["));
    assert_false(valid_domain("]"));
    assert_false(valid_domain("[1.2.3.4.5]"));
    assert_false(valid_domain("\xc3\xa4.example"));
    /* 255 characters at most, labels of 63 at most */
    assert_true(valid_domain(domain_of(0, 255)));
    assert_false(valid_domain(domain_of(0, 256)));
    snprintf(s, sizeof(s), "%s.", domain_of(0, 254));
    assert_true(valid_domain(s));   /* 255 with the root dot */
    snprintf(s, sizeof(s), "%s.", domain_of(0, 255));
    assert_false(valid_domain(s));  /* 256 with the root dot */
    assert_true(valid_domain(rep(0, 'x', 63)));
    assert_false(valid_domain(rep(0, 'x', 64)));
    /* An address literal longer than a domain may be. */
    snprintf(s, sizeof(s), "[IPv6:%s]", rep(0, '0', 260));
    assert_false(valid_domain(s));
}

static void test_format(void **state)
{
    struct addr a;
    char out[ADDR_PATH_MAX + 2], small[8];

    (void)state;
    assert_int_equal(addr_parse("User@Example.COM.", 17, &a), ADDR_OK);
    addr_format(&a, out, sizeof(out));
    assert_string_equal(out, "User@example.com");
    assert_int_equal(addr_parse("postmaster", 10, &a), ADDR_OK);
    addr_format(&a, out, sizeof(out));
    assert_string_equal(out, "postmaster");
    assert_int_equal(addr_parse("\"a b\"@x.org", 11, &a), ADDR_OK);
    addr_format(&a, out, sizeof(out));
    assert_string_equal(out, "\"a b\"@x.org");
    assert_int_equal(addr_parse("abcdef@example.com", 18, &a), ADDR_OK);
    addr_format(&a, small, sizeof(small));  /* truncates, stays terminated */
    assert_string_equal(small, "abcdef@");
}

/* The longest mailbox fits the documented output size. */
static void test_format_longest(void **state)
{
    struct addr a;
    char in[600], out[ADDR_PATH_MAX + 2];

    (void)state;
    snprintf(in, sizeof(in), "%s@%s", rep(0, 'l', 64), domain_of(1, 191));
    assert_int_equal(addr_parse(in, strlen(in), &a), ADDR_OK);
    addr_format(&a, out, sizeof(out));
    assert_string_equal(out, in);
}

static void test_lower(void **state)
{
    char s[] = "MiXeD-Case.EXAMPLE_1@";

    (void)state;
    addr_lower(s);
    assert_string_equal(s, "mixed-case.example_1@");
    char e[] = "";
    addr_lower(e);
    assert_string_equal(e, "");
}

static void test_strerror(void **state)
{
    const enum addr_err all[] = {ADDR_OK, ADDR_ESYNTAX, ADDR_EDOMAIN,
                                 ADDR_ETOOLONG, ADDR_E8BIT};

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *m = addr_strerror(all[i]);
        assert_non_null(m);
        assert_true(m[0] != '\0' && strcmp(m, "?") != 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m, addr_strerror(all[j]));
    }
    assert_string_equal(addr_strerror((enum addr_err)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_case),
        cmocka_unit_test(test_bare_local),
        cmocka_unit_test(test_trailing_root_dot),
        cmocka_unit_test(test_quoted_local),
        cmocka_unit_test(test_source_route),
        cmocka_unit_test(test_address_literals),
        cmocka_unit_test(test_literal_with_nul),
        cmocka_unit_test(test_bad_local),
        cmocka_unit_test(test_bad_domain),
        cmocka_unit_test(test_8bit),
        cmocka_unit_test(test_local_limit),
        cmocka_unit_test(test_label_limit),
        cmocka_unit_test(test_path_limit),
        cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_valid_domain),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_longest),
        cmocka_unit_test(test_lower),
        cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
