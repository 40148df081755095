/*
 * delivery_rules.h - the delivery events of the rules (delivery_rules.c).
 */
#ifndef SELOR_DELIVERY_RULES_H
#define SELOR_DELIVERY_RULES_H

#include "rules.h"

struct queue_file;

/* A run's rules: embedded in struct delivery. */
struct delivery_rules {
    struct rules_set *set;     /* the generation the run started with */
    struct rules_cache cache;
    struct rules_ctx ctx;
    struct rules_run run;
    const char **rcpts;        /* the message's recipients, for To? */
    int writable;              /* the run's config is its own overlay */
};

/* What an event looks at, from the run. */
struct delivery_rules_in {
    const struct queue_file *qf;
    const char *msgfile;       /* the c file */
    const char *rcpt;          /* dl_rcpt: the recipient (else NULL) */
    const char *answer;        /* dl_rcpt: the remote answer (%T) */
    int local;
    long *hits;
    struct config **conf;      /* the run's view: becomes an overlay on Def! */
    struct arena *mem;
    uv_loop_t *loop;
    struct async_owner *own;
    struct dns *dns;
    struct coord *coord;
    struct rules_exec_pool *exec;
};

void delivery_rules_init(struct delivery_rules *r);
void delivery_rules_free(struct delivery_rules *r);
/* The rules of ev for the run (its view of Event.*); NULL: none. */
const struct rules_file *delivery_rules_file(const struct delivery_rules *r,
                                             const struct config *c, enum rules_event ev);
/* 1: done at once (or no rules: an empty outcome); 0: next(arg) later,
 * unless the run's owner cancels first. */
int delivery_rules_event(struct delivery_rules *r, enum rules_event ev,
                         const struct delivery_rules_in *in, rules_done_fn *next, void *arg);
const struct rules_outcome *delivery_rules_outcome(const struct delivery_rules *r);

#endif
