/*
 * test_smtp_reply.c - reply lines from Msg_* texts (src/smtp/smtp_reply.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "smtp_reply.h"

/* smtp_reply_msg into a fresh buffer must give exactly want. */
static void check_reply(const char *msg, const char *detail, int enhanced,
                        const char *prefix, const char *suffix,
                        const char *want)
{
    struct buf out = BUF_INIT(0);
    char got[1024];

    smtp_reply_msg(&out, msg, detail, enhanced, prefix, suffix);
    snprintf(got, sizeof(got), "%s", buf_cstr(&out));
    buf_free(&out);
    if (strcmp(got, want) != 0)
        fail_msg("msg \"%s\" detail %s enhanced %d prefix %s suffix %s:\n"
                 "  got  \"%s\"\n  want \"%s\"", msg, detail ? detail : "NULL",
                 enhanced, prefix ? prefix : "NULL", suffix ? suffix : "NULL",
                 got, want);
}

static void test_reply_code(void **state)
{
    (void)state;
    assert_int_equal(smtp_reply_code("250 Ok"), 250);
    assert_int_equal(smtp_reply_code("550"), 550);
    assert_int_equal(smtp_reply_code("421 Temp error. Try again later"), 421);
    assert_int_equal(smtp_reply_code("220 "), 220);
    assert_int_equal(smtp_reply_code(""), 0);
    assert_int_equal(smtp_reply_code("2"), 0);
    assert_int_equal(smtp_reply_code("25"), 0);
    assert_int_equal(smtp_reply_code("2x0 Ok"), 0);
    assert_int_equal(smtp_reply_code("Could not connect to remote server"), 0);
    assert_int_equal(smtp_reply_code(" 250 Ok"), 0);
}

static void test_plain(void **state)
{
    (void)state;
    check_reply("250 Ok", "0.0", 0, NULL, NULL, "250 Ok\r\n");
    check_reply("550 No such user", NULL, 0, NULL, NULL, "550 No such user\r\n");
    check_reply("354 Ok", NULL, 1, NULL, NULL, "354 Ok\r\n");  /* no detail */
    check_reply("250   Ok", NULL, 0, NULL, NULL, "250 Ok\r\n");  /* blanks folded */
}

/* The class of the enhanced code is the first digit of the reply code. */
static void test_enhanced_class_from_code(void **state)
{
    (void)state;
    check_reply("250 Ok", "0.0", 1, NULL, NULL, "250 2.0.0 Ok\r\n");
    check_reply("550 No such user", "1.1", 1, NULL, NULL,
                "550 5.1.1 No such user\r\n");
    check_reply("452 Too many recipients", "5.3", 1, NULL, NULL,
                "452 4.5.3 Too many recipients\r\n");
    check_reply("421 Temp error. Try again later", "7.0", 1, NULL, NULL,
                "421 4.7.0 Temp error. Try again later\r\n");
    /* The same detail follows a Msg_* changed from 5xx to 4xx. */
    check_reply("451 No such user", "1.1", 1, NULL, NULL,
                "451 4.1.1 No such user\r\n");
    check_reply("221 Ok", "0.0", 1, NULL, NULL, "221 2.0.0 Ok\r\n");
}

static void test_no_enhanced_before_ehlo(void **state)
{
    (void)state;
    check_reply("550 No such user", "1.1", 0, NULL, NULL,
                "550 No such user\r\n");
}

/* A text that already carries an enhanced code does not get a second one. */
static void test_no_double_enhanced(void **state)
{
    (void)state;
    check_reply("550 5.7.1 Denied by policy", "1.1", 1, NULL, NULL,
                "550 5.7.1 Denied by policy\r\n");
    check_reply("250 2.0.0 Ok", "0.0", 1, NULL, NULL, "250 2.0.0 Ok\r\n");
    check_reply("451 4.3.0 Internal error", "3.0", 1, NULL, NULL,
                "451 4.3.0 Internal error\r\n");
    check_reply("550 5.1.10 Bad", "1.1", 1, NULL, NULL, "550 5.1.10 Bad\r\n");
    check_reply("550 5.123.456", "1.1", 1, NULL, NULL, "550 5.123.456\r\n");
    check_reply("550    5.7.1 Spaced", "1.1", 1, NULL, NULL,
                "550 5.7.1 Spaced\r\n");
}

