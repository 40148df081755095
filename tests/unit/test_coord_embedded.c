/*
 * test_coord_embedded.c - the single-node coordination backend: the
 * due-time index, claims, locks, slots, the anti-DoS ring, the AUTH lockout
 * and the rate counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "coord.h"

struct got {
    int status;
    struct coord_claim cl;
    int calls;
};

static void on_claim(void *arg, int status, const struct coord_claim *cl)
{
    struct got *g = arg;

    g->status = status;
    g->calls++;
    if (cl)
        g->cl = *cl;
}

static struct coord *make(long limit_buf, long cnx, long secs)
{
    struct config *c = config_defaults();
    struct buf err = BUF_INIT(0);
    struct coord *co;

    c->Limit_buf = limit_buf;
    c->Limit_cnx = cnx;
    c->Limit_time = secs;
    co = coord_embedded_create(c, &err);
    assert_non_null(co);
    config_free(c);
    buf_free(&err);
    /* the queue process watches: announcements go into its own index */
    coord_watch(co, NULL, NULL);
    return co;
}

static struct got claim(struct coord *co, const char *queue, long limit, long now)
{
    struct got g = {0};

    coord_claim_next(co, NULL, queue, limit, now, on_claim, &g);
    assert_int_equal(g.calls, 1);   /* the embedded backend answers at once */
    return g;
}

static void test_claims_in_due_order(void **state)
{
    struct coord *co = make(0, 15, 1);
    struct got a, b;

    (void)state;
    coord_announce(co, "main", "300_1_1_1", 300, COORD_ANN_NEW);
    coord_announce(co, "main", "100_1_1_1", 100, COORD_ANN_NEW);
    coord_announce(co, "main", "200_1_1_1", 200, COORD_ANN_NEW);
    assert_int_equal(claim(co, "main", 0, 50).status, COORD_EMPTY);  /* nothing due */
    a = claim(co, "main", 0, 1000);
    assert_int_equal(a.status, COORD_OK);
    assert_string_equal(a.cl.qid, "100_1_1_1");
    b = claim(co, "main", 0, 1000);
    assert_string_equal(b.cl.qid, "200_1_1_1");
    assert_true(b.cl.token > a.cl.token);         /* tokens only grow */
    assert_string_equal(claim(co, "main", 0, 1000).cl.qid, "300_1_1_1");
    assert_int_equal(claim(co, "main", 0, 1000).status, COORD_EMPTY);
    assert_int_equal(claim(co, "qlimit", 0, 1000).status, COORD_EMPTY);
    coord_destroy(co);
}

static void test_held_files_are_not_claimed_again(void **state)
{
    struct coord *co = make(0, 15, 1);
    struct got a, b;

    (void)state;
    coord_announce(co, "main", "1_1_1_1", 0, COORD_ANN_NEW);
    a = claim(co, "main", 0, 10);
    assert_int_equal(a.status, COORD_OK);
    /* a scan announces the held file again: ignored */
    coord_announce(co, "main", "1_1_1_1", 0, COORD_ANN_NEW);
    coord_announce(co, "main", "1_1_1_1", 0, COORD_ANN_FORCE);
    assert_int_equal(claim(co, "main", 0, 10).status, COORD_EMPTY);
    /* released with a next try: due again then, not before */
    coord_release(co, &a.cl, 500);
    assert_int_equal(claim(co, "main", 0, 499).status, COORD_EMPTY);
    b = claim(co, "main", 0, 500);
    assert_string_equal(b.cl.qid, "1_1_1_1");
    /* released as gone: forgotten */
    coord_release(co, &b.cl, -1);
    assert_int_equal(claim(co, "main", 0, 100000).status, COORD_EMPTY);
    coord_destroy(co);
}

static void test_announce_new_does_not_move_a_known_file(void **state)
{
    struct coord *co = make(0, 15, 1);

    (void)state;
    coord_announce(co, "main", "5_5_5_5", 900, COORD_ANN_NEW);
    coord_announce(co, "main", "5_5_5_5", 10, COORD_ANN_NEW);     /* a scan */
    assert_int_equal(claim(co, "main", 0, 100).status, COORD_EMPTY);
    coord_announce(co, "main", "5_5_5_5", 10, COORD_ANN_FORCE);   /* a flush */
    assert_int_equal(claim(co, "main", 0, 100).status, COORD_OK);
    coord_destroy(co);
}

