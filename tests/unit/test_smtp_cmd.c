/*
 * test_smtp_cmd.c - command line syntax: verbs, MAIL/RCPT paths, ESMTP
 * parameters (src/smtp/smtp_cmd.c).
 *
 * Inputs are copied into heap blocks of exactly their length (no NUL after
 * them), so AddressSanitizer catches any read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_cmd.h"

/* An exact-size, unterminated copy; freed by free_copies(). */
static char *copies[128];
static size_t ncopies;

static char *copy_of(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);

    assert_non_null(c);
    assert_true(ncopies < sizeof(copies) / sizeof(copies[0]));
    memcpy(c, s, n);
    copies[ncopies++] = c;
    return c;
}

static int free_copies(void **state)
{
    (void)state;
    while (ncopies)
        free(copies[--ncopies]);
    return 0;
}

/* ---- verbs ---- */

static void expect_cmd(const char *line, enum smtp_verb verb, const char *arg)
{
    size_t n = strlen(line);
    const char *c = copy_of(line, n);
    struct smtp_cmd cmd;

    smtp_cmd_parse(c, n, &cmd);
    if (cmd.verb != verb)
        fail_msg("\"%s\": verb %s, expected %s", line, smtp_verb_name(cmd.verb),
                 smtp_verb_name(verb));
    if (cmd.arglen != strlen(arg) || memcmp(cmd.arg, arg, cmd.arglen) != 0)
        fail_msg("\"%s\": arg \"%.*s\", expected \"%s\"", line, (int)cmd.arglen,
                 cmd.arg, arg);
}

static void test_verbs(void **state)
{
    static const struct { const char *name; enum smtp_verb verb; } all[] = {
        {"HELO", SMTP_HELO}, {"EHLO", SMTP_EHLO}, {"MAIL", SMTP_MAIL},
        {"RCPT", SMTP_RCPT}, {"DATA", SMTP_DATA}, {"RSET", SMTP_RSET},
        {"NOOP", SMTP_NOOP}, {"QUIT", SMTP_QUIT}, {"VRFY", SMTP_VRFY},
        {"EXPN", SMTP_EXPN}, {"HELP", SMTP_HELP}, {"AUTH", SMTP_AUTH},
    };
    char line[32];

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        assert_string_equal(smtp_verb_name(all[i].verb), all[i].name);
        expect_cmd(all[i].name, all[i].verb, "");
        snprintf(line, sizeof(line), "%s x", all[i].name);
        expect_cmd(line, all[i].verb, "x");
        /* verbs are case-insensitive */
        for (int j = 0; j < 4; j++)
            line[j] = (char)(j % 2 ? line[j] - 'A' + 'a' : line[j]);
        expect_cmd(line, all[i].verb, "x");
    }
    expect_cmd("quit", SMTP_QUIT, "");
    expect_cmd("mail from:<a@b>", SMTP_MAIL, "from:<a@b>");
    assert_string_equal(smtp_verb_name(SMTP_UNKNOWN), "?");
}

static void test_args(void **state)
{
    (void)state;
    expect_cmd("MAIL FROM:<a@b.c>", SMTP_MAIL, "FROM:<a@b.c>");
    expect_cmd("EHLO   client.example", SMTP_EHLO, "client.example");
    expect_cmd("EHLO client.example   ", SMTP_EHLO, "client.example");
    expect_cmd("EHLO client.example \t \t", SMTP_EHLO, "client.example");
    expect_cmd("EHLO a  b", SMTP_EHLO, "a  b");     /* inner blanks kept */
    expect_cmd("QUIT ", SMTP_QUIT, "");
    expect_cmd("QUIT     ", SMTP_QUIT, "");
    expect_cmd("NOOP \t", SMTP_NOOP, "");
    expect_cmd("HELO \tx", SMTP_HELO, "\tx");
}

