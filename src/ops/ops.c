/*
 * ops.c - the ops process ("selor-ops"): started by the master when
 * Agent_port or Metrics_port is set, it tells the load balancer and the
 * monitoring whether this node should get new connections.
 *
 * Owns: the node's readiness as seen from outside, kept fresh on a timer:
 * drained (asked of the coordination backend every OPS_DRAIN_MS, so a
 * drain shows well within one agent interval), spool writable (a file
 * created and removed in Temp_path every OPS_PROBE_MS, on the thread
 * pool), stopping (the master's SIGTERM: from then on every answer says
 * so, until the master, once the workers have gone, ends this process
 * with SIGQUIT).  Must not: accept mail, change the drain state, or block
 * the loop (a hung disk must not stall the agent's answers).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_reload.h"
#include "coord.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "ops.h"
#include "sysload.h"

#define OPS_TICK_MS 100
#define OPS_DRAIN_MS 250        /* a drain is seen this quickly */
#define OPS_PROBE_MS 1000       /* the spool probe, at most this often */
#define OPS_STOP_MAX_MS 45000   /* stopping, and the master never said done */

/* ---- the state ---- */

const char *ops_unready(const struct ops *o, char *buf, size_t size)
{
    if (o->stopping)
        snprintf(buf, size, "stopping");
    else if (o->draining)
        snprintf(buf, size, "draining");
    else if (!o->spool_ok)
        snprintf(buf, size, "spool not writable: %s", o->spool_why);
    else
        return NULL;
    return buf;
}

double ops_load(void)
{
    return sysload_avg1();
}

/*
 * Above Lavg_queue the node gets a share of new connections that shrinks
 * as the load grows: 100% * Lavg_queue / load (twice the limit: 50%),
 * never below 1% (0% would drain it; the load is a hint, not a fault).
 */
int ops_weight(double load, long lavg_queue)
{
    double w;

    if (lavg_queue <= 0 || load <= (double)lavg_queue)
        return 100;
    w = 100.0 * (double)lavg_queue / load;
    return w < 1.0 ? 1 : (int)w;
}

static void ops_drain_answer(void *arg, int status, int draining)
{
    struct ops *o = arg;

    o->drain_asked = 0;
    o->coord_down = status != COORD_OK;
    if (status != COORD_OK)
        return;   /* the last answer stands while the backend is away */
    if (draining != o->draining)
        log_info("ops: node %s: the load balancer is told so",
                 draining ? "drained" : "no longer drained");
    o->draining = draining;
}

/* Thread pool: can User create a file in Temp_path, and use Queue_path? */
static void ops_probe_work(void *arg)
{
    struct ops *o = arg;
    const struct config *c = o->probe_conf;
    char path[4096];
    int fd, e = 0;
    const char *what = c->Temp_path;

    snprintf(path, sizeof(path), "%s/.ops-probe.%ld", c->Temp_path, (long)getpid());
    unlink(path);   /* left by a predecessor with our pid */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1)
        e = errno ? errno : EIO;
    if (fd >= 0 && close(fd) < 0 && e == 0)
        e = errno;
    if (fd >= 0)
        unlink(path);
    if (e == 0 && access(c->Queue_path, W_OK | X_OK) < 0) {
        e = errno;
        what = c->Queue_path;
    }
    o->probe_ok = e == 0;
    if (e)
        snprintf(o->probe_why, sizeof(o->probe_why), "%s: %s", what, strerror(e));
}

static void ops_probe_after(void *arg, int status)
{
    struct ops *o = arg;

    o->probing = 0;
    config_release(o->probe_conf);
    o->probe_conf = NULL;
    if (status < 0)
        return;
    if (o->probe_ok != o->spool_ok)
        log_warn("ops: spool %s%s", o->probe_ok ? "writable again" : "not writable: ",
                 o->probe_ok ? "" : o->probe_why);
    o->spool_ok = o->probe_ok;
    memcpy(o->spool_why, o->probe_why, sizeof(o->spool_why));
}

static void ops_finish(struct ops *o);

static void ops_tick(uv_timer_t *t)
{
    struct ops *o = t->data;
    uint64_t now = uv_now(&o->loop);

    if (getppid() != o->master) {
        log_warn("ops: the master is gone; stopping");
        ops_finish(o);
        return;
    }
    if (o->stopping && now - o->stop_ms > OPS_STOP_MAX_MS) {
        ops_finish(o);
        return;
    }
    if (!o->drain_asked && now - o->last_drain_ms >= OPS_DRAIN_MS) {
        o->drain_asked = 1;
        o->last_drain_ms = now;
        coord_drain_state(o->node->coord, &o->own, ops_drain_answer, o);
    }
    if (!o->probing && now - o->last_probe_ms >= OPS_PROBE_MS) {
        o->last_probe_ms = now;
        o->probe_conf = config_hold(selor_conf);
        o->probing = async_work(&o->own, &o->loop, ops_probe_work, ops_probe_after, o) == 0;
        if (!o->probing) {
            config_release(o->probe_conf);
            o->probe_conf = NULL;
        }
    }
}

