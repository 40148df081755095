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

#endif