static void test_unknown_verbs(void **state)
{
    (void)state;
    expect_cmd("", SMTP_UNKNOWN, "");
    expect_cmd("MAI", SMTP_UNKNOWN, "");
    expect_cmd("MAILX", SMTP_UNKNOWN, "");
    expect_cmd("XMAIL FROM:<a@b>", SMTP_UNKNOWN, "FROM:<a@b>");  /* a verb of 4-8 letters */
    expect_cmd("XXXXXMAIL FROM:<a@b>", SMTP_UNKNOWN, "");
    expect_cmd("MAIL:", SMTP_UNKNOWN, "");
    expect_cmd("MAIL\tFROM:<a@b>", SMTP_UNKNOWN, "");
    expect_cmd(" MAIL FROM:<a@b>", SMTP_UNKNOWN, "");
    expect_cmd("MA1L FROM:<a@b>", SMTP_UNKNOWN, "");
    expect_cmd("1234", SMTP_UNKNOWN, "");
    expect_cmd("STARTTLSX", SMTP_UNKNOWN, "");
    expect_cmd("STARTTL", SMTP_UNKNOWN, "");
    expect_cmd("XSTARTTLSX", SMTP_UNKNOWN, "");
    expect_cmd("\xc3\x89HLO x", SMTP_UNKNOWN, "");
    /* A well-formed but unknown verb keeps its argument. */
    expect_cmd("ETRN example.org", SMTP_UNKNOWN, "example.org");
    expect_cmd("BDAT 100 LAST", SMTP_UNKNOWN, "100 LAST");
    expect_cmd("XXXX", SMTP_UNKNOWN, "");
    expect_cmd("STARTTLS", SMTP_STARTTLS, "");
    expect_cmd("starttls", SMTP_STARTTLS, "");
}

static void test_embedded_nul(void **state)
{
    const char line[] = "QUIT\0 x";
    struct smtp_cmd cmd;

    (void)state;
    smtp_cmd_parse(copy_of(line, sizeof(line) - 1), sizeof(line) - 1, &cmd);
    assert_int_equal(cmd.verb, SMTP_UNKNOWN);
}

/* ---- paths ---- */

static enum smtp_path_err path_n(const char *arg, size_t n, const char *kw,
                                 int strict, struct smtp_path *p)
{
    return smtp_cmd_path(copy_of(arg, n), n, kw, strict, p);
}

/* Parses arg; expects ok, the mailbox (NULL for <>) and the parameters. */
static void expect_path(const char *arg, const char *kw, int strict,
                        const char *local, const char *domain,
                        const char *params)
{
    struct smtp_path p;
    enum smtp_path_err e = path_n(arg, strlen(arg), kw, strict, &p);

    if (e != SMTP_PATH_OK)
        fail_msg("\"%s\" (strict %d): error %d, expected ok", arg, strict, e);
    if (local == NULL) {
        if (!p.null)
            fail_msg("\"%s\": not the null path", arg);
    } else {
        assert_false(p.null);
        assert_string_equal(p.addr.local, local);
        assert_string_equal(p.addr.domain, domain);
    }
    if (p.paramslen != strlen(params) || memcmp(p.params, params, p.paramslen) != 0)
        fail_msg("\"%s\": params \"%.*s\", expected \"%s\"", arg,
                 (int)p.paramslen, p.params, params);
}

static void expect_path_err(const char *arg, const char *kw, int strict,
                            enum smtp_path_err want)
{
    struct smtp_path p;
    enum smtp_path_err e = path_n(arg, strlen(arg), kw, strict, &p);

    if (e != want)
        fail_msg("\"%s\" (strict %d): error %d, expected %d", arg, strict, e, want);
}

/* Both modes accept a path in angle brackets. */
static void test_path_brackets(void **state)
{
    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        expect_path("FROM:<user@example.com>", "FROM:", strict, "user",
                    "example.com", "");
        expect_path("from:<user@Example.COM>", "FROM:", strict, "user",
                    "example.com", "");
        expect_path("FrOm:<a@b>", "FROM:", strict, "a", "b", "");
        expect_path("TO:<rcpt@example.org>", "TO:", strict, "rcpt",
                    "example.org", "");
        expect_path("FROM: <user@example.com>", "FROM:", strict, "user",
                    "example.com", "");
        expect_path("FROM:<user@example.com> SIZE=1000 BODY=8BITMIME", "FROM:",
                    strict, "user", "example.com", "SIZE=1000 BODY=8BITMIME");
        expect_path("FROM:<user@example.com>   SIZE=1", "FROM:", strict,
                    "user", "example.com", "SIZE=1");
        expect_path("TO:<postmaster>", "TO:", strict, "postmaster", "", "");
        expect_path("TO:<Postmaster>", "TO:", strict, "Postmaster", "", "");
        expect_path("TO:<@relay.example:u@example.com>", "TO:", strict, "u",
                    "example.com", "");
        expect_path("TO:<\"a>b\"@example.com>", "TO:", strict, "\"a>b\"",
                    "example.com", "");
        expect_path("TO:<\"a\\\">\"@example.com> X=1", "TO:", strict,
                    "\"a\\\">\"", "example.com", "X=1");
        expect_path("TO:<u@[192.0.2.1]>", "TO:", strict, "u", "[192.0.2.1]", "");
    }
}

