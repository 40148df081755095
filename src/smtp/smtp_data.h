/*
 * smtp_data.h - the DATA stream: end-of-data detection, dot-unstuffing,
 * line endings and the size limits of a message.
 *
 * Owns: the one rule that ends a message: CR LF "." CR LF, and nothing else
 * (a bare LF or bare CR never ends or splits a message: no SMTP smuggling).
 * Content comes out with LF line ends, the form the c file keeps; a bare LF
 * is taken as a line end, a bare CR is kept as data.  Must not: touch the
 * network or the spool (it is fed bytes and appends to a buffer).
 */
#ifndef SELOR_SMTP_DATA_H
#define SELOR_SMTP_DATA_H

#include <stddef.h>

#include "buf.h"

enum smtp_data_flag {
    SMTP_DATA_TOOBIG = 1,        /* more than max_size bytes */
    SMTP_DATA_HEADER_TOOBIG = 2, /* header section above max_header */
    SMTP_DATA_LINE_TOOLONG = 4,  /* a text line above 1000 bytes */
    SMTP_DATA_BARE_LF = 8,       /* saw LF without CR (normalised) */
    SMTP_DATA_BARE_CR = 16,      /* saw CR without LF (kept) */
};

struct smtp_data {
    int state;
    int in_header;
    size_t line_len;      /* raw bytes of the current line */
    size_t header_bytes;  /* raw bytes of the header section */
    size_t wire;          /* raw bytes received */
    size_t size;          /* bytes appended to the output */
    size_t max_size, max_header;
    unsigned flags;
};

void smtp_data_init(struct smtp_data *d, size_t max_size, size_t max_header);
/*
 * Consumes up to n bytes; appends content to out (nothing once a size
 * limit tripped).  Sets *done and stops right after the end of data, so
 * what follows (pipelined commands) stays with the caller.  Returns the
 * number of bytes consumed.
 */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n,
                      struct buf *out, int *done);

#endif
