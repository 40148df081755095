/*
 * coord.h - the coordination interface: what the processes of one node,
 * and the nodes of a cluster, decide together.
 *
 * Two backends sit behind one table of functions: the embedded backend
 * (one node, shared memory between its processes; the default when
 * Redis_server is empty) and the Redis backend (cluster).  Nothing above
 * this interface knows which one runs.  Calls answer through a callback,
 * which may run before the call returns (the embedded backend answers at
 * once).  Must not: touch the spool or speak SMTP.
 */
#ifndef SELOR_COORD_H
#define SELOR_COORD_H

#include <uv.h>

#include "buf.h"

struct config;
struct coord;

enum coord_verdict {
    COORD_OK = 0,
    COORD_LIMIT = 1,  /* anti-DoS: this connection trips Limit_cnx */
};

typedef void coord_conn_fn(void *arg, int verdict);

struct coord_ops {
    const char *name;
    /* Per process, after fork: hook into the process's loop. */
    int (*attach)(struct coord *c, uv_loop_t *loop);
    void (*detach)(struct coord *c);
    void (*destroy)(struct coord *c);
    /* A new connection from ip: record it and judge it (Limit_*). */
    void (*conn_check)(struct coord *c, const char *ip, coord_conn_fn *fn,
                       void *arg);
};

struct coord {
    const struct coord_ops *ops;
};

/* Creates the backend the configuration asks for (in the master). */
struct coord *coord_create(const struct config *conf, struct buf *err);
int coord_attach(struct coord *c, uv_loop_t *loop);
void coord_detach(struct coord *c);
void coord_destroy(struct coord *c);
void coord_conn_check(struct coord *c, const char *ip, coord_conn_fn *fn,
                      void *arg);

/* Backends. */
struct coord *coord_embedded_create(const struct config *conf, struct buf *err);

#endif
