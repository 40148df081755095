/*
 * master.h - the master process of a node (see master.c).
 */
#ifndef SELOR_MASTER_H
#define SELOR_MASTER_H

struct selor_node;

/* Sets up the node, starts its children and supervises them; never returns. */
void master_run(struct selor_node *node) __attribute__((noreturn));

#endif
