/*
 * queue.c - the queue process: decides which queue file is delivered when.
 *
 * Owns: the scheduler.  Work is found through the coordination backend's
 * due-time index: SMTP workers announce new mail, delivery runs announce
 * their next try, and the directory scan every Qsleep_time seconds (on the
 * thread pool) announces whatever the index does not know yet, so the
 * index rebuilds itself after a restart.  The pump claims due files (main
 * queue first, then the lower-priority qlimit queue, each within its limit:
 * Max_qprocs, Qlimit_max_procs) and starts a delivery run for each, unless
 * the load average is above Lavg_queue.  Claims go in batches, and the
 * ended runs' releases go with them (one Redis round trip for many files).  The alternate queues rules send
 * mail to (Def! Queue_path, spool_queues.h) are in main's index: they share
 * its claims and its Max_qprocs slots; the run finds the file's directory.  The scan also removes debris a
 * crash can leave: c files without an l file, old temporary files.
 * Must not: block the loop or change a queue file itself (delivery.c and
 * queue_ctl.c do, holding its claim).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "async.h"
#include "config.h"
#include "config_reload.h"
#include "coord.h"
#include "delivery.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "node.h"
#include "queue.h"
#include "sysload.h"
#include "rules.h"
#include "rules_exec.h"
#include "queue_ctl.h"
#include "queue_id.h"
#include "smtp_cache.h"
#include "spool.h"
#include "spool_queues.h"

#define QUEUE_DEBRIS_AGE 3600     /* seconds before an orphan is removed */
#define QUEUE_FOREIGN_DEBRIS_AGE (24 * 3600)   /* another node's, that node gone */
#define QUEUE_MAX_RUNS 500        /* runs at once when no limit is set */
#define QUEUE_TICK_MS 1000
#define QUEUE_STOP_GRACE_MS 15000
#define QUEUE_CLAIM_BATCH 16      /* files one claim may bring */
#define QUEUE_RELEASE_WAIT_MS 20  /* a release waits this long for a claim to go with */

struct queue_found {
    char queue[16];                /* its index (spool_queues_coord) */
    char qid[QUEUE_ID_MAX];
};

struct queue_proc {
    struct async_owner own;         /* claims and scans of the process itself */
    uv_loop_t loop;
    struct selor_node *node;
    struct delivery_env env;
    struct queue_id_gen idgen;
    uv_timer_t tick, scan_timer, stop_timer, release_timer;
    uv_prepare_t log_flush;
    uv_signal_t sig_term, sig_int, sig_usr1, sig_usr2;
    int scanning, stopping;
    int pump_active, pump_again, claim_pending, claim_qlimit;
    uint64_t qlimit_after_ms;       /* the qlimit queue was empty: ask later */
    uint64_t claims_after_ms;       /* claims came back too late: ask later */
    int main_dry;                   /* main had no more due: ask on a wake or a tick */
    unsigned long wakes, claim_wakes;   /* wake-ups, and their count when last asked */
    struct coord_release *rel;      /* claims of ended runs not given back yet */
    size_t nrel, rel_alloc;
    unsigned long nruns;
    struct delivery **runs;
    size_t runs_alloc;
    struct queue_found *found;     /* results of the last scan */
    size_t nfound, found_alloc;
    unsigned long removed;
    struct queue_ctl *ctl;
};

/* ---- load average ---- */

static int queue_load_too_high(void)
{
    return selor_conf->Lavg_queue > 0 && sysload_avg1() > (double)selor_conf->Lavg_queue;
}

static uint64_t queue_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- runs ---- */

static void queue_pump(struct queue_proc *q);
static void queue_maybe_exit(struct queue_proc *q);

static void queue_run_done(void *arg, struct delivery *d)
{
    struct queue_proc *q = arg;

    for (size_t i = 0; i < q->nruns; i++)
        if (q->runs[i] == d) {
            q->runs[i] = q->runs[--q->nruns];
            break;
        }
    if (q->stopping)
        queue_maybe_exit(q);
    else
        queue_pump(q);
}

static void queue_run_start(struct queue_proc *q, const struct coord_claim *cl)
{
    if (q->nruns == q->runs_alloc) {
        q->runs_alloc = q->runs_alloc ? q->runs_alloc * 2 : 64;
        q->runs = mem_realloc(q->runs, q->runs_alloc * sizeof(*q->runs));
    }
    q->runs[q->nruns++] = delivery_start(&q->env, cl, queue_run_done, q);
}

/* ---- the pump ---- */

