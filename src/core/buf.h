/*
 * buf.h - the one growable byte buffer, with a hard limit.
 *
 * Owns: storage for lines, envelopes, replies and bodies.  Every buffer that
 * a client can fill carries a limit; appending past it fails instead of
 * growing, so no client controls how much memory Selor uses.  Must not: be
 * bypassed by ad-hoc char arrays in parsers.
 */
#ifndef SELOR_BUF_H
#define SELOR_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;   /* bytes in use, from data[0] */
    size_t cap;   /* bytes allocated */
    size_t limit; /* hard ceiling for len; 0 = none (internal data only) */
};

#define BUF_INIT(lim) { NULL, 0, 0, (lim) }

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* Drops the storage if it grew beyond keep bytes (idle sessions stay small). */
void buf_shrink(struct buf *b, size_t keep);
/* 0 on success, -1 if the limit would be passed (nothing is appended). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* NUL-terminates without counting the NUL; returns data ("" when empty). */
const char *buf_cstr(struct buf *b);
/* Hands the storage to the caller (who frees it with mem_free). */
char *buf_steal(struct buf *b, size_t *len);
void buf_swap(struct buf *a, struct buf *b);

#endif