static void test_null_path(void **state)
{
    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        expect_path("FROM:<>", "FROM:", strict, NULL, NULL, "");
        expect_path("FROM: <>", "FROM:", strict, NULL, NULL, "");
        expect_path("FROM:<> SIZE=100", "FROM:", strict, NULL, NULL, "SIZE=100");
    }
}

/* Without brackets: accepted unless strict (Proto_level_check 1). */
static void test_path_without_brackets(void **state)
{
    (void)state;
    expect_path("FROM:user@example.com", "FROM:", 0, "user", "example.com", "");
    expect_path("FROM: user@example.com", "FROM:", 0, "user", "example.com", "");
    expect_path("FROM:user@example.com SIZE=5", "FROM:", 0, "user",
                "example.com", "SIZE=5");
    expect_path("TO:postmaster", "TO:", 0, "postmaster", "", "");
    expect_path_err("FROM:user@example.com", "FROM:", 1, SMTP_PATH_BRACKETS);
    expect_path_err("FROM: user@example.com", "FROM:", 1, SMTP_PATH_BRACKETS);
    expect_path_err("TO:postmaster", "TO:", 1, SMTP_PATH_BRACKETS);
    expect_path_err("FROM:user@example.com>", "FROM:", 0, SMTP_PATH_DOMAIN);
    expect_path_err("FROM:", "FROM:", 0, SMTP_PATH_SYNTAX);
    expect_path_err("FROM:   ", "FROM:", 0, SMTP_PATH_SYNTAX);
}

static void test_path_syntax_errors(void **state)
{
    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        expect_path_err("", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FRO", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM <a@b>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM :<a@b>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("TO:<a@b>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a@b>", "TO:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a@b", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a@b>x", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a@b>>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<>x", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<<a@b>>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a b@c>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<\"a@b>", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<a@b>\tSIZE=1", "FROM:", strict, SMTP_PATH_SYNTAX);
        expect_path_err("FROM:<@a:>", "FROM:", strict, SMTP_PATH_SYNTAX);
    }
}

static void test_path_errors_from_addr(void **state)
{
    char arg[700], local[80];

    (void)state;
    for (int strict = 0; strict <= 1; strict++) {
        expect_path_err("FROM:<user@bad..example>", "FROM:", strict,
                        SMTP_PATH_DOMAIN);
        expect_path_err("TO:<user@>", "TO:", strict, SMTP_PATH_DOMAIN);
        expect_path_err("TO:<us\xc3\xa9r@example.com>", "TO:", strict,
                        SMTP_PATH_8BIT);
        memset(local, 'l', 65);
        local[65] = '\0';
        snprintf(arg, sizeof(arg), "TO:<%s@example.com>", local);
        expect_path_err(arg, "TO:", strict, SMTP_PATH_TOOLONG);
        local[64] = '\0';
        snprintf(arg, sizeof(arg), "TO:<%s@example.com>", local);
        expect_path(arg, "TO:", strict, local, "example.com", "");
    }
}

/* Only len bytes are read, whatever follows in memory. */
static void test_path_bounded(void **state)
{
    struct smtp_path p;
    const char *s = "FROM:<a@b.example> SIZE=1 trailing";

    (void)state;
    assert_int_equal(path_n(s, 18, "FROM:", 1, &p), SMTP_PATH_OK);
    assert_string_equal(p.addr.domain, "b.example");
    assert_int_equal(p.paramslen, 0);
    assert_int_equal(path_n(s, 17, "FROM:", 1, &p), SMTP_PATH_SYNTAX);
    assert_int_equal(path_n(s, 25, "FROM:", 1, &p), SMTP_PATH_OK);
    assert_int_equal(p.paramslen, 6);
    assert_memory_equal(p.params, "SIZE=1", 6);
    assert_int_equal(path_n(s, 4, "FROM:", 0, &p), SMTP_PATH_SYNTAX);
    assert_int_equal(path_n(s, 5, "FROM:", 0, &p), SMTP_PATH_SYNTAX);
    assert_int_equal(path_n("FROM:<\"a\\", 9, "FROM:", 0, &p), SMTP_PATH_SYNTAX);
}

