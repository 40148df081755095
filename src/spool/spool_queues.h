/*
 * spool_queues.h - the node's queues: their names and directories.
 *
 * Owns: the registry of queues a node delivers from: "main" (Queue_path),
 * "qlimit" (Queue_path/qlimit) and one alternate queue for each other
 * Queue_path a rule may set (Def! "Queue_path '...'"), named "q" and 12 hex
 * digits of a hash of the normalised path, so every node gives the same
 * path the same name; which coordination index a queue's files are
 * announced and claimed in; finding the queue directory that holds a
 * message.  The registry is process state, filled at start before fork
 * (master, selorctl) and only read afterwards, by every thread.
 * Must not: create directories (the master does, as root), read or write
 * queue files (spool.c does), or know about rules.
 */
#ifndef SELOR_SPOOL_QUEUES_H
#define SELOR_SPOOL_QUEUES_H

#include <stddef.h>

struct config;

#define SPOOL_QUEUE_NAME_MAX 16   /* with the NUL: fits coord_claim.queue */

/* Empties the registry and registers "main" and "qlimit" from c's
 * Queue_path.  Before fork: children inherit it. */
void spool_queues_init(const struct config *c);
/*
 * Registers the queue of a Queue_path a rule can set and returns its name
 * ("main" or "qlimit" for those directories); the same path, however
 * written (trailing or doubled slashes, "." components), gives the same
 * name on every node.  NULL for a path that cannot be a queue: empty,
 * relative, or too long.
 */
const char *spool_queues_add(const char *path);
/* The directory of queue name, without a trailing slash; -1 if unknown. */
int spool_queues_dir(const char *name, char *out, size_t size);
/* The name of the queue whose directory path is; NULL if none is. */
const char *spool_queues_for_path(const char *path);
size_t spool_queues_count(void);
/* The i-th queue, "main" first and "qlimit" second; NULL past the end. */
const char *spool_queues_name(size_t i);
/*
 * The coordination index queue name's files are announced and claimed in:
 * "qlimit" for qlimit, "main" for main and every alternate queue (they
 * share main's index and its Max_qprocs slots: one pool of delivery
 * capacity, and a backend that needs to know only two queues).
 */
const char *spool_queues_coord(const char *name);
/*
 * The queue, among those in index coord ("main", "qlimit"; NULL: all),
 * whose directory holds l<qid>, its directory in dir; NULL when none does
 * (dir is then the first such queue's).  Synchronous (stat): thread pool.
 */
const char *spool_queues_find(const char *coord, const char *qid, char *dir, size_t size);

/* A Queue_path a reloaded rule names: the queues are set up at start, so an
 * unknown one is only warned about (mail for it is refused until a restart). */
void spool_queues_check_new(const char *path, void *arg);

#endif