static void test_slots_limit_claims(void **state)
{
    struct coord *co = make(0, 15, 1);
    struct got a, b;

    (void)state;
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%d_0_0_0", i);
        coord_announce(co, "main", id, 0, COORD_ANN_NEW);
    }
    a = claim(co, "main", 2, 10);
    b = claim(co, "main", 2, 10);
    assert_int_equal(a.status, COORD_OK);
    assert_int_equal(b.status, COORD_OK);
    assert_int_equal(claim(co, "main", 2, 10).status, COORD_FULL);
    coord_release(co, &a.cl, -1);
    assert_int_equal(claim(co, "main", 2, 10).status, COORD_OK);
    coord_destroy(co);
}

struct batch {
    int status, calls;
    struct coord_claim cl[COORD_BATCH_MAX];
    size_t n;
};

static void on_batch(void *arg, int status, const struct coord_claim *cl, size_t n)
{
    struct batch *b = arg;

    b->status = status;
    b->calls++;
    b->n = n;
    memcpy(b->cl, cl, n * sizeof(*cl));
}

/* One request gives files back (their slots first) and claims several. */
static void test_claim_batch(void **state)
{
    struct coord *co = make(0, 15, 1);
    struct coord_release rel[2];
    struct batch b = {0};

    (void)state;
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%d_0_0_0", i);
        coord_announce(co, "main", id, i, COORD_ANN_NEW);
    }
    coord_claim_batch(co, NULL, "main", 3, 10, 2, NULL, 0, on_batch, &b);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, COORD_OK);       /* all that was asked for came */
    assert_int_equal(b.n, 2);
    assert_string_equal(b.cl[0].qid, "0_0_0_0");
    assert_string_equal(b.cl[1].qid, "1_0_0_0");
    assert_true(b.cl[1].token > b.cl[0].token);
    /* a third slot is left of Max_qprocs 3: the limit stops the batch */
    coord_claim_batch(co, NULL, "main", 3, 10, 4, NULL, 0, on_batch, &b);
    assert_int_equal(b.status, COORD_FULL);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.cl[0].qid, "2_0_0_0");
    /* given back as gone: its slot is free for the claim of the same call */
    rel[0].cl = b.cl[0];
    rel[0].next_due = -1;
    coord_claim_batch(co, NULL, "main", 3, 10, 0, NULL, 0, NULL, NULL);   /* nothing */
    b.calls = 0;
    coord_claim_batch(co, NULL, "main", 3, 10, 1, rel, 1, on_batch, &b);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, COORD_OK);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.cl[0].qid, "3_0_0_0");
    /* given back due later; the due files run out before the batch is full */
    rel[1].cl = b.cl[0];
    rel[1].next_due = 1000;
    coord_claim_batch(co, NULL, "main", 0, 10, 8, &rel[1], 1, on_batch, &b);
    assert_int_equal(b.status, COORD_EMPTY);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.cl[0].qid, "4_0_0_0");
    /* releases only: no answer; the file is due again when its release said */
    b.calls = 0;
    rel[0].cl = b.cl[0];
    coord_claim_batch(co, NULL, "main", 0, 10, 0, rel, 1, on_batch, &b);
    assert_int_equal(b.calls, 0);
    coord_claim_batch(co, NULL, "main", 0, 999, 1, NULL, 0, on_batch, &b);
    assert_int_equal(b.status, COORD_EMPTY);
    coord_claim_batch(co, NULL, "main", 0, 1000, 1, NULL, 0, on_batch, &b);
    assert_int_equal(b.status, COORD_OK);
    assert_string_equal(b.cl[0].qid, "3_0_0_0");
    coord_destroy(co);
}

static void test_claim_id(void **state)
{
    struct coord *co = make(0, 15, 1);
    struct got a = {0}, b = {0};

    (void)state;
    coord_announce(co, "main", "7_7_7_7", 0, COORD_ANN_NEW);
    coord_claim_id(co, NULL, "main", "7_7_7_7", on_claim, &a);
    assert_int_equal(a.status, COORD_OK);
    coord_claim_id(co, NULL, "main", "7_7_7_7", on_claim, &b);
    assert_int_equal(b.status, COORD_BUSY);
    assert_int_equal(claim(co, "main", 0, 10).status, COORD_EMPTY);  /* held */
    coord_release(co, &a.cl, 0);
    assert_int_equal(claim(co, "main", 0, 10).status, COORD_OK);
    coord_destroy(co);
}

static int slot_status;

static void on_slot(void *arg, int status, uint64_t slot)
{
    *(uint64_t *)arg = slot;
    slot_status = status;
}

