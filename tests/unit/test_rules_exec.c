/*
 * test_rules_exec.c - the rules' program runner on a real libuv loop with
 * real programs: exit codes, the first line, quoting, time limits, the
 * pool's cap and queue, cancels by the owner, programs that do not exist.
 * Must not: sleep much (the slowest case waits about a second).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "async.h"
#include "rules_exec.h"

struct res {
    int calls, status, code;
    char line[RULES_EXEC_LINE_MAX + 16];
    int *order, *norder;   /* finishing order, when several run */
    int id;
};

static void on_done(void *arg, int status, int code, const char *line)
{
    struct res *r = arg;

    r->calls++;
    r->status = status;
    r->code = code;
    snprintf(r->line, sizeof(r->line), "%s", line);
    if (r->order)
        r->order[(*r->norder)++] = r->id;
}

static uint64_t now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return uv_now(loop);
}

/* Runs one program alone and waits for its answer. */
static struct res run1(const char *cmd, const char *extra, long timeout_ms)
{
    uv_loop_t loop;
    struct rules_exec_pool *p;
    struct res r = {0};

    uv_loop_init(&loop);
    p = rules_exec_pool_new(&loop, 4, 4);
    assert_int_equal(rules_exec_start(p, NULL, cmd, extra, timeout_ms, on_done, &r), 0);
    assert_int_equal(r.calls, 0);   /* never before the start returns */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 1);
    rules_exec_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);   /* every handle closed */
    return r;
}

static void test_exit_codes(void **state)
{
    struct res r;

    (void)state;
    r = run1("/bin/true", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.line, "");
    r = run1("/bin/false", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 1);
    r = run1("/bin/sh -c 'exit 3'", NULL, 5000);
    assert_int_equal(r.code, 3);
    r = run1("/bin/sh -c 'kill -TERM $$'", NULL, 5000);   /* a signal: 128 + it */
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 128 + 15);
}

static void test_first_line_and_quotes(void **state)
{
    struct res r;

    (void)state;
    r = run1("/bin/sh -c 'echo \"hello   world\"; echo second'", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.line, "hello   world");
    /* words glued to quotes, an empty quoted word, tabs as blanks */
    r = run1("/bin/sh\t-c 'echo \"[$1]\" [$2]' sh  x'a b'y '' ", NULL, 5000);
    assert_string_equal(r.line, "[xa by] []");
    /* extra_arg is one argument, blanks and all */
    r = run1("/bin/sh -c 'echo \"$1\"' sh", "/var/spool/msg file", 5000);
    assert_string_equal(r.line, "/var/spool/msg file");
    /* no end of line; CR LF */
    r = run1("/usr/bin/printf abc", NULL, 5000);
    assert_string_equal(r.line, "abc");
    r = run1("/usr/bin/printf 'dos\\r\\nnext'", NULL, 5000);
    assert_string_equal(r.line, "dos");
}

static void test_long_output_is_bounded_and_drained(void **state)
{
    struct res r;

    (void)state;
    /* a first line longer than kept */
    r = run1("/bin/sh -c 'head -c 5000 /dev/zero | tr \"\\000\" a; echo'", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(strlen(r.line), RULES_EXEC_LINE_MAX);
    /* far more than a pipe holds: read to its end, so the program finishes */
    r = run1("/bin/sh -c 'echo first; head -c 2000000 /dev/zero'", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.line, "first");
}

static void test_timeout_kills_the_group(void **state)
{
    uv_loop_t loop;
    uint64_t t0;
    struct res r;

    (void)state;
    uv_loop_init(&loop);
    t0 = now_ms(&loop);
    uv_loop_close(&loop);
    r = run1("/bin/sleep 5", NULL, 300);
    assert_int_equal(r.status, RULES_EXEC_TIMEOUT);
    assert_int_equal(r.code, -1);
    /* a child of the program holds the output: killed with it */
    r = run1("/bin/sh -c 'echo partial; /bin/sleep 5; echo never'", NULL, 300);
    assert_int_equal(r.status, RULES_EXEC_TIMEOUT);
    assert_string_equal(r.line, "partial");
    uv_loop_init(&loop);
    assert_true(now_ms(&loop) - t0 < 2000);
    uv_loop_close(&loop);
}

static void test_output_held_after_exit(void **state)
{
    struct res r;

    (void)state;
    /* a grandchild in its own subshell keeps stdout open: the answer comes
     * after a short grace */
    r = run1("/bin/sh -c '(/bin/sleep 2 &); echo done'", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_EXITED);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.line, "done");
}

static void test_cannot_start(void **state)
{
    struct res r;
    char why[128];

    (void)state;
    r = run1("/nonexistent/program arg", NULL, 5000);
    assert_int_equal(r.status, RULES_EXEC_ERROR);
    assert_int_equal(r.code, -1);
    r = run1("/etc/passwd", NULL, 5000);   /* not executable */
    assert_int_equal(r.status, RULES_EXEC_ERROR);
    assert_int_equal(rules_exec_check("/bin/true", why, sizeof(why)), 0);
    assert_int_equal(rules_exec_check("true", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "absolute"));
    assert_int_equal(rules_exec_check("  ", why, sizeof(why)), -1);
    assert_int_equal(rules_exec_check("/bin/echo 'open", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "quote"));
    assert_int_equal(rules_exec_check("'/bin/with space' x", why, sizeof(why)), 0);
}

