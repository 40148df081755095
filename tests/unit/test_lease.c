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
    uv_loop_t *loop;
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

static void test_valid_from_asking(void **state)
{
    uv_loop_t loop;
    struct coord *co = make_coord();
    struct coord_claim cl;
    struct holder h;

    (void)state;
    uv_loop_init(&loop);
    memset(&h, 0, sizeof(h));
    coord_claim_id(co, NULL, "main", "1_2_3_4", got_claim, &cl);
    lease_init(&h.lease, &loop, on_event, &h);
    lease_begin(&h.lease, co, NULL, &cl, 4);
    assert_true(lease_valid(&h.lease));
    lease_stop(&h.lease);

    /* The same claim, asked for 3.5 s ago: less than a quarter of 4 s left. */
    cl.asked_ms = coord_mono_ms() - 3500;
    lease_begin(&h.lease, co, NULL, &cl, 4);
    assert_false(lease_valid(&h.lease));
    cl.asked_ms = coord_mono_ms() - 2500;   /* 1.5 s left: still fine */
    lease_begin(&h.lease, co, NULL, &cl, 4);
    assert_true(lease_valid(&h.lease));
    lease_close(&h.lease, closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    coord_destroy(co);
}

/* Renewals every third of a lease keep it valid well past one lease. */
static void test_renewals_keep_it(void **state)
{
    uv_loop_t loop;
    struct coord *co = make_coord();
    struct coord_claim cl;
    struct holder h;

    (void)state;
    uv_loop_init(&loop);
    memset(&h, 0, sizeof(h));
    coord_claim_id(co, NULL, "main", "1_2_3_5", got_claim, &cl);
    lease_init(&h.lease, &loop, on_event, &h);
    lease_begin(&h.lease, co, NULL, &cl, 2);
    run_for(&loop, 3500);
    assert_true(h.ticks >= 4);
    assert_int_equal(h.lost, 0);
    assert_true(lease_valid(&h.lease));
    lease_close(&h.lease, closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    coord_destroy(co);
}

/* The lock is gone (released behind our back): the first renewal says
 * so, the holder is told once, and the lease is no longer valid. */
static void test_lost_lock_stops_holder(void **state)
{
    uv_loop_t loop;
    struct coord *co = make_coord();
    struct coord_claim cl;
    struct holder h;

    (void)state;
    uv_loop_init(&loop);
    memset(&h, 0, sizeof(h));
    coord_claim_id(co, NULL, "main", "1_2_3_6", got_claim, &cl);
    lease_init(&h.lease, &loop, on_event, &h);
    lease_begin(&h.lease, co, NULL, &cl, 2);
    coord_release(co, &cl, 0);
    run_for(&loop, 2500);
    assert_int_equal(h.lost, 1);
    assert_true(lease_lost(&h.lease));
    assert_false(lease_valid(&h.lease));
    lease_close(&h.lease, closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    coord_destroy(co);
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
