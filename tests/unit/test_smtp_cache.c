/*
 * test_smtp_cache.c - the count of connections per destination and the
 * line of deliveries waiting for one (src/queue/smtp_cache.c), without
 * sessions: the parked sessions and their hand-over are tested through
 * real servers in tests/system/test_smtp_reuse.py.
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

#include <string.h>

#include "async.h"
#include "smtp_cache.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_served_in_order),
        cmocka_unit_test(test_cancelled_waiters_give_way),
        cmocka_unit_test(test_time_out_counts_over_the_bound),
        cmocka_unit_test(test_free_with_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
