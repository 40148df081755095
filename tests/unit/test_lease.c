/*
 * test_lease.c - keeping a queue file's lock: the lease runs from when a
 * claim or renewal was asked for (not answered), a holder is told to stop
 * while a quarter of the lease is left, a lock found lost stops it at once,
 * a holder whose answers do not come is told when a quarter of its lease is
 * left and when none is (not at its next renewal), a late answer makes it
 * sure at once,
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
    int ticks, lost, shaky, sure;
    uint64_t shaky_ms, sure_ms, lost_ms;     /* when told, first time */
};

static void on_event(void *arg, enum lease_event ev)
{
    struct holder *h = arg;
    uint64_t now = coord_mono_ms();

    if (ev == LEASE_TICK) {
        h->ticks++;
    } else if (ev == LEASE_SHAKY) {
        if (!h->shaky++)
            h->shaky_ms = now;
    } else if (ev == LEASE_SURE) {
        if (!h->sure++)
            h->sure_ms = now;
    } else {
        if (!h->lost++)
            h->lost_ms = now;
    }
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

/* A backend whose renewals are answered only when the test says so: a
 * Redis that is slow (or gone) for this node. */
struct late_coord {
    struct coord base;
    int n;
    struct { coord_status_fn *fn; void *arg; } held[16];
};

static void late_renew(struct coord *c, struct async_owner *o, const struct coord_claim *cl,
                       coord_status_fn *fn, void *arg)
{
    struct late_coord *lc = (struct late_coord *)c;

    (void)o;
    (void)cl;
    assert_true(lc->n < 16);
    lc->held[lc->n].fn = fn;
    lc->held[lc->n].arg = arg;
    lc->n++;
}

static const struct coord_ops late_ops = { .name = "late", .renew = late_renew };

/* Answers the oldest held renewal. */
static void late_answer(struct late_coord *lc, int status)
{
    assert_true(lc->n > 0);
    lc->held[0].fn(lc->held[0].arg, status);
    memmove(lc->held, lc->held + 1, sizeof(lc->held[0]) * (size_t)--lc->n);
}

/* No answer at all: SHAKY when a quarter of the lease is left, LOST when
 * none is, each on time (a check only at renewals would come up to a
 * third of a lease late, after the lock could have lapsed in Redis). */
static void test_deadlines_without_answers(void **state)
{
    struct bench b;
    struct late_coord lc = { .base.ops = &late_ops };
    uint64_t t0;

    (void)state;
    bench_open(&b, "1_2_3_7");
    t0 = b.cl.asked_ms = coord_mono_ms();
    lease_begin(&b.h.lease, &lc.base, NULL, &b.cl, 3);
    run_for(&b.loop, 3400);
    assert_int_equal(b.h.shaky, 1);
    assert_int_equal(b.h.lost, 1);
    assert_int_equal(b.h.sure, 0);
    assert_true(b.h.shaky_ms >= t0 + 2250 && b.h.shaky_ms < t0 + 2400);
    assert_true(b.h.lost_ms >= t0 + 3000 && b.h.lost_ms < t0 + 3150);
    assert_true(lc.n >= 2);               /* renewals went out, unanswered */
    assert_true(lease_lost(&b.h.lease));
    while (lc.n)                          /* answers after the end: ignored */
        late_answer(&lc, COORD_OK);
    assert_int_equal(b.h.sure, 0);
    bench_close(&b);
}

/* Unsure, then a renewal's answer comes late but within the lease: the
 * holder is sure again at once, with the lease counted from the asking. */
static void test_late_answer_makes_it_sure(void **state)
{
    struct bench b;
    struct late_coord lc = { .base.ops = &late_ops };
    uint64_t t0;

    (void)state;
    bench_open(&b, "1_2_3_8");
    t0 = b.cl.asked_ms = coord_mono_ms();
    lease_begin(&b.h.lease, &lc.base, NULL, &b.cl, 3);
    run_for(&b.loop, 2500);
    assert_int_equal(b.h.shaky, 1);
    assert_false(lease_valid(&b.h.lease));
    late_answer(&lc, COORD_OK);           /* asked at 1 s: holds to 4 s */
    assert_int_equal(b.h.sure, 1);
    assert_true(lease_valid(&b.h.lease));
    /* from the asking (about 1 s in: the loop's timers are late under
     * load, never early), not from the answer (2.5 s in) */
    assert_in_range(atomic_load(&b.h.lease.until_ms), t0 + 4000, t0 + 4400);
    run_for(&b.loop, 1000);               /* 3.5 s: a quarter left again */
    assert_int_equal(b.h.shaky, 2);
    late_answer(&lc, COORD_LOST);         /* the next one: another holder has it */
    assert_int_equal(b.h.lost, 1);
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
        cmocka_unit_test(test_deadlines_without_answers),
        cmocka_unit_test(test_late_answer_makes_it_sure),
        cmocka_unit_test(test_checked_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
