/*
 * test_buf.c - the growable buffer and its hard limit (src/core/buf.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "mem.h"

/* The buffer holds exactly the n bytes of want. */
static void assert_buf(struct buf *b, const char *want, size_t n)
{
    assert_int_equal(b->len, n);
    if (n)
        assert_memory_equal(b->data, want, n);
    assert_true(b->limit == 0 || b->len <= b->limit);
}

static void assert_buf_str(struct buf *b, const char *want)
{
    assert_buf(b, want, strlen(want));
    assert_string_equal(buf_cstr(b), want);
}

static void test_init(void **state)
{
    struct buf a = BUF_INIT(10), b;

    (void)state;
    assert_null(a.data);
    assert_int_equal(a.len, 0);
    assert_int_equal(a.cap, 0);
    assert_int_equal(a.limit, 10);
    memset(&b, 0x55, sizeof(b));
    buf_init(&b, 7);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.limit, 7);
    assert_string_equal(buf_cstr(&b), "");  /* no storage yet */
    buf_free(&b);
    buf_free(&b);  /* twice is harmless */
}

static void test_append_up_to_limit(void **state)
{
    struct buf b = BUF_INIT(8);

    (void)state;
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_append(&b, "defgh", 5), 0);  /* exactly the limit */
    assert_buf_str(&b, "abcdefgh");
    assert_int_equal(buf_append(&b, "i", 1), -1);      /* one past */
    assert_int_equal(buf_putc(&b, 'i'), -1);
    assert_int_equal(buf_puts(&b, "i"), -1);
    assert_buf_str(&b, "abcdefgh");                    /* unchanged */
    assert_int_equal(buf_append(&b, "", 0), 0);        /* nothing always fits */
    assert_buf_str(&b, "abcdefgh");
    buf_free(&b);
}

static void test_append_over_limit_is_atomic(void **state)
{
    struct buf b = BUF_INIT(8);

    (void)state;
    assert_int_equal(buf_puts(&b, "abcdef"), 0);
    assert_int_equal(buf_append(&b, "xyz", 3), -1);  /* would end at 9 */
    assert_buf_str(&b, "abcdef");
    assert_int_equal(buf_append(&b, "0123456789", 10), -1);  /* n > limit */
    assert_buf_str(&b, "abcdef");
    assert_int_equal(buf_append(&b, "xy", 2), 0);
    assert_buf_str(&b, "abcdefxy");
    buf_free(&b);
}

static void test_limit_one(void **state)
{
    struct buf b = BUF_INIT(1);

    (void)state;
    assert_int_equal(buf_putc(&b, 'x'), 0);
    assert_int_equal(buf_putc(&b, 'y'), -1);
    assert_buf_str(&b, "x");
    buf_free(&b);
}

/* Sizes whose arithmetic would wrap must fail, never grow or write. */
static void test_huge_sizes_fail(void **state)
{
    struct buf unlimited = BUF_INIT(0), big = BUF_INIT(SIZE_MAX);

    (void)state;
    assert_int_equal(buf_puts(&unlimited, "ab"), 0);
    assert_int_equal(buf_append(&unlimited, "x", SIZE_MAX), -1);
    assert_int_equal(buf_append(&unlimited, "x", SIZE_MAX - 2), -1);
    assert_int_equal(buf_append(&unlimited, "x", SIZE_MAX / 2 + 1), -1);
    assert_buf_str(&unlimited, "ab");
    assert_int_equal(buf_append(&big, "x", SIZE_MAX), -1);
    assert_int_equal(big.len, 0);
    buf_free(&unlimited);
    buf_free(&big);
}

static void test_unlimited_grows(void **state)
{
    struct buf b = BUF_INIT(0);
    char chunk[4096];
    size_t total = 0;

    (void)state;
    for (int i = 0; i < 300; i++) {
        memset(chunk, 'a' + i % 26, sizeof(chunk));
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
        total += sizeof(chunk);
    }
    assert_int_equal(b.len, total);
    assert_true(b.cap > b.len);  /* room for the NUL of buf_cstr */
    for (size_t i = 0; i < total; i++)
        if (b.data[i] != 'a' + (char)((i / sizeof(chunk)) % 26))
            fail_msg("byte %zu is wrong after growing", i);
    assert_int_equal(strlen(buf_cstr(&b)), total);
    buf_free(&b);
}

/* Growing one byte at a time keeps every byte (realloc moves). */
static void test_bytewise_growth(void **state)
{
    struct buf b = BUF_INIT(5000);

    (void)state;
    for (int i = 0; i < 5000; i++)
        assert_int_equal(buf_putc(&b, (char)('0' + i % 10)), 0);
    assert_int_equal(buf_putc(&b, 'x'), -1);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(b.data[i], '0' + i % 10);
    buf_free(&b);
}

static void test_binary_data(void **state)
{
    struct buf b = BUF_INIT(16);
    const char bin[] = {'a', '\0', 'b', '\xff', '\0'};

    (void)state;
    assert_int_equal(buf_append(&b, bin, sizeof(bin)), 0);
    assert_buf(&b, bin, sizeof(bin));
    buf_free(&b);
}

static void test_printf(void **state)
{
    struct buf b = BUF_INIT(12);

    (void)state;
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "ab"), 0);
    assert_buf_str(&b, "42-ab");
    assert_int_equal(buf_printf(&b, "%s", "1234567"), 0);  /* ends at 12 */
    assert_buf_str(&b, "42-ab1234567");
    assert_int_equal(buf_printf(&b, "%c", 'z'), -1);
    assert_buf_str(&b, "42-ab1234567");
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    buf_free(&b);
}

