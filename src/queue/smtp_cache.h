/*
 * smtp_cache.h - the idle outgoing SMTP sessions of one queue process,
 * kept for the next transaction to the same destination (connection
 * reuse, as Postfix's scache).
 *
 * Owns: the parked sessions, as their owner while they are idle (async.h):
 * they belong to no delivery run; one ends with QUIT when its idle time is
 * over or when the cache goes (the process stops), and is forgotten when
 * the server closes it.  The key of a destination: the address and port
 * connected to, the TLS policy and the name the certificate must carry,
 * and our HELO name.  The bounds: SMTP_CACHE_PER_DEST sessions per
 * destination, SMTP_CACHE_MAX in all.  Must not: choose destinations or
 * addresses (deliver_smtp.c does, and asks here before connecting), read
 * the configuration (the caller gives the run's Smtp_reuse_time and
 * Smtp_reuse_max), retry, or log.
 */
#ifndef SELOR_SMTP_CACHE_H
#define SELOR_SMTP_CACHE_H

#include <stddef.h>
#include <sys/socket.h>

#define SMTP_CACHE_PER_DEST 20
#define SMTP_CACHE_MAX 256
#define SMTP_CACHE_KEY_MAX 600

struct smtp_cache;
struct smtp_client;
struct smtp_client_msg;

struct smtp_cache *smtp_cache_new(void);
/* Every parked session says QUIT and closes; sc is freed. */
void smtp_cache_free(struct smtp_cache *sc);
/* The key of the destination addr for a session that msg would start. */
void smtp_cache_key(const struct sockaddr *addr, const struct smtp_client_msg *msg,
                    char *out, size_t size);
/* The most recently parked session for key, out of the cache (the caller
 * gives it a transaction with smtp_client_reuse), or NULL. */
struct smtp_client *smtp_cache_take(struct smtp_cache *sc, const char *key);
/*
 * Only in the client's done, when its result is reusable: parks c for at
 * most idle_s seconds, if it has carried fewer than max transactions and
 * the bounds leave room.  1 if kept; 0 (idle_s or max 0: reuse is off) and
 * the session says QUIT as usual.
 */
int smtp_cache_put(struct smtp_cache *sc, const char *key, struct smtp_client *c,
                   long idle_s, long max);
/* Sessions parked now. */
size_t smtp_cache_count(const struct smtp_cache *sc);

#endif
