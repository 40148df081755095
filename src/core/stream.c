/*
 * stream.c - plain and TLS transport (see stream.h).
 *
 * Why memory buffers and not OpenSSL on the socket: the engine never sees
 * the file descriptor, so nothing in it can block or read behind libuv's
 * back, and the same loop that serves a thousand sessions drives every
 * handshake.  Order is kept because each socket write is one uv_write of
 * everything the engine had to send at that moment.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "selor_module.h"
#include "stream.h"

struct stream_wr {
    uv_write_t req;
    struct stream *st;
    stream_write_fn *done;
    struct stream_wr *next;     /* held while handshaking */
    size_t len;                 /* of data */
    size_t plain;               /* as the writer gave it (its callback's len) */
    char data[];
};

int stream_init(struct stream *st, uv_loop_t *loop, void *arg, char *rbuf, size_t rlen,
                char *pbuf, size_t plen)
{
    memset(st, 0, sizeof(*st));
    st->arg = arg;
    st->rbuf = rbuf;
    st->rlen = rlen;
    st->pbuf = pbuf;
    st->plen = plen;
    st->held_tail = &st->held;
    st->tcp.data = arg;
    return uv_tcp_init(loop, &st->tcp);
}

static struct stream *stream_of(uv_handle_t *h)
{
    return (struct stream *)((char *)h - offsetof(struct stream, tcp));
}

static void stream_written(uv_write_t *req, int status)
{
    struct stream_wr *wr = req->data;

    if (wr->done)
        wr->done(wr->st->arg, status, wr->plain);
    mem_free(wr);
}

static struct stream_wr *stream_wr_new(struct stream *st, size_t len, stream_write_fn *done,
                                       size_t plain)
{
    struct stream_wr *wr = mem_alloc(sizeof(*wr) + len);

    wr->st = st;
    wr->done = done;
    wr->next = NULL;
    wr->len = len;
    wr->plain = plain;
    wr->req.data = wr;
    return wr;
}

static int stream_send(struct stream *st, struct stream_wr *wr)
{
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    int r = uv_write(&wr->req, (uv_stream_t *)&st->tcp, &b, 1, stream_written);

    if (r < 0)
        mem_free(wr);
    return r;
}

/* Everything the engine has for the network, in one write. */
static int stream_flush_tls(struct stream *st, stream_write_fn *done, size_t plain)
{
    size_t n = st->ops->pending(st->tls);
    struct stream_wr *wr;

    if (n == 0 && done == NULL)
        return 0;
    wr = stream_wr_new(st, n, done, plain);
    wr->len = st->ops->drain(st->tls, wr->data, n);
    return stream_send(st, wr);
}

static int stream_encrypt(struct stream *st, const char *data, size_t len,
                          stream_write_fn *done)
{
    if (st->ops->write(st->tls, data, len) < 0) {
        snprintf(st->tls_err, sizeof(st->tls_err), "%s", st->ops->error(st->tls));
        return UV_EPROTO;
    }
    return stream_flush_tls(st, done, len);
}

int stream_write(struct stream *st, const char *data, size_t len, stream_write_fn *done)
{
    struct stream_wr *wr;

    if (st->closing)
        return UV_ECANCELED;
    if (st->tls && !st->handshaking)
        return stream_encrypt(st, data, len, done);
    wr = stream_wr_new(st, len, done, len);
    memcpy(wr->data, data, len);
    if (st->handshaking) {
        *st->held_tail = wr;
        st->held_tail = &wr->next;
        return 0;
    }
    return stream_send(st, wr);
}

size_t stream_try_write(struct stream *st, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r;

    if (st->closing || st->tls || st->handshaking || len == 0 || len > UINT32_MAX)
        return 0;
    r = uv_try_write((uv_stream_t *)&st->tcp, &b, 1);   /* UV_EAGAIN if queued */
    return r > 0 ? (size_t)r : 0;
}

/* The handshake is over: what was written meanwhile goes now, in order. */
static void stream_release_held(struct stream *st, int status)
{
    struct stream_wr *wr = st->held;

    st->held = NULL;
    st->held_tail = &st->held;
    while (wr) {
        struct stream_wr *next = wr->next;
        int r = status < 0 || st->closing ? UV_ECANCELED
                                          : stream_encrypt(st, wr->data, wr->len, wr->done);
        if (r < 0 && wr->done)
            wr->done(st->arg, r, wr->plain);
        mem_free(wr);
        wr = next;
    }
}

static void stream_tls_failed(struct stream *st)
{
    snprintf(st->tls_err, sizeof(st->tls_err), "%s", st->ops->error(st->tls));
    stream_flush_tls(st, NULL, 0);     /* the alert, if any */
}

