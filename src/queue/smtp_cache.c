/*
 * smtp_cache.c - idle outgoing SMTP sessions by destination (see
 * smtp_cache.h).
 *
 * A doubly linked list, newest first: take returns the newest session for
 * a key, so under a light load the older ones reach their idle time and
 * close, and the connections kept follow the load.  The lists are short
 * (SMTP_CACHE_MAX), so a lookup walks them.  Each parked session is a
 * request of the cache's owner; its gone callback (the session ended on
 * its own) unlinks and frees the entry.  Must not: talk SMTP (smtp_client.c
 * does), or keep a session that a delivery run is using.
 */
#include <stdio.h>
#include <string.h>

#include "async.h"
#include "mem.h"
#include "net.h"
#include "smtp_cache.h"
#include "smtp_client.h"

struct sce {
    struct sce *prev, *next;
    struct smtp_cache *sc;
    struct smtp_client *c;
    char key[SMTP_CACHE_KEY_MAX];
};

struct smtp_cache {
    struct async_owner own;     /* every parked session */
    struct sce *head;
    size_t n;
};

struct smtp_cache *smtp_cache_new(void)
{
    struct smtp_cache *sc = mem_zalloc(sizeof(*sc));

    async_owner_init(&sc->own);
    return sc;
}

static void sce_unlink(struct sce *e)
{
    struct smtp_cache *sc = e->sc;

    if (e->prev)
        e->prev->next = e->next;
    else
        sc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    sc->n--;
    mem_free(e);
}

void smtp_cache_free(struct smtp_cache *sc)
{
    if (sc == NULL)
        return;
    async_owner_cancel(&sc->own);    /* QUIT, close; no gone callback */
    while (sc->head)
        sce_unlink(sc->head);
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

struct smtp_client *smtp_cache_take(struct smtp_cache *sc, const char *key)
{
    for (struct sce *e = sc->head; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            struct smtp_client *c = e->c;

            sce_unlink(e);
            return c;
        }
    }
    return NULL;
}

static size_t sc_count_key(const struct smtp_cache *sc, const char *key)
{
    size_t n = 0;

    for (const struct sce *e = sc->head; e; e = e->next)
        n += strcmp(e->key, key) == 0;
    return n;
}

/* The server closed it, or its idle time is over. */
static void sce_gone(void *arg)
{
    sce_unlink(arg);
}

int smtp_cache_put(struct smtp_cache *sc, const char *key, struct smtp_client *c,
                   long idle_s, long max)
{
    struct sce *e;

    if (sc == NULL || idle_s <= 0 || max <= 0 || smtp_client_transactions(c) >= max)
        return 0;
    if (sc->n >= SMTP_CACHE_MAX || sc_count_key(sc, key) >= SMTP_CACHE_PER_DEST)
        return 0;
    e = mem_zalloc(sizeof(*e));
    e->sc = sc;
    e->c = c;
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->next = sc->head;
    if (sc->head)
        sc->head->prev = e;
    sc->head = e;
    sc->n++;
    smtp_client_park(c, &sc->own, idle_s * 1000, sce_gone, e);
    return 1;
}

size_t smtp_cache_count(const struct smtp_cache *sc)
{
    return sc ? sc->n : 0;
}
