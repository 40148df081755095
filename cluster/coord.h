/*
 * coord.h - the coordination interface: what the processes of one node,
 * and the nodes of a cluster, decide together.
 *
 * Two backends sit behind one table of functions: the embedded backend
 * (one node; the default when Redis_server and Redis_sentinels are empty)
 * and the Redis backend (cluster).  Nothing above this interface knows which one runs.  Calls
 * answer through a callback, which may run before the call returns (the
 * embedded backend answers at once).  Every call that answers belongs to
 * an owner (async.h): an answer that comes after its owner cancelled is
 * dropped, and what it granted (a lock, a slot) is given back by the
 * backend.  Must not: touch the spool or speak SMTP.
 *
 * Queue files are found through a due-time index per queue ("main",
 * "qlimit"): the accepting side announces a new message, the holder of a
 * deferred one announces its next try, and the directory scan announces
 * whatever it finds that the index does not know.  A claim takes the next
 * due file that nobody holds, with its lock (a lease, and a fencing token
 * that only ever grows) and a delivery slot of the queue's limit.
 */
#ifndef SELOR_COORD_H
#define SELOR_COORD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

struct async_owner;
struct config;
struct coord;

enum coord_status {
    COORD_OK = 0,
    COORD_LIMIT = 1,    /* anti-DoS: this connection trips Limit_cnx */
    COORD_EMPTY = 2,    /* claim: nothing is due */
    COORD_FULL = 3,     /* claim or slot: every slot is taken */
    COORD_BUSY = 4,     /* claim of one ID: someone holds it */
    COORD_LOST = 5,     /* renew: the lock is no longer ours */
    COORD_DOWN = 6,     /* the backend cannot answer now */
};

#define COORD_QID_MAX 64

struct coord_claim {
    char queue[16];             /* "main" or "qlimit" */
    char qid[COORD_QID_MAX];
    uint64_t token;             /* fencing token: write it into the l file */
    uint64_t slot;              /* delivery slot held (0 = none) */
    uint64_t asked_ms;          /* coord_mono_ms() when asked for: the lease
                                   runs from no earlier than this */
};

/* coord_release's next_due: leave the file's due time as the claim set it
 * (a lease from now), for a claim given back unused. */
#define COORD_DUE_KEEP (-2L)

enum coord_announce_mode {
    COORD_ANN_NEW,     /* add only if the index does not know it and nobody holds it */
    COORD_ANN_FORCE,   /* set its due time (unless someone holds it) */
};

/* One claim given back through coord_claim_batch (next_due as coord_release's). */
struct coord_release {
    struct coord_claim cl;
    long next_due;
};

/* The most files one coord_claim_batch claims. */
#define COORD_BATCH_MAX 32

typedef void coord_conn_fn(void *arg, int verdict);
typedef void coord_claim_fn(void *arg, int status, const struct coord_claim *cl);
typedef void coord_status_fn(void *arg, int status);
/* n files claimed (cl[0..n-1]); status COORD_OK when all that were asked for
 * came (more may be due), else why fewer: COORD_EMPTY, COORD_FULL, COORD_DOWN. */
typedef void coord_batch_fn(void *arg, int status, const struct coord_claim *cl, size_t n);
typedef void coord_slot_fn(void *arg, int status, uint64_t slot);
typedef void coord_wake_fn(void *arg);
/* verdict: COORD_OK, or COORD_LIMIT when the address or the login is locked out */
typedef void coord_auth_fn(void *arg, int verdict);
/* status COORD_OK (draining: 1 drained by selorctl drain, 0 not) or COORD_DOWN */
typedef void coord_drain_fn(void *arg, int status, int draining);

