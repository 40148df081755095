/*
 * test_strset.c - the case-insensitive string set (src/core/strset.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "strset.h"

static void test_empty(void **state)
{
    struct strset set = STRSET_INIT;

    (void)state;
    assert_false(strset_has(&set, "a@b"));
    strset_free(&set);
    assert_int_equal(set.n, 0);
}

static void test_case_and_duplicates(void **state)
{
    struct strset set = STRSET_INIT;

    (void)state;
    assert_true(strset_add(&set, "Bob@Example.COM"));
    assert_false(strset_add(&set, "bob@example.com"));
    assert_true(strset_has(&set, "BOB@EXAMPLE.COM"));
    assert_false(strset_has(&set, "bob@example.co"));
    assert_true(strset_add(&set, "bob@example.co"));
    assert_int_equal(set.n, 2);
    strset_free(&set);
}

/* Many strings, through several grows: each found once, none lost. */
static void test_many(void **state)
{
    enum { N = 20000 };
    static char names[N][32];
    struct strset set = STRSET_INIT;

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "user%d@Example.com", i);
        assert_true(strset_add(&set, names[i]));
    }
    assert_int_equal(set.n, N);
    assert_true(set.cap >= 2 * (size_t)N);
    for (int i = 0; i < N; i++) {
        char other[32];
        snprintf(other, sizeof(other), "USER%d@EXAMPLE.COM", i);
        assert_true(strset_has(&set, other));
        assert_false(strset_add(&set, other));
    }
    assert_false(strset_has(&set, "user20000@example.com"));
    strset_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_case_and_duplicates),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
