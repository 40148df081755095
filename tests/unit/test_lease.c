/*
 * test_lease.c - keeping a queue file's lock: the lease runs from when a
 * claim or renewal was asked for (not answered), a holder is told to stop
 * while a quarter of the lease is left, a lock found lost stops it at once,
 * and a write checked at its commit point gives up (spool_write_sync_checked).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "coord.h"
#include "lease.h"
#include "spool.h"

struct holder {
    struct lease lease;
    int ticks, lost;
};

static void on_event(void *arg, enum lease_event ev)
{
    struct holder *h = arg;

    if (ev == LEASE_TICK)
        h->ticks++;
    else
        h->lost++;
}

static struct coord *make_coord(void)
{
    struct config *c = config_defaults();
    struct buf err = BUF_INIT(0);
    struct coord *co = coord_embedded_create(c, &err);

    assert_non_null(co);
    config_free(c);
    buf_free(&err);
    coord_watch(co, NULL, NULL);
    return co;
}

static void got_claim(void *arg, int status, const struct coord_claim *cl)
{
    assert_int_equal(status, COORD_OK);
    *(struct coord_claim *)arg = *cl;
}

static void closed(uv_handle_t *h)
{
}

static void stop_after(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;

    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_after, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, closed);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* A loop, the embedded backend, a claimed file and its holder. */
struct bench {
    uv_loop_t loop;
    struct coord *co;
    struct coord_claim cl;
    struct holder h;
};

static void bench_open(struct bench *b, const char *qid)
{
    memset(b, 0, sizeof(*b));
    uv_loop_init(&b->loop);
    b->co = make_coord();
    coord_claim_id(b->co, NULL, "main", qid, got_claim, &b->cl);
    lease_init(&b->h.lease, &b->loop, on_event, &b->h);
}

static void bench_close(struct bench *b)
{
    lease_close(&b->h.lease, closed);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    coord_destroy(b->co);
}

static void test_valid_from_asking(void **state)
{
    struct bench b;

    (void)state;
    bench_open(&b, "1_2_3_4");
    lease_begin(&b.h.lease, b.co, NULL, &b.cl, 4);
    assert_true(lease_valid(&b.h.lease));
    lease_stop(&b.h.lease);
    /* The same claim, asked for 3.5 s ago: less than a quarter of 4 s left. */
    b.cl.asked_ms = coord_mono_ms() - 3500;
    lease_begin(&b.h.lease, b.co, NULL, &b.cl, 4);
    assert_false(lease_valid(&b.h.lease));
    b.cl.asked_ms = coord_mono_ms() - 2500;   /* 1.5 s left: still fine */
    lease_begin(&b.h.lease, b.co, NULL, &b.cl, 4);
    assert_true(lease_valid(&b.h.lease));
    bench_close(&b);
}

/* Renewals every third of a lease keep it valid well past one lease. */
static void test_renewals_keep_it(void **state)
{
    struct bench b;

    (void)state;
    bench_open(&b, "1_2_3_5");
    lease_begin(&b.h.lease, b.co, NULL, &b.cl, 2);
    run_for(&b.loop, 3500);
    assert_true(b.h.ticks >= 4);
    assert_int_equal(b.h.lost, 0);
    assert_true(lease_valid(&b.h.lease));
    bench_close(&b);
}

/* The lock is gone (released behind our back): the first renewal says
 * so, the holder is told once, and the lease is no longer valid. */
static void test_lost_lock_stops_holder(void **state)
{
    struct bench b;

    (void)state;
    bench_open(&b, "1_2_3_6");
    lease_begin(&b.h.lease, b.co, NULL, &b.cl, 2);
    coord_release(b.co, &b.cl, 0);
    run_for(&b.loop, 2500);
    assert_int_equal(b.h.lost, 1);
    assert_true(lease_lost(&b.h.lease));
    assert_false(lease_valid(&b.h.lease));
    bench_close(&b);
}

static int never_ours(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

/* A write whose lock ran out gives up right before its rename: the file
 * in place is untouched and the temporary one is gone. */
static void test_checked_write(void **state)
{
    char dir[] = "/tmp/test-lease-XXXXXX", path[256], tmpdir[256];
    struct buf got = BUF_INIT(0);
    int asked = 0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", dir);
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    assert_int_equal(spool_write_sync(dir, tmpdir, "l1", "old\n", 4), 0);
    assert_int_equal(spool_write_sync_checked(dir, tmpdir, "l1", "new\n", 4, never_ours,
                                              &asked), ECANCELED);
    assert_int_equal(asked, 1);
    snprintf(path, sizeof(path), "%s/l1", dir);
    assert_int_equal(spool_read_sync(path, &got, 100), 0);
    assert_string_equal(buf_cstr(&got), "old\n");
    assert_int_equal(rmdir(tmpdir), 0);       /* nothing left behind in it */
    unlink(path);
    rmdir(dir);
    buf_free(&got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_from_asking),
        cmocka_unit_test(test_renewals_keep_it),
        cmocka_unit_test(test_lost_lock_stops_holder),
        cmocka_unit_test(test_checked_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