struct coord_ops {
    const char *name;
    int (*attach)(struct coord *c, uv_loop_t *loop);
    void (*detach)(struct coord *c);
    void (*destroy)(struct coord *c);
    void (*conn_check)(struct coord *c, struct async_owner *o, const char *ip,
                       coord_conn_fn *fn, void *arg);
    void (*announce)(struct coord *c, const char *queue, const char *qid, long due,
                     int mode);
    void (*watch)(struct coord *c, coord_wake_fn *fn, void *arg);
    void (*claim_next)(struct coord *c, struct async_owner *o, const char *queue,
                       long limit, long now, coord_claim_fn *fn, void *arg);
    void (*claim_id)(struct coord *c, struct async_owner *o, const char *queue,
                     const char *qid, coord_claim_fn *fn, void *arg);
    void (*renew)(struct coord *c, struct async_owner *o, const struct coord_claim *cl,
                  coord_status_fn *fn, void *arg);
    void (*release)(struct coord *c, const struct coord_claim *cl, long next_due);
    void (*claim_batch)(struct coord *c, struct async_owner *o, const char *queue,
                        long limit, long now, size_t want, const struct coord_release *rel,
                        size_t nrel, coord_batch_fn *fn, void *arg);
    void (*slot_acquire)(struct coord *c, struct async_owner *o, const char *pool,
                         long limit, coord_slot_fn *fn, void *arg);
    void (*slot_release)(struct coord *c, const char *pool, uint64_t slot);
    void (*slot_renew)(struct coord *c, const char *pool, uint64_t slot);
    int (*take_rescan)(struct coord *c);
    void (*set_inflight)(struct coord *c, long n);
    void (*set_rules)(struct coord *c, const char *hash);
    void (*auth_check)(struct coord *c, struct async_owner *o, const char *ip,
                       const char *login, long limit, coord_auth_fn *fn, void *arg);
    void (*auth_failed)(struct coord *c, const char *ip, const char *login, long ttl);
    void (*rate)(struct coord *c, struct async_owner *o, const char *key, long limit,
                 long window, coord_status_fn *fn, void *arg);
    void (*drain_state)(struct coord *c, struct async_owner *o, coord_drain_fn *fn,
                        void *arg);
};

struct coord {
    const struct coord_ops *ops;
};

/* This node's monotonic clock in ms: lease arithmetic never uses the wall
 * clock, which another node (or NTP) may disagree with. */
uint64_t coord_mono_ms(void);

/* Creates the backend the configuration asks for (in the master). */
struct coord *coord_create(const struct config *conf, struct buf *err);
/* Per process, after fork: hook into the process's loop. */
int coord_attach(struct coord *c, uv_loop_t *loop);
void coord_detach(struct coord *c);
void coord_destroy(struct coord *c);

/* A new connection from ip: record it and judge it (Limit_*). */
void coord_conn_check(struct coord *c, struct async_owner *o, const char *ip,
                      coord_conn_fn *fn, void *arg);

/* The file qid of queue is due at `due` (unix time; 0 = now). */
void coord_announce(struct coord *c, const char *queue, const char *qid, long due,
                    int mode);
/* The queue process: fn runs when an announcement may have made work due. */
void coord_watch(struct coord *c, coord_wake_fn *fn, void *arg);
/* The next due file of queue nobody holds, with its lock and a slot of at
 * most `limit` (0 = no limit). */
void coord_claim_next(struct coord *c, struct async_owner *o, const char *queue,
                      long limit, long now, coord_claim_fn *fn, void *arg);
/* The lock of one file (no slot), for operator commands. */
void coord_claim_id(struct coord *c, struct async_owner *o, const char *queue,
                    const char *qid, coord_claim_fn *fn, void *arg);
/* Extends the lease; COORD_LOST when the lock is gone. */
void coord_renew(struct coord *c, struct async_owner *o, const struct coord_claim *cl,
                 coord_status_fn *fn, void *arg);
/* Gives up lock and slot; next_due >= 0 puts the file back in the index
 * due then, -1 means the file is gone (delivered, deleted), COORD_DUE_KEEP
 * leaves the index as the claim left it. */
