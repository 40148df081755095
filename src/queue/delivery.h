/*
 * delivery.h - one delivery run of one queue file.
 *
 * Owns: everything between claiming a queue file and releasing it: loading
 * and checking it (l file complete, c file of the recorded size, fencing
 * token not newer than ours), sorting its due recipients into local
 * mailboxes (the MDA, one at a time each, within Dlocal_max_procs), remote
 * domains (one SMTP delivery per domain) and failures; recording every
 * result in the l file as it comes (write-new, fsync, rename: a recipient
 * recorded delivered is never sent again); giving up after Max_attempts;
 * delivery reports for failed recipients (built and queued by
 * delivery_report.c); removing the files when nothing is left to do.  The
 * node's view of remote domains across runs is delivery_domains.c's.
 * Must not: choose which file to run (queue.c does) or write an l file
 * after finding a newer fencing token in it.
 */
#ifndef SELOR_DELIVERY_H
#define SELOR_DELIVERY_H

#include <uv.h>

#include "coord.h"
#include "delivery_domains.h"

struct dns;
struct module_set;
struct queue_id_gen;
struct rules_exec_pool;
struct smtp_cache;

struct delivery_env {
    uv_loop_t *loop;
    struct coord *coord;
    struct dns *dns;
    const struct module_set *mods;
    const struct stream_tls *tls;      /* Tls_module's engine (ops NULL: none) */
    struct queue_id_gen *idgen;
    struct rules_exec_pool *exec;      /* the rules' programs */
    struct delivery_domains domains;   /* Dremote_max_procs, paused domains */
    struct smtp_cache *scache;         /* idle SMTP sessions (connection reuse) */
    /* Gives a run's claim back (the queue process batches them); NULL:
     * coord_release at once. */
    void (*release)(void *arg, const struct coord_claim *cl, long next_due);
    void *release_arg;
};

struct delivery;
/* The run is over and its claim released; d is freed after this returns. */
typedef void delivery_done_fn(void *arg, struct delivery *d);

struct delivery *delivery_start(struct delivery_env *env,
                                const struct coord_claim *claim,
                                delivery_done_fn *done, void *arg);
/* The queue process stops: stop the deliveries under way (their recipients
 * stay pending as last recorded) and finish the run. */
void delivery_stop(struct delivery *d);
const char *delivery_id(const struct delivery *d);
/* What the connection left in the l file, for rules run at delivery: its
 * rule score (0 before the file is read) and authenticated user (""). */
long delivery_hits(const struct delivery *d);
const char *delivery_auth(const struct delivery *d);

/* Seconds to wait before the next try after `attempts` tries. */
long delivery_retry_interval(int attempts, long base_minutes);

#endif
