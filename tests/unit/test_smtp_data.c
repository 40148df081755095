/*
 * test_smtp_data.c - the DATA stream (src/smtp/smtp_data.c): only CR LF . CR LF
 * ends a message, dot-unstuffing, LF output, limits, and nothing consumed
 * after the end of data.
 *
 * Every input is fed whole, byte by byte, split in two at every offset and
 * split in three at pseudo-random offsets; all of them must give the same
 * output, flags and consumed count.  Each chunk is an exact-size heap copy,
 * so AddressSanitizer catches a read past the chunk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp_data.h"

#define BIG ((size_t)1 << 24)
#define IN(s) s, sizeof(s) - 1  /* a literal with its length (NULs allowed) */
#define ALL ((size_t)-1)         /* every byte of the input is consumed */

/* Limits used by run(); reset before each test. */
static size_t max_size = BIG, max_header = BIG;

static int reset_limits(void **state)
{
    (void)state;
    max_size = BIG;
    max_header = BIG;
    return 0;
}

struct result {
    char *out;        /* copy of the output (heap) */
    size_t outlen, consumed, size, wire;
    int done;
    unsigned flags;
};

static void result_free(struct result *r)
{
    free(r->out);
    r->out = NULL;
}

/*
 * Feeds in[0..n) in chunks ending at cuts[0..ncuts) (increasing offsets)
 * and then at n.  Feeding stops at the end of data, as a server would.
 */
static struct result run(const char *in, size_t n, const size_t *cuts,
                         size_t ncuts)
{
    struct smtp_data d;
    struct buf out = BUF_INIT(0);
    struct result r = {0};
    size_t start = 0;

    smtp_data_init(&d, max_size, max_header);
    for (size_t c = 0; c <= ncuts && !r.done; c++) {
        size_t stop = c < ncuts ? cuts[c] : n, len = stop - start, used;
        char *chunk = malloc(len ? len : 1);
        int done = -1;

        assert_non_null(chunk);
        memcpy(chunk, in + start, len);
        used = smtp_data_feed(&d, chunk, len, &out, &done);
        free(chunk);
        assert_true(done == 0 || done == 1);
        assert_true(used <= len);
        if (!done)
            assert_int_equal(used, len);  /* all taken until the end */
        r.done = done;
        start += used;
    }
    r.consumed = start;
    r.flags = d.flags;
    r.size = d.size;
    r.wire = d.wire;
    r.outlen = out.len;
    r.out = malloc(out.len + 1);
    assert_non_null(r.out);
    if (out.len)
        memcpy(r.out, out.data, out.len);
    buf_free(&out);
    return r;
}

/* A printable form of bytes, for failure messages. */
static const char *show(const char *s, size_t n)
{
    static char buf[4][400];
    static int slot;
    char *o = buf[slot = (slot + 1) % 4];
    size_t k = 0;

    for (size_t i = 0; i < n && k + 8 < sizeof(buf[0]); i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r') k += (size_t)sprintf(o + k, "\\r");
        else if (c == '\n') k += (size_t)sprintf(o + k, "\\n");
        else if (c < 0x20 || c >= 0x7f) k += (size_t)sprintf(o + k, "\\x%02x", c);
        else o[k++] = (char)c;
    }
    if (k + 8 >= sizeof(buf[0]))
        k += (size_t)sprintf(o + k, "...");
    o[k] = '\0';
    return o;
}

/* What one run must give. */
struct expect {
    const char *out;   /* NULL: do not compare the output (a limit tripped) */
    size_t outlen;
    size_t consumed;   /* ALL for every byte */
    int done;
    unsigned flags;
};

static void compare(const char *in, size_t n, const char *how,
                    struct result *r, const struct expect *e)
{
    size_t consumed = e->consumed == ALL ? n : e->consumed;
    char why[600] = "";

