/*
 * queue_id.h - queue IDs unique across every node sharing a spool.
 *
 * An ID is four groups of digits joined by "_", the original's shape:
 *     <unix seconds>_<microseconds>_<pid>_<node>
 * where node is the Sid itself when it is a number, else a 6-digit hash of
 * it.  Within a process the (seconds, microseconds) pair only ever grows, a
 * pid is unique on its node while the process lives, and node tells nodes
 * apart: no one is asked.  Must not: touch the filesystem.
 */
#ifndef SELOR_QUEUE_ID_H
#define SELOR_QUEUE_ID_H

#define QUEUE_ID_MAX 64

struct queue_id_gen {
    unsigned long node;
    long pid;
    long last_sec, last_usec;
};

void queue_id_init(struct queue_id_gen *g, const char *sid);
void queue_id_next(struct queue_id_gen *g, char out[QUEUE_ID_MAX]);
/* 1 if s is shaped like a queue ID (digit groups joined by "_"). */
int queue_id_valid(const char *s);
unsigned long queue_id_node(const char *sid);
/* The seconds part (the time the message was accepted). */
long queue_id_time(const char *id);
/* The pid and node parts; -1 when id is not shaped like an ID. */
int queue_id_origin(const char *id, long *pid, unsigned long *node);

#endif
