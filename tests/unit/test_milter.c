/*
 * test_milter.c - the milter wire format (src/smtp/milter_proto.c) and the
 * header section milters change (src/smtp/milter_head.c).
 *
 * Packets are cut from streams fed whole and split at every offset, with
 * lengths no milter sends; the negotiation reply with and without macro
 * lists; header sections with folds, non-field lines and no end; and every
 * change a milter can ask for, including values that try to add fields
 * or end the section.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "milter_head.h"
#include "milter_proto.h"

static void test_packet_roundtrip(void **state)
{
    struct buf b = BUF_INIT(0);
    struct milter_pkt p;
    size_t used, start;

    (void)state;
    start = milter_proto_begin(&b, MILTER_C_HEADER);
    milter_proto_str(&b, "Subject");
    milter_proto_str(&b, "hello");
    milter_proto_end(&b, start);
    milter_proto_put(&b, MILTER_C_EOH, NULL, 0);
    /* a cut anywhere in the first packet: more is needed */
    for (size_t cut = 0; cut < 5 + 14; cut++)
        assert_int_equal(milter_proto_next(b.data, cut, &p, &used), 0);
    assert_int_equal(milter_proto_next(b.data, b.len, &p, &used), 1);
    assert_int_equal(p.cmd, MILTER_C_HEADER);
    assert_int_equal(p.len, 14);
    assert_string_equal(milter_proto_arg(&p, 0, 0), "Subject");
    assert_string_equal(milter_proto_arg(&p, 0, 1), "hello");
    assert_null(milter_proto_arg(&p, 0, 2));
    assert_int_equal(milter_proto_next(b.data + used, b.len - used, &p, &used), 1);
    assert_int_equal(p.cmd, MILTER_C_EOH);
    assert_int_equal(p.len, 0);
    buf_free(&b);
}

static void test_impossible_lengths(void **state)
{
    struct milter_pkt p;
    size_t used;
    const char zero[5] = {0, 0, 0, 0, 'c'};
    const char huge[5] = {0x7f, 0, 0, 0, 'c'};
    /* a string without its NUL is no argument */
    const char open_str[8] = {0, 0, 0, 4, 'y', '5', '5', '0'};

    (void)state;
    assert_int_equal(milter_proto_next(zero, sizeof(zero), &p, &used), -1);
    assert_int_equal(milter_proto_next(huge, sizeof(huge), &p, &used), -1);
    assert_int_equal(milter_proto_next(open_str, sizeof(open_str), &p, &used), 1);
    assert_null(milter_proto_arg(&p, 0, 0));
}

static void neg_packet(struct buf *b, uint32_t version, uint32_t actions, uint32_t proto,
                       int with_macros)
{
    size_t start = milter_proto_begin(b, MILTER_C_OPTNEG);

    milter_proto_u32(b, version);
    milter_proto_u32(b, actions);
    milter_proto_u32(b, proto);
    if (with_macros) {
        milter_proto_u32(b, MILTER_M_MAIL);
        milter_proto_str(b, "{auth_authen} {mail_addr}");
        milter_proto_u32(b, MILTER_M_EOM);
        milter_proto_str(b, "i");
    }
    milter_proto_end(b, start);
}

static void test_negotiation(void **state)
{
    struct buf b = BUF_INIT(0);
    struct milter_pkt p;
    struct milter_neg neg;
    const char *why = NULL;
    size_t used;

    (void)state;
    neg_packet(&b, 6, MILTER_A_ADDHDRS | MILTER_A_CHGFROM,
               MILTER_P_NR_HDR | MILTER_P_NOHELO, 1);
    assert_int_equal(milter_proto_next(b.data, b.len, &p, &used), 1);
    assert_int_equal(milter_proto_neg(&p, &neg, &why), 0);
    assert_int_equal(neg.version, 6);
    assert_int_equal(neg.actions, MILTER_A_ADDHDRS | MILTER_A_CHGFROM);
    assert_int_equal(neg.proto, MILTER_P_NR_HDR | MILTER_P_NOHELO);
    assert_true(neg.has_macros[MILTER_M_MAIL]);
    assert_string_equal(neg.macros[MILTER_M_MAIL], "{auth_authen} {mail_addr}");
    assert_string_equal(neg.macros[MILTER_M_EOM], "i");
    assert_false(neg.has_macros[MILTER_M_CONNECT]);

    /* a v2 milter: three numbers only */
    buf_reset(&b);
    neg_packet(&b, 2, MILTER_A_ADDHDRS, 0, 0);
    assert_int_equal(milter_proto_next(b.data, b.len, &p, &used), 1);
    assert_int_equal(milter_proto_neg(&p, &neg, &why), 0);

    /* what Selor did not offer is refused */
    buf_reset(&b);
    neg_packet(&b, 6, 0, MILTER_P_RCPT_REJ, 0);
    milter_proto_next(b.data, b.len, &p, &used);
    assert_int_equal(milter_proto_neg(&p, &neg, &why), -1);
    buf_reset(&b);
    neg_packet(&b, 7, 0, 0, 0);
    milter_proto_next(b.data, b.len, &p, &used);
    assert_int_equal(milter_proto_neg(&p, &neg, &why), -1);
    buf_reset(&b);
    milter_proto_put(&b, MILTER_R_CONTINUE, NULL, 0);
    milter_proto_next(b.data, b.len, &p, &used);
    assert_int_equal(milter_proto_neg(&p, &neg, &why), -1);
    buf_free(&b);
}

