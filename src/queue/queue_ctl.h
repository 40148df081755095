/*
 * queue_ctl.h - the queue process's control socket, for selorctl.
 *
 * Owns: the line protocol on the node's control socket (config_ctl_path):
 * one request "flush [ID]" | "hold ID" | "release ID" | "delete ID" a
 * connection, one reply line "ok ..." or "error ...".  A change to a file
 * is made holding that file's claim (kept alive by its lease, and carrying
 * its fencing token), so it never races a delivery run.  Only root may ask
 * a node that was started as root (its MDAs run as User).  Must not:
 * block the loop (file work runs on the thread pool).
 */
#ifndef SELOR_QUEUE_CTL_H
#define SELOR_QUEUE_CTL_H

#include <uv.h>

struct queue_ctl;
struct delivery_env;

/* fd: the listening socket the master made (-1: no control socket).
 * root_only: the node dropped privileges, so only root may ask. */
struct queue_ctl *queue_ctl_open(uv_loop_t *loop, int fd, int root_only,
                                 const struct delivery_env *env);
void queue_ctl_close(struct queue_ctl *c);

#endif
