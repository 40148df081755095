/*
 * lease.h - holding a queue file's lock while working on it.
 *
 * Owns: the lease arithmetic of a holder (a delivery run, an operator's
 * change): the lock holds at least until `until_ms` on this node's
 * monotonic clock, counted from when a claim or renewal was *asked for*
 * (never from when its answer came: the answer may have been slow), a
 * renewal every third of a lease, and the verdict "may still write",
 * which holds while a quarter of a lease is left (a renewal answered late
 * brings it back).  The holder is told the moment the verdict changes
 * (a timer set to the next deadline, and every answer), not at the next
 * renewal: a holder cut off from Redis hears SHAKY when a quarter of its
 * lease is left and LOST when none is.  The verdict is safe to
 * read from a thread-pool job, so a job checks the lock when it runs (and
 * again just before its commit point), not only when it was queued.
 * Must not: decide what a holder does once the lock is gone (it is told
 * through its callback) or touch the spool.
 */
#ifndef SELOR_LEASE_H
#define SELOR_LEASE_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "coord.h"

struct async_owner;

#define LEASE_RENEWALS_OUT 8

enum lease_event {
    LEASE_TICK,    /* a renewal went out (the holder renews what it holds with it) */
    LEASE_SHAKY,   /* the lock may lapse before a renewal lands: start nothing;
                      renewals go on */
    LEASE_SURE,    /* after SHAKY: a late renewal landed, the lock holds again */
    LEASE_LOST,    /* the lock is gone (another holder has it, or it lapsed by
                      this node's clock): stop at once, write nothing */
};

typedef void lease_fn(void *arg, enum lease_event ev);

struct lease {
    struct coord *coord;
    struct async_owner *owner;      /* renewals belong to the holder */
    struct coord_claim claim;
    uv_timer_t timer;
    uint64_t lease_ms;
    uint64_t asked_ms;              /* when the claim was asked for */
    /* Renewals out, oldest first (answers come in order): one goes every
     * tick, not one at a time, so a slow Redis delays the answers but
     * not the renewals themselves. */
    uint64_t out_asked[LEASE_RENEWALS_OUT];
    unsigned out_gen[LEASE_RENEWALS_OUT];   /* of an earlier claim: ignored */
    unsigned out_head, out_n, gen;
    _Atomic uint64_t until_ms;      /* the lock holds at least until then */
    _Atomic int lost;               /* COORD_LOST, or a newer token was seen */
    uint64_t next_renew_ms;         /* when the next renewal goes out */
    int shaky;                      /* LEASE_SHAKY was told, not yet valid again */
    int running;                    /* between lease_begin and lease_stop/close */
    lease_fn *fn;
    void *arg;
};

/* Prepares the timer (once; the holder closes it with lease_close). */
void lease_init(struct lease *l, uv_loop_t *loop, lease_fn *fn, void *arg);
/* Starts keeping cl (lease_s seconds from cl->asked_ms). */
void lease_begin(struct lease *l, struct coord *coord, struct async_owner *owner,
                 const struct coord_claim *cl, long lease_s);
/* 1 while writing under this lock is safe (thread-safe). */
int lease_valid(const struct lease *l);
/* A newer holder wrote the file: this holder must stop (thread-safe). */
void lease_mark_lost(struct lease *l);
int lease_lost(const struct lease *l);
/* Stops renewing; close_cb runs once the timer is closed (data = l). */
void lease_close(struct lease *l, uv_close_cb close_cb);
/* Stops renewing, keeps the timer (the holder is finishing). */
void lease_stop(struct lease *l);

#endif
