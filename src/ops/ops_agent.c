/*
 * ops_agent.c - HAProxy's agent-check on Agent_port.
 *
 * Owns: the agent protocol.  HAProxy connects every agent-inter, reads one
 * line and closes; the line is built from the ops state at that moment:
 *
 *   "up ready 100%"   may take new connections ("ready" lifts a drain
 *                     the agent set earlier, "up" a "down")
 *   "up ready N%"     the one-minute load is above Lavg_queue: a smaller
 *                     share (ops_weight)
 *   "up drain"        drained by selorctl drain, or the spool is not
 *                     writable: no new connections, those open go on
 *   "down #stopping"   the node is stopping
 *
 * Whatever HAProxy sends (agent-send) is read and dropped.  Must not: keep
 * a connection beyond OPS_AGENT_TIMEOUT_MS, or serve more than
 * OPS_AGENT_MAX at once (the others are closed at once: HAProxy treats
 * an agent it cannot read as saying nothing).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "ops.h"

#define OPS_AGENT_MAX 64
#define OPS_AGENT_TIMEOUT_MS 3000

struct ops_agent_conn {
    struct ops_agent *a;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    char line[64];
    char rbuf[256];
    int closing;
    int handles;                   /* still open: the conn is freed at 0 */
};

struct ops_agent {
    struct ops *o;
    uv_tcp_t listener;
    int nconns;
    int closed;
};

/* The line for the state now (see the top of this file). */
static void ops_agent_line(const struct ops *o, char *out, size_t size)
{
    char why[200];
    const char *unready = ops_unready(o, why, sizeof(why));

    if (o->stopping)
        snprintf(out, size, "down #stopping\n");
    else if (unready)
        snprintf(out, size, "up drain\n");
    else
        snprintf(out, size, "up ready %d%%\n",
                 ops_weight(ops_load(), selor_conf->Lavg_queue));
}

static void ops_agent_freed(uv_handle_t *h)
{
    struct ops_agent_conn *c = h->data;
    struct ops_agent *a = c->a;

    if (--c->handles > 0)
        return;
    a->nconns--;
    mem_free(c);
    if (a->closed && a->nconns == 0 && a->listener.data == NULL)
        mem_free(a);
}

static void ops_agent_end(struct ops_agent_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, ops_agent_freed);
    uv_close((uv_handle_t *)&c->tcp, ops_agent_freed);
}

static void ops_agent_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct ops_agent_conn *c = h->data;

    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

/* Read (and drop) until HAProxy closes: closing with unread bytes would
 * reset the connection, and the reply could be lost with it. */
static void ops_agent_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0)
        ops_agent_end(s->data);
}

static void ops_agent_timeout(uv_timer_t *t)
{
    ops_agent_end(t->data);
}

static void ops_agent_shut(uv_shutdown_t *req, int status)
{
    if (status < 0)
        ops_agent_end(req->data);
}

static void ops_agent_written(uv_write_t *req, int status)
{
    struct ops_agent_conn *c = req->data;

    if (status < 0 || c->closing) {
        ops_agent_end(c);
        return;
    }
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, ops_agent_shut) < 0)
        ops_agent_end(c);
}

static void ops_agent_accept(uv_stream_t *l, int status)
{
    struct ops_agent *a = l->data;
    struct ops_agent_conn *c;
    uv_buf_t b;

    if (status < 0)
        return;
    c = mem_zalloc(sizeof(*c));
    c->a = a;
    a->nconns++;
    c->handles = 2;
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 || a->nconns > OPS_AGENT_MAX) {
        ops_agent_end(c);
        return;
    }
    ops_agent_line(a->o, c->line, sizeof(c->line));
    b = uv_buf_init(c->line, (unsigned)strlen(c->line));
    c->wr.data = c;
    uv_timer_start(&c->timer, ops_agent_timeout, OPS_AGENT_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, ops_agent_alloc, ops_agent_read) < 0 ||
        uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, ops_agent_written) < 0)
        ops_agent_end(c);
}

struct ops_agent *ops_agent_open(struct ops *o, int fd)
{
    struct ops_agent *a = mem_zalloc(sizeof(*a));
    int r;

    a->o = o;
    uv_tcp_init(&o->loop, &a->listener);
    a->listener.data = a;
    if ((r = uv_tcp_open(&a->listener, fd)) < 0 ||
        (r = uv_listen((uv_stream_t *)&a->listener, 128, ops_agent_accept)) < 0) {
        log_warn("ops: Agent_port: %s", uv_strerror(r));
        return NULL;   /* the caller stops the process */
    }
    return a;
}

static void ops_agent_listener_closed(uv_handle_t *h)
{
    struct ops_agent *a = h->data;

    a->listener.data = NULL;
    if (a->nconns == 0)
        mem_free(a);
}

/* Connections under way finish (their timer bounds them). */
void ops_agent_close(struct ops_agent *a)
{
    a->closed = 1;
    uv_close((uv_handle_t *)&a->listener, ops_agent_listener_closed);
}
