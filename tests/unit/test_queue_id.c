/*
 * test_queue_id.c - queue IDs (src/spool/queue_id.c): shape, order, node number.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "queue_id.h"

/* The four groups of an ID; fails the test if it is not shaped like one. */
struct id_parts {
    long sec, usec, pid;
    unsigned long node;
};

static struct id_parts split_id(const char *id)
{
    struct id_parts p;
    char usec[16], tail[2];

    if (sscanf(id, "%ld_%6[0-9]_%ld_%lu%1s", &p.sec, usec, &p.pid, &p.node,
               tail) != 4)
        fail_msg("\"%s\" is not <sec>_<usec>_<pid>_<node>", id);
    if (strlen(usec) != 6)
        fail_msg("\"%s\": microseconds are not 6 digits", id);
    p.usec = strtol(usec, NULL, 10);
    assert_true(queue_id_valid(id));
    return p;
}

/* a comes strictly before b */
static int id_before(const struct id_parts *a, const struct id_parts *b)
{
    return a->sec < b->sec || (a->sec == b->sec && a->usec < b->usec);
}

static void test_node_numeric_sid(void **state)
{
    (void)state;
    assert_int_equal(queue_id_node(""), 0);
    assert_int_equal(queue_id_node("0"), 0);
    assert_int_equal(queue_id_node("7"), 7);
    assert_int_equal(queue_id_node("42"), 42);
    assert_int_equal(queue_id_node("000123"), 123);
    assert_int_equal(queue_id_node("999999"), 999999);
}

/* FNV-1a (32 bit) modulo 1000000, for Sids that are not 1-6 digit numbers. */
static void test_node_hashed_sid(void **state)
{
    (void)state;
    /* Published FNV-1a test vectors: "a" = 0xe40c292c, "foobar" = 0xbf9cf968. */
    assert_int_equal(queue_id_node("a"), 0xe40c292cUL % 1000000);
    assert_int_equal(queue_id_node("foobar"), 0xbf9cf968UL % 1000000);
    assert_true(queue_id_node("sv1") < 1000000);
    assert_true(queue_id_node("1234567") < 1000000);  /* 7 digits: hashed */
    assert_true(queue_id_node("12a") < 1000000);
    assert_true(queue_id_node("-1") < 1000000);
    assert_int_equal(queue_id_node("sv1"), queue_id_node("sv1"));
    assert_int_not_equal(queue_id_node("sv1"), queue_id_node("sv2"));
    assert_int_not_equal(queue_id_node("mx1"), queue_id_node("mx2"));
}

static void test_init(void **state)
{
    struct queue_id_gen g;

    (void)state;
    memset(&g, 0x5a, sizeof(g));
    queue_id_init(&g, "12");
    assert_int_equal(g.node, 12);
    assert_int_equal(g.pid, (long)getpid());
    assert_int_equal(g.last_sec, 0);
    assert_int_equal(g.last_usec, 0);
}

static void test_shape(void **state)
{
    struct queue_id_gen g;
    char id[QUEUE_ID_MAX];
    struct id_parts p;
    struct timeval before, after;

    (void)state;
    queue_id_init(&g, "sv1");
    gettimeofday(&before, NULL);
    queue_id_next(&g, id);
    gettimeofday(&after, NULL);
    p = split_id(id);
    assert_in_range(p.sec, before.tv_sec, after.tv_sec + 1);
    assert_in_range(p.usec, 0, 999999);
    assert_int_equal(p.pid, (long)getpid());
    assert_int_equal(p.node, queue_id_node("sv1"));
    assert_int_equal(queue_id_time(id), p.sec);
    assert_true(strlen(id) < QUEUE_ID_MAX);
}

/* Many IDs in a row, faster than the clock ticks: each after the last. */
static void test_strictly_increasing(void **state)
{
    struct queue_id_gen g;
    char prev[QUEUE_ID_MAX], id[QUEUE_ID_MAX];
    struct id_parts a, b;

    (void)state;
    queue_id_init(&g, "3");
    queue_id_next(&g, prev);
    a = split_id(prev);
    for (int i = 0; i < 200000; i++) {
        queue_id_next(&g, id);
        b = split_id(id);
        if (!id_before(&a, &b))
            fail_msg("ID %d \"%s\" is not after \"%s\"", i, id, prev);
        /* Fixed-width microseconds: the text sorts like the time. */
        if (strcmp(prev, id) >= 0)
            fail_msg("\"%s\" does not sort after \"%s\"", id, prev);
        memcpy(prev, id, sizeof(id));
        a = b;
    }
}