/* The handshake is over (status 0) or failed: what waited for it goes, or
 * is dropped, and the owner hears of it (it may close the stream). */
static void stream_handshake_end(struct stream *st, int status)
{
    st->handshaking = 0;
    if (status == 0)
        stream_flush_tls(st, NULL, 0);
    stream_release_held(st, status);
    if (st->on_tls)
        st->on_tls(st->arg, status);
}

/* Ciphertext in: the handshake, then plaintext to the reader.  The reader
 * may close the stream from its callback: the loop stops then. */
static void stream_tls_input(struct stream *st, const char *data, size_t n)
{
    long r;

    st->ops->feed(st->tls, data, n);
    st->in_read = 1;
    while (!st->closing && (r = st->ops->read(st->tls, st->pbuf, st->plen)) != 0) {
        if (st->handshaking && st->ops->handshake_done(st->tls)) {
            stream_handshake_end(st, 0);
            if (st->closing)
                break;
        }
        if (r > 0) {
            st->on_read(st->arg, r, st->pbuf);
            continue;
        }
        if (r == SELOR_TLS_ERROR)
            stream_tls_failed(st);
        if (st->handshaking)
            stream_handshake_end(st, UV_EPROTO);
        if (!st->closing)
            st->on_read(st->arg, r == SELOR_TLS_EOF ? UV_EOF : UV_EPROTO, NULL);
        break;
    }
    st->in_read = 0;
    if (st->closing) {
        st->ops->conn_free(st->tls);
        st->tls = NULL;
        return;
    }
    /* a handshake that ended with this input (the read above said "more") */
    if (st->handshaking && st->ops->handshake_done(st->tls)) {
        stream_handshake_end(st, 0);
        return;
    }
    if (st->tls)
        stream_flush_tls(st, NULL, 0);
}

static void stream_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct stream *st = stream_of(h);

    *b = uv_buf_init(st->rbuf, (unsigned)st->rlen);
}

static void stream_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct stream *st = stream_of((uv_handle_t *)s);

    if (n == 0)
        return;
    if (n < 0 || !st->tls) {
        st->on_read(st->arg, n, b->base);
        return;
    }
    stream_tls_input(st, b->base, (size_t)n);
}

void stream_read_start(struct stream *st, stream_read_fn *fn)
{
    st->on_read = fn;
    if (!st->reading && !st->closing)
        uv_read_start((uv_stream_t *)&st->tcp, stream_alloc, stream_on_read);
    st->reading = 1;
}

void stream_read_stop(struct stream *st)
{
    if (st->reading && !st->closing)
        uv_read_stop((uv_stream_t *)&st->tcp);
    st->reading = 0;
}

int stream_start_tls(struct stream *st, const struct stream_tls *eng, int server,
                     const char *host, stream_tls_fn *done)
{
    if (eng == NULL || eng->ops == NULL) {
        snprintf(st->tls_err, sizeof(st->tls_err), "no TLS module (Tls_module)");
        return UV_ENOTSUP;
    }
    st->tls = eng->ops->conn_new(eng->state, server, host, st->tls_err,
                                 sizeof(st->tls_err));
    if (st->tls == NULL)
        return UV_ENOTSUP;
    st->ops = eng->ops;
    st->handshaking = 1;
    st->on_tls = done;
    if (!server) {          /* our hello goes first */
        st->ops->read(st->tls, st->pbuf, 0);
        return stream_flush_tls(st, NULL, 0);
    }
    return 0;
}

int stream_is_tls(const struct stream *st)
{
    return st->tls != NULL && !st->handshaking;
}

const char *stream_tls_version(const struct stream *st)
{
    return stream_is_tls(st) ? st->ops->version(st->tls) : NULL;
}

const char *stream_tls_cipher(const struct stream *st)
{
    return stream_is_tls(st) ? st->ops->cipher(st->tls) : NULL;
}

int stream_tls_bits(const struct stream *st)
{
    return stream_is_tls(st) ? st->ops->bits(st->tls) : 0;
}

int stream_tls_verified(const struct stream *st)
{
    return stream_is_tls(st) && st->ops->verified(st->tls);
}

const char *stream_tls_error(const struct stream *st)
{
    return st->tls_err;
}

void stream_close(struct stream *st, uv_close_cb close_cb)
{
    if (st->closing)
        return;
    if (st->tls && stream_is_tls(st)) {
        st->ops->shutdown(st->tls);
        stream_flush_tls(st, NULL, 0);
    }
    st->closing = 1;
    stream_release_held(st, UV_ECANCELED);
    if (st->tls && !st->in_read) {
        st->ops->conn_free(st->tls);
        st->tls = NULL;
    }
    uv_close((uv_handle_t *)&st->tcp, close_cb);
}