/*
 * A claim answered when most of its lease is gone (Redis answers this node
 * late) cannot be used, and asking again at once would only take the file
 * away from nodes that can: the lock, set when Redis ran the script, would
 * lapse just as this node heard of it, and this node would ask first again.
 * So it gives the file back and claims nothing for a lease.
 */
static int queue_claim_too_late(struct queue_proc *q, const struct coord_claim *cl)
{
    uint64_t lease = (uint64_t)selor_conf->Lock_lease * 1000, now = coord_mono_ms();

    if (!cl->asked_ms || now < cl->asked_ms + lease * 3 / 4)
        return 0;
    if (now >= q->claims_after_ms)
        log_warn("%s: the claim was answered %llu ms after it was asked, too late to "
                 "work on (Lock_lease %ld s); claiming nothing for a lease", cl->qid,
                 (unsigned long long)(now - cl->asked_ms), selor_conf->Lock_lease);
    q->claims_after_ms = now + lease;
    return 1;
}

/*
 * Round trips (docs/performance.md): a run's release is not sent alone.  It
 * waits for the next claim, which carries it (one request gives back many
 * files and claims many), or QUEUE_RELEASE_WAIT_MS at most; a release
 * frees the slot the claim after it uses.  And a claim that found nothing
 * is not repeated until a wake-up (an announcement) or the tick says there
 * may be more.
 */
static void queue_release_flush(struct queue_proc *q)
{
    struct coord_release *rel = q->rel;
    size_t n = q->nrel;

    uv_timer_stop(&q->release_timer);
    if (n == 0)
        return;
    q->rel = NULL;
    q->nrel = q->rel_alloc = 0;
    coord_claim_batch(q->env.coord, NULL, "main", 0, 0, 0, rel, n, NULL, NULL);
    mem_free(rel);
}

static void queue_release_wait_over(uv_timer_t *t)
{
    queue_release_flush(t->data);
}

/* delivery_env's release: the claim goes back with the next request. */
static void queue_release(void *arg, const struct coord_claim *cl, long next_due)
{
    struct queue_proc *q = arg;

    if (q->nrel == q->rel_alloc) {
        q->rel_alloc = q->rel_alloc ? q->rel_alloc * 2 : 32;
        q->rel = mem_realloc(q->rel, q->rel_alloc * sizeof(*q->rel));
    }
    q->rel[q->nrel].cl = *cl;
    q->rel[q->nrel++].next_due = next_due;
    if (q->stopping)
        queue_release_flush(q);
    else if (!uv_is_active((uv_handle_t *)&q->release_timer))
        uv_timer_start(&q->release_timer, queue_release_wait_over, QUEUE_RELEASE_WAIT_MS, 0);
}

static void queue_claimed(void *arg, int status, const struct coord_claim *cl, size_t n)
{
    struct queue_proc *q = arg;
    int qlimit = q->claim_qlimit, late = 0;

    q->claim_pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (q->stopping)
            queue_release(q, &cl[i], 0);
        else if (late || queue_claim_too_late(q, &cl[i])) {
            late = 1;
            queue_release(q, &cl[i], (long)time(NULL));
        } else
            queue_run_start(q, &cl[i]);
    }
    if (late) {
        queue_release_flush(q);
        return;
    }
    if (!qlimit && status == COORD_EMPTY && q->claim_wakes == q->wakes)
        q->main_dry = 1;      /* no wake-up since it was asked: nothing new */
    if (q->stopping) {
        /* nothing more */
    } else if (status == COORD_OK) {
        /* all that was asked came: more may be due (main first, unless dry) */
        q->pump_again = qlimit && q->main_dry ? 2 : 1;
    } else if (!qlimit && status == COORD_EMPTY && !q->main_dry) {
        q->pump_again = 1;            /* woken while asking: what came meanwhile */
    } else if (!qlimit && status != COORD_DOWN && queue_now_ms() >= q->qlimit_after_ms) {
        q->pump_again = 2;            /* main is empty or full: try qlimit */
    } else if (qlimit) {
        /* Nothing there: the lower-priority queue is asked again a second on. */
        q->qlimit_after_ms = queue_now_ms() + QUEUE_TICK_MS;
    }
    /* An answer that came later (Redis) continues the pump, if there is more. */
    if (!q->pump_active && q->pump_again)
        queue_pump(q);
}

