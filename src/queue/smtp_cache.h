/*
 * smtp_cache.h - the outgoing SMTP connections of one queue process per
 * destination: the idle ones, kept for the next transaction to the same
 * destination (connection reuse, as Postfix's scache), and how many are
 * open at once (as Postfix's destination concurrency).
 *
 * Owns: the parked sessions, as their owner while they are idle (async.h):
 * they belong to no delivery run; one ends with QUIT when its idle time is
 * over or when the cache goes (the process stops), and is forgotten when
 * the server closes it.  The count of the connections open to each
 * destination, in use by a run or parked, and the line of runs waiting
 * for one when the count is at the run's bound (Smtp_dest_conns): a
 * session parked while a run waits goes to the first in line (RSET + MAIL
 * on it, no new connection); a connection that closes gives its place in
 * the count to the first in line (it connects).  The key of a destination:
 * the address and port connected to, the TLS policy and the name the
 * certificate must carry, and our HELO name.  The bounds on parked
 * sessions: SMTP_CACHE_PER_DEST per destination, SMTP_CACHE_MAX in all.
 * Must not: choose destinations or addresses (deliver_smtp.c does, and
 * asks here before connecting), read the configuration (the caller gives
 * the run's Smtp_reuse_time, Smtp_reuse_max, Smtp_dest_conns), time a
 * wait (the waiting run does), retry, or log.
 *
 * The count: every connection a run holds was counted once, by
 * smtp_cache_open, smtp_cache_take or smtp_cache_wait_end; it stops
 * counting when smtp_cache_put parks it (the parked session counts until
 * it ends) or the run calls smtp_cache_close.
 */
#ifndef SELOR_SMTP_CACHE_H
#define SELOR_SMTP_CACHE_H

#include <stddef.h>
#include <sys/socket.h>

#include "async.h"

#define SMTP_CACHE_PER_DEST 20
#define SMTP_CACHE_MAX 256
#define SMTP_CACHE_KEY_MAX 600

struct smtp_cache;
struct smtp_cache_dest;
struct smtp_cache_entry;
struct smtp_client;
struct smtp_client_msg;

/*
 * A run waiting for a connection to one destination, in the run's memory;
 * its fields are the cache's.  wake(arg) runs (from anywhere in the cache:
 * it must only schedule) when the run's turn came; the run then calls
 * smtp_cache_wait_end from its loop.
 */
typedef void smtp_cache_wake_fn(void *arg);
struct smtp_cache_wait {
    struct async_req req;                 /* the run's request */
    struct smtp_cache_wait *prev, *next;  /* in the destination's line */
    struct smtp_cache_dest *dest;
    struct smtp_cache_entry *handed;      /* a parked session kept for it */
    int in_line, granted;                 /* granted: a place in the count */
    smtp_cache_wake_fn *wake;
    void *arg;
};

struct smtp_cache *smtp_cache_new(void);
/* Every parked session says QUIT and closes; sc is freed.  The runs have
 * gone before (none waits). */
void smtp_cache_free(struct smtp_cache *sc);
/* The key of the destination addr for a session that msg would start. */
void smtp_cache_key(const struct sockaddr *addr, const struct smtp_client_msg *msg,
                    char *out, size_t size);
/* The most recently parked session for key, out of the cache (the caller
 * gives it a transaction with smtp_client_reuse), or NULL.  Counted for
 * the caller. */
struct smtp_client *smtp_cache_take(struct smtp_cache *sc, const char *key);
/* A new connection to key may be opened: 1, counted for the caller; 0 when
 * limit connections are open (limit 0: no bound, always 1). */
int smtp_cache_open(struct smtp_cache *sc, const char *key, long limit);
/* A connection counted for the caller ended without being parked. */
void smtp_cache_close(struct smtp_cache *sc, const char *key);
/*
 * Only in the client's done, when its result is reusable: parks c for at
 * most idle_s seconds, if it has carried fewer than max transactions and
 * the bounds leave room (a run waiting for the destination gets it then).
 * 1 if kept: no longer counted for the caller; 0 (idle_s or max 0: reuse
 * is off) and the session says QUIT as usual (the caller calls
 * smtp_cache_close).
 */
int smtp_cache_put(struct smtp_cache *sc, const char *key, struct smtp_client *c,
                   long idle_s, long max);
/* In line for key, for owner o: w->wake(arg) when a session or a place is
 * there.  The owner's cancel takes it out of line (and gives back what it
 * was given meanwhile). */
void smtp_cache_wait(struct smtp_cache *sc, struct async_owner *o, const char *key,
                     struct smtp_cache_wait *w, smtp_cache_wake_fn *wake, void *arg);
/*
 * The wait is over (woken, or the waiter's own time ran out): the session
 * it was handed (the caller gives it a transaction), or NULL: connect.
 * Either way counted for the caller; NULL after a time out counts one over
 * the bound.
 */
struct smtp_client *smtp_cache_wait_end(struct smtp_cache_wait *w);
/* Sessions parked now; connections open to key (in use or parked). */
size_t smtp_cache_count(const struct smtp_cache *sc);
long smtp_cache_open_count(const struct smtp_cache *sc, const char *key);

#endif
