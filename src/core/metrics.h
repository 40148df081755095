/*
 * metrics.h - the node's counters, in shared memory the master maps before
 * it forks (see metrics.c).
 *
 * Owns: the names and kinds of every metric, one slot of counters per
 * process (a restarted child takes its predecessor's slot, so nothing is
 * lost), and the Prometheus text rendering.  Must not: serve HTTP (the ops
 * process does) or take a lock on a hot path (a slot has one writer).
 */
#ifndef SELOR_METRICS_H
#define SELOR_METRICS_H

#include <stdint.h>

#include "buf.h"

/* The master, before any fork: room for nslots processes.  0 or -1. */
int metrics_init(int nslots);
/* A child after fork: the slot it writes (its index in the master's table). */
void metrics_use_slot(int slot);
/* Prometheus text exposition format (version 0.0.4) of every slot summed. */
void metrics_render(struct buf *out);

#endif
