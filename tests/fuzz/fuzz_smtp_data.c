/*
 * fuzz_smtp_data.c - the DATA stream (src/smtp/smtp_data.h).
 *
 * Input: five control bytes, then the bytes a client sends after DATA.
 *   [0] Max_mail_size: n*16 bytes, or no limit when n >= 0x80
 *   [1] Max_header_size: n*8 bytes, or no limit when n >= 0x80
 *   [2] k: the low 4 bits say how many chunk-length bytes follow
 *   [3] the output buffer's limit: (n>>1)*32 bytes when n is odd, else none
 *   [4] unused (room for later)
 *   k bytes of chunk lengths (n%64, 0 = an empty feed), used in turn
 *
 * The stream is fed whole, and again cut into those chunks (each feed
 * starting where the last one stopped, as smtp_server.c does).
 * Invariants:
 *  - chunked and whole give the same end position, the same flags, the
 *    same parser state and, unless TOOBIG, the same output (past a limit
 *    each keeps what fit: a prefix of the content);
 *  - a feed consumes at most what it was given, and all of it unless it
 *    found the end;
 *  - done exactly at the first "." CR LF that starts a line after CR LF
 *    (or the stream), consumed right after it;
 *  - against a reference model written from the header comment: the
 *    content (dot-unstuffed, CR LF -> LF, bare LF -> LF, bare CR kept), the
 *    BARE_LF, BARE_CR, LINE_TOOLONG and HEADER_TOOBIG flags; TOOBIG exactly
 *    when the size (without the end of data) passes the limit or the output
 *    buffer is full; with TOOBIG the output is a prefix of the content,
 *    within both limits, otherwise it is the content; size == output length.
 */
#include "fuzz_util.h"
#include "buf.h"
#include "smtp_cmd.h"
#include "smtp_data.h"

struct model {
    struct buf out;
    size_t consumed, pend, max_header;
    int done;
    unsigned flags;
    size_t line_len, header_bytes;
    int in_header;
};

static void model_line_end(struct model *m, size_t term)
{
    if (m->line_len > SMTP_TEXT_LINE_MAX)
        m->flags |= SMTP_DATA_LINE_TOOLONG;
    if (m->in_header) {
        m->header_bytes += m->line_len;
        if (m->header_bytes > m->max_header)
            m->flags |= SMTP_DATA_HEADER_TOOBIG;
        if (m->line_len == term)
            m->in_header = 0;
    }
    m->line_len = 0;
}

/* The meaning of the stream, computed the slow and obvious way. */
static void model_run(struct model *m, const char *in, size_t n)
{
    size_t end = n, i = 0;
    int bol = 1;

    for (size_t p = 0; p + 3 <= n; p++)
        if (memcmp(in + p, ".\r\n", 3) == 0 &&
            (p == 0 || (p >= 2 && in[p - 2] == '\r' && in[p - 1] == '\n'))) {
            end = p;
            m->done = 1;
            break;
        }
    m->consumed = m->done ? end + 3 : n;
    m->pend = m->done ? 3 : 0;
    m->in_header = 1;
    while (i < end) {
        char c = in[i];
        if (bol && c == '.') {  /* a stuffing dot (or a pending end) */
            bol = 0;
            i++;
            if (i == end)
                m->pend = m->done ? 3 : 1;
            else if (i + 1 == end && in[i] == '\r' && !m->done)
                m->pend = 2;
            continue;
        }
        bol = 0;
        if (c == '\r' && i + 1 < end && in[i + 1] == '\n') {
            buf_putc(&m->out, '\n');
            m->line_len += 2;
            model_line_end(m, 2);
            bol = 1;
            i += 2;
        } else if (c == '\r' && i + 1 == end) {
            break;  /* not known yet whether an LF follows */
        } else if (c == '\n') {
            buf_putc(&m->out, '\n');
            m->flags |= SMTP_DATA_BARE_LF;
            m->line_len++;
            model_line_end(m, 1);
            i++;
        } else {
            buf_putc(&m->out, c);
            if (c == '\r')
                m->flags |= SMTP_DATA_BARE_CR;
            m->line_len++;
            i++;
        }
    }
}