void coord_release(struct coord *c, const struct coord_claim *cl, long next_due);
/*
 * One request (one round trip with Redis) for a queue process's many files:
 * gives back the nrel claims of rel (any queue; as coord_release, in that
 * order, whatever the owner does later), then claims up to `want` (at most
 * COORD_BATCH_MAX) due files of queue as coord_claim_next would, one after
 * the other.  want 0: the releases only (o and fn may be NULL).  An answer
 * after o cancelled is dropped and its files are given back, due now.
 */
void coord_claim_batch(struct coord *c, struct async_owner *o, const char *queue,
                       long limit, long now, size_t want, const struct coord_release *rel,
                       size_t nrel, coord_batch_fn *fn, void *arg);
/* Counting semaphores whose slots are leases (Dlocal_max_procs). */
void coord_slot_acquire(struct coord *c, struct async_owner *o, const char *pool,
                        long limit, coord_slot_fn *fn, void *arg);
void coord_slot_release(struct coord *c, const char *pool, uint64_t slot);
/* Extends a slot's lease (a holder renews as it renews its claim). */
void coord_slot_renew(struct coord *c, const char *pool, uint64_t slot);

/* 1, once, when the index may have been lost (Redis came back): scan now. */
int coord_take_rescan(struct coord *c);
/* The queue process's deliveries under way (for the node registry). */
void coord_set_inflight(struct coord *c, long n);
/* The hash of the rules this node runs, shown by selorctl nodes. */
void coord_set_rules(struct coord *c, const char *hash);

/*
 * The AUTH lockout (Auth_fail_limit, Auth_fail_time): failed logins are
 * counted per client address and per login (compared without regard to
 * letter case), cluster-wide with Redis.  auth_check answers COORD_LIMIT
 * when either count has reached limit (> 0); auth_failed adds one failure
 * to both, each count being forgotten ttl seconds after its last failure.
 */
void coord_auth_check(struct coord *c, struct async_owner *o, const char *ip,
                      const char *login, long limit, coord_auth_fn *fn, void *arg);
void coord_auth_failed(struct coord *c, const char *ip, const char *login, long ttl);

/* The longest rate key a backend keeps apart from every other (longer ones
 * are cut there). */
#define COORD_RATE_KEY_MAX 512
/* The longest window (a year, in seconds); a longer one is cut to it. */
#define COORD_RATE_WINDOW_MAX (366L * 86400)

/*
 * Counts one event for key and judges the rate: COORD_OK while at most
 * `limit` events (this one included) fell in the last `window` seconds,
 * COORD_LIMIT beyond, COORD_DOWN when the backend cannot answer.  A sliding
 * window, shared by every process of the node (embedded) or every node of
 * the cluster (Redis).  key: free text up to COORD_RATE_KEY_MAX bytes.
 * Refused events count too, so a client that keeps trying stays refused.
 * limit < 0 or window <= 0: no limit (COORD_OK, nothing counted).
 */
void coord_rate(struct coord *c, struct async_owner *o, const char *key, long limit,
                long window, coord_status_fn *fn, void *arg);

/*
 * Whether this node is drained (selorctl drain), asked of the backend now,
 * not from the last heartbeat: the ops process tells the load balancer.
 * A backend without draining (embedded) answers COORD_OK, 0 at once.
 */
void coord_drain_state(struct coord *c, struct async_owner *o, coord_drain_fn *fn,
                       void *arg);

/* Backends. */
struct coord *coord_embedded_create(const struct config *conf, struct buf *err);
struct coord *coord_redis_create(const struct config *conf, struct buf *err);

/*
 * For selorctl: the Redis to talk to, found synchronously (it blocks): the
 * primary as the first Redis_sentinels entry that knows it tells, else
 * Redis_server.  0, or -1 with why.
 */
struct net_hostport;
int coord_redis_primary(const struct config *c, struct net_hostport *out, char *why,
                        size_t whylen);

#endif
