/*
 * tls_reload.h - a new TLS certificate on SIGHUP (see tls_reload.c).
 */
#ifndef SELOR_TLS_RELOAD_H
#define SELOR_TLS_RELOAD_H

#include <uv.h>

#include "config.h"
#include "stream.h"

/* The master (root): reads the files, checks them with the module and
 * sends them down each pipe in fds (-1: none).  -1 if not reloaded. */
int tls_reload_master(const struct config *c, const struct stream_tls *eng,
                      const int *fds, int nfds);
/* An SMTP worker: applies what the master sends on fd (-1: nothing). */
void tls_reload_watch(uv_loop_t *loop, int fd, const struct stream_tls *eng);

#endif
