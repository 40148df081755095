/*
 * smtp_cache.c - outgoing SMTP connections by destination: the idle ones,
 * the count of those open, the runs waiting for one (see smtp_cache.h).
 *
 * The parked sessions: a doubly linked list, newest first: take returns
 * the newest session for a key, so under a light load the older ones
 * reach their idle time and close, and the connections kept follow the
 * load.  Each parked session is a request of the cache's owner; its gone
 * callback (the session ended on its own) unlinks and frees the entry.
 * A destination record holds the count and the line of waiters, first
 * come first served; it exists while either is not empty.  The lists are
 * short (SMTP_CACHE_MAX parked, one destination per delivery under way),
 * so a lookup walks them.  A place in the count passes from a connection
 * that ends straight to the first waiter, and a session parked while
 * runs wait is kept for the first of them (it stays parked, under its
 * idle timer, until that run takes it from its loop: a session cannot
 * start a transaction from inside the done of the last one).  Must not:
 * talk SMTP (smtp_client.c does), or keep a session that a delivery run
 * is using.
 */
#include <stdio.h>
#include <string.h>

#include "async.h"
#include "mem.h"
#include "net.h"
#include "smtp_cache.h"
#include "smtp_client.h"

struct smtp_cache_dest {
    struct smtp_cache_dest *prev, *next;
    struct smtp_cache *sc;
    long open;                        /* in use by runs, or parked */
    size_t nparked;
    struct smtp_cache_wait *first, *last;
    char key[SMTP_CACHE_KEY_MAX];
};

struct smtp_cache_entry {
    struct smtp_cache_entry *prev, *next;
    struct smtp_cache_dest *dest;
    struct smtp_client *c;
    struct smtp_cache_wait *kept_for; /* a waiter's, once woken */
};

struct smtp_cache {
    struct async_owner own;     /* every parked session */
    struct smtp_cache_entry *head;
    struct smtp_cache_dest *dests;
    size_t n;
};

struct smtp_cache *smtp_cache_new(void)
{
    struct smtp_cache *sc = mem_zalloc(sizeof(*sc));

    async_owner_init(&sc->own);
    return sc;
}

/* ---- destinations ---- */

static struct smtp_cache_dest *scd_find(struct smtp_cache *sc, const char *key, int make)
{
    struct smtp_cache_dest *x;

    for (x = sc->dests; x; x = x->next)
        if (strcmp(x->key, key) == 0)
            return x;
    if (!make)
        return NULL;
    x = mem_zalloc(sizeof(*x));
    x->sc = sc;
    snprintf(x->key, sizeof(x->key), "%s", key);
    x->next = sc->dests;
    if (sc->dests)
        sc->dests->prev = x;
    sc->dests = x;
    return x;
}

static void scd_maybe_free(struct smtp_cache_dest *x)
{
    if (x->open > 0 || x->first)
        return;
    if (x->prev)
        x->prev->next = x->next;
    else
        x->sc->dests = x->next;
    if (x->next)
        x->next->prev = x->prev;
    mem_free(x);
}

/* The first waiter leaves the line (its request stays until wait_end). */
static struct smtp_cache_wait *scd_pop(struct smtp_cache_dest *x)
{
    struct smtp_cache_wait *w = x->first;

    x->first = w->next;
    if (x->first)
        x->first->prev = NULL;
    else
        x->last = NULL;
    w->next = w->prev = NULL;
    w->in_line = 0;
    return w;
}

/* A counted connection ended: its place goes to the first in line. */
static void scd_place_free(struct smtp_cache_dest *x)
{
    struct smtp_cache_wait *w;

    if (x->first == NULL) {
        x->open--;
        scd_maybe_free(x);
        return;
    }
    w = scd_pop(x);
    w->granted = 1;
    w->wake(w->arg);
}

/* ---- parked sessions ---- */

static void sce_unlink(struct smtp_cache_entry *e)
{
    struct smtp_cache *sc = e->dest->sc;

    if (e->prev)
        e->prev->next = e->next;
    else
        sc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    sc->n--;
    e->dest->nparked--;
    mem_free(e);
}

/* A parked session for the first in line, if any waits. */
static void sce_offer(struct smtp_cache_entry *e)
{
    struct smtp_cache_wait *w;

    if (e->dest->first == NULL)
        return;
    w = scd_pop(e->dest);
    w->handed = e;
    e->kept_for = w;
    w->wake(w->arg);
}

void smtp_cache_free(struct smtp_cache *sc)
{
    if (sc == NULL)
        return;
    async_owner_cancel(&sc->own);    /* QUIT, close; no gone callback */
    while (sc->head)
        sce_unlink(sc->head);
    while (sc->dests) {
        struct smtp_cache_dest *x = sc->dests;
        while (x->first)
            async_req_end(&scd_pop(x)->req);    /* no run is left to hear */
        sc->dests = x->next;
        mem_free(x);
    }
    mem_free(sc);
}

