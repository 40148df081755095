/*
 * node.h - what every process of one Selor node shares, set up by the
 * master before it forks: the modules, the listening sockets and the
 * coordination backend.  Read-only in the children.
 */
#ifndef SELOR_NODE_H
#define SELOR_NODE_H

#include "module.h"
#include "stream.h"

struct coord;

#define NODE_MAX_WORKERS 256

struct selor_node {
    struct module_set mods;
    struct stream_tls tls;            /* Tls_module's engine (ops NULL: none) */
    int tls_pipe;                     /* a worker: new certificates come here */
    int listen_fd[NODE_MAX_WORKERS];  /* one SO_REUSEPORT socket a worker */
    int nworkers;
    struct coord *coord;
    int ctl_fd;                       /* control socket for selorctl; -1 none */
    int foreground;
    int dropped;                      /* started as root, now User/Group */
};

#endif