/* Text that only looks a bit like an enhanced code still gets one. */
static void test_not_really_enhanced(void **state)
{
    (void)state;
    check_reply("450 4.5 load average, try later.", "3.2", 1, NULL, NULL,
                "450 4.3.2 4.5 load average, try later.\r\n");
    check_reply("250 2.0 release. Ok", "0.0", 1, NULL, NULL,
                "250 2.0.0 2.0 release. Ok\r\n");
    check_reply("550 5.1.1.1 odd", "1.1", 1, NULL, NULL,
                "550 5.1.1 5.1.1.1 odd\r\n");
    check_reply("550 5.1.1x odd", "1.1", 1, NULL, NULL,
                "550 5.1.1 5.1.1x odd\r\n");
    check_reply("550 5.1234.1 odd", "1.1", 1, NULL, NULL,
                "550 5.1.1 5.1234.1 odd\r\n");
    check_reply("550 5..1 odd", "1.1", 1, NULL, NULL,
                "550 5.1.1 5..1 odd\r\n");
    check_reply("550 1.2.3 odd", "1.1", 1, NULL, NULL,  /* no class 1 */
                "550 5.1.1 1.2.3 odd\r\n");
}

static void test_prefix(void **state)
{
    (void)state;
    check_reply("250 Msg accepted", "0.0", 1, "1700000000_000001_42_7", NULL,
                "250 2.0.0 1700000000_000001_42_7 Msg accepted\r\n");
    check_reply("250 Msg accepted", "0.0", 0, "Q1", NULL,
                "250 Q1 Msg accepted\r\n");
    check_reply("250 Msg accepted", "0.0", 1, "", NULL,  /* empty = none */
                "250 2.0.0 Msg accepted\r\n");
}

static void test_suffix(void **state)
{
    (void)state;
    check_reply("553 Invalid domain:", "1.2", 1, NULL, "example..com",
                "553 5.1.2 Invalid domain: example..com\r\n");
    check_reply("553 Invalid domain:", "1.2", 0, NULL, "x",
                "553 Invalid domain: x\r\n");
    check_reply("553 Invalid domain:", "1.2", 0, NULL, "",
                "553 Invalid domain:\r\n");
}

static void test_prefix_and_suffix(void **state)
{
    (void)state;
    check_reply("250 text", "0.0", 1, "P", "S", "250 2.0.0 P text S\r\n");
    check_reply("250", "0.0", 0, "P", "S", "250 P S\r\n");
    check_reply("250 ", "0.0", 1, "P", "S", "250 2.0.0 P S\r\n");
}

/* A Msg_* that is only a code (config allows "220" and "220 "). */
static void test_bare_code(void **state)
{
    (void)state;
    check_reply("220 ", NULL, 0, NULL, NULL, "220\r\n");
    check_reply("220", NULL, 0, NULL, NULL, "220\r\n");
    check_reply("250", "0.0", 1, NULL, NULL, "250 2.0.0\r\n");
    check_reply("220 ", NULL, 0, "mx.example.org", NULL, "220 mx.example.org\r\n");
    check_reply("553", "1.2", 0, NULL, "bad.example", "553 bad.example\r\n");
    check_reply("553 ", "1.2", 1, NULL, "bad.example",
                "553 5.1.2 bad.example\r\n");
}

static void test_trailing_blanks_trimmed(void **state)
{
    (void)state;
    check_reply("250 Ok   ", NULL, 0, NULL, NULL, "250 Ok\r\n");
    check_reply("250 a b \t ", NULL, 0, NULL, NULL, "250 a b \t\r\n");
    check_reply("250 Ok", "0.0", 1, NULL, "  ", "250 2.0.0 Ok\r\n");
}

/* Appends: what was in the buffer stays, even when it ends in blanks. */
static void test_appends(void **state)
{
    struct buf out = BUF_INIT(0);

    (void)state;
    buf_puts(&out, "250-first line ");
    smtp_reply_msg(&out, "250 Ok", "0.0", 1, NULL, NULL);
    smtp_reply_msg(&out, "220 ", NULL, 0, NULL, NULL);
    assert_string_equal(buf_cstr(&out), "250-first line 250 2.0.0 Ok\r\n220\r\n");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_code),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_enhanced_class_from_code),
        cmocka_unit_test(test_no_enhanced_before_ehlo),
        cmocka_unit_test(test_no_double_enhanced),
        cmocka_unit_test(test_not_really_enhanced),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_prefix_and_suffix),
        cmocka_unit_test(test_bare_code),
        cmocka_unit_test(test_trailing_blanks_trimmed),
        cmocka_unit_test(test_appends),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