static void test_printf_over_limit_appends_nothing(void **state)
{
    struct buf b = BUF_INIT(10);

    (void)state;
    assert_int_equal(buf_puts(&b, "abc"), 0);
    assert_int_equal(buf_printf(&b, "%s", "12345678"), -1);
    assert_buf_str(&b, "abc");
    buf_free(&b);
}

static void test_printf_long(void **state)
{
    struct buf b = BUF_INIT(0);
    char big[3000];

    (void)state;
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, sizeof(big) + 1);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[b.len - 1], '>');
    buf_free(&b);
}

static int vprintf_helper(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

static void test_vprintf(void **state)
{
    struct buf b = BUF_INIT(0);

    (void)state;
    assert_int_equal(vprintf_helper(&b, "%s=%ld", "k", 7L), 0);
    assert_buf_str(&b, "k=7");
    buf_free(&b);
}

static void test_cstr_does_not_count_nul(void **state)
{
    struct buf b = BUF_INIT(3);

    (void)state;
    assert_int_equal(buf_puts(&b, "abc"), 0);  /* full */
    assert_string_equal(buf_cstr(&b), "abc");
    assert_int_equal(b.len, 3);
    assert_int_equal(buf_puts(&b, "d"), -1);
    buf_reset(&b);
    assert_string_equal(buf_cstr(&b), "");
    buf_free(&b);
}

static void test_consume(void **state)
{
    struct buf b = BUF_INIT(0);

    (void)state;
    buf_puts(&b, "hello world");
    buf_consume(&b, 0);
    assert_buf_str(&b, "hello world");
    buf_consume(&b, 6);
    assert_buf_str(&b, "world");
    buf_consume(&b, 5);  /* exactly all */
    assert_buf_str(&b, "");
    buf_puts(&b, "xy");
    buf_consume(&b, 100);  /* more than there is */
    assert_buf_str(&b, "");
    buf_consume(&b, 1);    /* on an empty buffer */
    assert_int_equal(b.len, 0);
    buf_free(&b);

    struct buf none = BUF_INIT(0);
    buf_consume(&none, 3);  /* never allocated */
    assert_int_equal(none.len, 0);
}

/* The limit holds for the buffer's length, not for what went through it. */
static void test_limit_after_consume(void **state)
{
    struct buf b = BUF_INIT(4);

    (void)state;
    assert_int_equal(buf_puts(&b, "abcd"), 0);
    buf_consume(&b, 2);
    assert_int_equal(buf_puts(&b, "ef"), 0);
    assert_buf_str(&b, "cdef");
    assert_int_equal(buf_putc(&b, 'g'), -1);
    buf_free(&b);
}

static void test_reset_keeps_storage(void **state)
{
    struct buf b = BUF_INIT(0);
    size_t cap;

    (void)state;
    buf_puts(&b, "some data");
    cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    assert_int_equal(b.cap, cap);
    buf_puts(&b, "new");
    assert_buf_str(&b, "new");
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void test_shrink(void **state)
{
    struct buf b = BUF_INIT(0);
    char big[1000];

    (void)state;
    memset(big, 'x', sizeof(big));
    buf_append(&b, big, sizeof(big));
    buf_shrink(&b, 64);  /* not empty: kept */
    assert_int_equal(b.len, sizeof(big));
    assert_non_null(b.data);
    buf_reset(&b);
    buf_shrink(&b, 1 << 20);  /* small enough: kept */
    assert_non_null(b.data);
    buf_shrink(&b, 64);  /* empty and big: dropped */
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(buf_puts(&b, "again"), 0);
    assert_buf_str(&b, "again");
    buf_free(&b);
}

static void test_steal(void **state)
{
    struct buf b = BUF_INIT(100);
    size_t len = 99;
    char *p;

    (void)state;
    buf_puts(&b, "stolen");
    p = buf_steal(&b, &len);
    assert_int_equal(len, 6);
    assert_string_equal(p, "stolen");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.limit, 100);  /* the limit stays */
    mem_free(p);

    p = buf_steal(&b, &len);  /* empty: an allocated "" */
    assert_non_null(p);
    assert_int_equal(len, 0);
    assert_string_equal(p, "");
    mem_free(p);

    buf_puts(&b, "x");
    p = buf_steal(&b, NULL);
    assert_string_equal(p, "x");
    mem_free(p);
    buf_free(&b);
}

static void test_swap(void **state)
{
    struct buf a = BUF_INIT(5), b = BUF_INIT(0);

    (void)state;
    buf_puts(&a, "aa");
    buf_puts(&b, "bbbbbbb");
    buf_swap(&a, &b);
    assert_buf_str(&a, "bbbbbbb");
    assert_int_equal(a.limit, 0);
    assert_buf_str(&b, "aa");
    assert_int_equal(b.limit, 5);
    assert_int_equal(buf_puts(&b, "cccc"), -1);  /* the limit moved with it */
    buf_free(&a);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_append_up_to_limit),
        cmocka_unit_test(test_append_over_limit_is_atomic),
        cmocka_unit_test(test_limit_one),
        cmocka_unit_test(test_huge_sizes_fail),
        cmocka_unit_test(test_unlimited_grows),
        cmocka_unit_test(test_bytewise_growth),
        cmocka_unit_test(test_binary_data),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_over_limit_appends_nothing),
        cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_vprintf),
        cmocka_unit_test(test_cstr_does_not_count_nul),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_limit_after_consume),
        cmocka_unit_test(test_reset_keeps_storage),
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_swap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
