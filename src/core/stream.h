/*
 * stream.h - the transport under SMTP in and out: a TCP connection, plain
 * or under TLS, read and written on the event loop.
 *
 * Owns: the socket handle, the TLS engine's connection (Tls_module, see
 * selor_module.h) and moving bytes between them: ciphertext from the
 * socket is fed to the engine, plaintext comes out to the reader; what the
 * writer gives is encrypted and written.  Plaintext written while a
 * handshake is still going on waits for its end.  Must not: know SMTP, or
 * read or write the socket anywhere else (the SMTP server and client go
 * through this).
 */
#ifndef SELOR_STREAM_H
#define SELOR_STREAM_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

struct selor_tls_ops;

/* Plaintext came (n > 0), or the end: UV_EOF, or an error below 0
 * (UV_EPROTO: TLS failed; stream_tls_error says why). */
typedef void stream_read_fn(void *arg, ssize_t n, const char *data);
/* A write of len bytes (as given to stream_write) is on the wire
 * (status 0) or failed. */
typedef void stream_write_fn(void *arg, int status, size_t len);
/* The handshake ended: 0, or UV_EPROTO (stream_tls_error says why). */
typedef void stream_tls_fn(void *arg, int status);

/* The TLS engine a node loaded (ops NULL: none). */
struct stream_tls {
    const struct selor_tls_ops *ops;
    void *state;
};

struct stream_wr;

struct stream {
    uv_tcp_t tcp;
    void *arg;                      /* given to every callback */
    stream_read_fn *on_read;
    stream_tls_fn *on_tls;
    char *rbuf, *pbuf;              /* shared by a worker's streams */
    size_t rlen, plen;
    const struct selor_tls_ops *ops;
    void *tls;                      /* the engine's connection, or NULL */
    int handshaking, reading, in_read, closing;
    struct stream_wr *held, **held_tail;   /* plaintext waiting for the handshake */
    char tls_err[200];
};

/* rbuf (socket reads) and pbuf (plaintext out of TLS) may be shared by
 * every stream of a loop: a read callback consumes the data at once. */
int stream_init(struct stream *st, uv_loop_t *loop, void *arg, char *rbuf, size_t rlen,
                char *pbuf, size_t plen);
void stream_read_start(struct stream *st, stream_read_fn *fn);
void stream_read_stop(struct stream *st);
/* Copies data; done (may be NULL) runs when it is written.  < 0: failed
 * at once (done is not called). */
int stream_write(struct stream *st, const char *data, size_t len, stream_write_fn *done);
/*
 * What the socket takes at once, written now, when nothing is queued
 * before it (plain connections only): the bytes written, 0 when none.
 * No callback runs; the caller writes the rest with stream_write.  Why:
 * a reply written at once costs no write request, no callback and none
 * of the epoll re-arming libuv does after each queued write.
 */
size_t stream_try_write(struct stream *st, const char *data, size_t len);
/* From now on the bytes on the socket are TLS (server: we answer the
 * client's hello; client: ours goes out now).  done runs when the
 * handshake ends.  < 0 (no engine, no certificate) with why in
 * stream_tls_error. */
int stream_start_tls(struct stream *st, const struct stream_tls *eng, int server,
                     const char *host, stream_tls_fn *done);
int stream_is_tls(const struct stream *st);
/* After the handshake: "TLSv1.3", the cipher, its bits; NULL when plain. */
const char *stream_tls_version(const struct stream *st);
const char *stream_tls_cipher(const struct stream *st);
int stream_tls_bits(const struct stream *st);
int stream_tls_verified(const struct stream *st);
const char *stream_tls_error(const struct stream *st);
/* Closes the socket (after a TLS close_notify is queued); close_cb gets
 * the tcp handle (data = arg). */
void stream_close(struct stream *st, uv_close_cb close_cb);

#endif
