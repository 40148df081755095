/*
 * coord_ctl.h - selorctl's direct requests to the cluster's Redis
 * (coord_ctl.c).
 */
#ifndef SELOR_COORD_CTL_H
#define SELOR_COORD_CTL_H

#include <stddef.h>
#include <hiredis/hiredis.h>

/* How long a flush may run before another may start (its node died),
 * and how long after it ended a new one is "already done". */
#define COORD_CTL_FLUSH_RUN 900
#define COORD_CTL_FLUSH_QUIET 60

/* 1: this flush is the cluster's; 0: another one runs or just ran
 * (holder: "SID UNIXTIME running|done"); -1: Redis failed (holder: why). */
int coord_ctl_flush_begin(redisContext *rc, const char *prefix, const char *sid,
                          char *holder, size_t size);
/* done: the walk finished (quiet period); else the flush did not happen. */
void coord_ctl_flush_end(redisContext *rc, const char *prefix, const char *sid, int done);

/* The Sid of the node holding qid's lock, or "" (none, or rc NULL). */
void coord_ctl_holder(redisContext *rc, const char *prefix, const char *qid, char *out,
                      size_t size);

/* One node of the registry (selorctl nodes). */
struct coord_ctl_node {
    char sid[64], state[32], version[32], rules[24];
    long beat, inflight;
    int gone;                      /* its alive key expired */
};
typedef void coord_ctl_node_fn(const struct coord_ctl_node *n, void *arg);
/* fn for every registered node; -1 when Redis failed. */
int coord_ctl_nodes(redisContext *rc, const char *prefix, coord_ctl_node_fn *fn, void *arg);
/* Sets (drain) or clears a node's drain flag; -1 with why on failure. */
int coord_ctl_drain(redisContext *rc, const char *prefix, const char *sid, int drain,
                    char *why, size_t size);

#endif
