/*
 * delivery_domains.h - what the queue process knows about remote domains
 * across its delivery runs.
 *
 * Owns: the SMTP deliveries under way per domain (Dremote_max_procs), the
 * runs waiting in line for a domain's slot (the first one is woken when a
 * slot frees), and domains none of whose servers could be reached lately:
 * a pause that starts at 30 s and doubles with each failure in a row, up to
 * a cap (one lost domain must not cost a connection attempt per queued
 * message); any answer from one of its servers ends the pause.  Per node.
 * Must not: deliver, or know what a run is beyond its waiter.
 */
#ifndef SELOR_DELIVERY_DOMAINS_H
#define SELOR_DELIVERY_DOMAINS_H

#include <stddef.h>

struct deliver_rcpt_result;

/* A domain none of whose servers could be reached lately. */
struct delivery_dead_domain {
    char domain[256];
    long until;           /* not tried again before this unix time */
    int fails;            /* failures in a row: the pause doubles */
    char answer[512];
};

/* A run waiting for a domain slot: wake(arg) once one frees. */
struct delivery_domains_waiter {
    void (*wake)(void *arg);
    void *arg;
    int listed;
};

struct delivery_domain_count {
    char domain[256];
    long n;
};

struct delivery_domains {
    struct delivery_domain_count *busy;
    size_t nbusy, busy_alloc;
    struct delivery_dead_domain *dead;
    size_t ndead, dead_alloc;
    struct delivery_domains_waiter **waiting;
    size_t nwaiting, waiting_alloc;
};

/* A slot of the domain (at most limit at once; 0 = no limit): 1, or 0 full. */
int delivery_domains_take(struct delivery_domains *dd, const char *domain, long limit);
/* Gives a slot back; the first waiter in line is woken. */
void delivery_domains_give(struct delivery_domains *dd, const char *domain);
void delivery_domains_wait(struct delivery_domains *dd, struct delivery_domains_waiter *w);
void delivery_domains_unwait(struct delivery_domains *dd,
                             struct delivery_domains_waiter *w);
/* The domain's pause, while it lasts (now: unix time), else NULL. */
const struct delivery_dead_domain *delivery_domains_paused(struct delivery_domains *dd,
                                                           const char *domain, long now);
/* The outcome of a delivery to the domain: nobody reached makes (or
 * lengthens) its pause, up to cap seconds; anything else ends it. */
void delivery_domains_note(struct delivery_domains *dd, const char *domain,
                           const struct deliver_rcpt_result *res, size_t n, long cap);

#endif