    if (r->done != e->done)
        snprintf(why, sizeof(why), "done %d, expected %d", r->done, e->done);
    else if (r->consumed != consumed)
        snprintf(why, sizeof(why), "consumed %zu, expected %zu", r->consumed,
                 consumed);
    else if (r->flags != e->flags)
        snprintf(why, sizeof(why), "flags 0x%x, expected 0x%x", r->flags,
                 e->flags);
    else if (e->out && (r->outlen != e->outlen ||
                        memcmp(r->out, e->out, e->outlen) != 0))
        snprintf(why, sizeof(why), "output \"%s\", expected \"%s\"",
                 show(r->out, r->outlen), show(e->out, e->outlen));
    else if (r->wire != r->consumed)
        snprintf(why, sizeof(why), "wire %zu, consumed %zu", r->wire,
                 r->consumed);
    else if (r->size != r->outlen)
        snprintf(why, sizeof(why), "size %zu, output %zu", r->size, r->outlen);
    else if (r->outlen > max_size)
        snprintf(why, sizeof(why), "output %zu above the limit %zu", r->outlen,
                 max_size);
    result_free(r);
    if (why[0])
        fail_msg("input \"%s\" fed %s: %s", show(in, n), how, why);
}

/* Every way of cutting the input must give the expected result. */
static void check(const char *in, size_t n, const struct expect *e)
{
    static size_t cuts[1 << 16];
    struct result r;
    char how[64];
    unsigned seed = 12345;

    assert_true(n < sizeof(cuts) / sizeof(cuts[0]));
    r = run(in, n, NULL, 0);
    compare(in, n, "whole", &r, e);

    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    r = run(in, n, cuts, n ? n - 1 : 0);
    compare(in, n, "byte by byte", &r, e);

    for (size_t k = 0; k <= n; k++) {
        cuts[0] = k;
        r = run(in, n, cuts, 1);
        snprintf(how, sizeof(how), "split at %zu", k);
        compare(in, n, how, &r, e);
    }

    for (int t = 0; t < 20 && n > 1; t++) {
        seed = seed * 1103515245u + 12345u;
        cuts[0] = (seed >> 8) % n;
        seed = seed * 1103515245u + 12345u;
        cuts[1] = cuts[0] + (seed >> 8) % (n - cuts[0]);
        r = run(in, n, cuts, 2);
        snprintf(how, sizeof(how), "split at %zu and %zu", cuts[0], cuts[1]);
        compare(in, n, how, &r, e);
    }
}

/* A complete message (ends in CR LF . CR LF, nothing after it). */
static void check_msg(const char *in, size_t n, const char *out, size_t outlen,
                      unsigned flags)
{
    struct expect e = {out, outlen, ALL, 1, flags};

    check(in, n, &e);
}

/* Input without an end of data: all consumed, not done. */
static void check_open(const char *in, size_t n, const char *out,
                       size_t outlen, unsigned flags)
{
    struct expect e = {out, outlen, ALL, 0, flags};

    check(in, n, &e);
}

/* A message followed by more bytes that must stay with the caller. */
static void check_msg_then(const char *in, size_t n, size_t msglen,
                           const char *out, size_t outlen, unsigned flags)
{
    struct expect e = {out, outlen, msglen, 1, flags};

    check(in, n, &e);
}

/* Only flags and consumption matter (the output is refused anyway). */
static void check_flags(const char *in, size_t n, unsigned flags)
{
    struct expect e = {NULL, 0, ALL, 1, flags};

    check(in, n, &e);
}

/* ---- end of data ---- */

static void test_simple_message(void **state)
{
    (void)state;
    check_msg(IN("Subject: hi\r\n\r\nbody line\r\n.\r\n"),
              IN("Subject: hi\n\nbody line\n"), 0);
    check_msg(IN("a\r\nb\r\nc\r\n.\r\n"), IN("a\nb\nc\n"), 0);
}

static void test_empty_message(void **state)
{
    (void)state;
    check_msg(IN(".\r\n"), IN(""), 0);        /* the CR LF was DATA's */
    check_msg(IN("\r\n.\r\n"), IN("\n"), 0);  /* one empty line */
    check_msg(IN("\r\n\r\n.\r\n"), IN("\n\n"), 0);
}