static void test_pool_slots(void **state)
{
    struct coord *co = make(0, 15, 1);
    uint64_t s1 = 0, s2 = 0, s3 = 0;

    (void)state;
    coord_slot_acquire(co, NULL, "dlocal", 2, on_slot, &s1);
    assert_int_equal(slot_status, COORD_OK);
    coord_slot_acquire(co, NULL, "dlocal", 2, on_slot, &s2);
    assert_int_equal(slot_status, COORD_OK);
    coord_slot_acquire(co, NULL, "dlocal", 2, on_slot, &s3);
    assert_int_equal(slot_status, COORD_FULL);
    coord_slot_release(co, "dlocal", s1);
    coord_slot_acquire(co, NULL, "dlocal", 2, on_slot, &s3);
    assert_int_equal(slot_status, COORD_OK);
    coord_slot_acquire(co, NULL, "other", 1, on_slot, &s1);   /* pools are apart */
    assert_int_equal(slot_status, COORD_OK);
    coord_destroy(co);
}

static int verdict;

static void on_conn(void *arg, int v)
{
    verdict = v;
}

static void test_connection_limit(void **state)
{
    struct coord *co = make(100, 3, 60);

    (void)state;
    coord_conn_check(co, NULL, "192.0.2.1", on_conn, NULL);
    assert_int_equal(verdict, COORD_OK);
    coord_conn_check(co, NULL, "192.0.2.2", on_conn, NULL);   /* another address */
    coord_conn_check(co, NULL, "192.0.2.1", on_conn, NULL);
    assert_int_equal(verdict, COORD_OK);
    coord_conn_check(co, NULL, "192.0.2.1", on_conn, NULL);   /* the third in a run */
    assert_int_equal(verdict, COORD_LIMIT);
    coord_conn_check(co, NULL, "192.0.2.2", on_conn, NULL);
    assert_int_equal(verdict, COORD_OK);
    coord_destroy(co);
}

static void test_connection_limit_off_and_window(void **state)
{
    struct coord *off = make(0, 1, 60), *fast = make(10, 2, 0);

    (void)state;
    coord_conn_check(off, NULL, "192.0.2.1", on_conn, NULL);
    coord_conn_check(off, NULL, "192.0.2.1", on_conn, NULL);
    assert_int_equal(verdict, COORD_OK);          /* Limit_buf 0: off */
    coord_conn_check(fast, NULL, "192.0.2.1", on_conn, NULL);
    coord_conn_check(fast, NULL, "192.0.2.1", on_conn, NULL);
    assert_int_equal(verdict, COORD_OK);          /* Limit_time 0: no gap is short */
    coord_destroy(off);
    coord_destroy(fast);
}

static int auth_verdict(struct coord *co, const char *ip, const char *login, long limit)
{
    verdict = -1;
    coord_auth_check(co, NULL, ip, login, limit, on_conn, NULL);
    assert_int_not_equal(verdict, -1);   /* answered at once */
    return verdict;
}

static void test_auth_lockout(void **state)
{
    struct coord *co = make(0, 1, 60);

    (void)state;
    for (int i = 0; i < 2; i++)
        coord_auth_failed(co, "192.0.2.1", "alice@example.org", 60);
    assert_int_equal(auth_verdict(co, "192.0.2.1", "bob@example.org", 3), COORD_OK);
    coord_auth_failed(co, "192.0.2.1", "Alice@Example.ORG", 60);   /* case ignored */
    /* Three failures: the address is locked out, whatever the login... */
    assert_int_equal(auth_verdict(co, "192.0.2.1", "bob@example.org", 3), COORD_LIMIT);
    /* ...and the login, from any address. */
    assert_int_equal(auth_verdict(co, "192.0.2.9", "alice@example.org", 3), COORD_LIMIT);
    assert_int_equal(auth_verdict(co, "192.0.2.9", "bob@example.org", 3), COORD_OK);
    assert_int_equal(auth_verdict(co, "192.0.2.1", "bob@example.org", 4), COORD_OK);
    assert_int_equal(auth_verdict(co, "192.0.2.1", "bob@example.org", 0), COORD_OK);  /* off */
    coord_destroy(co);
}

static void test_auth_counts_expire_and_stay_bounded(void **state)
{
    struct coord *co = make(0, 1, 60);
    char ip[64];

    (void)state;
    coord_auth_failed(co, "192.0.2.1", "alice@example.org", 1);
    assert_int_equal(auth_verdict(co, "192.0.2.1", "x", 1), COORD_LIMIT);
    usleep(1100 * 1000);
    assert_int_equal(auth_verdict(co, "192.0.2.1", "x", 1), COORD_OK);
    /* Far more addresses than the table holds: no crash, the newest count. */
    for (int i = 0; i < 20000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
        coord_auth_failed(co, ip, "mallory", 60);
    }
    assert_int_equal(auth_verdict(co, ip, "y", 1), COORD_LIMIT);
    coord_destroy(co);
}

