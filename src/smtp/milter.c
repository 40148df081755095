/*
 * milter.c - one connection to one milter (see milter.h).
 *
 * One write at a time: packets queue in `out` while `writing` is on the
 * wire.  One wait at a time: either for the replies (each resets the
 * timer, PROGRESS included) or for the written packets.  A failure closes
 * the connection at once and is given to the waiting owner, if any; the
 * connection is not used again (the session opens a new one for its next
 * message).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "milter.h"
#include "net.h"

enum milter_wait { MILTER_W_NONE, MILTER_W_REPLY, MILTER_W_WRITTEN };

struct milter {
    struct async_req req;          /* the owner's wait, while one runs */
    struct async_owner *own;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    struct buf in, out, writing;
    struct milter_neg neg;
    enum milter_wait wait;
    milter_reply_fn *cb;
    void *arg;
    uint64_t timeout_ms;
    int handles;                   /* open libuv handles */
    int connected, negotiated, dead, released, delivering;
    char name[128];
    char error[160];
    char rbuf[16384];
};

static void milter_free_if_done(struct milter *m)
{
    if (m->released && m->handles == 0 && !m->delivering) {
        buf_free(&m->in);
        buf_free(&m->out);
        buf_free(&m->writing);
        mem_free(m);
    }
}

static void milter_handle_closed(uv_handle_t *h)
{
    struct milter *m = h->data;

    m->handles--;
    milter_free_if_done(m);
}

static void milter_close_handles(struct milter *m)
{
    if (!uv_is_closing(&m->io.h))
        uv_close(&m->io.h, milter_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&m->timer))
        uv_close((uv_handle_t *)&m->timer, milter_handle_closed);
}

static void milter_cancelled(struct async_req *r);
static void milter_timed_out(uv_timer_t *t);

/* Hands an event to the waiting owner; 1 when it wants one more reply. */
static int milter_deliver(struct milter *m, const struct milter_pkt *p, int failed)
{
    int more;

    if (m->wait == MILTER_W_NONE)
        return 0;
    m->wait = MILTER_W_NONE;
    uv_timer_stop(&m->timer);
    if (!async_req_end(&m->req))
        return 0;
    m->delivering = 1;
    more = m->cb(m->arg, p, failed);
    m->delivering = 0;
    if (more && !m->dead && !m->released) {
        m->wait = MILTER_W_REPLY;
        async_req_start(&m->req, m->own, milter_cancelled, 0);
        uv_timer_start(&m->timer, milter_timed_out, m->timeout_ms, m->timeout_ms);
    }
    return more;
}

static void milter_fail(struct milter *m, const char *why)
{
    if (m->dead)
        return;
    m->dead = 1;
    if (why != m->error)
        snprintf(m->error, sizeof(m->error), "%s", why);
    milter_close_handles(m);
    milter_deliver(m, NULL, 1);
    milter_free_if_done(m);
}

/* The owner went, or gave up waiting: the protocol state is unknown, so
 * the connection cannot serve it again. */
static void milter_cancelled(struct async_req *r)
{
    struct milter *m = (struct milter *)r;

    m->wait = MILTER_W_NONE;
    if (!m->dead) {
        m->dead = 1;
        snprintf(m->error, sizeof(m->error), "cancelled");
        milter_close_handles(m);
    }
}

static void milter_timed_out(uv_timer_t *t)
{
    struct milter *m = t->data;

    milter_fail(m, m->error[0] ? m->error : m->connected ? "no reply in time"
                                                         : "cannot connect in time");
}

static void milter_await(struct milter *m, enum milter_wait w, milter_reply_fn *cb, void *arg)
{
    m->wait = w;
    m->cb = cb;
    m->arg = arg;
    async_req_start(&m->req, m->own, milter_cancelled, 0);
    uv_timer_start(&m->timer, milter_timed_out, m->timeout_ms, m->timeout_ms);
}

static void milter_flush(struct milter *m);

static void milter_written(uv_write_t *w, int status)
{
    struct milter *m = w->data;

    buf_reset(&m->writing);
    if (m->dead)
        return;
    if (status < 0) {
        milter_fail(m, uv_strerror(status));
        return;
    }
    if (m->out.len) {
        milter_flush(m);
        return;
    }
    if (m->wait == MILTER_W_WRITTEN)
        milter_deliver(m, NULL, 0);
}

static void milter_flush(struct milter *m)
{
    uv_buf_t b;
    int e;

    if (m->writing.len || m->out.len == 0 || m->dead || !m->connected)
        return;
    buf_swap(&m->writing, &m->out);
    b = uv_buf_init(m->writing.data, (unsigned)m->writing.len);
    m->wreq.data = m;
    e = uv_write(&m->wreq, &m->io.s, &b, 1, milter_written);
    if (e < 0) {
        buf_reset(&m->writing);
        milter_fail(m, uv_strerror(e));
    }
}

static void milter_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct milter *m = h->data;

    (void)hint;
    *b = uv_buf_init(m->rbuf, sizeof(m->rbuf));
}

