/*
 * test_smtp_cache.c - the count of connections per destination and the
 * line of deliveries waiting for one (src/queue/smtp_cache.c): first
 * without sessions, then a session parked while runs wait, handed to the
 * first in line, over a real server (tests/system/sink.py, started as a
 * process).  tests/system/test_smtp_reuse.py tests the whole through
 * deliver_smtp.c.
 *
 * Each waiter is a run of its own (an async owner); wake records the
 * order in which the line was served.  LeakSanitizer checks that every
 * destination record is freed once nothing is open and nobody waits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "async.h"
#include "smtp_cache.h"
#include "smtp_client.h"

#define NRUNS 4
#define KEY "192.0.2.1|25|tls=0||mx.test"
#define OTHER "192.0.2.2|25|tls=0||mx.test"

struct run {
    struct async_owner own;
    struct smtp_cache_wait w;
    int woken;
};

static struct run runs[NRUNS];
static int woken_order[NRUNS], nwoken;

static void wake(void *arg)
{
    struct run *r = arg;

    r->woken++;
    woken_order[nwoken++] = (int)(r - runs);
}

static struct smtp_cache *setup(void)
{
    memset(runs, 0, sizeof(runs));
    nwoken = 0;
    for (int i = 0; i < NRUNS; i++)
        async_owner_init(&runs[i].own);
    return smtp_cache_new();
}

static void in_line(struct smtp_cache *sc, int i, const char *key)
{
    smtp_cache_wait(sc, &runs[i].own, key, &runs[i].w, wake, &runs[i]);
}

/* The bound holds per destination; a place freed goes to the first in
 * line, not back to the count; the order is first come first served. */
static void test_line_is_served_in_order(void **state)
{
    struct smtp_cache *sc = setup();

    assert_int_equal(smtp_cache_open(sc, KEY, 2), 1);
    assert_int_equal(smtp_cache_open(sc, KEY, 2), 1);
    assert_int_equal(smtp_cache_open(sc, KEY, 2), 0);
    assert_int_equal(smtp_cache_open(sc, OTHER, 2), 1);   /* another destination */
    in_line(sc, 0, KEY);
    in_line(sc, 1, KEY);
    smtp_cache_close(sc, KEY);
    assert_int_equal(nwoken, 1);
    assert_int_equal(woken_order[0], 0);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 2);  /* the place passed on */
    /* a newcomer does not go before run 1, still in line */
    smtp_cache_close(sc, OTHER);
    assert_int_equal(smtp_cache_open(sc, KEY, 3), 0);
    assert_null(smtp_cache_wait_end(&runs[0].w));         /* NULL: connect */
    smtp_cache_close(sc, KEY);
    assert_int_equal(nwoken, 2);
    assert_int_equal(woken_order[1], 1);
    assert_null(smtp_cache_wait_end(&runs[1].w));
    smtp_cache_close(sc, KEY);
    smtp_cache_close(sc, KEY);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 0);
    assert_int_equal(smtp_cache_open_count(sc, OTHER), 0);
    smtp_cache_free(sc);
}

/* A run that goes while in line leaves it; one that goes after its turn
 * came, before taking it, gives its place to the next. */
static void test_cancelled_waiters_give_way(void **state)
{
    struct smtp_cache *sc = setup();

    assert_int_equal(smtp_cache_open(sc, KEY, 1), 1);
    in_line(sc, 0, KEY);
    in_line(sc, 1, KEY);
    in_line(sc, 2, KEY);
    async_owner_cancel(&runs[1].own);      /* gone while in line */
    smtp_cache_close(sc, KEY);
    assert_int_equal(nwoken, 1);
    assert_int_equal(woken_order[0], 0);
    async_owner_cancel(&runs[0].own);      /* gone before taking its turn */
    assert_int_equal(nwoken, 2);
    assert_int_equal(woken_order[1], 2);
    assert_int_equal(runs[1].woken, 0);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 1);
    assert_null(smtp_cache_wait_end(&runs[2].w));
    smtp_cache_close(sc, KEY);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 0);
    smtp_cache_free(sc);
}

/* The waiter's own time ran out: it leaves the line and connects, one
 * over the bound; the bound 0 bounds nothing. */
