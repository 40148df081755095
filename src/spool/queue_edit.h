/*
 * queue_edit.h - operator changes to one queued message: flush, hold,
 * release, delete.
 *
 * Owns: finding the message (in any queue of spool_queues.h), and changing its l file
 * the only safe way (read, parse, change, write-new + fsync + rename) or
 * removing it (l file first: the message vanishes at once).  Synchronous:
 * for thread-pool jobs and for selorctl when no node runs.  Must not: be
 * called while someone else may hold the file (the caller holds its claim,
 * or knows no node is running).
 */
#ifndef SELOR_QUEUE_EDIT_H
#define SELOR_QUEUE_EDIT_H

#include <stddef.h>

enum queue_edit_op {
    QUEUE_EDIT_FLUSH,    /* every pending recipient due now */
    QUEUE_EDIT_HOLD,     /* not delivered until released */
    QUEUE_EDIT_RELEASE,  /* held no more, and due now */
    QUEUE_EDIT_DELETE,   /* removed without a report */
};

/* The queue holding qid ("main", "qlimit" or an alternate queue's name),
 * or NULL when it is in none. */
const char *queue_edit_find(const char *qid);
/*
 * 0, or an errno (ENOENT: no such message) with why filled.  token: the
 * fencing token of the caller's claim (0: no node runs, no claim); a file
 * carrying a newer one is left alone (ESTALE), and the changed file carries
 * ours.  still_ours (may be NULL) is asked right before the commit point:
 * 0 means the claim's lease ran out, and nothing is changed (ECANCELED).
 */
int queue_edit_apply(const char *queue, const char *qid, enum queue_edit_op op,
                     unsigned long long token, int (*still_ours)(void *), void *arg,
                     char *why, size_t whylen);
/* Parses "flush", "hold", "release", "delete"; -1 if none. */
int queue_edit_op_parse(const char *word);

#endif