/* One packet from the milter: the negotiation, or a reply to the owner. */
static int milter_packet(struct milter *m, const struct milter_pkt *p)
{
    const char *why;

    if (!m->negotiated) {
        if (milter_proto_neg(p, &m->neg, &why) < 0) {
            milter_fail(m, why);
            return -1;
        }
        m->negotiated = 1;
        milter_deliver(m, p, 0);
        return 0;
    }
    if (p->cmd == MILTER_R_PROGRESS) {
        uv_timer_again(&m->timer);
        return 0;
    }
    if (m->wait != MILTER_W_REPLY) {
        milter_fail(m, "a reply nobody asked for");
        return -1;
    }
    milter_deliver(m, p, 0);
    return 0;
}

static void milter_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct milter *m = s->data;
    struct milter_pkt p;
    size_t used;
    int r;

    if (n < 0) {
        milter_fail(m, n == UV_EOF ? "connection closed by the milter" : uv_strerror((int)n));
        return;
    }
    if (buf_append(&m->in, b->base, (size_t)n) < 0) {
        milter_fail(m, "a packet of impossible length");
        return;
    }
    while (!m->dead && (r = milter_proto_next(m->in.data, m->in.len, &p, &used)) != 0) {
        if (r < 0) {
            milter_fail(m, "a packet of impossible length");
            return;
        }
        if (milter_packet(m, &p) < 0)
            return;
        buf_consume(&m->in, used);
    }
}

static void milter_connected(uv_connect_t *c, int status)
{
    struct milter *m = c->data;

    if (m->dead)
        return;
    if (status < 0) {
        milter_fail(m, uv_strerror(status));
        return;
    }
    m->connected = 1;
    uv_read_start(&m->io.s, milter_alloc, milter_read);
    milter_flush(m);
}

static int milter_connect(struct milter *m, uv_loop_t *loop, const struct net_socket_spec *sp)
{
    int e;

    m->creq.data = m;
    if (sp->sslen) {
        uv_tcp_init(loop, &m->io.tcp);
        m->io.h.data = m;
        m->handles++;
        uv_tcp_nodelay(&m->io.tcp, 1);
        e = uv_tcp_connect(&m->creq, &m->io.tcp, (const struct sockaddr *)&sp->ss,
                           milter_connected);
    } else {
        uv_pipe_init(loop, &m->io.pipe, 0);
        m->io.h.data = m;
        m->handles++;
        uv_pipe_connect(&m->creq, &m->io.pipe, sp->path, milter_connected);
        e = 0;
    }
    return e;
}

struct milter *milter_open(uv_loop_t *loop, const char *spec, long timeout_s,
                           struct async_owner *own, milter_reply_fn *cb, void *arg,
                           char *why, size_t whylen)
{
    struct net_socket_spec sp;
    struct milter *m;
    int e;

    if (net_parse_socket_spec(spec, &sp, why, whylen) < 0)
        return NULL;
    m = mem_zalloc(sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", spec);
    buf_init(&m->in, MILTER_PKT_MAX + 64 * 1024);
    buf_init(&m->out, 0);
    buf_init(&m->writing, 0);
    m->own = own;
    m->timeout_ms = (uint64_t)(timeout_s > 0 ? timeout_s : 1) * 1000;
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    m->handles++;
    milter_proto_optneg(&m->out);
    milter_await(m, MILTER_W_REPLY, cb, arg);
    e = milter_connect(m, loop, &sp);
    if (e < 0) {
        /* reported from the loop, like every other failure */
        snprintf(m->error, sizeof(m->error), "%s", uv_strerror(e));
        uv_timer_start(&m->timer, milter_timed_out, 0, 0);
    }
    return m;
}

void milter_send(struct milter *m, struct buf *pkts, int reply, milter_reply_fn *cb,
                 void *arg)
{
    buf_append(&m->out, pkts->data, pkts->len);
    buf_reset(pkts);
    milter_await(m, reply ? MILTER_W_REPLY : MILTER_W_WRITTEN, cb, arg);
    milter_flush(m);
}

void milter_post(struct milter *m, struct buf *pkts)
{
    if (!m->dead)
        buf_append(&m->out, pkts->data, pkts->len);
    buf_reset(pkts);
    milter_flush(m);
}

const struct milter_neg *milter_neg(const struct milter *m)
{
    return &m->neg;
}

const char *milter_name(const struct milter *m)
{
    return m->name;
}

const char *milter_error(const struct milter *m)
{
    return m->error;
}

int milter_usable(const struct milter *m)
{
    return !m->dead && m->negotiated;
}

void milter_release(struct milter *m)
{
    if (async_req_live(&m->req))
        async_req_cancel(&m->req);
    m->released = 1;
    if (!m->dead && m->connected && m->writing.len == 0 && m->out.len == 0) {
        char quit[5] = {0, 0, 0, 1, MILTER_C_QUIT};
        uv_buf_t b = uv_buf_init(quit, sizeof(quit));
        uv_try_write(&m->io.s, &b, 1);   /* a courtesy: the close says the same */
    }
    m->dead = 1;
    milter_close_handles(m);
    milter_free_if_done(m);
}