static void test_time_out_counts_over_the_bound(void **state)
{
    struct smtp_cache *sc = setup();

    assert_int_equal(smtp_cache_open(sc, KEY, 1), 1);
    in_line(sc, 0, KEY);
    in_line(sc, 1, KEY);
    assert_null(smtp_cache_wait_end(&runs[0].w));
    assert_int_equal(smtp_cache_open_count(sc, KEY), 2);
    smtp_cache_close(sc, KEY);             /* run 1 is still first in line */
    assert_int_equal(nwoken, 1);
    assert_int_equal(woken_order[0], 1);
    assert_null(smtp_cache_wait_end(&runs[1].w));
    assert_int_equal(smtp_cache_open(sc, KEY, 0), 1);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 3);
    for (int i = 0; i < 3; i++)
        smtp_cache_close(sc, KEY);
    assert_int_equal(smtp_cache_open_count(sc, KEY), 0);
    smtp_cache_close(sc, KEY);             /* nothing counted: ignored */
    smtp_cache_free(sc);
}

/* The process stops with someone in line (its run never hears again). */
static void test_free_with_waiters(void **state)
{
    struct smtp_cache *sc = setup();

    assert_int_equal(smtp_cache_open(sc, KEY, 1), 1);
    in_line(sc, 0, KEY);
    smtp_cache_free(sc);
    assert_int_equal(async_owner_pending(&runs[0].own), 0);
    assert_int_equal(nwoken, 0);
}

/* ---- a parked session handed to the line (sink.py) ---- */

struct sinkproc {
    pid_t pid;
    int port;
    char dir[64];
};

/* tests/system/sink.py from $SELOR_ROOT or the first parent directory of
 * the current one that has it; extra: one more option and its value. */