static void test_optneg_offer(void **state)
{
    struct buf b = BUF_INIT(0);
    unsigned char *u;

    (void)state;
    milter_proto_optneg(&b);
    assert_int_equal(b.len, 17);
    u = (unsigned char *)b.data;
    assert_int_equal(u[3], 13);
    assert_int_equal(u[4], 'O');
    assert_int_equal(u[8], MILTER_VERSION);
    assert_int_equal(u[5 + 8 + 1], (MILTER_P_OFFER >> 16) & 0xff);
    assert_false(MILTER_P_OFFER & MILTER_P_RCPT_REJ);
    buf_free(&b);
}

static const char *SECTION =
    "Received: from a\n\tby b\n"
    "Subject: hi\n"
    "X-Two: 1\n"
    "X-Two: 2\n"
    "\n"
    "body\n";

static char *format(struct milter_head *h)
{
    struct buf b = BUF_INIT(0);
    size_t n;
    char *s;

    milter_head_format(h, &b);
    buf_putc(&b, '\0');
    s = buf_steal(&b, &n);
    return s;
}

static void test_parse(void **state)
{
    struct milter_head h;

    (void)state;
    milter_head_init(&h);
    assert_int_equal(milter_head_parse(&h, SECTION, strlen(SECTION)),
                     strlen(SECTION) - strlen("body\n"));
    assert_int_equal(h.n, 4);
    assert_string_equal(h.f[0].name, "Received");
    assert_string_equal(h.f[0].value, " from a\n\tby b");
    assert_string_equal(milter_head_value(&h.f[0], 0), "from a\n\tby b");
    assert_string_equal(milter_head_value(&h.f[0], 1), " from a\n\tby b");
    assert_false(h.changed);
    milter_head_free(&h);

    /* a line that is no field starts the body; so does the end of input */
    milter_head_init(&h);
    assert_int_equal(milter_head_parse(&h, "A: 1\nnot a field\n", 17), 5);
    assert_int_equal(h.n, 1);
    milter_head_free(&h);
    milter_head_init(&h);
    assert_int_equal(milter_head_parse(&h, "A: 1\nB: 2", 9), 9);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.f[1].value, " 2");
    milter_head_free(&h);
    milter_head_init(&h);
    assert_int_equal(milter_head_parse(&h, "\nbody\n", 6), 1);
    assert_int_equal(h.n, 0);
    milter_head_free(&h);
}

static void test_changes(void **state)
{
    struct milter_head h;
    char *s;

    (void)state;
    milter_head_init(&h);
    milter_head_parse(&h, SECTION, strlen(SECTION));
    assert_int_equal(milter_head_add(&h, "X-Spam", "no"), 0);
    assert_int_equal(milter_head_insert(&h, 0, "DKIM-Signature", "v=1;\r\n\tb=abc"), 0);
    assert_int_equal(milter_head_change(&h, "x-two", 2, "two"), 0);
    assert_int_equal(milter_head_change(&h, "Subject", 1, ""), 0);     /* deleted */
    assert_int_equal(milter_head_change(&h, "X-New", 1, "added"), 0);  /* not there: added */
    assert_int_equal(milter_head_change(&h, "X-None", 1, ""), 0);      /* nothing to delete */
    assert_true(h.changed);
    s = format(&h);
    assert_string_equal(s, "DKIM-Signature: v=1;\n\tb=abc\n"
                           "Received: from a\n\tby b\n"
                           "X-Two: 1\n"
                           "X-Two: two\n"
                           "X-Spam: no\n"
                           "X-New: added\n"
                           "\n");
    free(s);
    milter_head_free(&h);
}

static void test_hostile_values(void **state)
{
    struct milter_head h;
    char *s;

    (void)state;
    milter_head_init(&h);
    /* names that are no field names change nothing */
    assert_int_equal(milter_head_add(&h, "Bad Name", "x"), -1);
    assert_int_equal(milter_head_add(&h, "Bad:Name", "x"), -1);
    assert_int_equal(milter_head_add(&h, "", "x"), -1);
    assert_int_equal(milter_head_change(&h, "a\nb", 1, "x"), -1);
    /* a value cannot start a field of its own, end the section, or carry
     * control characters */
    assert_int_equal(milter_head_add(&h, "X-A", "one\r\nBcc: victim@example.com"), 0);
    assert_int_equal(milter_head_add(&h, "X-B", "two\n\nbody"), 0);
    assert_int_equal(milter_head_add(&h, "X-C", "th\x01ree\n"), 0);
    s = format(&h);
    assert_string_equal(s, "X-A: one\n\tBcc: victim@example.com\n"
                           "X-B: two\n\tbody\n"
                           "X-C: three\n"
                           "\n");
    free(s);
    milter_head_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packet_roundtrip),
        cmocka_unit_test(test_impossible_lengths),
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_optneg_offer),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_hostile_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
