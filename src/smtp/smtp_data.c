/*
 * smtp_data.c - DATA stream parser (see smtp_data.h).
 */
#include <string.h>

#include "smtp_cmd.h"
#include "smtp_data.h"

enum {
    D_BOL,        /* start of a line that followed CR LF (or DATA) */
    D_BOL_DOT,    /* D_BOL, then "." */
    D_BOL_DOT_CR, /* D_BOL, then ".\r" */
    D_LINE,       /* inside a line */
    D_CR,         /* inside a line, a CR not yet known to end it */
};

void smtp_data_init(struct smtp_data *d, size_t max_size, size_t max_header)
{
    memset(d, 0, sizeof(*d));
    d->state = D_BOL;
    d->in_header = 1;
    d->max_size = max_size;
    d->max_header = max_header;
}

static void data_emit(struct smtp_data *d, struct buf *out, const char *p,
                      size_t n)
{
    if (d->flags & SMTP_DATA_TOOBIG)
        return;
    if (d->size + n > d->max_size || buf_append(out, p, n) < 0) {
        d->flags |= SMTP_DATA_TOOBIG;
        return;
    }
    d->size += n;
}

/*
 * A line ended; line_len is its raw length with the terminator, which is
 * term bytes long (2 for CR LF, 1 for a bare LF), and without a stuffing dot.
 */
static void data_line_end(struct smtp_data *d, size_t term)
{
    if (d->line_len > SMTP_TEXT_LINE_MAX)
        d->flags |= SMTP_DATA_LINE_TOOLONG;
    if (d->in_header) {
        d->header_bytes += d->line_len;
        if (d->header_bytes > d->max_header)
            d->flags |= SMTP_DATA_HEADER_TOOBIG;
        if (d->line_len == term)  /* an empty line ends the header */
            d->in_header = 0;
    }
    d->line_len = 0;
}

/* Emits the run of ordinary bytes at in; returns its length. */
static size_t data_run(struct smtp_data *d, const char *in, size_t n,
                       struct buf *out)
{
    size_t i = 0;

    while (i < n && in[i] != '\r' && in[i] != '\n')
        i++;
    data_emit(d, out, in, i);
    d->line_len += i;
    return i;
}

/* One step of the automaton at a CR, LF or line start; returns bytes used. */
static size_t data_step(struct smtp_data *d, const char *in, size_t n,
                        struct buf *out, int *done)
{
    char c = in[0];

    switch (d->state) {
    case D_BOL:
        if (c == '.') {  /* stuffing or the end: not counted (RFC 5321 4.5.3.1.6) */
            d->state = D_BOL_DOT;
            return 1;
        }
        d->state = D_LINE;
        return 0;
    case D_BOL_DOT:
        if (c == '\r') {
            d->state = D_BOL_DOT_CR;
            d->line_len++;
            return 1;
        }
        d->state = D_LINE;  /* the stuffing dot is dropped */
        return 0;
    case D_BOL_DOT_CR:
        if (c == '\n') {
            *done = 1;
            return 1;
        }
        d->state = D_CR;    /* ".\r" then more: the dot was stuffing */
        return 0;
    case D_CR:
        d->line_len++;
        if (c == '\n') {
            data_emit(d, out, "\n", 1);
            data_line_end(d, 2);
            d->state = D_BOL;
            return 1;
        }
        /* The pending CR was bare: it is data; c is looked at again. */
        data_emit(d, out, "\r", 1);
        d->flags |= SMTP_DATA_BARE_CR;
        d->line_len--;
        d->state = D_LINE;
        return 0;
    default: /* D_LINE */
        d->line_len++;
        if (c == '\r') {
            d->state = D_CR;
            return 1;
        }
        if (c == '\n') {
            data_emit(d, out, "\n", 1);
            d->flags |= SMTP_DATA_BARE_LF;
            data_line_end(d, 1);
            return 1;  /* stays D_LINE: no end of data after a bare LF */
        }
        d->line_len--;
        return data_run(d, in, n, out);
    }
}

/* Bytes received that may be (or are) the end of data, not the message. */
static size_t data_pending(const struct smtp_data *d, int done)
{
    if (done)
        return 3;  /* "." CR LF; the CR LF before it ended the last line */
    return d->state == D_BOL_DOT ? 1 : d->state == D_BOL_DOT_CR ? 2 : 0;
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n,
                      struct buf *out, int *done)
{
    size_t used = 0;

    *done = 0;
    while (used < n && !*done)
        used += data_step(d, in + used, n - used, out, done);
    d->wire += used;
    /* The size as SIZE (RFC 1870) counts it: without the end of data. */
    if (d->wire - data_pending(d, *done) > d->max_size)
        d->flags |= SMTP_DATA_TOOBIG;
    return used;
}