static void test_bad_command_lines_fail_at_once(void **state)
{
    uv_loop_t loop;
    struct rules_exec_pool *p;
    struct res r = {0};
    char many[1024] = "/bin/true";

    (void)state;
    for (int i = 0; i < RULES_EXEC_ARGS_MAX; i++)
        strcat(many, " x");
    uv_loop_init(&loop);
    p = rules_exec_pool_new(&loop, 1, 1);
    assert_int_equal(rules_exec_start(p, NULL, "relative", NULL, 100, on_done, &r), -1);
    assert_int_equal(rules_exec_start(p, NULL, "/bin/x 'a", NULL, 100, on_done, &r), -1);
    assert_int_equal(rules_exec_start(p, NULL, many, NULL, 100, on_done, &r), -1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 0);
    rules_exec_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

#define NJOBS 6

/* More programs than the cap: they wait in order and all finish; beyond
 * the queue's bound, the start fails at once. */
static void test_cap_and_queue(void **state)
{
    uv_loop_t loop;
    struct rules_exec_pool *p;
    struct res r[NJOBS + 1];
    int order[NJOBS + 1], norder = 0;
    uint64_t t0;
    char cmd[64];

    (void)state;
    memset(r, 0, sizeof(r));
    uv_loop_init(&loop);
    p = rules_exec_pool_new(&loop, 2, NJOBS - 2);
    t0 = now_ms(&loop);
    for (int i = 0; i < NJOBS; i++) {
        r[i].id = i;
        r[i].order = order;
        r[i].norder = &norder;
        snprintf(cmd, sizeof(cmd), "/bin/sh -c 'sleep 0.2; echo job %d'", i);
        assert_int_equal(rules_exec_start(p, NULL, cmd, NULL, 5000, on_done, &r[i]), 0);
    }
    assert_int_equal(rules_exec_start(p, NULL, "/bin/true", NULL, 5000, on_done,
                                      &r[NJOBS]), -1);   /* queue full */
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < NJOBS; i++) {
        snprintf(cmd, sizeof(cmd), "job %d", i);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, RULES_EXEC_EXITED);
        assert_string_equal(r[i].line, cmd);
    }
    assert_int_equal(r[NJOBS].calls, 0);
    assert_int_equal(norder, NJOBS);
    assert_true(order[NJOBS - 1] >= NJOBS - 2);        /* the last waited */
    assert_true(now_ms(&loop) - t0 >= 3 * 200 - 20);    /* two at a time */
    rules_exec_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

struct cancel_ctx {
    struct async_owner owner;
    int close_it;
    int released;
};

static void on_release(struct async_owner *o)
{
    ((struct cancel_ctx *)o)->released = 1;
}

static void on_cancel_timer(uv_timer_t *t)
{
    struct cancel_ctx *c = t->data;

    if (c->close_it)
        async_owner_close(&c->owner, on_release);
    else
        async_owner_cancel(&c->owner);
    uv_close((uv_handle_t *)t, NULL);
}

/* The owner cancels (or goes) while its programs run or wait: no answer,
 * the running one is killed (so the loop ends long before its 5 s), and
 * ASan sees no leak and no use after free. */
static void cancel_case(int close_it)
{
    uv_loop_t loop;
    uv_timer_t t;
    struct rules_exec_pool *p;
    struct cancel_ctx c = {.close_it = close_it};
    struct res run = {0}, waiting = {0}, other = {0};
    uint64_t t0;

    uv_loop_init(&loop);
    async_owner_init(&c.owner);
    p = rules_exec_pool_new(&loop, 1, 4);
    t0 = now_ms(&loop);
    assert_int_equal(rules_exec_start(p, &c.owner, "/bin/sh -c '/bin/sleep 5; echo x'",
                                      NULL, 10000, on_done, &run), 0);
    assert_int_equal(rules_exec_start(p, &c.owner, "/bin/echo queued", NULL, 10000,
                                      on_done, &waiting), 0);
    /* another owner's program waits behind them, and runs */
    assert_int_equal(rules_exec_start(p, NULL, "/bin/echo other", NULL, 10000, on_done,
                                      &other), 0);
    assert_int_equal(async_owner_pending(&c.owner), 2);
    uv_timer_init(&loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_cancel_timer, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(run.calls, 0);
    assert_int_equal(waiting.calls, 0);
    assert_int_equal(other.calls, 1);
    assert_string_equal(other.line, "other");
    assert_true(now_ms(&loop) - t0 < 2000);
    assert_int_equal(c.released, close_it);
    if (!close_it)
        assert_int_equal(async_owner_pending(&c.owner), 0);
    rules_exec_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_owner_cancels(void **state)
{
    (void)state;
    cancel_case(0);
}

static void test_owner_closes(void **state)
{
    (void)state;
    cancel_case(1);
}

/* Fire and forget, and a pool freed while its programs run and wait. */
static void test_pool_free_kills(void **state)
{
    uv_loop_t loop;
    struct rules_exec_pool *p;
    struct async_owner o;
    struct res r = {0};
    uint64_t t0;

    (void)state;
    uv_loop_init(&loop);
    async_owner_init(&o);
    p = rules_exec_pool_new(&loop, 1, 2);
    t0 = now_ms(&loop);
    assert_int_equal(rules_exec_start(p, NULL, "/bin/sleep 5", NULL, 10000, NULL, NULL), 0);
    assert_int_equal(rules_exec_start(p, &o, "/bin/true", NULL, 10000, on_done, &r), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    rules_exec_pool_free(p);
    assert_int_equal(async_owner_pending(&o), 0);   /* untied */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 0);
    assert_true(now_ms(&loop) - t0 < 2000);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_first_line_and_quotes),
        cmocka_unit_test(test_long_output_is_bounded_and_drained),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_output_held_after_exit),
        cmocka_unit_test(test_cannot_start),
        cmocka_unit_test(test_bad_command_lines_fail_at_once),
        cmocka_unit_test(test_cap_and_queue),
        cmocka_unit_test(test_owner_cancels),
        cmocka_unit_test(test_owner_closes),
        cmocka_unit_test(test_pool_free_kills),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