static void check_same_state(const struct smtp_data *a, const struct smtp_data *b)
{
    CHECK(a->state == b->state);
    CHECK(a->in_header == b->in_header);
    CHECK(a->line_len == b->line_len);
    CHECK(a->header_bytes == b->header_bytes);
    CHECK(a->wire == b->wire);
    CHECK(a->flags == b->flags);
    /* Once TOOBIG, how much of the content got out before the limit
     * depends on how it was cut (a run that does not fit is dropped
     * whole); the message is refused either way. */
    CHECK(a->size == b->size || (a->flags & SMTP_DATA_TOOBIG));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max_size, max_header, limit, nchunks, n, used, pos = 0, ci = 0;
    const uint8_t *chunks;
    char *in;
    struct smtp_data whole, cut;
    struct buf out1, out2;
    struct model m;
    int done1 = 0, done2 = 0, d;
    unsigned expect;

    if (size < 5)
        return 0;
    max_size = data[0] >= 0x80 ? (size_t)1 << 40 : (size_t)data[0] * 16;
    max_header = data[1] >= 0x80 ? (size_t)1 << 40 : (size_t)data[1] * 8;
    limit = data[3] & 1 ? (size_t)(data[3] >> 1) * 32 : 0;
    nchunks = data[2] & 15;
    if (size < 5 + nchunks)
        return 0;
    chunks = data + 5;
    n = size - 5 - nchunks;
    in = malloc(n ? n : 1);  /* exactly n bytes, for ASan */
    if (in == NULL)
        abort();
    memcpy(in, data + 5 + nchunks, n);

    /* Whole. */
    buf_init(&out1, limit);
    smtp_data_init(&whole, max_size, max_header);
    used = smtp_data_feed(&whole, in, n, &out1, &done1);
    CHECK(used <= n);
    CHECK(done1 || used == n);

    /* Chunked. */
    buf_init(&out2, limit);
    smtp_data_init(&cut, max_size, max_header);
    while (pos < n && !done2) {
        size_t len = nchunks ? chunks[ci++ % nchunks] % 64 : n - pos, u;
        if (len > n - pos)
            len = n - pos;
        u = smtp_data_feed(&cut, in + pos, len, &out2, &done2);
        CHECK(u <= len);
        CHECK(done2 || u == len);
        if (len == 0) {
            CHECK(u == 0 && !done2);
            len = 1;  /* an empty feed changes nothing; go on */
            u = smtp_data_feed(&cut, in + pos, len, &out2, &done2);
            CHECK(u == 1);
        }
        pos += u;
    }
    CHECK(pos == used);
    CHECK(done1 == done2);
    check_same_state(&whole, &cut);
    if (!(whole.flags & SMTP_DATA_TOOBIG))
        CHECK(out1.len == out2.len &&
              (out1.len == 0 || memcmp(out1.data, out2.data, out1.len) == 0));

    /* Against the model. */
    memset(&m, 0, sizeof(m));
    buf_init(&m.out, 0);
    m.max_header = max_header;
    model_run(&m, in, n);
    CHECK(done1 == m.done);
    CHECK(used == m.consumed);
    CHECK(whole.wire == used);
    CHECK(whole.size == out1.len && cut.size == out2.len);
    d = (whole.flags & ~SMTP_DATA_TOOBIG) == m.flags;
    if (!d) {
        fprintf(stderr, "flags %#x, model %#x\n", whole.flags, m.flags);
        CHECK(!"flags differ from the model");
    }
    expect = used - m.pend > max_size || (limit && m.out.len > limit);
    CHECK(!!(whole.flags & SMTP_DATA_TOOBIG) == expect);
    if (whole.flags & SMTP_DATA_TOOBIG) {
        CHECK(out1.len <= max_size && (limit == 0 || out1.len <= limit));
        CHECK(out1.len <= m.out.len && out2.len <= m.out.len);
        CHECK(out2.len <= max_size && (limit == 0 || out2.len <= limit));
        CHECK(out2.len == 0 || memcmp(out2.data, m.out.data, out2.len) == 0);
    } else {
        CHECK(out1.len == m.out.len);
    }
    if (out1.len && memcmp(out1.data, m.out.data, out1.len) != 0) {
        fuzz_dump("output", out1.data, out1.len);
        fuzz_dump("model", m.out.data, m.out.len);
        CHECK(!"the content differs from the model");
    }
    /* Output line ends are LF: a CR in it is a kept bare CR, never one
     * made up for a bare LF. */
    for (size_t i = 0; i + 1 < out1.len; i++)
        if (out1.data[i] == '\r' && out1.data[i + 1] == '\n')
            CHECK(whole.flags & SMTP_DATA_BARE_CR);

    buf_free(&out1);
    buf_free(&out2);
    buf_free(&m.out);
    free(in);
    return 0;
}
