/*
 * metrics.c - counters in memory shared by every process of a node.
 *
 * Placeholder of the interface in metrics.h: maps nothing and renders
 * nothing yet.  Must not: block, allocate on the hot path, or lose a
 * count when a child restarts.
 */
#include "metrics.h"

int metrics_init(int nslots)
{
    (void)nslots;
    return 0;
}

void metrics_use_slot(int slot)
{
    (void)slot;
}

void metrics_render(struct buf *out)
{
    (void)out;
}