/* ---- ESMTP parameters ---- */

/* Reads every parameter of s; want is "KEY=value KEY ..." or "ERR" last. */
static void expect_params(const char *s, const char *want)
{
    size_t n = strlen(s);
    const char *p = copy_of(s, n), *end = p + n;
    struct smtp_param prm;
    char got[2048] = "";
    int r;

    while ((r = smtp_cmd_next_param(&p, end, &prm)) == 1) {
        size_t k = strlen(got);
        snprintf(got + k, sizeof(got) - k, "%s%s%s%s", k ? " " : "", prm.key,
                 prm.value[0] ? "=" : "", prm.value);
        assert_true(p <= end);
    }
    if (r < 0) {
        size_t k = strlen(got);
        snprintf(got + k, sizeof(got) - k, "%sERR", k ? " " : "");
    }
    if (strcmp(got, want) != 0)
        fail_msg("params \"%s\": got \"%s\", expected \"%s\"", s, got, want);
}

static void test_params(void **state)
{
    (void)state;
    expect_params("", "");
    expect_params("   ", "");
    expect_params("SIZE=1000", "SIZE=1000");
    expect_params("size=1000 body=8bitmime", "SIZE=1000 BODY=8bitmime");
    expect_params("SMTPUTF8", "SMTPUTF8");
    expect_params("  SIZE=1   BODY=7BIT  ", "SIZE=1 BODY=7BIT");
    expect_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@example.com",
                  "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@example.com");
    expect_params("X-VENDOR-OPT=a", "X-VENDOR-OPT=a");
    expect_params("AUTH=<>", "AUTH=<>");
    expect_params("A=!~", "A=!~");
}

static void test_bad_params(void **state)
{
    (void)state;
    expect_params("=x", "ERR");
    expect_params("SIZE=", "ERR");
    expect_params("SIZE= 1", "ERR");
    expect_params("SIZE==1", "ERR");
    expect_params("SIZE=1=2", "ERR");
    expect_params("-X=1", "ERR");
    expect_params("SIZE=1\t", "ERR");
    expect_params("SIZE\t=1", "ERR");
    expect_params("SIZE=a\x01", "ERR");
    expect_params("SIZE=\x7f", "ERR");
    expect_params("SIZE=\xc3\xa9", "ERR");
    expect_params("SI_ZE=1", "ERR");
    expect_params("SIZE=1 BODY=", "SIZE=1 ERR");
    expect_params("SIZE=1 ,", "SIZE=1 ERR");
}

static void test_param_limits(void **state)
{
    char s[700], key[40], value[300], want[700];

    (void)state;
    memset(key, 'K', sizeof(key));
    memset(value, 'v', sizeof(value));
    snprintf(s, sizeof(s), "%.31s=1", key);  /* 31: fits key[32] */
    snprintf(want, sizeof(want), "%.31s=1", key);
    expect_params(s, want);
    snprintf(s, sizeof(s), "%.32s=1", key);
    expect_params(s, "ERR");
    snprintf(s, sizeof(s), "A=%.255s", value);  /* 255: fits value[256] */
    snprintf(want, sizeof(want), "A=%.255s", value);
    expect_params(s, want);
    snprintf(s, sizeof(s), "A=%.256s", value);
    expect_params(s, "ERR");
}

/* The parameter reader stops at end even if memory goes on. */
static void test_params_bounded(void **state)
{
    const char *s = "SIZE=10 BODY=8BITMIME";
    const char *p = s, *end = s + 6;
    struct smtp_param prm;

    (void)state;
    assert_int_equal(smtp_cmd_next_param(&p, end, &prm), 1);
    assert_string_equal(prm.key, "SIZE");
    assert_string_equal(prm.value, "1");
    assert_ptr_equal(p, end);
    assert_int_equal(smtp_cmd_next_param(&p, end, &prm), 0);
}

