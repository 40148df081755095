/*
 * test_rules.c - the rules language (src/rules): parsing with
 * FILE:LINE:COLUMN errors, patterns, Ip? forms, Itest?, variables, and
 * evaluating rules that need no answer from outside (the system tests
 * cover DNS, programs and the rate counter).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "rules_int.h"

#define EV(e) RULES_EVBIT(RULES_EV_##e)

static struct rules_file *parse(const char *text, unsigned events, struct buf *err)
{
    buf_reset(err);
    return rules_parse("/r", "/r", text, strlen(text), events, err);
}

static void test_parse_errors_have_columns(void **state)
{
    static const struct {
        const char *text;
        unsigned events;
        const char *err;
    } cases[] = {
        {"Bogus? \"x\"", EV(FROM), "/r:1:1: unknown condition Bogus?"},
        {"# c\n\nFrom? \"a@b\" Nope!", EV(FROM), "/r:3:13: unknown action Nope!"},
        {"From? \"a@b\" Deny", EV(FROM), "/r:1:13: Deny needs ? (a condition)"},
        {"Ip? \"1.2.3.4/33\" Deny!", EV(FROM), "/r:1:5: Ip? needs"},
        {"Itest? \"%H\" Deny!", EV(FROM), "/r:1:8: Itest? needs"},
        {"Itest? \"%Z>1\" Deny!", EV(FROM), "/r:1:8: unknown variable %Z"},
        {"From? \"a@b", EV(FROM), "/r:1:7: missing closing quote"},
        {"Close!", EV(QEND), "/r:1:1: Close! cannot be used in Event.qend_process"},
        {"To? \"a@b\" Deny!", EV(FROM), "/r:1:1: To? cannot be used in Event.from"},
        {"Def! \"Port 25\"", EV(FROM), "/r:1:6: Def!: Port cannot be changed per connection"},
        {"Def! \"Max_rcpts 'x'\"", EV(FROM), "/r:1:6: Def!: Max_rcpts takes a number"},
        {"Def! \"Dlocal /bin/x\"", EV(FROM), "/r:1:6: Def!: Dlocal takes a text in single"},
        {"Reply! \"hello\"", EV(FROM), "/r:1:8: a reply starts with a 3-digit code"},
        {"Rate? \"%U 5\"", EV(FROM), "/r:1:7: Rate? needs"},
        {"Exec? \"bin/x\"", EV(FROM), "/r:1:7: the program must be an absolute path"},
        {"Deny! \"x\"", EV(FROM), "/r:1:7: Deny! takes no argument"},
        {"!Deny!", EV(FROM), "/r:1:1: an action cannot be negated"},
        {"Spf_resp \"7\" Deny!", EV(FROM), "/r:1:10: Spf_resp needs 0 to 6"},
        {"From?\"a@b\"Deny!", EV(FROM), "/r:1:11: expected a blank"},
    };
    struct buf err = BUF_INIT(0);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rules_file *f = parse(cases[i].text, cases[i].events, &err);
        if (f != NULL || strstr(buf_cstr(&err), cases[i].err) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].text, buf_cstr(&err),
                     cases[i].err);
    }
    buf_free(&err);
}

static void test_parse_forms(void **state)
{
    struct buf err = BUF_INIT(0);
    struct rules_file *f = parse(
        "# the original's examples\n"
        "From? \"bad@example.org\" Reply! \"550 Sender refused here\" Deny!\n"
        "Spf_resp \"2\" Add_hits! \"1\"\n"
        "Spf_resp? \"fail\" Add_hits! \"2\"\n"
        "Rev_fail? Add_hits! \"2\"   # trailing comment\n"
        "Itest? \"%H>2\" Reply! \"550 Score too high\" Deny!\r\n"
        "   \n"
        "Ip? \"203.0.113.\" Def! \"Auth_relay 0\"\n"
        "From? \"bulk@example.com\" Def! \"Queue_path '/var/spool/alt/mails'\"\n"
        "Ip? \"10.2.0.0/16\" Def! \"Event.rcpt '/usr/local/selor/rules_internal'\"\n"
        "!Auth? From? \"\\\"q\\\"@x\" Log! \"x\"\n",
        EV(FROM) | EV(RCPT), &err);

    (void)state;
    if (f == NULL)
        fail_msg("%s", buf_cstr(&err));
    assert_int_equal(rules_count(f), 9);
    assert_int_equal(f->rules[1].items[0].op, RULES_C_SPF);
    assert_int_equal(f->rules[1].items[0].u.num, 2);
    assert_int_equal(f->rules[2].items[0].u.num, 3);
    assert_int_equal(f->rules[4].line, 6);
    assert_string_equal(f->rules[7].items[1].u.def.value, "/usr/local/selor/rules_internal");
    assert_true(f->rules[8].items[0].negate);
    assert_string_equal(f->rules[8].items[1].arg, "\"q\"@x");
    rules_file_free(f);
    buf_free(&err);
}

static void test_patterns(void **state)
{
    (void)state;
    assert_true(rules_match_addr("bad@example.org", "Bad@Example.ORG"));
    assert_false(rules_match_addr("bad@example.org", "bad@example.org.evil"));
    assert_true(rules_match_addr("@example.org", "x@EXAMPLE.org"));
    assert_false(rules_match_addr("@example.org", "x@sub.example.org"));
    assert_true(rules_match_addr("*@*.example.org", "x@sub.example.org"));
    assert_true(rules_match_addr("<>", ""));
    assert_false(rules_match_addr("<>", "a@b"));
    assert_false(rules_match_addr("a@b", NULL));
    assert_true(rules_match_glob("*.bad.test", "host.BAD.test"));
    assert_true(rules_match_glob("a*b*c", "aXXbYYc"));
    assert_false(rules_match_glob("a*b*c", "aXXbYY"));
    /* no exponential backtracking on a hostile name */
    assert_false(rules_match_glob("*a*a*a*a*a*a*a*a*b",
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static int ip(const char *rule, const char *addr)
{
    struct rules_item it;

    memset(&it, 0, sizeof(it));
    assert_int_equal(rules_ip_parse(rule, &it), 0);
    return rules_ip_match(&it, addr);
}

static void test_ip_forms(void **state)
{
    struct rules_item it;

    (void)state;
    assert_true(ip("192.168.0.15", "192.168.0.15"));
    assert_false(ip("192.168.0.15", "192.168.0.151"));
    assert_true(ip("10.10.10.0/24", "10.10.10.200"));
    assert_false(ip("10.10.10.0/24", "10.10.11.1"));
    assert_true(ip("10.0.0.0/7", "11.255.0.1"));
    assert_true(ip("0.0.0.0/0", "1.2.3.4"));
    assert_true(ip("200.200.200.", "200.200.200.7"));
    assert_false(ip("200.200.200.", "200.200.2000.7"));
    assert_true(ip("2001:db8::/32", "2001:DB8:1::5"));
    assert_false(ip("2001:db8::/32", "2001:db9::5"));
    assert_false(ip("2001:db8::/32", "10.0.0.1"));
    assert_true(ip("192.0.2.0/24", "::ffff:192.0.2.9"));
    memset(&it, 0, sizeof(it));
    assert_int_equal(rules_ip_parse("1.2.3.4/", &it), -1);
    assert_int_equal(rules_ip_parse("host.example", &it), -1);
    assert_int_equal(rules_ip_parse("::1/129", &it), -1);
}

static void test_itest(void **state)
{
    (void)state;
    assert_int_equal(rules_itest("3>2"), 1);
    assert_int_equal(rules_itest("2>2"), 0);
    assert_int_equal(rules_itest("2>=2"), 1);
    assert_int_equal(rules_itest(" -1 < 0 "), 1);
    assert_int_equal(rules_itest("5=5"), 1);
    assert_int_equal(rules_itest("5!=5"), 0);
    assert_int_equal(rules_itest("4<=3"), 0);
    assert_int_equal(rules_itest("x>2"), -1);
    assert_int_equal(rules_itest("99999999999999999999>1"), -1);
    assert_int_equal(rules_itest_check("%H>2"), 0);
    assert_int_equal(rules_itest_check(">2"), -1);
    assert_int_equal(rules_itest_check("%H"), -1);
}

/* Evaluation that needs nothing from outside: answered at once. */
static void test_evaluate(void **state)
{
    struct buf err = BUF_INIT(0), out = BUF_INIT(0), trace = BUF_INIT(0);
    struct config *base = config_defaults();
    struct arena mem;
    struct rules_cache cache;
    struct rules_run run;
    long hits = 0;
    struct rules_file *f = parse(
        "Ip? \"192.0.2.0/24\" Add_hits! \"3\"\n"
        "Itest? \"%H>2\" Add_hits! \"1\" Def! \"Max_rcpts 2\" Reply! \"550 Score %H\" "
        "Deny! Add_hits! \"10\"\n"
        "Add_hits! \"100\"\n", EV(FROM), &err);
    struct rules_ctx ctx;

    (void)state;
    if (f == NULL)
        fail_msg("%s", buf_cstr(&err));
    arena_init(&mem, 1024);
    rules_cache_init(&cache);
    memset(&ctx, 0, sizeof(ctx));
    ctx.ip = "192.0.2.7";
    ctx.from = "Al.Ice@Example.ORG";
    ctx.rcpt = "bob@x.test";
    ctx.hits = &hits;
    ctx.mem = &mem;
    ctx.conf = config_overlay(base, &mem);
    ctx.cache = &cache;
    ctx.trace = &trace;
    assert_int_equal(rules_run(&run, f, RULES_EV_FROM, &ctx, NULL, NULL), 1);
    assert_int_equal(run.out.verdict, RULES_DENY);
    /* the rest of the deciding rule ran; the next rule did not */
    assert_int_equal(hits, 14);
    assert_string_equal(run.out.reply, "550 Score 4");
    assert_int_equal(ctx.conf->Max_rcpts, 2);
    assert_int_equal(base->Max_rcpts, 100);
    assert_int_equal(run.out.rules_run, 2);
    assert_non_null(strstr(buf_cstr(&trace), "/r:2: Itest?"));
    rules_expand(&ctx, "%f %o %m %r %c %p %I %% %H", &out);
    assert_string_equal(buf_cstr(&out), "Al.Ice@Example.ORG Example.ORG Al.Ice bob@x.test "
                                         "x.test bob 192.0.2.7 % 14");
    /* another client: no rule decides */
    hits = 0;
    ctx.ip = "198.51.100.1";
    assert_int_equal(rules_run(&run, f, RULES_EV_FROM, &ctx, NULL, NULL), 1);
    assert_int_equal(run.out.verdict, RULES_NONE);
    assert_int_equal(hits, 100);
    rules_file_free(f);
    arena_clear(&mem);
    config_free(base);
    buf_free(&err);
    buf_free(&out);
    buf_free(&trace);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors_have_columns),
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_ip_forms),
        cmocka_unit_test(test_itest),
        cmocka_unit_test(test_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
