/*
 * coord_sentinel.h - for the Redis backend's files only (cluster/): which
 * Redis is the primary, as Redis Sentinel tells it (Redis_sentinels,
 * Redis_master_name).
 *
 * Owns: the Sentinel protocol: asking the sentinels in turn for the
 * primary's address (SENTINEL get-master-addr-by-name), and listening on
 * one of them for "+switch-master".  Everything runs on the process's loop
 * and belongs to the watcher: when it is detached, every pending query,
 * lookup and connection is dropped and no answer comes.  Must not: talk to
 * the primary itself (coord_redis.c does, and checks its ROLE).
 */
#ifndef SELOR_COORD_SENTINEL_H
#define SELOR_COORD_SENTINEL_H

#include <uv.h>

#include "buf.h"

struct config;
struct csen;
struct dns;

#define CSEN_MAX 16
#define CSEN_DEFAULT_PORT 26379

/*
 * found: the answer to csen_ask: the primary is ip:port (numeric), told
 * by sentinel `who` ("host:port"); ip NULL when no sentinel knew (why).
 * switched: a sentinel announced a new primary ip:port.
 */
typedef void csen_found_fn(void *arg, const char *ip, int port, const char *who,
                           const char *why);
typedef void csen_switch_fn(void *arg, const char *ip, int port, const char *who);

/* The watcher of conf's Redis_sentinels; NULL (err set) on a bad list. */
struct csen *csen_new(const struct config *conf, struct buf *err);
/* Per process: starts listening for switches.  d may be NULL (numeric
 * addresses only). */
void csen_attach(struct csen *s, uv_loop_t *loop, struct dns *d, csen_found_fn *found,
                 csen_switch_fn *switched, void *arg);
/* Asks the sentinels for owner o: one answer through found, possibly
 * later, unless o cancels first (async.h).  A second call while one runs
 * joins it. */
struct async_owner;
void csen_ask(struct csen *s, struct async_owner *o);
/* Drops everything pending; closes the timers (the loop must run once
 * before csen_free). */
void csen_detach(struct csen *s);
void csen_free(struct csen *s);
const char *csen_master_name(const struct csen *s);

#endif