static void sink_start(struct sinkproc *s, const char *opt, const char *val)
{
    char root[4096], script[4200], line[64];
    int fds[2];
    size_t n = 0;

    if (getenv("SELOR_ROOT"))
        snprintf(root, sizeof(root), "%s", getenv("SELOR_ROOT"));
    else
        assert_non_null(getcwd(root, sizeof(root)));
    for (;;) {
        char *slash;
        snprintf(script, sizeof(script), "%s/tests/system/sink.py", root);
        if (access(script, R_OK) == 0)
            break;
        slash = strrchr(root, '/');
        if (slash == NULL || slash == root)
            fail_msg("tests/system/sink.py not found");
        *slash = '\0';
    }
    snprintf(s->dir, sizeof(s->dir), "/tmp/selor-cache-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fds[1], 1);
        execl("/usr/bin/python3", "python3", script, "--host", "127.0.0.1", "--port", "0",
              "--dir", s->dir, opt ? opt : (char *)NULL, val, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (n < sizeof(line) - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    close(fds[0]);
    if (sscanf(line, "READY %d", &s->port) != 1)
        fail_msg("sink.py said: %s", line);
}

/* Stops it; its stats.json holds want (e.g. "\"messages\": 2"). */
static void sink_stop_expect(struct sinkproc *s, const char *want1, const char *want2)
{
    char path[200], stats[2048] = "";
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/stats.json", s->dir);
    if ((f = fopen(path, "r")) != NULL) {
        n = fread(stats, 1, sizeof(stats) - 1, f);
        stats[n] = '\0';
        fclose(f);
    }
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    snprintf(path, sizeof(path), "rm -rf '%s'", s->dir);
    assert_int_equal(system(path), 0);
    if (strstr(stats, want1) == NULL || strstr(stats, want2) == NULL)
        fail_msg("sink stats: %s", stats);
}

struct handover {
    struct smtp_cache *sc;
    struct async_owner first;      /* the run of the first message */
    struct smtp_client *c;
    struct smtp_client_msg m1, m2;
    int ok1, ok2, reused2, parked2;
    uv_timer_t t;
    int step;
};

static struct handover ho;

static void ho_second_done(void *arg, const struct smtp_client_result *r)
{
    ho.ok2 = r->ok;
    ho.reused2 = r->reused;
    if (r->reusable)             /* nobody waits now: parked for anyone */
        ho.parked2 = smtp_cache_put(ho.sc, KEY, ho.c, 5, 100);
    if (!ho.parked2)
        smtp_cache_close(ho.sc, KEY);
}

/* Step 0: run 1 (first in line) goes before taking its turn; step 1: run
 * 2 takes the session it was handed then. */
static void ho_step(uv_timer_t *t)
{
    if (ho.step++ == 0) {
        assert_int_equal(nwoken, 1);
        async_owner_cancel(&runs[1].own);
        assert_int_equal(nwoken, 2);
        assert_int_equal(woken_order[1], 2);
        uv_timer_start(t, ho_step, 10, 0);
        return;
    }
    ho.c = smtp_cache_wait_end(&runs[2].w);
    assert_non_null(ho.c);
    assert_int_equal(smtp_cache_count(ho.sc), 0);
    smtp_client_reuse(ho.c, &runs[2].own, &ho.m2, ho_second_done, NULL);
    uv_close((uv_handle_t *)t, NULL);
}

static void ho_first_done(void *arg, const struct smtp_client_result *r)
{
    ho.ok1 = r->ok;
    assert_true(r->reusable);
    assert_int_equal(smtp_cache_put(ho.sc, KEY, ho.c, 5, 100), 1);
    assert_int_equal(nwoken, 1);              /* kept for run 1 */
    assert_int_equal(woken_order[0], 1);
    assert_null(smtp_cache_take(ho.sc, KEY)); /* not for anyone else */
    uv_timer_start(&ho.t, ho_step, 10, 0);
}

static void test_parked_session_goes_to_the_line(void **state)
{
    static const char *const r[] = { "a@x.test" };
    struct sinkproc s;
    struct sockaddr_in a;
    uv_loop_t loop;

    memset(&ho, 0, sizeof(ho));
    ho.sc = setup();
    sink_start(&s, NULL, NULL);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s.port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ho.m1 = (struct smtp_client_msg){ .helo_name = "client.test", .from = "s@x.test",
                                      .rcpts = r, .nrcpt = 1, .content = "one\n", .len = 4,
                                      .connect_timeout_ms = 5000, .timeout_ms = 5000,
                                      .keep = 1 };
    ho.m2 = ho.m1;
    ho.m2.content = "two\n";
    uv_loop_init(&loop);
    uv_timer_init(&loop, &ho.t);
    async_owner_init(&ho.first);
    assert_int_equal(smtp_cache_open(ho.sc, KEY, 1), 1);
    ho.c = smtp_client_start(&loop, &ho.first, (struct sockaddr *)&a, &ho.m1,
                             ho_first_done, NULL);
    in_line(ho.sc, 1, KEY);
    in_line(ho.sc, 2, KEY);
    while (!ho.ok2 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_true(ho.ok1 && ho.ok2 && ho.reused2 && ho.parked2);
    assert_int_equal(smtp_cache_open_count(ho.sc, KEY), 1);
    smtp_cache_free(ho.sc);                   /* the parked session says QUIT */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sink_stop_expect(&s, "\"messages\": 2", "\"total_connections\": 1");
}

/* The server closes a session kept for a run before the run took it: the
 * run connects in its place. */
static void gone_first_done(void *arg, const struct smtp_client_result *r)
{
    ho.ok1 = r->ok;
    assert_int_equal(smtp_cache_put(ho.sc, KEY, ho.c, 5, 100), 1);
    assert_int_equal(nwoken, 1);
}

static void test_kept_session_closed_by_the_server(void **state)
{
    static const char *const r[] = { "a@x.test" };
    struct sinkproc s;
    struct sockaddr_in a;
    uv_loop_t loop;

    memset(&ho, 0, sizeof(ho));
    ho.sc = setup();
    sink_start(&s, "--idle-close", "0.2");
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s.port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ho.m1 = (struct smtp_client_msg){ .helo_name = "client.test", .from = "s@x.test",
                                      .rcpts = r, .nrcpt = 1, .content = "one\n", .len = 4,
                                      .connect_timeout_ms = 5000, .timeout_ms = 5000,
                                      .keep = 1 };
    uv_loop_init(&loop);
    async_owner_init(&ho.first);
    assert_int_equal(smtp_cache_open(ho.sc, KEY, 1), 1);
    ho.c = smtp_client_start(&loop, &ho.first, (struct sockaddr *)&a, &ho.m1,
                             gone_first_done, NULL);
    in_line(ho.sc, 1, KEY);
    uv_run(&loop, UV_RUN_DEFAULT);            /* delivered, parked, closed */
    assert_true(ho.ok1);
    assert_int_equal(smtp_cache_count(ho.sc), 0);
    assert_null(smtp_cache_wait_end(&runs[1].w));   /* connect, in its place */
    assert_int_equal(smtp_cache_open_count(ho.sc, KEY), 1);
    smtp_cache_close(ho.sc, KEY);
    assert_int_equal(smtp_cache_open_count(ho.sc, KEY), 0);
    smtp_cache_free(ho.sc);
    assert_int_equal(uv_loop_close(&loop), 0);
    sink_stop_expect(&s, "\"messages\": 1", "\"idle_closed\": 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_served_in_order),
        cmocka_unit_test(test_cancelled_waiters_give_way),
        cmocka_unit_test(test_time_out_counts_over_the_bound),
        cmocka_unit_test(test_free_with_waiters),
        cmocka_unit_test(test_parked_session_goes_to_the_line),
        cmocka_unit_test(test_kept_session_closed_by_the_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