static void queue_claim(struct queue_proc *q, int qlimit)
{
    long limit = qlimit ? selor_conf->Qlimit_max_procs : selor_conf->Max_qprocs;
    struct coord_release *rel = q->rel;
    size_t want = QUEUE_CLAIM_BATCH, nrel = q->nrel;

    if (QUEUE_MAX_RUNS - q->nruns < want)
        want = QUEUE_MAX_RUNS - q->nruns;
    q->claim_qlimit = qlimit;
    q->claim_pending = 1;
    q->claim_wakes = q->wakes;
    /* the releases waiting go with it (a run may end, and add one, meanwhile) */
    q->rel = NULL;
    q->nrel = q->rel_alloc = 0;
    uv_timer_stop(&q->release_timer);
    coord_claim_batch(q->env.coord, &q->own, qlimit ? "qlimit" : "main", limit,
                      (long)time(NULL), want, rel, nrel, queue_claimed, q);
    mem_free(rel);
}

/* Claims due files until none is due, every slot is taken or the cap is hit. */
static void queue_pump(struct queue_proc *q)
{
    if (q->pump_active || q->claim_pending || q->stopping ||
        coord_mono_ms() < q->claims_after_ms)
        return;
    if (queue_load_too_high())
        return;
    q->pump_active = 1;
    if (q->pump_again == 0)   /* a fresh start: the main queue first, unless it is dry */
        q->pump_again = !q->main_dry ? 1 : queue_now_ms() >= q->qlimit_after_ms ? 2 : 0;
    while (q->pump_again && !q->claim_pending && q->nruns < QUEUE_MAX_RUNS) {
        int qlimit = q->pump_again == 2;
        q->pump_again = 0;
        queue_claim(q, qlimit);
    }
    q->pump_active = 0;
}

static void queue_wake(void *arg)
{
    struct queue_proc *q = arg;

    q->wakes++;
    q->main_dry = 0;
    queue_pump(q);
}

static void queue_scan_start(struct queue_proc *q);

static void queue_tick(uv_timer_t *t)
{
    struct queue_proc *q = t->data;

    coord_set_inflight(q->env.coord, (long)q->nruns);
    metrics_set(METRIC_DELIVERY_RUNS, 0, (int64_t)q->nruns);
    if (coord_take_rescan(q->env.coord))
        queue_scan_start(q);    /* the index may be gone: rebuild it now */
    q->main_dry = 0;            /* files fall due with time, other nodes announce */
    queue_pump(q);
}

/* ---- the scan (safety net and index rebuild) ---- */

static void queue_found_add(struct queue_proc *q, const char *queue, const char *qid)
{
    if (q->nfound == q->found_alloc) {
        q->found_alloc = q->found_alloc ? q->found_alloc * 2 : 256;
        q->found = mem_realloc(q->found, q->found_alloc * sizeof(*q->found));
    }
    snprintf(q->found[q->nfound].queue, sizeof(q->found[0].queue), "%s", queue);
    snprintf(q->found[q->nfound].qid, sizeof(q->found[0].qid), "%s", qid);
    q->nfound++;
}

struct queue_scan_ctx {
    struct queue_proc *q;
    const char *queue;
    char dir[2048];
    time_t now;
};

static int queue_scan_one(const char *name, void *arg)
{
    struct queue_scan_ctx *ctx = arg;
    char path[4096], lpath[4096];
    struct stat st;

    if (name[0] == 'l') {
        queue_found_add(ctx->q, ctx->queue, name + 1);
        return 0;
    }
    snprintf(lpath, sizeof(lpath), "%s/l%s", ctx->dir, name + 1);
    snprintf(path, sizeof(path), "%s/%s", ctx->dir, name);
    if (access(lpath, F_OK) == 0 || stat(path, &st) < 0)
        return 0;
    if (ctx->now - st.st_mtime > QUEUE_DEBRIS_AGE && spool_unlink_sync(path) == 0)
        ctx->q->removed++;
    return 0;
}

/* A process of this machine with that pid is alive. */
static int queue_pid_alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/*
 * The age at which a temporary file is debris, or -1 while it is in use.
 * A commit's c<ID>/l<ID> belong to the SMTP worker the ID names: on this
 * node, in use while that worker lives (a slow DATA may take hours); of
 * another node, that node's own scan judges it, unless it is a day old
 * (the node is gone).  A rewrite's l<ID>.<pid> belongs to that pid.
 */
static long queue_temp_debris_age(const char *name, unsigned long my_node)
{
    char id[QUEUE_ID_MAX];
    const char *dot = strchr(name, '.');
    unsigned long node;
    long pid;

    if (dot)
        return queue_pid_alive(strtol(dot + 1, NULL, 10)) ? -1 : QUEUE_DEBRIS_AGE;
    snprintf(id, sizeof(id), "%s", name + 1);
    if (queue_id_origin(id, &pid, &node) < 0)
        return QUEUE_DEBRIS_AGE;
    if (node != my_node)
        return QUEUE_FOREIGN_DEBRIS_AGE;
    return queue_pid_alive(pid) ? -1 : QUEUE_DEBRIS_AGE;
}

