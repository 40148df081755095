/*
 * coord_redis_int.h - what the files of the Redis backend share: the
 * backend's state, a script call, and running one.  coord_redis.c owns
 * the connection, the index, claims, locks and the node registry;
 * coord_redis_limits.c the cluster-wide limits (connection counts, the
 * AUTH lockout, rates, delivery slots).  Nothing outside cluster/coord_redis*
 * includes it.
 */
#ifndef SELOR_COORD_REDIS_INT_H
#define SELOR_COORD_REDIS_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

#include "async.h"
#include "coord.h"
#include "coord_net.h"
#include "coord_redis_lua.h"
#include "net.h"

struct csen;
struct dns;

struct coord_redis {
    struct coord base;
    struct coord *local;           /* this node alone: Redis down, wake-ups */
    const struct config *conf;
    struct net_hostport hp;        /* Redis_server */
    struct csen *sen;              /* Redis_sentinels, or NULL */
    struct dns *dns;               /* names of Redis and the sentinels */
    struct async_owner own;        /* name lookups */
    struct coord_resolve res;
    int finding;                   /* an address is being looked for */
    unsigned attempt;              /* failed connections (picks the address) */
    char ip[64];                   /* the address connected to */
    int port;
    int role_ok;                   /* ROLE said master (always without Sentinel) */
    char primary[80];              /* the primary ROLE confirmed last */
    char told_by[300];             /* the sentinel that named the address */
    char where[300];               /* Redis, for the logs */
    char prefix[128];
    char node[64];                 /* Sid (or host name) of this node */
    long lease_ms;
    uv_loop_t *loop;
    redisAsyncContext *ac;
    int connected;
    int ever_connected;
    int down_logged;
    long retry_ms;
    uv_timer_t retry_timer, heartbeat_timer, connect_timer;
    int timers_on;
    char sha[CR_NSCRIPTS][41];
    int scripts_ready;
    unsigned long commands;        /* round trips sent (benchmark) */
    uint64_t slot_seq;
    int watching, draining, rescan;
    long inflight;
    char rules[24];                /* the hash of the node's rules (selorctl nodes) */
    coord_wake_fn *wake;
    void *wake_arg;
};

/* A command waiting for its reply.  One with an answer belongs to its
 * owner through req; one without (announce, release) belongs to nobody. */
struct cr_call {
    struct coord_redis *cr;
    struct async_req req;
    int owned;
    enum cr_script script;         /* for a NOSCRIPT retry */
    int argc;
    char **argv;
    size_t *argvlen;
    /* live: the owner still wants the answer; if not, give back what it grants */
    void (*reply)(struct cr_call *call, redisReply *r, int live);
    union {
        coord_conn_fn *conn;
        coord_claim_fn *claim;
        coord_status_fn *status;
        coord_slot_fn *slot;
        coord_auth_fn *auth;
        coord_drain_fn *drain;
        coord_batch_fn *batch;
    } fn;
    void *arg;
    char queue[16];
    char ip[64];
    char login[256];               /* AUTH lockout: for the fallback; ANNOUNCE: the ID */
    long num;                      /* AUTH lockout: limit or ttl, for the fallback */
    int mode;                      /* ANNOUNCE: for the wake-up after the answer */
    struct coord_claim cl;
};

/* coord_redis.c: keys, readiness, and running a script (see there). */
void cr_key(const struct coord_redis *cr, char *out, size_t size, const char *a,
            const char *b);
int cr_ready(const struct coord_redis *cr);
struct cr_call *cr_call_new(struct coord_redis *cr, struct async_owner *o, enum cr_script s,
                            void (*reply)(struct cr_call *, redisReply *, int), void *arg);
void cr_eval(struct cr_call *call, int nkeys, const char *const *args);
long long cr_int(const redisReply *r);
void cr_ignore_reply(struct cr_call *call, redisReply *r, int live);

/* coord_redis_limits.c: the backend's operations for the limits. */
void crl_conn_check(struct coord *c, struct async_owner *o, const char *ip,
                    coord_conn_fn *fn, void *arg);
void crl_auth_check(struct coord *c, struct async_owner *o, const char *ip,
                    const char *login, long limit, coord_auth_fn *fn, void *arg);
void crl_auth_failed(struct coord *c, const char *ip, const char *login, long ttl);
void crl_rate(struct coord *c, struct async_owner *o, const char *key, long limit,
              long window, coord_status_fn *fn, void *arg);
void crl_slot_acquire(struct coord *c, struct async_owner *o, const char *pool, long limit,
                      coord_slot_fn *fn, void *arg);
void crl_slot_release(struct coord *c, const char *pool, uint64_t slot);
void crl_slot_renew(struct coord *c, const char *pool, uint64_t slot);

#endif