/* A MAIL line end to end: verb, path, then its parameters. */
static void test_mail_line(void **state)
{
    const char *line = "mail FROM:<Sender@Example.ORG> size=12345 BODY=8BITMIME  ";
    size_t n = strlen(line);
    struct smtp_cmd cmd;
    struct smtp_path path;
    struct smtp_param prm;
    const char *p;

    (void)state;
    smtp_cmd_parse(copy_of(line, n), n, &cmd);
    assert_int_equal(cmd.verb, SMTP_MAIL);
    assert_int_equal(smtp_cmd_path(cmd.arg, cmd.arglen, "FROM:", 1, &path),
                     SMTP_PATH_OK);
    assert_string_equal(path.addr.local, "Sender");
    assert_string_equal(path.addr.domain, "example.org");
    p = path.params;
    assert_int_equal(smtp_cmd_next_param(&p, p + path.paramslen, &prm), 1);
    assert_string_equal(prm.key, "SIZE");
    assert_string_equal(prm.value, "12345");
    assert_int_equal(smtp_cmd_next_param(&p, path.params + path.paramslen, &prm), 1);
    assert_string_equal(prm.key, "BODY");
    assert_string_equal(prm.value, "8BITMIME");
    assert_int_equal(smtp_cmd_next_param(&p, path.params + path.paramslen, &prm), 0);
}

/* ---- AUTH responses ---- */

static int decode(const char *text, char *out, size_t max, size_t *n)
{
    return smtp_cmd_b64_decode(copy_of(text, strlen(text)), strlen(text),
                               (unsigned char *)out, max, n);
}

static void test_b64(void **state)
{
    char out[64];
    size_t n;

    (void)state;
    assert_int_equal(decode("YWxpY2U=", out, sizeof(out), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "alice", 5);
    assert_int_equal(decode("QQ==", out, sizeof(out), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(decode("QUJD", out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(decode("", out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(decode("QUJD", out, 2, &n), -1);        /* does not fit */
    assert_int_equal(decode("YWxpY2U", out, sizeof(out), &n), -1);   /* unpadded */
    assert_int_equal(decode("QQ==QUJD", out, sizeof(out), &n), -1);  /* = inside */
    assert_int_equal(decode("Q===", out, sizeof(out), &n), -1);
    assert_int_equal(decode("QU=D", out, sizeof(out), &n), -1);
    assert_int_equal(decode("QU JD", out, sizeof(out), &n), -1);
    assert_int_equal(decode("*", out, sizeof(out), &n), -1);
}

static void test_plain_split(void **state)
{
    static const unsigned char ok[] = "authz\0user\0pw", no_authz[] = "\0user\0pw";
    struct smtp_plain p;

    (void)state;
    assert_int_equal(smtp_cmd_plain_split(ok, sizeof(ok) - 1, &p), 0);
    assert_int_equal(p.authzid_len, 5);
    assert_int_equal(p.authcid_len, 4);
    assert_memory_equal(p.authcid, "user", 4);
    assert_int_equal(p.password_len, 2);
    assert_memory_equal(p.password, "pw", 2);
    assert_int_equal(smtp_cmd_plain_split(no_authz, sizeof(no_authz) - 1, &p), 0);
    assert_int_equal(p.authzid_len, 0);
    assert_int_equal(smtp_cmd_plain_split((const unsigned char *)"\0\0pw", 4, &p), -1);
    assert_int_equal(smtp_cmd_plain_split((const unsigned char *)"\0u\0", 3, &p), -1);
    assert_int_equal(smtp_cmd_plain_split((const unsigned char *)"u\0p", 3, &p), -1);
    assert_int_equal(smtp_cmd_plain_split((const unsigned char *)"a\0u\0p\0", 6, &p), -1);
    assert_int_equal(smtp_cmd_plain_split((const unsigned char *)"", 0, &p), -1);
}

#define T(f) cmocka_unit_test_teardown(f, free_copies)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_verbs),
        T(test_args),
        T(test_unknown_verbs),
        T(test_embedded_nul),
        T(test_path_brackets),
        T(test_null_path),
        T(test_path_without_brackets),
        T(test_path_syntax_errors),
        T(test_path_errors_from_addr),
        T(test_path_bounded),
        T(test_params),
        T(test_bad_params),
        T(test_param_limits),
        T(test_params_bounded),
        T(test_mail_line),
        T(test_b64),
        T(test_plain_split),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