/* Temporary files of commits and rewrites a crash cut short. */
static void queue_clean_temp(struct queue_proc *q, time_t now)
{
    DIR *d = opendir(selor_conf->Temp_path);
    unsigned long my_node = queue_id_node(selor_conf->Sid);
    struct dirent *de;
    char path[4096];
    struct stat st;
    long age;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if ((de->d_name[0] != 'c' && de->d_name[0] != 'l') ||
            (age = queue_temp_debris_age(de->d_name, my_node)) < 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", selor_conf->Temp_path, de->d_name);
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > age &&
            unlink(path) == 0)
            q->removed++;
    }
    closedir(d);
}

/* Thread pool: list every queue directory (main, qlimit, alternates). */
static void queue_scan_work(void *arg)
{
    struct queue_proc *q = arg;
    struct queue_scan_ctx ctx;

    q->nfound = 0;
    q->removed = 0;
    ctx.q = q;
    ctx.now = time(NULL);
    for (size_t i = 0; i < spool_queues_count(); i++) {
        size_t before = q->nfound;
        ctx.queue = spool_queues_coord(spool_queues_name(i));
        if (spool_queues_dir(spool_queues_name(i), ctx.dir, sizeof(ctx.dir)) == 0)
            spool_scan_sync(ctx.dir, queue_scan_one, &ctx);
        metrics_set(METRIC_QUEUE_MESSAGES, (unsigned)i, (int64_t)(q->nfound - before));
    }
    queue_clean_temp(q, ctx.now);
}

/*
 * When a file the index does not know is due.  A message accepted a moment
 * ago may simply not be announced yet: with Immed_delivery 0 it is due
 * Qsleep_time after it was accepted, as its announcement would say.
 */
static long queue_scan_due(const char *qid)
{
    long accepted = queue_id_time(qid), now = (long)time(NULL);

    if (selor_conf->Immed_delivery == 0 && accepted + selor_conf->Qsleep_time > now)
        return accepted + selor_conf->Qsleep_time;
    return 0;
}

static void queue_scan_after(void *arg, int status)
{
    struct queue_proc *q = arg;

    q->scanning = 0;
    if (q->removed)
        log_warn("queue scan removed %lu leftover file(s) of interrupted commits",
                 q->removed);
    if (q->stopping)
        return;
    for (size_t i = 0; i < q->nfound; i++)
        coord_announce(q->env.coord, q->found[i].queue, q->found[i].qid,
                       queue_scan_due(q->found[i].qid), COORD_ANN_NEW);
    q->main_dry = 0;
    queue_pump(q);
}

static void queue_scan_start(struct queue_proc *q)
{
    if (q->scanning || q->stopping)
        return;
    q->scanning = 1;
    if (async_work(&q->own, &q->loop, queue_scan_work, queue_scan_after, q) < 0)
        q->scanning = 0;
}

static void queue_scan_tick(uv_timer_t *t)
{
    queue_scan_start(t->data);
}

/* ---- stopping ---- */

static void queue_close_cb(uv_handle_t *h)
{
}

static void queue_maybe_exit(struct queue_proc *q)
{
    if (q->nruns > 0 || q->stopping != 1)
        return;
    q->stopping = 2;
    queue_release_flush(q);
    async_owner_cancel(&q->own);   /* a claim answered from now on goes back */
    uv_close((uv_handle_t *)&q->release_timer, queue_close_cb);
    uv_close((uv_handle_t *)&q->tick, queue_close_cb);
    uv_close((uv_handle_t *)&q->scan_timer, queue_close_cb);
    uv_close((uv_handle_t *)&q->stop_timer, queue_close_cb);
    uv_close((uv_handle_t *)&q->log_flush, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_term, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_int, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_usr1, queue_close_cb);
    uv_close((uv_handle_t *)&q->sig_usr2, queue_close_cb);
    rules_watch_stop();
    rules_exec_pool_free(q->env.exec);
    q->env.exec = NULL;
    queue_ctl_close(q->ctl);
    smtp_cache_free(q->env.scache);     /* parked sessions say QUIT */
    q->env.scache = NULL;
    dns_free(q->env.dns);
    module_detach_all(&q->node->mods);
    coord_detach(q->node->coord);
}

static void queue_grace_over(uv_timer_t *t)
{
    struct queue_proc *q = t->data;

    for (size_t i = 0; i < q->nruns; i++)
        delivery_stop(q->runs[i]);
}

