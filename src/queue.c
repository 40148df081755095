/*
 * queue.c - the queue process: finds queued mail and (from the delivery
 * work on) delivers it.
 *
 * Owns: the periodic scan of Queue_path every Qsleep_time seconds on the
 * thread pool, and the removal of debris a crash can leave: temporary
 * files in Temp_path and c files without an l file, once they are old
 * enough that no commit can still be under way.  Must not: block the loop
 * or change an l file it does not hold.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "coord.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "queue.h"
#include "spool.h"

#define QUEUE_DEBRIS_AGE 3600  /* seconds before an orphan is removed */

struct queue_proc {
    uv_loop_t loop;
    uv_timer_t scan_timer;
    uv_signal_t sig_term, sig_int;
    uv_work_t scan_work;
    struct selor_node *node;
    int scanning, stopping;
    unsigned long nmsgs, removed;   /* results of the last scan */
};

struct queue_scan_ctx {
    const char *dir;
    unsigned long nmsgs, removed;
    time_t now;
};

static int queue_scan_one(const char *name, void *arg)
{
    struct queue_scan_ctx *ctx = arg;
    char path[4096], lpath[4096];
    struct stat st;

    if (name[0] == 'l') {
        ctx->nmsgs++;
        return 0;
    }
    snprintf(lpath, sizeof(lpath), "%s/l%s", ctx->dir, name + 1);
    snprintf(path, sizeof(path), "%s/%s", ctx->dir, name);
    if (access(lpath, F_OK) == 0 || stat(path, &st) < 0)
        return 0;
    if (ctx->now - st.st_mtime > QUEUE_DEBRIS_AGE && spool_unlink_sync(path) == 0)
        ctx->removed++;
    return 0;
}

/* Thread pool: count messages, remove orphaned c files. */
static void queue_scan_work(uv_work_t *w)
{
    struct queue_proc *q = w->data;
    struct queue_scan_ctx ctx = {selor_conf->Queue_path, 0, 0, time(NULL)};

    spool_scan_sync(ctx.dir, queue_scan_one, &ctx);
    q->nmsgs = ctx.nmsgs;
    q->removed = ctx.removed;
}

static void queue_scan_after(uv_work_t *w, int status)
{
    struct queue_proc *q = w->data;

    q->scanning = 0;
    if (q->removed)
        log_warn("queue scan removed %lu orphaned content file(s)", q->removed);
}

static void queue_scan_tick(uv_timer_t *t)
{
    struct queue_proc *q = t->data;

    if (q->scanning || q->stopping)
        return;
    q->scanning = 1;
    q->scan_work.data = q;
    uv_queue_work(&q->loop, &q->scan_work, queue_scan_work, queue_scan_after);
}

static void queue_close_cb(uv_handle_t *h)
{
}

static void queue_stop(uv_signal_t *sig, int signum)
{
    struct queue_proc *q = sig->data;

    if (q->stopping)
        return;
    q->stopping = 1;
    uv_close((uv_handle_t *)&q->scan_timer, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_term, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_int, queue_close_cb);
    module_detach_all(&q->node->mods);
    coord_detach(q->node->coord);
}

void queue_main(struct selor_node *node)
{
    struct queue_proc *q = mem_zalloc(sizeof(*q));
    uint64_t period = (uint64_t)selor_conf->Qsleep_time * 1000;

    log_set_role("queue");
    q->node = node;
    uv_loop_init(&q->loop);
    module_attach_all(&node->mods, &q->loop);
    if (coord_attach(node->coord, &q->loop) < 0)
        log_fatal("coordination backend cannot start");
    uv_signal_init(&q->loop, &q->sig_term);
    uv_signal_init(&q->loop, &q->sig_int);
    q->sig_term.data = q->sig_int.data = q;
    uv_signal_start(&q->sig_term, queue_stop, SIGTERM);
    uv_signal_start(&q->sig_int, queue_stop, SIGINT);
    uv_timer_init(&q->loop, &q->scan_timer);
    q->scan_timer.data = q;
    uv_timer_start(&q->scan_timer, queue_scan_tick, 0, period);
    uv_run(&q->loop, UV_RUN_DEFAULT);
    uv_loop_close(&q->loop);
    exit(0);
}
