/*
 * coord_sentinel.c - the primary Redis as Redis Sentinel tells it (see
 * coord_sentinel.h), on the loop for the nodes and synchronously for
 * selorctl (coord_redis_primary).
 *
 * A query goes to the sentinel that answered last, then to the others in
 * turn, each with its own time limit; the answer is only a hint: the
 * caller checks with ROLE that the address really is the primary, and asks
 * again when it is not.  The switch listener stays subscribed to one
 * sentinel and moves on to the next when that one goes.
 */
#include <stddef.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "coord.h"
#include "coord_net.h"
#include "coord_sentinel.h"
#include "log.h"
#include "mem.h"

#define CSEN_ASK_TIMEOUT_MS 1500
#define CSEN_SUB_RETRY_MS 1000
#define CSEN_SYNC_TIMEOUT_S 2

struct csen {
    char name[128];                     /* Redis_master_name */
    int n;
    struct net_hostport hp[CSEN_MAX];
    char who[CSEN_MAX][300];            /* "host:port", for the logs */
    uv_loop_t *loop;
    struct dns *dns;
    struct async_owner ask_own, sub_own;   /* the lookups of each */
    int on, timers;
    csen_found_fn *found;
    csen_switch_fn *switched;
    void *arg;
    /* the query */
    struct async_req ask_req;           /* the asker's */
    int asking, ask_first, ask_tried, ask_cur, good;
    redisAsyncContext *ask_ac;
    uv_timer_t ask_timer;
    struct coord_resolve ask_res;
    char ask_why[200];
    /* the switch listener */
    int sub_i;
    redisAsyncContext *sub_ac;
    uv_timer_t sub_timer;
    struct coord_resolve sub_res;
};

