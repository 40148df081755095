/*
 * ops.h - the ops process of a node: what the load balancer and the
 * monitoring ask (Agent_port, Metrics_port), answered from one state.
 *
 * ops.c keeps the state (stopping, drained, spool writable, backend
 * reachable) and runs the process; ops_agent.c answers HAProxy's
 * agent-check; ops_http.c serves GET /metrics and /health.  Must not:
 * accept mail, touch a queue file, or change the node's state.
 */
#ifndef SELOR_OPS_H
#define SELOR_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "async.h"

struct selor_node;
struct ops_agent;
struct ops_http;

struct ops {
    uv_loop_t loop;
    struct selor_node *node;
    struct async_owner own;        /* drain queries and spool probes */
    uv_timer_t tick;
    uv_signal_t sig_term, sig_int, sig_quit, sig_usr1, sig_usr2;
    uv_prepare_t log_flush;
    int stopping;                  /* SIGTERM: the node is stopping */
    int draining;                  /* selorctl drain (Redis backend) */
    int coord_down;                /* the backend did not answer */
    int spool_ok;                  /* last probe of Temp_path */
    char spool_why[160];           /* why not */
    int drain_asked, probing, finished;
    const struct config *probe_conf;  /* held while a probe runs (a reload may come) */
    int probe_ok;                  /* written by the probe on the thread pool */
    char probe_why[160];
    uint64_t last_drain_ms, last_probe_ms, stop_ms;
    pid_t master;                  /* our parent: gone = stop */
    struct ops_agent *agent;
    struct ops_http *http;
};

/*
 * Why the node should take no new connections: "stopping", "draining",
 * "spool not writable: ...", in buf; NULL when it may.
 */
const char *ops_unready(const struct ops *o, char *buf, size_t size);
/* The one-minute load average, and the agent's weight for it (1..100). */
double ops_load(void);
int ops_weight(double load, long lavg_queue);

/* ops_agent.c, ops_http.c: serve the listening socket fd on o's loop. */
struct ops_agent *ops_agent_open(struct ops *o, int fd);
void ops_agent_close(struct ops_agent *a);
struct ops_http *ops_http_open(struct ops *o, int fd);
void ops_http_close(struct ops_http *h);

/* The child's body (master.c forks it); never returns.  fds: -1 = off. */
__attribute__((noreturn)) void ops_main(struct selor_node *node, int agent_fd,
                                        int metrics_fd);

#endif