void smtp_cache_key(const struct sockaddr *addr, const struct smtp_client_msg *msg,
                    char *out, size_t size)
{
    char ip[64];
    int port = 0;

    net_ntop(addr, ip, sizeof(ip), &port);
    snprintf(out, size, "%s|%d|tls=%d|%.255s|%.255s", ip, port, msg->tls,
             msg->tls && msg->tls_host ? msg->tls_host : "", msg->helo_name);
}

/* Out of the cache, counted for the run that takes it. */
static struct smtp_client *sce_take(struct smtp_cache_entry *e)
{
    struct smtp_client *c = e->c;

    sce_unlink(e);
    return c;
}

struct smtp_client *smtp_cache_take(struct smtp_cache *sc, const char *key)
{
    for (struct smtp_cache_entry *e = sc->head; e; e = e->next)
        if (e->kept_for == NULL && strcmp(e->dest->key, key) == 0)
            return sce_take(e);
    return NULL;
}

int smtp_cache_open(struct smtp_cache *sc, const char *key, long limit)
{
    struct smtp_cache_dest *x = scd_find(sc, key, 1);

    /* behind runs in line: their turn first */
    if (limit > 0 && (x->open >= limit || x->first)) {
        scd_maybe_free(x);
        return 0;
    }
    x->open++;
    return 1;
}

void smtp_cache_close(struct smtp_cache *sc, const char *key)
{
    struct smtp_cache_dest *x = scd_find(sc, key, 0);

    if (x && x->open > 0)
        scd_place_free(x);
}

/* The server closed it, or its idle time is over. */
static void sce_gone(void *arg)
{
    struct smtp_cache_entry *e = arg;
    struct smtp_cache_dest *x = e->dest;
    struct smtp_cache_wait *w = e->kept_for;

    sce_unlink(e);
    if (w) {                  /* already woken: it connects in its place */
        w->handed = NULL;
        w->granted = 1;
        return;
    }
    scd_place_free(x);
}

int smtp_cache_put(struct smtp_cache *sc, const char *key, struct smtp_client *c,
                   long idle_s, long max)
{
    struct smtp_cache_entry *e;
    struct smtp_cache_dest *x;

    if (sc == NULL || idle_s <= 0 || max <= 0 || smtp_client_transactions(c) >= max)
        return 0;
    x = scd_find(sc, key, 0);
    if (x == NULL || sc->n >= SMTP_CACHE_MAX || x->nparked >= SMTP_CACHE_PER_DEST)
        return 0;
    e = mem_zalloc(sizeof(*e));
    e->dest = x;
    e->c = c;
    e->next = sc->head;
    if (sc->head)
        sc->head->prev = e;
    sc->head = e;
    sc->n++;
    x->nparked++;
    smtp_client_park(c, &sc->own, idle_s * 1000, sce_gone, e);
    sce_offer(e);
    return 1;
}

/* ---- waiting ---- */

static void scw_leave_line(struct smtp_cache_wait *w)
{
    struct smtp_cache_dest *x = w->dest;

    if (w->prev)
        w->prev->next = w->next;
    else
        x->first = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        x->last = w->prev;
    w->in_line = 0;
}

/* The run went while in line, or after its turn came: what it was given
 * goes to the next one. */
static void scw_cancel(struct async_req *r)
{
    struct smtp_cache_wait *w = (struct smtp_cache_wait *)r;
    struct smtp_cache_dest *x = w->dest;

    if (w->in_line) {
        scw_leave_line(w);
        scd_maybe_free(x);
    } else if (w->handed) {
        struct smtp_cache_entry *e = w->handed;
        w->handed = NULL;
        e->kept_for = NULL;
        sce_offer(e);
    } else if (w->granted) {
        w->granted = 0;
        scd_place_free(x);
    }
}

void smtp_cache_wait(struct smtp_cache *sc, struct async_owner *o, const char *key,
                     struct smtp_cache_wait *w, smtp_cache_wake_fn *wake, void *arg)
{
    struct smtp_cache_dest *x = scd_find(sc, key, 1);

    memset(w, 0, sizeof(*w));
    async_req_start(&w->req, o, scw_cancel, 0);
    w->dest = x;
    w->wake = wake;
    w->arg = arg;
    w->in_line = 1;
    w->prev = x->last;
    if (x->last)
        x->last->next = w;
    else
        x->first = w;
    x->last = w;
}

struct smtp_client *smtp_cache_wait_end(struct smtp_cache_wait *w)
{
    struct smtp_cache_dest *x = w->dest;
    struct smtp_client *c = NULL;

    if (!async_req_end(&w->req))
        return NULL;              /* cancelled: the caller has gone */
    if (w->handed) {
        c = sce_take(w->handed);
        w->handed = NULL;
    } else if (w->in_line) {      /* its time ran out: one over the bound */
        scw_leave_line(w);
        x->open++;
    }
    w->granted = 0;
    return c;
}

size_t smtp_cache_count(const struct smtp_cache *sc)
{
    return sc ? sc->n : 0;
}

long smtp_cache_open_count(const struct smtp_cache *sc, const char *key)
{
    for (const struct smtp_cache_dest *x = sc ? sc->dests : NULL; x; x = x->next)
        if (strcmp(x->key, key) == 0)
            return x->open;
    return 0;
}
