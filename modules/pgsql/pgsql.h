/*
 * pgsql.h - the pgsql account module's internal interface, shared by its
 * files: selor_pgsql.c (options, entry points, requests), pgsql_conn.c
 * (the connection pool on the child's loop), pgsql_answer.c (rows into
 * answers, password checks) and pgsql_cache.c (recent answers).
 * Must not: be included by anything outside modules/pgsql/ (Selor only
 * sees the selor_module symbol); declare anything that lives on a thread
 * other than the loop's, except the thread-pool jobs named as such.
 */
#ifndef SELOR_PGSQL_H
#define SELOR_PGSQL_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "selor_module.h"

/* Internal to the module's .so: only selor_module is exported, so nothing
 * here can meet a name of Selor's or of another module. */
#pragma GCC visibility push(hidden)

#define PGSQL_KINDS 5               /* SELOR_LOOKUP_DOMAIN .. _DOMAIN_MAILBOXES */
#define PGSQL_QUEUE_MAX 1000        /* lookups waiting for a connection */
#define PGSQL_CACHE_MAX 10000       /* cached answers per process */
#define PGSQL_KEY_MAX 1024          /* longer keys are not asked: NOTFOUND */
#define PGSQL_PASSWORD_MAX 1024     /* longer passwords are refused unchecked */
#define PGSQL_BACKOFF_MIN_MS 500
#define PGSQL_BACKOFF_MAX_MS 30000

#define PGSQL_CONTAINER(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* An answer as read from the database: owned by the cache, or freed once
 * copied into a request. */
struct pgsql_answer {
    int result;                  /* SELOR_FOUND or SELOR_NOTFOUND */
    struct selor_mailbox mbox;   /* MAILBOX, AUTH (strings malloc'd) */
    int has_user;                /* the row had a non-NULL "user" */
    char *secret;                /* AUTH: "{SCHEME}hash" as stored */
    char **targets;              /* ALIAS, DOMAIN_MAILBOXES */
    size_t ntargets;
};

enum pgsql_where { PGSQL_NEW, PGSQL_QUEUED, PGSQL_RUNNING, PGSQL_CHECKING };

/* One pending lookup. */
struct pgsql_req {
    struct pgsql_state *st;
    struct selor_lookup *req;    /* NULL once cancelled or detached */
    int kind;
    enum pgsql_where where;
    uint64_t deadline;           /* loop time (ms) it must be answered by */
    struct pgsql_req *prev, *next;   /* the queue */
    char key[];
};

enum pgsql_conn_state {
    PGSQL_DOWN,          /* no connection; the timer retries */
    PGSQL_CONNECTING,    /* PQconnectPoll in progress */
    PGSQL_READY,         /* idle */
    PGSQL_BUSY,          /* a query for cur in flight */
    PGSQL_DRAINING,      /* a timed-out query: its late result is thrown away */
};

struct pgsql_watch;

struct pgsql_conn {
    struct pgsql_state *st;
    PGconn *pg;
    enum pgsql_conn_state state;
    struct pgsql_watch *watch;   /* uv_poll on PQsocket, NULL when none */
    uv_timer_t timer;            /* retry, connect and query time limits */
    unsigned backoff_ms;
    struct pgsql_req *cur;       /* PGSQL_BUSY: the request being answered */
    PGresult *res;               /* the first result of the running query */
    unsigned gen;                /* +1 at each close: stale cancel jobs see it */
    int cancelling;              /* PGSQL_DRAINING: PQcancel still running */
    int drained;                 /* PGSQL_DRAINING: the late result is gone */
};

struct pgsql_cache;

struct pgsql_state {
    const struct selor_host *host;
    char *conninfo;
    char *query[PGSQL_KINDS];    /* NULL: that kind is answered NOTFOUND */
    int nconn;
    long ttl_s, timeout_s;
    uv_loop_t *loop;
    struct pgsql_conn *conns;    /* nconn of them, from attach */
    struct pgsql_req *qhead, *qtail;
    size_t qlen;
    uv_timer_t qtimer;           /* expires queued requests */
    struct pgsql_cache *cache;   /* NULL when Pgsql_cache_ttl is 0 */
    int down_logged;
    char last_error[128];        /* why the database is unavailable */
    int attached, detaching;
    unsigned busy;               /* open handles and thread-pool jobs */
};

/* selor_pgsql.c: requests */
void pgsql_req_tempfail(struct pgsql_req *pr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pgsql_req_result(struct pgsql_req *pr, const PGresult *res);
void pgsql_req_free(struct pgsql_req *pr);
struct pgsql_req *pgsql_queue_pop(struct pgsql_state *st);
void pgsql_queue_flush(struct pgsql_state *st, const char *why);
void pgsql_maybe_free(struct pgsql_state *st);

/* pgsql_conn.c: the pool */
int pgsql_pool_start(struct pgsql_state *st);
void pgsql_pool_close(struct pgsql_state *st);
struct pgsql_conn *pgsql_pool_ready(struct pgsql_state *st);
int pgsql_pool_can_serve(const struct pgsql_state *st);
int pgsql_conn_send(struct pgsql_conn *c, struct pgsql_req *pr);
void pgsql_conn_fail(struct pgsql_conn *c, const char *why);
void pgsql_pool_dispatch(struct pgsql_state *st);

/* pgsql_answer.c: rows into answers, answers into requests */
struct pgsql_answer *pgsql_answer_from(int kind, const PGresult *res,
                                       const struct selor_host *host,
                                       char *err, size_t errlen);
void pgsql_answer_free(struct pgsql_answer *a);
/* Copies a to req (request memory): a result, or SELOR_PENDING when a
 * password check went to the thread pool (pr then belongs to it). */
int pgsql_answer_give(struct pgsql_state *st, struct pgsql_req *pr,
                      struct selor_lookup *req, const struct pgsql_answer *a);

/* pgsql_cache.c */
struct pgsql_cache *pgsql_cache_new(size_t max);
void pgsql_cache_free(struct pgsql_cache *c);
const struct pgsql_answer *pgsql_cache_get(struct pgsql_cache *c, int kind,
                                           const char *key, uint64_t now);
/* Takes a (frees it when it cannot keep it). */
void pgsql_cache_put(struct pgsql_cache *c, int kind, const char *key,
                     struct pgsql_answer *a, uint64_t expires);

#pragma GCC visibility pop

#endif
