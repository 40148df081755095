/*
 * coord_net.h - for the Redis backend's files only (cluster/): hiredis
 * driven by the libuv loop, and Redis and Sentinel host names resolved
 * without blocking the loop.
 *
 * Owns: the hiredis event adapter, and the rule that hiredis is only ever
 * given a numeric address (redisAsyncConnect resolves a name with a
 * blocking getaddrinfo).  Must not: know Redis commands or the backend's
 * state.
 */
#ifndef SELOR_COORD_NET_H
#define SELOR_COORD_NET_H

#include <hiredis/async.h>
#include <uv.h>

#include "async.h"
#include "net.h"

struct dns;

/* Hooks ac's socket into loop; -1 on failure (ac is then the caller's). */
int coord_ev_attach(redisAsyncContext *ac, uv_loop_t *loop);

#define COORD_RESOLVE_MAX 8

/*
 * The numeric addresses of one host: n of them (IPv4 first), or n == 0
 * and why says what failed.
 */
struct coord_addrs {
    char ip[COORD_RESOLVE_MAX][64];
    int port;
    int n;
    char why[160];
};

typedef void coord_resolve_fn(void *arg, const struct coord_addrs *a);

/* One lookup at a time; lives in the memory of whoever asks (no allocation,
 * so a dropped answer leaks nothing). */
struct coord_resolve {
    coord_resolve_fn *fn;
    void *arg;
    int port;
};

/*
 * hp's addresses: at once for an IP literal, else asked from d (c-ares, on
 * the loop) for owner o; fn may run before the call returns.  An answer
 * that comes after o cancelled is dropped.  d NULL: names cannot be
 * resolved (fn says so).
 */
void coord_resolve(struct coord_resolve *r, struct dns *d, struct async_owner *o,
                   const struct net_hostport *hp, coord_resolve_fn *fn, void *arg);

#endif