/* The clock going back never makes an ID go back. */
static void test_clock_going_back(void **state)
{
    struct queue_id_gen g;
    char id[QUEUE_ID_MAX];
    struct id_parts p;
    long future = (long)time(NULL) + 3600;

    (void)state;
    queue_id_init(&g, "1");
    g.last_sec = future;
    g.last_usec = 500;
    queue_id_next(&g, id);
    p = split_id(id);
    assert_int_equal(p.sec, future);
    assert_int_equal(p.usec, 501);
    queue_id_next(&g, id);
    p = split_id(id);
    assert_int_equal(p.sec, future);
    assert_int_equal(p.usec, 502);
}

static void test_microsecond_rollover(void **state)
{
    struct queue_id_gen g;
    char id[QUEUE_ID_MAX];
    struct id_parts p;
    long future = (long)time(NULL) + 3600;

    (void)state;
    queue_id_init(&g, "1");
    g.last_sec = future;
    g.last_usec = 999999;
    queue_id_next(&g, id);
    p = split_id(id);
    assert_int_equal(p.sec, future + 1);
    assert_int_equal(p.usec, 0);
    assert_non_null(strstr(id, "_000000_"));
}

/* Two nodes that accept at the same instant still differ. */
static void test_nodes_differ(void **state)
{
    struct queue_id_gen a, b;
    char ida[QUEUE_ID_MAX], idb[QUEUE_ID_MAX];
    long future = (long)time(NULL) + 3600;

    (void)state;
    queue_id_init(&a, "mx1");
    queue_id_init(&b, "mx2");
    a.last_sec = b.last_sec = future;
    a.last_usec = b.last_usec = 10;
    queue_id_next(&a, ida);
    queue_id_next(&b, idb);
    assert_string_not_equal(ida, idb);
    assert_int_not_equal(split_id(ida).node, split_id(idb).node);
}

static void check_valid(const char *s, int want)
{
    if (queue_id_valid(s) != want)
        fail_msg("queue_id_valid(\"%s\") should be %d", s, want);
}

static void test_valid(void **state)
{
    char s[80];

    (void)state;
    check_valid("1_2", 1);
    check_valid("1700000000_000001_4242_123456", 1);
    check_valid("0_0_0_0", 1);
    check_valid("123456789_1234", 1);  /* the original's shape */
    check_valid("", 0);
    check_valid("1", 0);
    check_valid("123", 0);
    check_valid("_", 0);
    check_valid("_1", 0);
    check_valid("1_", 0);
    check_valid("1__2", 0);
    check_valid("1_2_", 0);
    check_valid("1_a", 0);
    check_valid("1-2", 0);
    check_valid("1_2 ", 0);
    check_valid(" 1_2", 0);
    check_valid("1_2\n", 0);
    check_valid("../1_2", 0);
    check_valid("1_2/..", 0);
    check_valid("1_\xd9\xa3", 0);  /* a non-ASCII digit */
    check_valid("+1_2", 0);
    check_valid("-1_2", 0);

    /* Length: shorter than QUEUE_ID_MAX. */
    memset(s, '1', sizeof(s));
    s[1] = '_';
    s[QUEUE_ID_MAX - 1] = '\0';
    check_valid(s, 1);
    s[QUEUE_ID_MAX - 1] = '1';
    s[QUEUE_ID_MAX] = '\0';
    check_valid(s, 0);
}

static void test_time(void **state)
{
    (void)state;
    assert_int_equal(queue_id_time("1700000000_000001_42_7"), 1700000000L);
    assert_int_equal(queue_id_time("5_1"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_numeric_sid),
        cmocka_unit_test(test_node_hashed_sid),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_strictly_increasing),
        cmocka_unit_test(test_clock_going_back),
        cmocka_unit_test(test_microsecond_rollover),
        cmocka_unit_test(test_nodes_differ),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_time),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
