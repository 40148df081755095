/*
 * coord_net.c - hiredis on the libuv loop, and host names resolved
 * without blocking (see coord_net.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "coord_net.h"
#include "dns.h"
#include "mem.h"

/* ---- hiredis on the libuv loop ----
 * Our own adapter: the one shipped with hiredis 0.14 drops poll errors, so
 * a refused connection is never reported and the context hangs forever.
 * Here an error is passed on as readiness, and hiredis reads the socket
 * error itself. */

struct cn_events {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
};

static void cn_ev_poll(uv_poll_t *p, int status, int events)
{
    struct cn_events *ev = p->data;

    if (status < 0)
        events = ev->events;
    if (ev->ac && (events & UV_READABLE))
        redisAsyncHandleRead(ev->ac);
    if (ev->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(ev->ac);
}

static void cn_ev_update(struct cn_events *ev, int add, int flag)
{
    ev->events = add ? ev->events | flag : ev->events & ~flag;
    if (ev->events)
        uv_poll_start(&ev->poll, ev->events, cn_ev_poll);
    else
        uv_poll_stop(&ev->poll);
}

static void cn_ev_add_read(void *p) { cn_ev_update(p, 1, UV_READABLE); }
static void cn_ev_del_read(void *p) { cn_ev_update(p, 0, UV_READABLE); }
static void cn_ev_add_write(void *p) { cn_ev_update(p, 1, UV_WRITABLE); }
static void cn_ev_del_write(void *p) { cn_ev_update(p, 0, UV_WRITABLE); }

static void cn_ev_closed(uv_handle_t *h)
{
    mem_free(h->data);
}

static void cn_ev_cleanup(void *p)
{
    struct cn_events *ev = p;

    ev->ac = NULL;
    uv_close((uv_handle_t *)&ev->poll, cn_ev_closed);
}

int coord_ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct cn_events *ev = mem_zalloc(sizeof(*ev));

    if (uv_poll_init_socket(loop, &ev->poll, ac->c.fd) != 0) {
        mem_free(ev);
        return -1;
    }
    ev->ac = ac;
    ev->poll.data = ev;
    ac->ev.data = ev;
    ac->ev.addRead = cn_ev_add_read;
    ac->ev.delRead = cn_ev_del_read;
    ac->ev.addWrite = cn_ev_add_write;
    ac->ev.delWrite = cn_ev_del_write;
    ac->ev.cleanup = cn_ev_cleanup;
    return 0;
}

/* ---- names ---- */

static void cn_resolved(void *arg, int status, const struct sockaddr_storage *sa, size_t n)
{
    struct coord_resolve *r = arg;
    struct coord_addrs a;
    int port;

    memset(&a, 0, sizeof(a));
    a.port = r->port;
    /* IPv4 first: a name like "localhost" often has both, and a Redis
     * bound to 127.0.0.1 is the common case */
    for (int fam = 0; fam < 2; fam++)
        for (size_t i = 0; i < n && a.n < COORD_RESOLVE_MAX; i++)
            if ((sa[i].ss_family == AF_INET) == (fam == 0))
                net_ntop((const struct sockaddr *)&sa[i], a.ip[a.n++], sizeof(a.ip[0]),
                         &port);
    if (a.n == 0)
        snprintf(a.why, sizeof(a.why), "cannot resolve the name: %s",
                 status == DNS_OK ? "no address" : dns_strstatus(status));
    r->fn(r->arg, &a);
}

void coord_resolve(struct coord_resolve *r, struct dns *d, struct async_owner *o,
                   const struct net_hostport *hp, coord_resolve_fn *fn, void *arg)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct coord_addrs a;

    r->fn = fn;
    r->arg = arg;
    r->port = hp->port;
    if (net_sockaddr(hp->host, hp->port, &ss, &len) == 0) {
        memset(&a, 0, sizeof(a));
        snprintf(a.ip[0], sizeof(a.ip[0]), "%.63s", hp->host);   /* a literal fits */
        a.port = hp->port;
        a.n = 1;
        fn(arg, &a);
        return;
    }
    if (d == NULL) {
        memset(&a, 0, sizeof(a));
        snprintf(a.why, sizeof(a.why), "cannot resolve the name: no resolver");
        fn(arg, &a);
        return;
    }
    dns_addrs(d, o, hp->host, cn_resolved, r);
}
