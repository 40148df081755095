/*
 * delivery_int.h - a delivery run as the files that run it see it
 * (delivery.c: the phases, results, writes and the end; delivery_plan.c:
 * PLAN).  Must not: be included outside src/queue/delivery*.c.
 */
#ifndef SELOR_DELIVERY_INT_H
#define SELOR_DELIVERY_INT_H

#include <uv.h>

#include "arena.h"
#include "async.h"
#include "buf.h"
#include "coord.h"
#include "deliver_local.h"
#include "deliver_smtp.h"
#include "delivery.h"
#include "delivery_domains.h"
#include "delivery_report.h"
#include "delivery_rules.h"
#include "lease.h"
#include "module.h"
#include "queue_file.h"
#include "strset.h"

#define DL_MAX_RCPT 10000          /* recipients of one file after aliases */
#define DL_SLOT_RETRY_MS 1000      /* a full Dlocal_max_procs is asked again */
#define DL_LFILE_MAX (64 << 20)

enum dl_phase { DL_LOAD, DL_PLAN, DL_RUN, DL_FINISH, DL_ENDING, DL_OVER };

struct dl_job {
    struct delivery *d;
    struct deliver_rcpt_result *res;   /* Event.dl_rcpt: the answers, one by one */
    size_t nres, k;
    struct dl_job *next;
    int local;                     /* 1: MDA for idx[0]; 0: SMTP to a domain */
    size_t *idx;                   /* recipients of the job (qf.rcpt indexes) */
    size_t n;
    const char **addrs;
    const char *from;              /* SMTP: the envelope sender (SRS) */
    struct selor_mailbox mbox;
    struct deliver_local_req lreq;
    struct deliver_smtp_req sreq;
    struct deliver_local *mda;
    struct deliver_smtp *smtp;
    uint64_t slot;
    int asking;                    /* a slot request is out */
    int running, finished;
};

struct delivery {
    struct async_owner own;        /* every request of the run */
    struct async_owner lookups;    /* what a stop cancels at once: the account lookup
                                      under way (PLAN), a rules event that waits */
    struct delivery_env *env;
    const struct config *conf;
    const struct config *gen;      /* the generation held since the run began */
    struct coord_claim claim;
    struct lease lease;
    const char *queue;             /* the queue holding the file (spool_queues.h) */
    char dir[2048];                /* its directory */
    long hits;                     /* the connection's rule score (l file) */
    const char *auth;              /* its authenticated user ("" if none) */
    struct queue_file qf;
    struct buf ltext, content;
    enum dl_phase phase;
    int busy;                      /* a thread-pool job runs */
    int err;                       /* errno of the last job */
    char why[256];                 /* what the last job found wrong */
    int fenced;                    /* the file is not ours to write any more */
    int stopping;
    int write_again;               /* results came during a write */
    size_t plan_i;
    struct strset rcpt_set;        /* addresses in the file (PLAN) */
    size_t *remote;                /* recipients planned for SMTP (PLAN) */
    size_t nremote, remote_alloc;
    int lookup_pending;
    int await_lock;                /* the final step waits for LEASE_SURE */
    struct dl_job *jobs;
    int jobs_left;
    uv_timer_t slot_timer;
    int slot_timer_on;
    struct delivery_domains_waiter waiter;   /* for a domain slot */
    void (*after)(struct delivery *d);   /* what follows the current job */
    struct delivery_report report; /* about the failed recipients */
    struct delivery_rules rules;   /* the delivery events (delivery_rules.c) */
    int qend_done, report_judged;
    int rules_wait;                /* an event waits for an answer (its enum + 1) */
    char msgfile[2200];            /* the c file, for the rules' programs */
    long now;
    delivery_done_fn *done;
    void *done_arg;
    struct arena mem;
};

/* delivery.c */
/* Records one recipient's result; the l file is written afterwards. */
void delivery_result(struct delivery *d, size_t i, int status, const char *answer,
                     const char *host);
/* The jobs are planned (or none): start the next, or finish. */
void delivery_next_job(struct delivery *d);
void delivery_finish(struct delivery *d);
const char *delivery_domain_of(const char *addr);

/* delivery_plan.c: asks about the next due recipient, or ends PLAN. */
void delivery_plan_next(struct delivery *d);

#endif