static void test_dot_unstuffing(void **state)
{
    (void)state;
    check_msg(IN("..\r\n.\r\n"), IN(".\n"), 0);
    check_msg(IN("...\r\n.\r\n"), IN("..\n"), 0);
    check_msg(IN("..x\r\n.\r\n"), IN(".x\n"), 0);
    check_msg(IN("a\r\n..\r\n.\r\n"), IN("a\n.\n"), 0);
    check_msg(IN("a\r\n..\r\n..\r\n.\r\n"), IN("a\n.\n.\n"), 0);
    check_msg(IN(".x\r\n.\r\n"), IN("x\n"), 0);  /* a single leading dot goes */
    check_msg(IN(". \r\n.\r\n"), IN(" \n"), 0);
    check_msg(IN("a.\r\n.\r\n"), IN("a.\n"), 0);  /* not at a line start */
    check_msg(IN("a\r\n x.\r\n.\r\n"), IN("a\n x.\n"), 0);
    check_msg(IN("a\r\n.. \r\n.\r\n"), IN("a\n. \n"), 0);
}

/* "\r\n." followed by anything but "\r\n" is not the end. */
static void test_dot_then_other(void **state)
{
    (void)state;
    check_msg(IN("a\r\n.x\r\n.\r\n"), IN("a\nx\n"), 0);
    check_msg(IN("a\r\n.\r.\r\n.\r\n"), IN("a\n\r.\n"), SMTP_DATA_BARE_CR);
    check_msg(IN("a\r\n.\rb\r\n.\r\n"), IN("a\n\rb\n"), SMTP_DATA_BARE_CR);
    check_msg(IN("a\r\n.\r\r\n.\r\n"), IN("a\n\r\n"), SMTP_DATA_BARE_CR);
    check_open(IN("a\r\n.\r.\r\n"), IN("a\n\r.\n"), SMTP_DATA_BARE_CR);
}

/* SMTP smuggling: bare LF never ends or splits a message. */
static void test_bare_lf_never_ends(void **state)
{
    (void)state;
    /* "\r\n.\n" */
    check_msg(IN("a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n"),
              IN("a\n\nMAIL FROM:<x@y>\n"), SMTP_DATA_BARE_LF);
    /* "\n.\r\n" */
    check_msg(IN("a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"),
              IN("a\n.\nMAIL FROM:<x@y>\n"), SMTP_DATA_BARE_LF);
    /* "\n.\n" */
    check_msg(IN("a\n.\nb\r\n.\r\n"), IN("a\n.\nb\n"), SMTP_DATA_BARE_LF);
    /* at the very start */
    check_msg(IN("\n.\r\nb\r\n.\r\n"), IN("\n.\nb\n"), SMTP_DATA_BARE_LF);
    check_msg(IN(".\nb\r\n.\r\n"), IN("\nb\n"), SMTP_DATA_BARE_LF);
    check_open(IN("a\n.\n"), IN("a\n.\n"), SMTP_DATA_BARE_LF);
    check_open(IN("a\n.\r\n"), IN("a\n.\n"), SMTP_DATA_BARE_LF);
    check_open(IN("a\r\n.\n"), IN("a\n\n"), SMTP_DATA_BARE_LF);
}

/* ... nor does a bare CR. */
static void test_bare_cr_never_ends(void **state)
{
    (void)state;
    /* "\r.\r\n" */
    check_msg(IN("a\r.\r\nRCPT TO:<x@y>\r\n.\r\n"),
              IN("a\r.\nRCPT TO:<x@y>\n"), SMTP_DATA_BARE_CR);
    /* "\r\n.\r" + not LF */
    check_msg(IN("a\r\n.\rRCPT TO:<x@y>\r\n.\r\n"),
              IN("a\n\rRCPT TO:<x@y>\n"), SMTP_DATA_BARE_CR);
    /* "\r.\r" */
    check_msg(IN("\r.\r\r\n.\r\n"), IN("\r.\r\n"), SMTP_DATA_BARE_CR);
    check_msg(IN("\r\r\n.\r\n"), IN("\r\n"), SMTP_DATA_BARE_CR);
    check_open(IN("a\r.\r\n"), IN("a\r.\n"), SMTP_DATA_BARE_CR);
    check_open(IN("a\r\r.\r\r"), IN("a\r\r.\r"), SMTP_DATA_BARE_CR);
}

