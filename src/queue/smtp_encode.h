/*
 * smtp_encode.h - content in SMTP form (CR LF line ends, dot-stuffing),
 * chunk by chunk, for smtp_client.c.  Must not: know sessions or sockets.
 */
#ifndef SELOR_SMTP_ENCODE_H
#define SELOR_SMTP_ENCODE_H

#include <stddef.h>

struct buf;

/* Encodes whole lines of content from pos until out holds want bytes;
 * returns the new pos (len when everything is encoded). */
size_t smtp_encode_some(const char *content, size_t len, size_t pos, struct buf *out,
                        size_t want);
/* The size of the encoded content, without the final ".". */
long long smtp_encode_size(const char *content, size_t len);

#endif