/* ---- life ---- */

static void ops_close_cb(uv_handle_t *h)
{
}

static void ops_finish(struct ops *o)
{
    if (o->finished)
        return;
    o->finished = 1;
    if (o->agent)
        ops_agent_close(o->agent);
    if (o->http)
        ops_http_close(o->http);
    o->agent = NULL;
    o->http = NULL;
    async_owner_cancel(&o->own);
    uv_close((uv_handle_t *)&o->tick, ops_close_cb);
    uv_close((uv_handle_t *)&o->sig_term, ops_close_cb);
    uv_close((uv_handle_t *)&o->sig_int, ops_close_cb);
    uv_close((uv_handle_t *)&o->sig_quit, ops_close_cb);
    uv_close((uv_handle_t *)&o->sig_usr1, ops_close_cb);
    uv_close((uv_handle_t *)&o->sig_usr2, ops_close_cb);
    uv_close((uv_handle_t *)&o->log_flush, ops_close_cb);
    coord_detach(o->node->coord);
}

/* SIGTERM (the master stops): say so until the master's SIGQUIT. */
static void ops_stop(uv_signal_t *sig, int signum)
{
    struct ops *o = sig->data;

    if (o->stopping)
        return;
    o->stopping = 1;
    o->stop_ms = uv_now(&o->loop);
    log_info("ops: node stopping: the load balancer is told so");
}

static void ops_quit(uv_signal_t *sig, int signum)
{
    ops_finish(sig->data);
}

static void ops_reopen_logs(uv_signal_t *sig, int signum)
{
    log_reopen("SIGUSR1");
}

/* SIGUSR2 (the master's SIGHUP): Lavg_queue and the logs follow a reload
 * (the ports need a restart). */
static void ops_reload(uv_signal_t *sig, int signum)
{
    struct ops *o = sig->data;

    config_reload_quiet(module_claims_option, &o->node->mods);
}

static void ops_flush_logs(uv_prepare_t *p)
{
    log_flush();
}

static void ops_handles(struct ops *o)
{
    uv_prepare_init(&o->loop, &o->log_flush);
    uv_prepare_start(&o->log_flush, ops_flush_logs);
    uv_unref((uv_handle_t *)&o->log_flush);
    log_set_buffered(1);
    uv_signal_init(&o->loop, &o->sig_term);
    uv_signal_init(&o->loop, &o->sig_int);
    uv_signal_init(&o->loop, &o->sig_quit);
    uv_signal_init(&o->loop, &o->sig_usr1);
    uv_signal_init(&o->loop, &o->sig_usr2);
    o->sig_term.data = o->sig_int.data = o->sig_quit.data = o->sig_usr1.data = o;
    o->sig_usr2.data = o;
    uv_signal_start(&o->sig_usr2, ops_reload, SIGUSR2);
    uv_unref((uv_handle_t *)&o->sig_usr2);
    uv_signal_start(&o->sig_term, ops_stop, SIGTERM);
    uv_signal_start(&o->sig_int, ops_stop, SIGINT);
    uv_signal_start(&o->sig_quit, ops_quit, SIGQUIT);
    uv_signal_start(&o->sig_usr1, ops_reopen_logs, SIGUSR1);
    uv_timer_init(&o->loop, &o->tick);
    o->tick.data = o;
    uv_timer_start(&o->tick, ops_tick, 0, OPS_TICK_MS);
}

void ops_main(struct selor_node *node, int agent_fd, int metrics_fd)
{
    struct ops *o = mem_zalloc(sizeof(*o));

    log_set_role("ops");
    o->node = node;
    o->master = getppid();
    o->spool_ok = 1;   /* until the first probe says otherwise */
    async_owner_init(&o->own);
    uv_loop_init(&o->loop);
    if (coord_attach(node->coord, &o->loop) < 0)
        log_fatal("coordination backend cannot start");
    if (agent_fd >= 0 && (o->agent = ops_agent_open(o, agent_fd)) == NULL)
        log_fatal("ops: cannot serve Agent_port");
    if (metrics_fd >= 0 && (o->http = ops_http_open(o, metrics_fd)) == NULL)
        log_fatal("ops: cannot serve Metrics_port");
    ops_handles(o);
    uv_run(&o->loop, UV_RUN_DEFAULT);
    log_flush();
    uv_loop_close(&o->loop);
    exit(0);
}