/* A real CR LF . CR LF right after odd line ends still ends the message. */
static void test_real_end_after_oddities(void **state)
{
    (void)state;
    check_msg(IN("a\n\r\n.\r\n"), IN("a\n\n"), SMTP_DATA_BARE_LF);
    check_msg(IN("a\r\r\n.\r\n"), IN("a\r\n"), SMTP_DATA_BARE_CR);
    check_msg(IN("a\r\n\n\r\n.\r\n"), IN("a\n\n\n"), SMTP_DATA_BARE_LF);
}

/* Nothing after CR LF . CR LF is consumed: it is the next command. */
static void test_stops_after_end(void **state)
{
    (void)state;
    check_msg_then(IN("a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n"), 6,
                   IN("a\n"), 0);
    check_msg_then(IN(".\r\nQUIT\r\n"), 3, IN(""), 0);
    check_msg_then(IN("a\r\n.\r\n.\r\n"), 6, IN("a\n"), 0);
    check_msg_then(IN("a\r\n.\r\n\r\n"), 6, IN("a\n"), 0);
    check_msg_then(IN("a\r\n.\r\nx"), 6, IN("a\n"), 0);
    check_msg_then(IN("..\r\n.\r\n..\r\n"), 7, IN(".\n"), 0);
    check_msg_then(IN("a\n.\r\nb\r\n.\r\nNOOP\r\n"), 11, IN("a\n.\nb\n"),
                   SMTP_DATA_BARE_LF);
}

/* Without an end of data everything is consumed and kept for later. */
static void test_incomplete(void **state)
{
    (void)state;
    check_open(IN(""), IN(""), 0);
    check_open(IN("a"), IN("a"), 0);
    check_open(IN("a\r"), IN("a"), 0);          /* the CR waits for its LF */
    check_open(IN("a\r\n"), IN("a\n"), 0);
    check_open(IN("a\r\n."), IN("a\n"), 0);     /* the dot waits too */
    check_open(IN("a\r\n.\r"), IN("a\n"), 0);
    check_open(IN("."), IN(""), 0);
    check_open(IN(".\r"), IN(""), 0);
    check_open(IN("\r\n.\r"), IN("\n"), 0);
}

/* The end of data may arrive in a later feed, whatever the cut. */
static void test_end_split_across_feeds(void **state)
{
    static const char *parts[] = {"Subject: x\r\n\r\nbody\r", "\n", ".", "\r",
                                  "\n", "LEFT"};
    struct smtp_data d;
    struct buf out = BUF_INIT(0);
    size_t used = 0;
    int done = 0;

    (void)state;
    smtp_data_init(&d, BIG, BIG);
    for (size_t i = 0; i < 5; i++) {
        used = smtp_data_feed(&d, parts[i], strlen(parts[i]), &out, &done);
        assert_int_equal(used, strlen(parts[i]));
        assert_int_equal(done, i == 4);
    }
    assert_string_equal(buf_cstr(&out), "Subject: x\n\nbody\n");
    assert_int_equal(d.wire, 23);
    assert_int_equal(d.size, 17);
    buf_free(&out);
}

