/*
 * queue.h - the queue process of a node (see queue.c).
 */
#ifndef SELOR_QUEUE_H
#define SELOR_QUEUE_H

struct selor_node;

/* Runs the queue process in this (forked) process; never returns. */
void queue_main(struct selor_node *node) __attribute__((noreturn));

#endif