static int rate_verdict(struct coord *co, const char *key, long limit, long window)
{
    verdict = -1;
    coord_rate(co, NULL, key, limit, window, on_conn, NULL);
    assert_int_not_equal(verdict, -1);   /* answered at once */
    return verdict;
}

static void test_rate_limit(void **state)
{
    struct coord *co = make(0, 1, 60);

    (void)state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(rate_verdict(co, "ip 192.0.2.1", 5, 60), COORD_OK);
    assert_int_equal(rate_verdict(co, "ip 192.0.2.1", 5, 60), COORD_LIMIT);
    assert_int_equal(rate_verdict(co, "ip 192.0.2.1", 5, 60), COORD_LIMIT);
    assert_int_equal(rate_verdict(co, "ip 192.0.2.2", 5, 60), COORD_OK);   /* apart */
    assert_int_equal(rate_verdict(co, "none", 0, 60), COORD_LIMIT);        /* 0 allowed */
    assert_int_equal(rate_verdict(co, "ip 192.0.2.1", -1, 60), COORD_OK);  /* off */
    assert_int_equal(rate_verdict(co, "ip 192.0.2.1", 5, 0), COORD_OK);    /* off */
    coord_destroy(co);
}

/* Not a fixed window: each event leaves it on its own, and refused events
 * count as well. */
static void test_rate_window_slides(void **state)
{
    struct coord *co = make(0, 1, 60);

    (void)state;
    assert_int_equal(rate_verdict(co, "k", 2, 1), COORD_OK);      /* t = 0 */
    usleep(600 * 1000);
    assert_int_equal(rate_verdict(co, "k", 2, 1), COORD_OK);      /* t = 0.6 */
    assert_int_equal(rate_verdict(co, "k", 2, 1), COORD_LIMIT);   /* 3 in 1 s */
    usleep(500 * 1000);
    /* t = 1.1: the first has gone, the two of 0.6 are still there */
    assert_int_equal(rate_verdict(co, "k", 2, 1), COORD_LIMIT);
    usleep(600 * 1000);
    /* t = 1.7: only the one of 1.1 is left */
    assert_int_equal(rate_verdict(co, "k", 2, 1), COORD_OK);
    coord_destroy(co);
}

/* The processes of a node (forked after the backend was made) share the
 * counts. */
static void test_rate_shared_between_processes(void **state)
{
    struct coord *co = make(0, 1, 60);
    int st = -1;
    pid_t pid;

    (void)state;
    assert_int_equal(rate_verdict(co, "shared", 4, 60), COORD_OK);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = 1;
        for (int i = 0; i < 3; i++)
            ok &= rate_verdict(co, "shared", 4, 60) == COORD_OK;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(rate_verdict(co, "shared", 4, 60), COORD_LIMIT);   /* the 5th */
    coord_destroy(co);
}

static void test_rate_keys_bounded(void **state)
{
    struct coord *co = make(0, 1, 60);
    char key[COORD_RATE_KEY_MAX + 64];

    (void)state;
    /* Far more keys than the table holds: no crash, the newest still counted. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key %d", i);
        assert_int_equal(rate_verdict(co, key, 1, 60), COORD_OK);
    }
    assert_int_equal(rate_verdict(co, key, 1, 60), COORD_LIMIT);
    assert_int_equal(rate_verdict(co, "key 0", 1, 60), COORD_OK);   /* forgotten */
    /* Keys longer than the maximum count as their first COORD_RATE_KEY_MAX bytes. */
    memset(key, 'x', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(rate_verdict(co, key, 1, 60), COORD_OK);
    key[sizeof(key) - 2] = 'y';
    assert_int_equal(rate_verdict(co, key, 1, 60), COORD_LIMIT);
    coord_destroy(co);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claims_in_due_order),
        cmocka_unit_test(test_held_files_are_not_claimed_again),
        cmocka_unit_test(test_announce_new_does_not_move_a_known_file),
        cmocka_unit_test(test_slots_limit_claims),
        cmocka_unit_test(test_claim_id),
        cmocka_unit_test(test_claim_batch),
        cmocka_unit_test(test_pool_slots),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_connection_limit_off_and_window),
        cmocka_unit_test(test_auth_lockout),
        cmocka_unit_test(test_auth_counts_expire_and_stay_bounded),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_rate_window_slides),
        cmocka_unit_test(test_rate_shared_between_processes),
        cmocka_unit_test(test_rate_keys_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
