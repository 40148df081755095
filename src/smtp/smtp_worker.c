/*
 * smtp_worker.c - an SMTP worker process (see smtp_worker.h).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_reload.h"
#include "coord.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "smtp_server.h"
#include "smtp_worker.h"
#include "rules.h"
#include "rules_exec.h"
#include "spool_queues.h"
#include "tls_reload.h"

#define SMTP_WORKER_BACKLOG 1024
#define SMTP_WORKER_GRACE_MS 20000  /* open transactions may finish */

static void worker_on_connection(uv_stream_t *server, int status)
{
    struct smtp_worker *w = server->data;

    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    if (!w->stopping)
        smtp_server_accept(w, server);
}

static void worker_close_cb(uv_handle_t *h)
{
}

/* Everything is finished: release what keeps the loop alive. */
static void worker_finish(struct smtp_worker *w)
{
    uv_close((uv_handle_t *)&w->sig_term, worker_close_cb);
    uv_close((uv_handle_t *)&w->sig_int, worker_close_cb);
    uv_close((uv_handle_t *)&w->sig_usr1, worker_close_cb);
    uv_close((uv_handle_t *)&w->sig_usr2, worker_close_cb);
    rules_watch_stop();
    rules_exec_pool_free(w->exec);
    w->exec = NULL;
    uv_close((uv_handle_t *)&w->stop_timer, worker_close_cb);
    uv_close((uv_handle_t *)&w->log_flush, worker_close_cb);
    module_detach_all(&w->node->mods);
    coord_detach(w->node->coord);
    dns_free(w->dns);
}

void smtp_worker_session_gone(struct smtp_worker *w)
{
    if (w->stopping && w->nsessions == 0 && w->stopping == 1) {
        w->stopping = 2;
        worker_finish(w);
    }
}

static void worker_grace_over(uv_timer_t *t)
{
    struct smtp_worker *w = t->data;

    log_warn("stop: %lu session(s) still open after the grace time; closing them",
             w->nsessions);
    smtp_server_kill_all(w);
}

static void worker_stop(uv_signal_t *sig, int signum)
{
    struct smtp_worker *w = sig->data;

    if (w->stopping)
        return;
    w->stopping = 1;
    uv_close((uv_handle_t *)&w->listener, worker_close_cb);
    smtp_server_shutdown_all(w);
    uv_timer_start(&w->stop_timer, worker_grace_over, SMTP_WORKER_GRACE_MS, 0);
    smtp_worker_session_gone(w);
}

static void worker_reopen_logs(uv_signal_t *sig, int signum)
{
    log_reopen("SIGUSR1");
}

/* selorctl nodes shows which rules each node runs. */
static void worker_rules_changed(void *arg)
{
    struct smtp_worker *w = arg;

    coord_set_rules(w->node->coord, rules_hash(rules_current));
}

/* SIGUSR2 (the master's SIGHUP): selor.conf for the next sessions (the
 * master said what changed), and the rules files, looked at now. */
static void worker_reload(uv_signal_t *sig, int signum)
{
    struct smtp_worker *w = sig->data;

    config_reload_quiet(module_claims_option, &w->node->mods);
    rules_watch_now();
}

static void worker_flush_logs(uv_prepare_t *p)
{
    log_flush();
}

static void worker_signals(struct smtp_worker *w)
{
    uv_signal_init(&w->loop, &w->sig_term);
    uv_signal_init(&w->loop, &w->sig_int);
    uv_signal_init(&w->loop, &w->sig_usr1);
    uv_signal_init(&w->loop, &w->sig_usr2);
    w->sig_term.data = w->sig_int.data = w->sig_usr1.data = w->sig_usr2.data = w;
    uv_signal_start(&w->sig_usr2, worker_reload, SIGUSR2);
    uv_unref((uv_handle_t *)&w->sig_usr2);
    uv_signal_start(&w->sig_term, worker_stop, SIGTERM);
    uv_signal_start(&w->sig_int, worker_stop, SIGINT);
    uv_signal_start(&w->sig_usr1, worker_reopen_logs, SIGUSR1);
    uv_unref((uv_handle_t *)&w->sig_usr1);
}

void smtp_worker_main(struct selor_node *node, int index, int listen_fd)
{
    struct smtp_worker *w = mem_zalloc(sizeof(*w));
    struct buf err = BUF_INIT(0);
    char errtext[256];
    int r;

    log_set_role("smtp");
    w->node = node;
    w->index = index;
    uv_loop_init(&w->loop);
    if (spool_open(&w->spool, &w->loop, selor_conf->Queue_path,
                   selor_conf->Temp_path, &err) < 0)
        log_fatal("%s", buf_cstr(&err));
    if (index == 0)
        log_info("spool: commits flushed with %s (Spool_flush %s)",
                 spool_set_flush(&w->spool, selor_conf->Spool_flush), selor_conf->Spool_flush);
    else
        spool_set_flush(&w->spool, selor_conf->Spool_flush);
    queue_id_init(&w->idgen, selor_conf->Sid);
    w->dns = dns_new(&w->loop, selor_conf->Dns_servers, errtext, sizeof(errtext));
    if (w->dns == NULL)
        log_fatal("%s", errtext);
    module_attach_all(&node->mods, &w->loop);
    w->exec = rules_exec_pool_new(&w->loop, (int)selor_conf->Rules_exec_max, 1000);
    rules_watch_start(&w->loop, selor_conf, worker_rules_changed, w, spool_queues_check_new);
    tls_reload_watch(&w->loop, node->tls_pipe, &node->tls);
    if (coord_attach(node->coord, &w->loop) < 0)
        log_fatal("coordination backend cannot start");
    uv_timer_init(&w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    uv_prepare_init(&w->loop, &w->log_flush);
    uv_prepare_start(&w->log_flush, worker_flush_logs);
    uv_unref((uv_handle_t *)&w->log_flush);
    log_set_buffered(1);
    worker_signals(w);
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    if ((r = uv_tcp_open(&w->listener, listen_fd)) < 0 ||
        (r = uv_listen((uv_stream_t *)&w->listener, SMTP_WORKER_BACKLOG,
                       worker_on_connection)) < 0)
        log_fatal("listen: %s", uv_strerror(r));
    uv_run(&w->loop, UV_RUN_DEFAULT);
    log_flush();
    spool_close(&w->spool);
    uv_loop_close(&w->loop);
    exit(0);
}