static void queue_stop(uv_signal_t *sig, int signum)
{
    struct queue_proc *q = sig->data;

    if (q->stopping)
        return;
    q->stopping = 1;
    queue_release_flush(q);
    uv_timer_stop(&q->tick);
    uv_timer_stop(&q->scan_timer);
    uv_timer_start(&q->stop_timer, queue_grace_over, QUEUE_STOP_GRACE_MS, 0);
    queue_maybe_exit(q);
}

/* ---- start ---- */

static void queue_flush_logs(uv_prepare_t *p)
{
    log_flush();
}

static void queue_reopen_logs(uv_signal_t *sig, int signum)
{
    log_reopen("SIGUSR1");
}

/* SIGUSR2 (the master's SIGHUP): selor.conf for the next runs (the master
 * said what changed), and the rules files, looked at now. */
static void queue_reload(uv_signal_t *sig, int signum)
{
    struct queue_proc *q = sig->data;

    config_reload_quiet(module_claims_option, &q->node->mods);
    rules_watch_now();
}

/* selorctl nodes shows which rules each node runs. */
static void queue_rules_changed(void *arg)
{
    struct queue_proc *q = arg;

    coord_set_rules(q->node->coord, rules_hash(rules_current));
}

static void queue_handles(struct queue_proc *q)
{
    uv_prepare_init(&q->loop, &q->log_flush);
    uv_prepare_start(&q->log_flush, queue_flush_logs);
    uv_unref((uv_handle_t *)&q->log_flush);
    log_set_buffered(1);
    uv_signal_init(&q->loop, &q->sig_term);
    uv_signal_init(&q->loop, &q->sig_int);
    q->sig_term.data = q->sig_int.data = q;
    uv_signal_start(&q->sig_term, queue_stop, SIGTERM);
    uv_signal_start(&q->sig_int, queue_stop, SIGINT);
    uv_signal_init(&q->loop, &q->sig_usr1);
    uv_signal_start(&q->sig_usr1, queue_reopen_logs, SIGUSR1);   /* a log rotation */
    uv_unref((uv_handle_t *)&q->sig_usr1);
    uv_signal_init(&q->loop, &q->sig_usr2);
    q->sig_usr2.data = q;
    uv_signal_start(&q->sig_usr2, queue_reload, SIGUSR2);
    uv_unref((uv_handle_t *)&q->sig_usr2);
    uv_timer_init(&q->loop, &q->tick);
    uv_timer_init(&q->loop, &q->scan_timer);
    uv_timer_init(&q->loop, &q->stop_timer);
    uv_timer_init(&q->loop, &q->release_timer);
    q->tick.data = q->scan_timer.data = q->stop_timer.data = q->release_timer.data = q;
    uv_timer_start(&q->tick, queue_tick, QUEUE_TICK_MS, QUEUE_TICK_MS);
    uv_timer_start(&q->scan_timer, queue_scan_tick, 0,
                   (uint64_t)selor_conf->Qsleep_time * 1000);
}

void queue_main(struct selor_node *node)
{
    struct queue_proc *q = mem_zalloc(sizeof(*q));
    char err[256];

    log_set_role("queue");
    q->node = node;
    async_owner_init(&q->own);
    uv_loop_init(&q->loop);
    queue_id_init(&q->idgen, selor_conf->Sid);
    srandom((unsigned)(time(NULL) ^ getpid()));
    module_attach_all(&node->mods, &q->loop);
    if (coord_attach(node->coord, &q->loop) < 0)
        log_fatal("coordination backend cannot start");
    q->env.loop = &q->loop;
    q->env.coord = node->coord;
    q->env.mods = &node->mods;
    q->env.tls = &node->tls;
    q->env.idgen = &q->idgen;
    q->env.dns = dns_new(&q->loop, selor_conf->Dns_servers, err, sizeof(err));
    if (q->env.dns == NULL)
        log_fatal("%s", err);
    q->env.scache = smtp_cache_new();
    q->env.release = queue_release;
    q->env.release_arg = q;
    q->env.exec = rules_exec_pool_new(&q->loop, (int)selor_conf->Rules_exec_max, 1000);
    rules_watch_start(&q->loop, selor_conf, queue_rules_changed, q, spool_queues_check_new);
    coord_watch(node->coord, queue_wake, q);
    q->ctl = queue_ctl_open(&q->loop, node->ctl_fd, node->dropped, &q->env);
    queue_handles(q);
    uv_run(&q->loop, UV_RUN_DEFAULT);
    log_flush();
    uv_loop_close(&q->loop);
    exit(0);
}