/* "host:port host:port, ..." (blanks or commas between), at most max. */
static int csen_parse(const char *list, struct net_hostport *out, int max, char *why,
                      size_t whylen)
{
    int n = 0;

    for (const char *p = list; *p;) {
        char item[300];
        size_t len;
        p += strspn(p, " \t,");
        len = strcspn(p, " \t,");
        if (len == 0)
            break;
        if (len >= sizeof(item)) {
            snprintf(why, whylen, "an entry is too long");
            return -1;
        }
        if (n == max) {
            snprintf(why, whylen, "more than %d sentinels", max);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (net_parse_hostport(item, CSEN_DEFAULT_PORT, &out[n], why, whylen) < 0)
            return -1;
        n++;
        p += len;
    }
    if (n == 0)
        snprintf(why, whylen, "no sentinel given");
    return n > 0 ? n : -1;
}

struct csen *csen_new(const struct config *conf, struct buf *err)
{
    struct csen *s = mem_zalloc(sizeof(*s));
    char why[160];

    s->n = csen_parse(conf->Redis_sentinels, s->hp, CSEN_MAX, why, sizeof(why));
    if (s->n < 0) {
        buf_printf(err, "%s:%d: Redis_sentinels: %s", conf->path,
                   conf->line[CONF_IDX_Redis_sentinels], why);
        mem_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n; i++)
        snprintf(s->who[i], sizeof(s->who[i]), strchr(s->hp[i].host, ':') ? "[%s]:%d"
                 : "%s:%d", s->hp[i].host, s->hp[i].port);
    snprintf(s->name, sizeof(s->name), "%s", conf->Redis_master_name);
    async_owner_init(&s->ask_own);
    async_owner_init(&s->sub_own);
    return s;
}

const char *csen_master_name(const struct csen *s)
{
    return s->name;
}

/* A context of ours goes: forgotten first, so its callbacks (run by the
 * free, with no reply) see it is no longer ours. */
static void csen_drop(redisAsyncContext **slot)
{
    redisAsyncContext *ac = *slot;

    *slot = NULL;
    if (ac)
        redisAsyncFree(ac);
}

/* Connects to ip:port with the callbacks given; NULL (why set) on failure. */
static redisAsyncContext *csen_connect(struct csen *s, const char *ip, int port,
                                       redisConnectCallback *on_conn,
                                       redisDisconnectCallback *on_disc, char *why,
                                       size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, port);

    if (ac == NULL || ac->err) {
        snprintf(why, whylen, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    if (coord_ev_attach(ac, s->loop) < 0) {
        snprintf(why, whylen, "cannot watch the socket");
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisAsyncSetConnectCallback(ac, on_conn);
    redisAsyncSetDisconnectCallback(ac, on_disc);
    return ac;
}

/* ---- the query ---- */

static void csen_ask_next(struct csen *s);

static void csen_ask_failed(struct csen *s, const char *why)
{
    uv_timer_stop(&s->ask_timer);
    snprintf(s->ask_why, sizeof(s->ask_why), "Sentinel %s: %s", s->who[s->ask_cur], why);
    csen_ask_next(s);
}

static void csen_ask_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct csen *s = priv;
    redisReply *reply = r;
    char ip[64];
    int port;

    if (ac != s->ask_ac)
        return;   /* dropped, or an earlier sentinel's */
    s->ask_ac = NULL;
    if (reply == NULL) {   /* the connection went: hiredis frees it */
        csen_ask_failed(s, ac->errstr[0] ? ac->errstr : "no answer");
        return;
    }
    redisAsyncDisconnect(ac);   /* once this callback is over */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        csen_ask_failed(s, reply->type == REDIS_REPLY_ERROR ? reply->str
                                                             : "does not know the master");
        return;
    }
    snprintf(ip, sizeof(ip), "%s", reply->element[0]->str);
    port = atoi(reply->element[1]->str);
    if (port <= 0 || port > 65535) {
        csen_ask_failed(s, "answered a bad port");
        return;
    }
    uv_timer_stop(&s->ask_timer);
    s->asking = 0;
    s->good = s->ask_cur;
    if (async_req_end(&s->ask_req))
        s->found(s->arg, ip, port, s->who[s->ask_cur], NULL);
}

static void csen_ask_connected(const redisAsyncContext *ac, int status)
{
    struct csen *s = ac->data;

    if (ac != s->ask_ac || status == REDIS_OK)
        return;
    s->ask_ac = NULL;   /* hiredis frees it */
    csen_ask_failed(s, ac->errstr);
}

static void csen_ask_disconnected(const redisAsyncContext *ac, int status)
{
    struct csen *s = ac->data;

    if (ac != s->ask_ac)
        return;
    s->ask_ac = NULL;
    csen_ask_failed(s, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void csen_ask_timeout(uv_timer_t *t)
{
    struct csen *s = t->data;

    csen_drop(&s->ask_ac);
    csen_ask_failed(s, "timed out");
}

static void csen_ask_resolved(void *arg, const struct coord_addrs *a)
{
    struct csen *s = arg;
    char why[160];

    if (a->n == 0) {
        csen_ask_failed(s, a->why);
        return;
    }
    s->ask_ac = csen_connect(s, a->ip[0], a->port, csen_ask_connected,
                             csen_ask_disconnected, why, sizeof(why));
    if (s->ask_ac == NULL) {
        csen_ask_failed(s, why);
        return;
    }
    uv_timer_start(&s->ask_timer, csen_ask_timeout, CSEN_ASK_TIMEOUT_MS, 0);
    redisAsyncCommand(s->ask_ac, csen_ask_reply, s, "SENTINEL get-master-addr-by-name %s",
                      s->name);
}

static void csen_ask_next(struct csen *s)
{
    if (!s->on)
        return;
    if (s->ask_tried == s->n) {
        s->asking = 0;
        if (async_req_end(&s->ask_req))
            s->found(s->arg, NULL, 0, NULL, s->ask_why);
        return;
    }
    s->ask_cur = (s->ask_first + s->ask_tried++) % s->n;
    coord_resolve(&s->ask_res, s->dns, &s->ask_own, &s->hp[s->ask_cur], csen_ask_resolved, s);
}

/* The asker went: the query stops where it is (a lookup's answer is
 * dropped, a connection closed). */
static void csen_ask_cancelled(struct async_req *r)
{
    struct csen *s = (struct csen *)(void *)((char *)r - offsetof(struct csen, ask_req));

    s->asking = 0;
    async_owner_cancel(&s->ask_own);
    csen_drop(&s->ask_ac);
    if (s->timers)
        uv_timer_stop(&s->ask_timer);
}

void csen_ask(struct csen *s, struct async_owner *o)
{
    if (!s->on || s->asking)
        return;
    s->asking = 1;
    async_req_start(&s->ask_req, o, csen_ask_cancelled, 0);
    s->ask_first = s->good;
    s->ask_tried = 0;
    snprintf(s->ask_why, sizeof(s->ask_why), "no sentinel answered");
    csen_ask_next(s);
}

/* ---- the switch listener ---- */

static void csen_sub_start(struct csen *s);

static void csen_sub_retry(uv_timer_t *t)
{
    csen_sub_start(t->data);
}

/* This sentinel is gone for us: the next one, in a moment. */
static void csen_sub_lost(struct csen *s)
{
    if (!s->on)
        return;
    s->sub_i = (s->sub_i + 1) % s->n;
    uv_timer_start(&s->sub_timer, csen_sub_retry, CSEN_SUB_RETRY_MS, 0);
}

/* "<master name> <old ip> <old port> <new ip> <new port>" */
static void csen_sub_message(struct csen *s, const char *msg)
{
    char name[128], oip[64], nip[64];
    int oport, nport;

    if (sscanf(msg, "%127s %63s %d %63s %d", name, oip, &oport, nip, &nport) != 5 ||
        strcmp(name, s->name) != 0 || nport <= 0 || nport > 65535)
        return;
    s->switched(s->arg, nip, nport, s->who[s->sub_i]);
}

static void csen_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct csen *s = priv;
    redisReply *reply = r;

    if (ac != s->sub_ac || reply == NULL)
        return;   /* a lost connection is told by the disconnect callback */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        csen_sub_message(s, reply->element[2]->str);
}

static void csen_sub_connected(const redisAsyncContext *ac, int status)
{
    struct csen *s = ac->data;

    if (ac != s->sub_ac || status == REDIS_OK)
        return;
    s->sub_ac = NULL;
    csen_sub_lost(s);
}

static void csen_sub_disconnected(const redisAsyncContext *ac, int status)
{
    struct csen *s = ac->data;

    if (ac != s->sub_ac)
        return;
    s->sub_ac = NULL;
    csen_sub_lost(s);
}

static void csen_sub_resolved(void *arg, const struct coord_addrs *a)
{
    struct csen *s = arg;
    char why[160];

    if (!s->on)
        return;
    if (a->n > 0)
        s->sub_ac = csen_connect(s, a->ip[0], a->port, csen_sub_connected,
                                 csen_sub_disconnected, why, sizeof(why));
    if (s->sub_ac == NULL) {
        csen_sub_lost(s);
        return;
    }
    redisAsyncCommand(s->sub_ac, csen_sub_reply, s, "SUBSCRIBE +switch-master");
}

static void csen_sub_start(struct csen *s)
{
    if (!s->on || s->sub_ac)
        return;
    coord_resolve(&s->sub_res, s->dns, &s->sub_own, &s->hp[s->sub_i], csen_sub_resolved, s);
}

/* ---- life ---- */

void csen_attach(struct csen *s, uv_loop_t *loop, struct dns *d, csen_found_fn *found,
                 csen_switch_fn *switched, void *arg)
{
    s->loop = loop;
    s->dns = d;
    s->found = found;
    s->switched = switched;
    s->arg = arg;
    uv_timer_init(loop, &s->ask_timer);
    uv_timer_init(loop, &s->sub_timer);
    s->ask_timer.data = s->sub_timer.data = s;
    s->timers = 1;
    s->on = 1;
    csen_sub_start(s);
}

static void csen_timer_closed(uv_handle_t *h)
{
}

void csen_detach(struct csen *s)
{
    if (!s->on)
        return;
    s->on = 0;
    async_req_cancel(&s->ask_req);   /* a query under way stops, unanswered */
    s->asking = 0;
    async_owner_cancel(&s->ask_own);   /* lookups under way: dropped */
    async_owner_cancel(&s->sub_own);
    csen_drop(&s->ask_ac);
    csen_drop(&s->sub_ac);
    if (s->timers) {
        s->timers = 0;
        uv_close((uv_handle_t *)&s->ask_timer, csen_timer_closed);
        uv_close((uv_handle_t *)&s->sub_timer, csen_timer_closed);
    }
}

void csen_free(struct csen *s)
{
    mem_free(s);
}

/* ---- selorctl: synchronously ---- */

/* The primary as sentinel hp tells it; 0, or -1 with why. */
static int csen_ask_sync(const struct net_hostport *hp, const char *name,
                         struct net_hostport *out, char *why, size_t whylen)
{
    struct timeval tv = {CSEN_SYNC_TIMEOUT_S, 0};
    redisContext *rc = redisConnectWithTimeout(hp->host, hp->port, tv);
    redisReply *r;
    int ok = -1;

    if (rc == NULL || rc->err) {
        snprintf(why, whylen, "%s", rc ? rc->errstr : "out of memory");
        if (rc)
            redisFree(rc);
        return -1;
    }
    redisSetTimeout(rc, tv);
    r = redisCommand(rc, "SENTINEL get-master-addr-by-name %s", name);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out->host, sizeof(out->host), "%s", r->element[0]->str);
        out->port = atoi(r->element[1]->str);
        ok = out->port > 0 && out->port <= 65535 ? 0 : -1;
        if (ok < 0)
            snprintf(why, whylen, "answered a bad port");
    } else {
        snprintf(why, whylen, "%s", r == NULL ? rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str : "does not know the master");
    }
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    return ok;
}

int coord_redis_primary(const struct config *c, struct net_hostport *out, char *why,
                        size_t whylen)
{
    struct net_hostport hp[CSEN_MAX];
    char one[200];
    int n;

    if (c->Redis_sentinels[0] == '\0') {
        if (c->Redis_server[0] == '\0') {
            snprintf(why, whylen, "no Redis_server nor Redis_sentinels");
            return -1;
        }
        return net_parse_hostport(c->Redis_server, 6379, out, why, whylen);
    }
    n = csen_parse(c->Redis_sentinels, hp, CSEN_MAX, why, whylen);
    if (n < 0)
        return -1;
    snprintf(why, whylen, "no sentinel answered");
    for (int i = 0; i < n; i++) {
        if (csen_ask_sync(&hp[i], c->Redis_master_name, out, one, sizeof(one)) == 0)
            return 0;
        snprintf(why, whylen, "Sentinel %s:%d: %s", hp[i].host, hp[i].port, one);
    }
    return -1;
}