static void test_feed_nothing(void **state)
{
    struct smtp_data d;
    struct buf out = BUF_INIT(0);
    int done = 7;

    (void)state;
    smtp_data_init(&d, BIG, BIG);
    assert_int_equal(smtp_data_feed(&d, "", 0, &out, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(d.wire, 0);
    buf_free(&out);
}

static void test_binary_content(void **state)
{
    (void)state;
    check_msg(IN("a\0b\r\n\0\r\n.\r\n"), IN("a\0b\n\0\n"), 0);
    check_msg(IN("\xc3\xa9t\xc3\xa9\r\n\xff\x80\r\n.\r\n"),
              IN("\xc3\xa9t\xc3\xa9\n\xff\x80\n"), 0);
    check_msg(IN("tab\there\r\n.\r\n"), IN("tab\there\n"), 0);
}

static void test_mixed_flags(void **state)
{
    (void)state;
    check_msg(IN("a\rb\nc\r\n.\r\n"), IN("a\rb\nc\n"),
              SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF);
}

/* ---- text line length: 1000 bytes with CR LF, the stuffing dot not counted ---- */

/* A message of one line: prefix, then n copies of c, then the line end. */
static char *line_of(const char *prefix, size_t n, const char *eol, size_t *len)
{
    size_t p = strlen(prefix), e = strlen(eol);
    char *s = malloc(p + n + e + 4);

    assert_non_null(s);
    memcpy(s, prefix, p);
    memset(s + p, 'x', n);
    memcpy(s + p + n, eol, e);
    memcpy(s + p + n + e, ".\r\n", 4);
    *len = p + n + e + 3;
    return s;
}

static void check_line(const char *prefix, size_t n, const char *eol,
                       unsigned flags)
{
    size_t len;
    char *s = line_of(prefix, n, eol, &len);
    struct result r = run(s, len, NULL, 0);
    unsigned f = r.flags;

    result_free(&r);
    check_flags(s, len, f);  /* every cut agrees with the whole run */
    free(s);
    if (f != flags)
        fail_msg("line \"%s\" + %zu x + \"%s\": flags 0x%x, expected 0x%x",
                 show(prefix, strlen(prefix)), n, show(eol, strlen(eol)), f, flags);
}

static void test_line_length(void **state)
{
    (void)state;
    check_line("", 998, "\r\n", 0);                       /* 1000 */
    check_line("", 999, "\r\n", SMTP_DATA_LINE_TOOLONG);  /* 1001 */
    /* bare LF lines: the CR LF after them is an empty line of its own */
    check_line("", 999, "\n\r\n", SMTP_DATA_BARE_LF);     /* 1000 */
    check_line("", 1000, "\n\r\n", SMTP_DATA_BARE_LF | SMTP_DATA_LINE_TOOLONG);
    check_line("\r", 997, "\r\n", SMTP_DATA_BARE_CR);     /* 1000 */
    check_line("\r", 998, "\r\n", SMTP_DATA_BARE_CR | SMTP_DATA_LINE_TOOLONG);
    check_line("h\r\n", 998, "\r\n", 0);  /* a second line, counted alone */
    check_line("h\r\n", 999, "\r\n", SMTP_DATA_LINE_TOOLONG);
}

/* RFC 5321 4.5.3.1.6: the dot added for transparency is not counted. */
static void test_line_length_stuffed(void **state)
{
    (void)state;
    check_line(".", 998, "\r\n", 0);
    check_line(".", 999, "\r\n", SMTP_DATA_LINE_TOOLONG);
    check_line("h\r\n.", 998, "\r\n", 0);
    check_line(".\r", 997, "\r\n", SMTP_DATA_BARE_CR);
}

/* A long line is flagged but still delivered to the output whole. */
static void test_long_line_output(void **state)
{
    size_t len;
    char *s = line_of("", 5000, "\r\n", &len);
    struct result r = run(s, len, NULL, 0);

    (void)state;
    assert_int_equal(r.flags, SMTP_DATA_LINE_TOOLONG);
    assert_int_equal(r.outlen, 5001);
    assert_int_equal(r.out[5000], '\n');
    result_free(&r);
    free(s);
}

/* ---- header size ---- */

/*
 * A message: header lines of the given raw sizes (each "X: xxx...\r\n"),
 * then an empty line, then a body line.
 */
static char *header_msg(const size_t *sizes, size_t n, const char *sep,
                        size_t *len)
{
    struct buf b = BUF_INIT(0);
    char *s;

    for (size_t i = 0; i < n; i++) {
        assert_true(sizes[i] >= 5);
        buf_puts(&b, "X: ");
        for (size_t k = 0; k < sizes[i] - 5; k++)
            buf_putc(&b, 'h');
        buf_puts(&b, "\r\n");
    }
    buf_puts(&b, sep);
    buf_puts(&b, "the body is not part of the header, however long it is\r\n.\r\n");
    s = buf_steal(&b, len);
    return s;
}

static void check_header(const size_t *sizes, size_t n, const char *sep,
                         unsigned flags)
{
    size_t len;
    char *s = header_msg(sizes, n, sep, &len);
    struct result r = run(s, len, NULL, 0);
    unsigned f = r.flags;

    result_free(&r);
    check_flags(s, len, f);
    free(s);
    if (f != flags)
        fail_msg("header of %zu lines: flags 0x%x, expected 0x%x", n, f, flags);
}

static void test_header_size(void **state)
{
    const size_t at_limit[] = {100, 154};  /* + the empty line = 256 */
    const size_t over[] = {100, 155};

    (void)state;
    max_header = 256;
    check_header(at_limit, 2, "\r\n", 0);
    check_header(over, 2, "\r\n", SMTP_DATA_HEADER_TOOBIG);
    /* A header that is never ended by an empty line counts whole. */
    const size_t big[] = {200, 200};
    check_header(big, 2, "", SMTP_DATA_HEADER_TOOBIG);
}

static void test_header_ends_at_empty_line(void **state)
{
    (void)state;
    max_header = 256;
    /* Body lines after the empty line do not count. */
    check_msg(IN("A: b\r\n\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 ".\r\n"),
              NULL, 0, 0);
    /* A bare LF empty line ends the header too. */
    check_msg(IN("A: b\r\n\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                 ".\r\n"),
              NULL, 0, SMTP_DATA_BARE_LF);
}

/* A one-byte line with a bare LF ("a\n", 2 raw bytes) is not empty. */
static void test_header_short_bare_lf_line(void **state)
{
    (void)state;
    max_header = 256;
    check_flags(IN("A: b\r\n"
                   "a\n"
                   "B: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "C: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "D: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "E: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "\r\n"
                   "body\r\n.\r\n"),
                SMTP_DATA_BARE_LF | SMTP_DATA_HEADER_TOOBIG);
    check_flags(IN("A: b\r\n"
                   "\r\r\n"
                   "B: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "C: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "D: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "E: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                   "\r\n"
                   "body\r\n.\r\n"),
                SMTP_DATA_BARE_CR | SMTP_DATA_HEADER_TOOBIG);
}

/* ---- message size ---- */

/* A message of exactly n content bytes on the wire: lines of CRLF. */
static char *sized_msg(size_t n, const char *after, size_t *len)
{
    struct buf b = BUF_INIT(0);

    assert_true(n >= 2);
    while (n > 0) {
        size_t line = n > 50 ? 50 : n;
        if (n - line == 1)  /* never leave a lone byte */
            line--;
        for (size_t i = 0; i + 2 < line; i++)
            buf_putc(&b, (char)('a' + i % 26));
        buf_puts(&b, "\r\n");
        n -= line;
    }
    buf_puts(&b, ".\r\n");
    buf_puts(&b, after);
    return buf_steal(&b, len);
}

/*
 * max_size counts the message as SIZE (RFC 1870) does: its bytes with
 * CR LF, without the end of data.
 */
static void test_message_size_limit(void **state)
{
    size_t len;
    char *s;

    (void)state;
    max_size = 1000;
    s = sized_msg(1000, "", &len);
    check_flags(s, len, 0);
    free(s);
    s = sized_msg(1001, "", &len);
    check_flags(s, len, SMTP_DATA_TOOBIG);
    free(s);
    s = sized_msg(999, "", &len);
    check_flags(s, len, 0);
    free(s);
    /* Bytes after the end are not the message's. */
    s = sized_msg(1000, "MAIL FROM:<a@b>\r\n", &len);
    struct expect e = {NULL, 0, len - 17, 1, 0};
    check(s, len, &e);
    free(s);
}

/* Once too big, nothing more is appended, but the stream is still read
 * to its end so that the next command is found. */
static void test_too_big_keeps_reading(void **state)
{
    size_t len;
    char *s;
    struct result r;

    (void)state;
    max_size = 1024;
    s = sized_msg(5000, "QUIT\r\n", &len);
    r = run(s, len, NULL, 0);
    assert_true(r.done);
    assert_int_equal(r.consumed, len - 6);
    assert_true(r.flags & SMTP_DATA_TOOBIG);
    assert_true(r.outlen <= 1024);
    result_free(&r);
    {
        struct expect e = {NULL, 0, len - 6, 1, SMTP_DATA_TOOBIG};
        check(s, len, &e);
    }
    free(s);
}

/* Bare LF lines: the output is as big as the message. */
static void test_output_size_limit(void **state)
{
    char s[300];

    (void)state;
    max_size = 100;
    memset(s, 'x', sizeof(s));
    for (int i = 9; i < 100; i += 10)
        s[i] = '\n';
    memcpy(s + 100, "\r\n.\r\n", 5);  /* 102 bytes of message */
    check_flags(s, 105, SMTP_DATA_TOOBIG | SMTP_DATA_BARE_LF);
    memcpy(s + 98, "\r\n.\r\n", 5);   /* 100 bytes of message */
    check_flags(s, 103, SMTP_DATA_BARE_LF);
}

/* The output buffer's own limit also stops the message. */
static void test_output_buffer_full(void **state)
{
    struct smtp_data d;
    struct buf out = BUF_INIT(8);
    int done;
    size_t used;

    (void)state;
    smtp_data_init(&d, BIG, BIG);
    used = smtp_data_feed(&d, IN("0123456789\r\nabc\r\n.\r\nQUIT\r\n"), &out, &done);
    assert_true(done);
    assert_int_equal(used, 20);
    assert_true(d.flags & SMTP_DATA_TOOBIG);
    assert_true(out.len <= 8);
    buf_free(&out);
}

/* ---- a realistic message, with every cut ---- */

static void test_realistic(void **state)
{
    static const char msg[] =
        "Received: from client.example (client.example [192.0.2.1])\r\n"
        "\tby mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        "From: <alice@example.com>\r\n"
        "To: <bob@example.org>\r\n"
        "Subject: dots\r\n"
        "\r\n"
        "Hello Bob,\r\n"
        "..\r\n"
        "...leading dots\r\n"
        "a line.\r\n"
        ".\r\n";
    static const char next[] = "MAIL FROM:<alice@example.com>\r\nRCPT TO:<x@y>\r\n";
    char in[sizeof(msg) + sizeof(next)];

    (void)state;
    memcpy(in, msg, sizeof(msg) - 1);
    memcpy(in + sizeof(msg) - 1, next, sizeof(next));
    check_msg_then(in, strlen(in), sizeof(msg) - 1,
        IN("Received: from client.example (client.example [192.0.2.1])\n"
           "\tby mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\n"
           "From: <alice@example.com>\n"
           "To: <bob@example.org>\n"
           "Subject: dots\n"
           "\n"
           "Hello Bob,\n"
           ".\n"
           "..leading dots\n"
           "a line.\n"),
        0);
}

#define T(f) cmocka_unit_test_setup(f, reset_limits)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_simple_message),
        T(test_empty_message),
        T(test_dot_unstuffing),
        T(test_dot_then_other),
        T(test_bare_lf_never_ends),
        T(test_bare_cr_never_ends),
        T(test_real_end_after_oddities),
        T(test_stops_after_end),
        T(test_incomplete),
        T(test_end_split_across_feeds),
        T(test_feed_nothing),
        T(test_binary_content),
        T(test_mixed_flags),
        T(test_line_length),
        T(test_line_length_stuffed),
        T(test_long_line_output),
        T(test_header_size),
        T(test_header_ends_at_empty_line),
        T(test_header_short_bare_lf_line),
        T(test_message_size_limit),
        T(test_too_big_keeps_reading),
        T(test_output_size_limit),
        T(test_output_buffer_full),
        T(test_realistic),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
