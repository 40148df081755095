/*
 * delivery.c - one delivery run of one queue file (see delivery.h).
 *
 * Phases of a run:
 *   LOAD    thread pool: read and check the l and c files; the rules of
 *           Event.qstart_process (delivery_rules.c) may put the run off
 *   PLAN    ask the accounts about each due recipient, one at a time:
 *           a mailbox (MDA), a remote domain (SMTP), an alias found only
 *           now (its targets join the file), or a failure (delivery_plan.c)
 *   RUN     one job per local recipient and one per remote domain run at
 *           once; each result is recorded in the l file as it comes
 *           (writes are coalesced, one at a time)
 *   FINISH  reports for failed recipients are queued (the report is
 *           durable before the recipient is marked reported), then the
 *           files are removed when every recipient is final, or the l file
 *           is written with the next try and put back in the index
 * Only one thread-pool job of a run is under way at a time; `busy` says so.
 * Every request of a run (lock renewals, Dlocal slots, account lookups,
 * MDAs, SMTP deliveries, thread-pool jobs) belongs to the run's owner
 * (async.h); the run's memory goes through async_owner_close, so no late
 * answer reaches a run that is over.  Writes check the lock when they run
 * and again right before their commit point (lease.h), and read the file's
 * token first: a newer holder's file is never written over or removed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "arena.h"
#include "async.h"
#include "config.h"
#include "deliver_local.h"
#include "deliver_smtp.h"
#include "delivery.h"
#include "delivery_int.h"
#include "delivery_rules.h"
#include "delivery_conf.h"
#include "delivery_domains.h"
#include "delivery_report.h"
#include "dns.h"
#include "lease.h"
#include "metrics.h"
#include "srs.h"
#include "strset.h"
#include "log.h"
#include "mem.h"
#include "module.h"
#include "queue_file.h"
#include "queue_id.h"
#include "spool.h"
#include "spool_queues.h"

void delivery_next_job(struct delivery *d);
void delivery_finish(struct delivery *d);
static void dl_write(struct delivery *d);

/* ---- small helpers ---- */

long delivery_retry_interval(int attempts, long base_minutes)
{
    int shift = attempts - 3;

    if (shift < 0)
        shift = 0;
    if (shift > 4)
        shift = 4;
    return base_minutes * 60L << shift;
}

const char *delivery_id(const struct delivery *d)
{
    return d->claim.qid;
}

long delivery_hits(const struct delivery *d)
{
    return d->hits;
}

const char *delivery_auth(const struct delivery *d)
{
    return d->auth;
}

const char *delivery_domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');

    return at ? at + 1 : "";
}

static int dl_is_bounce(const struct delivery *d)
{
    return (d->qf.flags & QF_F_BOUNCE) != 0;
}

static long dl_max_attempts(const struct delivery *d)
{
    return dl_is_bounce(d) ? d->conf->Max_error_report : d->conf->Max_attempts;
}

static long dl_base_minutes(const struct delivery *d)
{
    return strcmp(d->claim.queue, "qlimit") == 0 ? d->conf->Qlimit_time
                                                 : d->conf->Queue_time;
}

/* Runs fn on the thread pool, then `after` on the loop. */
static void dl_after_work(void *arg, int status)
{
    struct delivery *d = arg;
    void (*after)(struct delivery *) = d->after;

    d->busy = 0;
    if (status < 0 && d->err == 0)
        d->err = ECANCELED;
    if (lease_lost(&d->lease))
        d->fenced = 1;
    after(d);
}

static void dl_thread(struct delivery *d, async_work_fn *fn, void (*after)(struct delivery *))
{
    d->busy = 1;
    d->err = 0;
    d->why[0] = '\0';
    d->after = after;
    if (async_work(&d->own, d->env->loop, fn, dl_after_work, d) < 0) {
        d->busy = 0;
        d->err = EAGAIN;
        after(d);
    }
}

static void dl_path(const struct delivery *d, char kind, char *out, size_t size)
{
    snprintf(out, size, "%s/%c%s", d->dir, kind, d->claim.qid);
}

/* ---- the rules' delivery events ---- */

/* Runs ev's rules for the run: 1 done at once, 0 next(d) follows. */
static int dl_rules(struct delivery *d, enum rules_event ev, const char *rcpt,
                    const char *answer, rules_done_fn *next, void *arg)
{
    struct delivery_rules_in in = {
        .qf = &d->qf, .msgfile = d->msgfile, .rcpt = rcpt, .answer = answer,
        .hits = &d->hits, .conf = (struct config **)&d->conf, .mem = &d->mem,
        .loop = d->env->loop, .dns = d->env->dns, .coord = d->env->coord,
        .exec = d->env->exec,
        .own = &d->lookups,   /* a stop cancels a waiting event (dl_stop_jobs) */
    };
    int done;

    dl_path(d, 'c', d->msgfile, sizeof(d->msgfile));
    done = delivery_rules_event(&d->rules, ev, &in, next, arg);
    d->rules_wait = done ? 0 : (int)ev + 1;
    return done;
}

static const char *dl_rules_reply(const struct delivery *d, const char *dflt)
{
    const char *r = delivery_rules_outcome(&d->rules)->reply;

    return r[0] ? r : dflt;
}

/* ---- the lease ---- */

/* Our lock may have lapsed: writing now could overwrite a newer holder. */
static int dl_lease_gone(const struct delivery *d)
{
    return d->fenced || !lease_valid(&d->lease);
}

/* A thread-pool job's check, at its commit point (spool_write_sync). */
static int dl_still_ours(void *arg)
{
    return lease_valid(&((struct delivery *)arg)->lease);
}

static void dl_stop_jobs(struct delivery *d, int keep_committed);
void delivery_finish(struct delivery *d);
static void dl_final_step(struct delivery *d);

/*
 * The lock may lapse (SHAKY): nothing new starts and MDAs are killed (one
 * may start again elsewhere: two must never run at once), but an SMTP
 * transaction whose content went out finishes: the server may have taken
 * the message, so cutting it would only mean a second copy.  The results
 * are written once the lock is sure again (SURE).  The lock is gone
 * (LOST): everything stops, nothing is written.
 */
static void dl_lease_event(void *arg, enum lease_event ev)
{
    struct delivery *d = arg;

    if (ev == LEASE_TICK) {   /* slots are leases too: renewed with the lock */
        for (struct dl_job *j = d->jobs; j; j = j->next)
            if (j->slot && j->running)
                coord_slot_renew(d->env->coord, "dlocal", j->slot);
    }
    /* TICK too: a write may have found the lease short in the instant
     * before an answer made it sure, with no SHAKY/SURE told around it */
    if (ev == LEASE_SURE || ev == LEASE_TICK) {
        if (d->await_lock && d->phase == DL_FINISH && !d->busy &&
            lease_valid(&d->lease)) {
            d->await_lock = 0;
            dl_final_step(d);
        }
        return;
    }
    if (d->phase >= DL_ENDING || (ev == LEASE_SHAKY && d->stopping))
        return;
    dl_stop_jobs(d, ev == LEASE_SHAKY);
    delivery_finish(d);
    if (ev == LEASE_LOST && d->await_lock) {
        d->await_lock = 0;
        dl_final_step(d);
    }
}

/* ---- ending the run ---- */

/* The run's memory goes once no request of it can still be answered. */
static void dl_release(struct async_owner *o)
{
    struct delivery *d = (struct delivery *)((char *)o - offsetof(struct delivery, own));

    qf_free(&d->qf);
    buf_free(&d->ltext);
    buf_free(&d->content);
    delivery_report_free(&d->report);
    delivery_rules_free(&d->rules);
    for (struct dl_job *j = d->jobs, *next; j; j = next) {
        next = j->next;
        mem_free(j);
    }
    mem_free(d->remote);
    strset_free(&d->rcpt_set);
    arena_clear(&d->mem);
    config_release(d->gen);
    mem_free(d);
}

static void dl_lease_closed(uv_handle_t *h)
{
    struct delivery *d = ((struct lease *)h->data)->arg;

    d->done(d->done_arg, d);
    async_owner_cancel(&d->lookups);
    async_owner_close(&d->own, dl_release);
}

static void dl_timer_closed(uv_handle_t *h)
{
    struct delivery *d = h->data;

    lease_close(&d->lease, dl_lease_closed);
}

/* Releases the claim (next_due -1: the file is gone) and ends the run. */
static void dl_over(struct delivery *d, long next_due)
{
    delivery_domains_unwait(&d->env->domains, &d->waiter);
    d->phase = DL_OVER;
    lease_stop(&d->lease);
    metrics_add(METRIC_FENCING_ABORTS, d->fenced != 0);
    if (!d->fenced && d->env->release)
        d->env->release(d->env->release_arg, &d->claim, next_due);
    else if (!d->fenced)
        coord_release(d->env->coord, &d->claim, next_due);
    uv_close((uv_handle_t *)&d->slot_timer, dl_timer_closed);
}

static long dl_next_due(const struct delivery *d)
{
    long next = -1;

    for (size_t i = 0; i < d->qf.nrcpt; i++) {
        const struct qf_rcpt *r = &d->qf.rcpt[i];
        if (r->state == QF_PENDING && (next < 0 || r->next < next))
            next = r->next;
    }
    return next;
}

/* ---- LOAD ---- */

static void dl_load_work(void *arg)
{
    struct delivery *d = arg;
    char path[4096];
    struct stat st;
    const char *queue;

    /* an index (main's) may hold the files of several queues */
    queue = spool_queues_find(d->claim.queue, d->claim.qid, d->dir, sizeof(d->dir));
    if (queue)
        d->queue = queue;
    dl_path(d, 'l', path, sizeof(path));
    d->err = spool_read_sync(path, &d->ltext, DL_LFILE_MAX);
    if (d->err)
        return;
    if (qf_parse(&d->qf, d->ltext.data, d->ltext.len, d->why, sizeof(d->why)) < 0) {
        d->err = EINVAL;
        return;
    }
    dl_path(d, 'c', path, sizeof(path));
    if (stat(path, &st) < 0 || st.st_size != d->qf.size) {
        snprintf(d->why, sizeof(d->why), "content file %s", stat(path, &st) < 0 ?
                 "missing" : "has the wrong size");
        d->err = ENODATA;
        return;
    }
    d->err = spool_read_sync(path, &d->content, (size_t)d->qf.size + 1);
}

void delivery_result(struct delivery *d, size_t i, int status, const char *answer,
                      const char *host);

/*
 * After Event.qstart_process: Defer! puts the run off (no attempt counted),
 * Deny! fails every pending recipient with Reply!'s text (a report
 * follows), otherwise delivery goes on.
 */
static void dl_qstart_judged(void *arg)
{
    struct delivery *d = arg;
    const struct rules_outcome *o = delivery_rules_outcome(&d->rules);

    d->rules_wait = 0;
    if (o->verdict == RULES_DEFER) {
        d->qf.attempts--;
        log_summary(d->claim.qid, "deferred by Event.qstart_process: %s",
                    dl_rules_reply(d, "-"));
        dl_over(d, d->now + delivery_retry_interval(1, dl_base_minutes(d)));
        return;
    }
    if (o->verdict == RULES_DENY)
        for (size_t i = 0; i < d->qf.nrcpt; i++)
            if (d->qf.rcpt[i].state == QF_PENDING)
                delivery_result(d, i, DELIVER_PERM,
                          dl_rules_reply(d, "550 5.7.1 Refused by the delivery rules"), NULL);
    delivery_plan_next(d);
}

static void dl_loaded(struct delivery *d)
{
    d->now = (long)time(NULL);
    if (d->stopping) {
        dl_over(d, 0);
        return;
    }
    if (d->err == ENOENT) {
        /* Delivered and removed by another run, or, for a message just
         * announced by another node, not yet visible here (NFS lookup
         * caching): a young message is looked at again shortly. */
        dl_over(d, d->now - queue_id_time(d->claim.qid) < 300 ? d->now + 5 : -1);
        return;
    }
    if (d->err) {
        log_warn("queue file %s cannot be used: %s (in %s)", d->claim.qid,
                 d->why[0] ? d->why : strerror(d->err), d->dir);
        dl_over(d, d->now + delivery_retry_interval(1, dl_base_minutes(d)));
        return;
    }
    if (d->qf.token > d->claim.token) {
        log_warn("%s: a newer holder (token %llu) wrote the file; leaving it",
                 d->claim.qid, d->qf.token);
        d->fenced = 1;
        dl_over(d, -1);
        return;
    }
    if (d->qf.flags & QF_F_HOLD) {
        dl_over(d, d->now + 3600);
        return;
    }
    if (!lease_valid(&d->lease)) {
        /* The claim's answer (or the load) came so late that the lock may
         * have lapsed: another node may hold the file by now. */
        log_warn("%s: the claim came too late to be sure of the lock; leaving the "
                 "file to its next holder", d->claim.qid);
        d->fenced = 1;
        dl_over(d, -1);
        return;
    }
    d->conf = delivery_conf_for(d->gen, d->claim.qid, &d->qf, &d->mem);
    d->hits = d->qf.hits;
    d->auth = d->qf.auth;
    d->qf.token = d->claim.token;
    d->qf.attempts++;
    d->phase = DL_PLAN;
    if (dl_rules(d, RULES_EV_QSTART, NULL, NULL, dl_qstart_judged, d))
        dl_qstart_judged(d);
}

/* ---- recording results ---- */

static void dl_log(struct delivery *d, const char *what, const struct qf_rcpt *r,
                   const char *host)
{
    log_summary(d->claim.qid, "%s to=<%s> relay=%s delay=%lds attempts=%d answer=%s",
                what, r->addr, host && host[0] ? host : "-", d->now - d->qf.created,
                r->attempts, r->answer[0] ? r->answer : "-");
}

/* Records one recipient's result; the l file is written afterwards. */
void delivery_result(struct delivery *d, size_t i, int status, const char *answer,
                      const char *host)
{
    struct qf_rcpt *r = &d->qf.rcpt[i];
    char buf[DELIVER_ANSWER_MAX + 64];
    /* no host: decided before any attempt (no mailbox, a paused domain) */
    int via = !host ? METRICS_VIA_NONE : strcmp(host, "local") ? METRICS_VIA_REMOTE
                                                                : METRICS_VIA_LOCAL;

    d->now = (long)time(NULL);
    r->attempts++;
    r->answer = qf_str(&d->qf, answer);
    if (status == DELIVER_OK) {
        r->state = QF_DELIVERED;
        metrics_inc2(METRIC_DELIVERIES, via, METRICS_ST_DELIVERED);
        metrics_observe(METRIC_DELIVERY_DELAY, d->now - d->qf.created);
        dl_log(d, "delivered", r, host);
        return;
    }
    if (status == DELIVER_TEMP && r->attempts < dl_max_attempts(d)) {
        r->next = d->now + delivery_retry_interval(r->attempts, dl_base_minutes(d));
        metrics_inc2(METRIC_DELIVERIES, via, METRICS_ST_DEFERRED);
        dl_log(d, "deferred", r, host);
        return;
    }
    if (status == DELIVER_TEMP) {
        snprintf(buf, sizeof(buf), "giving up after %d attempts: %s", r->attempts, answer);
        r->answer = qf_str(&d->qf, buf);
    }
    r->state = QF_FAILED;
    metrics_inc2(METRIC_DELIVERIES, via, METRICS_ST_BOUNCED);
    dl_log(d, "failed", r, host);
}

/* ---- RUN ---- */

static int dl_count(const struct delivery *d, char state);

/*
 * The last job of a run whose final step follows at once (no lookup or
 * rules waiting, no Event.qend_process, no report to make): that step
 * writes or removes the file, so a progress write before it would only be
 * thrown away (a third of the queue process's CPU for a delivered
 * message: docs/performance.md).  A crash in between delivers again, as
 * it would in the moment before a progress write.
 */
static int dl_ends_now(struct delivery *d)
{
    return d->jobs_left == 0 && !d->lookup_pending && !d->rules_wait && !d->busy &&
           !d->fenced && dl_count(d, QF_FAILED) == 0 &&
           delivery_rules_file(&d->rules, d->conf, RULES_EV_QEND) == NULL;
}

static void dl_job_over(struct dl_job *j)
{
    struct delivery *d = j->d;

    if (!j->local && j->running)
        delivery_domains_give(&d->env->domains, j->sreq.domain);
    j->finished = 1;
    j->running = 0;
    j->mda = NULL;
    j->smtp = NULL;
    if (j->slot)
        coord_slot_release(d->env->coord, "dlocal", j->slot);
    j->slot = 0;
    d->jobs_left--;
    if (!dl_ends_now(d))
        dl_write(d);
    if (d->jobs_left == 0)
        delivery_finish(d);
    else
        delivery_next_job(d);
}

/*
 * Event.dl_rcpt, for each remote answer in turn (%T): for a recipient the
 * remote refused, Deny! makes the failure permanent and Defer! temporary,
 * with Reply!'s text when given; a delivered recipient stays delivered.
 */
static void dl_rcpt_next(void *arg);

static void dl_rcpt_judged(void *arg)
{
    struct dl_job *j = arg;
    struct deliver_rcpt_result *r = &j->res[j->k];
    const struct rules_outcome *o = delivery_rules_outcome(&j->d->rules);

    j->d->rules_wait = 0;
    /* A delivered recipient stays delivered: the verdicts say how a
     * failure is taken (Deny!: for good, Defer!: try again). */
    if (r->status != DELIVER_OK && (o->verdict == RULES_DENY || o->verdict == RULES_DEFER)) {
        r->status = o->verdict == RULES_DENY ? DELIVER_PERM : DELIVER_TEMP;
        if (o->reply[0])
            snprintf(r->answer, sizeof(r->answer), "%s", o->reply);
        log_central(j->d->claim.qid, "Event.dl_rcpt: %s for %s", o->verdict == RULES_DENY ?
                    "deny" : "defer", j->addrs[j->k]);
    }
    delivery_result(j->d, j->idx[j->k], r->status, r->answer, r->host);
    j->k++;
    dl_rcpt_next(j);
}

static void dl_rcpt_next(void *arg)
{
    struct dl_job *j = arg;

    if (j->k >= j->nres) {
        dl_job_over(j);
        return;
    }
    if (dl_rules(j->d, RULES_EV_DL_RCPT, j->addrs[j->k], j->res[j->k].answer,
                 dl_rcpt_judged, j))
        dl_rcpt_judged(j);
}

static void dl_smtp_done(void *arg, const struct deliver_rcpt_result *res, size_t n)
{
    struct dl_job *j = arg;
    struct delivery *d = j->d;

    delivery_domains_note(&d->env->domains, j->sreq.domain, res, n,
                          d->conf->Queue_time * 60);
    if (delivery_rules_file(&d->rules, d->conf, RULES_EV_DL_RCPT) == NULL) {
        for (size_t k = 0; k < n && k < j->n; k++)
            delivery_result(d, j->idx[k], res[k].status, res[k].answer, res[k].host);
        dl_job_over(j);
        return;
    }
    j->smtp = NULL;   /* gone once this callback returns */
    j->nres = n < j->n ? n : j->n;
    j->res = arena_alloc(&d->mem, j->nres * sizeof(*j->res) + 1);
    memcpy(j->res, res, j->nres * sizeof(*j->res));
    j->k = 0;
    dl_rcpt_next(j);
}

static void dl_mda_done(void *arg, const struct deliver_local_result *r)
{
    struct dl_job *j = arg;
    const struct config *c = j->d->conf;
    char answer[DELIVER_LOCAL_ANSWER_MAX + 128];
    int status;

    switch (r->status) {
    case DELIVER_LOCAL_OK:
        snprintf(answer, sizeof(answer), "delivered to mailbox %s", j->mbox.user);
        status = DELIVER_OK;
        break;
    case DELIVER_LOCAL_QUOTA:
        snprintf(answer, sizeof(answer), "%s", c->Msg_full_mailbox);
        status = c->Msg_full_mailbox[0] == '4' ? DELIVER_TEMP : DELIVER_PERM;
        break;
    case DELIVER_LOCAL_TEMPFAIL:
        snprintf(answer, sizeof(answer), "%s: %s", c->Msg_mailbox_unavaibble, r->answer);
        status = DELIVER_TEMP;
        break;
    default:
        snprintf(answer, sizeof(answer), "%s", r->answer);
        status = DELIVER_PERM;
        break;
    }
    delivery_result(j->d, j->idx[0], status, answer, "local");
    dl_job_over(j);
}

/* The command for this mailbox and how to run it (*type). */
static const char *dl_mda_command(struct dl_job *j, int *type)
{
    return delivery_conf_mda_command(j->d->conf, j->d->claim.qid, j->addrs[0],
                                     j->mbox.dlocal, type);
}

static void dl_start_mda(struct dl_job *j)
{
    struct delivery *d = j->d;
    const struct qf_rcpt *r = &d->qf.rcpt[j->idx[0]];
    struct deliver_local_req *q = &j->lreq;
    struct deliver_local_result res;

    j->addrs[0] = arena_strdup(&d->mem, r->addr);
    q->command = dl_mda_command(j, &q->type);
    q->vars.user = j->mbox.user[0] ? j->mbox.user : r->addr;
    q->vars.id = d->claim.qid;
    q->vars.rcpt = j->addrs[0];
    q->vars.sender = d->qf.from;
    q->vars.home = j->mbox.home;
    q->content = d->content.data;
    q->len = d->content.len;
    q->timeout_ms = d->conf->Timeout * 5000;
    /* uid 0 is "unknown" here: an MDA is never started as root this way. */
    q->uid = j->mbox.uid > 0 ? j->mbox.uid : -1;
    q->gid = j->mbox.gid > 0 ? j->mbox.gid : -1;
    j->running = 1;
    j->mda = deliver_local_start(d->env->loop, &d->own, q, dl_mda_done, j, &res);
    if (j->mda == NULL)
        dl_mda_done(j, &res);
}

static void dl_slot_got(void *arg, int status, uint64_t slot)
{
    struct dl_job *j = arg;

    j->asking = 0;
    if (status != COORD_OK)
        return;   /* asked again by the slot timer */
    if (j->finished || j->d->stopping) {
        coord_slot_release(j->d->env->coord, "dlocal", slot);
        return;
    }
    j->slot = slot;
    dl_start_mda(j);
}

static void dl_slot_retry(uv_timer_t *t);

/* A slot of the domain this run waited for is free: try from the loop. */
static void dl_domain_freed(void *arg)
{
    struct delivery *d = arg;

    d->slot_timer_on = 1;
    uv_timer_start(&d->slot_timer, dl_slot_retry, 0, 0);
}

static void dl_start_smtp(struct dl_job *j)
{
    struct delivery *d = j->d;
    struct deliver_smtp_req *q = &j->sreq;

    q->conf = d->conf;
    q->dns = d->env->dns;
    q->tls = d->env->tls;
    q->cache = d->env->scache;
    q->domain = arena_strdup(&d->mem, delivery_domain_of(j->addrs[0]));
    q->from = j->from;
    q->rcpts = j->addrs;
    q->nrcpt = j->n;
    q->content = d->content.data;
    q->len = d->content.len;
    q->body_8bit = strcmp(d->qf.body, "8BITMIME") == 0;
    j->running = 1;
    j->smtp = deliver_smtp_start(d->env->loop, &d->own, q, dl_smtp_done, j);
}

/* The domain is paused: its recipients wait, nothing is connected. */
static void dl_skip_dead(struct dl_job *j, const struct delivery_dead_domain *x)
{
    char answer[DELIVER_ANSWER_MAX];

    snprintf(answer, sizeof(answer), "%.400s (domain paused after failures)", x->answer);
    for (size_t k = 0; k < j->n; k++)
        delivery_result(j->d, j->idx[k], DELIVER_TEMP, answer, NULL);
    dl_job_over(j);
}

static void dl_slot_retry(uv_timer_t *t)
{
    struct delivery *d = t->data;

    d->slot_timer_on = 0;
    delivery_next_job(d);
}

/* Starts every job that can start; local jobs wait for a Dlocal slot.
 * Nothing starts unless the lock surely holds. */
void delivery_next_job(struct delivery *d)
{
    int waiting = 0;

    if (dl_lease_gone(d) && !d->stopping) {
        log_warn("%s: the lock may lapse before more is done; starting nothing more",
                 d->claim.qid);
        dl_stop_jobs(d, !d->fenced);
        delivery_finish(d);
        return;
    }
    for (struct dl_job *j = d->jobs; j && !d->stopping; j = j->next) {
        if (j->running || j->finished || j->asking)
            continue;
        if (!j->local) {
            struct delivery_domains *dd = &d->env->domains;
            const char *domain = delivery_domain_of(j->addrs[0]);
            const struct delivery_dead_domain *x =
                delivery_domains_paused(dd, domain, (long)time(NULL));
            if (x)
                dl_skip_dead(j, x);
            else if (delivery_domains_take(dd, domain, d->conf->Dremote_max_procs))
                dl_start_smtp(j);
            else {
                waiting = 1;
                delivery_domains_wait(dd, &d->waiter);
            }
            continue;
        }
        j->asking = 1;
        coord_slot_acquire(d->env->coord, &d->own, "dlocal", d->conf->Dlocal_max_procs,
                           dl_slot_got, j);
        waiting |= !j->running && !j->finished;
    }
    if (waiting && !d->slot_timer_on && !d->stopping) {
        d->slot_timer_on = 1;
        uv_timer_start(&d->slot_timer, dl_slot_retry, DL_SLOT_RETRY_MS, 0);
    }
}

/* ---- writing the l file ---- */

/*
 * Thread pool, before changing the file: is it still ours?  Not sure when
 * the lease may have lapsed while the job waited in the pool (ECANCELED:
 * nothing written, the next step decides); no when the file is gone or
 * carries a newer holder's token (the lease is then lost).
 */
static int dl_file_still_ours(struct delivery *d)
{
    char path[4096];
    struct buf cur = BUF_INIT(0);
    const char *tok;
    int e, ours;

    if (!lease_valid(&d->lease)) {
        d->err = ECANCELED;
        return 0;
    }
    dl_path(d, 'l', path, sizeof(path));
    e = spool_read_sync(path, &cur, DL_LFILE_MAX);
    ours = e != ENOENT && !(e == 0 && (tok = strstr(buf_cstr(&cur), "\ntoken ")) != NULL &&
                            strtoull(tok + 7, NULL, 10) > d->claim.token);
    buf_free(&cur);
    if (!ours)
        lease_mark_lost(&d->lease);   /* finished, or written, by a newer holder */
    return ours;
}

/* Thread pool: replace the l file, unless it is no longer ours. */
static void dl_write_work(void *arg)
{
    struct delivery *d = arg;
    char name[QUEUE_ID_MAX + 2];

    if (!dl_file_still_ours(d))
        return;
    snprintf(name, sizeof(name), "l%s", d->claim.qid);
    /* ECANCELED: the lease ran short before the rename; nothing written */
    d->err = spool_write_sync_checked(d->dir, d->conf->Temp_path, name, d->ltext.data,
                                      d->ltext.len, dl_still_ours, d);
    if (d->err == 0)
        d->err = spool_fsync_dir_sync(d->dir);
}

static void dl_written(struct delivery *d);

static void dl_write_start(struct delivery *d)
{
    if (dl_lease_gone(d)) {
        /* Not sure the file is still ours: nothing now; the final step
         * writes everything if the lock is sure again by then. */
        d->write_again = 0;
        if (d->phase == DL_FINISH)
            delivery_finish(d);
        return;
    }
    d->write_again = 0;
    buf_reset(&d->ltext);
    qf_format(&d->qf, &d->ltext);
    dl_thread(d, dl_write_work, dl_written);
}

static void dl_write(struct delivery *d)
{
    if (d->busy) {
        d->write_again = 1;
        return;
    }
    dl_write_start(d);
}

static void dl_written(struct delivery *d)
{
    if (d->phase >= DL_ENDING)
        return;
    if (d->fenced) {
        log_warn("%s: a newer holder wrote the file; this run stops without writing",
                 d->claim.qid);
        dl_stop_jobs(d, 0);
    } else if (d->err && d->err != ECANCELED) {
        log_warn("%s: cannot record delivery results: %s", d->claim.qid,
                 strerror(d->err));
    }
    if (d->write_again && !d->fenced) {
        dl_write_start(d);
        return;
    }
    if (d->phase == DL_FINISH || d->fenced)
        delivery_finish(d);
}

/* ---- FINISH ---- */

/* Thread pool: remove the files (l first: the message is gone at once),
 * unless they are no longer ours. */
static void dl_remove_work(void *arg)
{
    struct delivery *d = arg;
    char path[4096];

    if (!dl_file_still_ours(d))
        return;
    dl_path(d, 'l', path, sizeof(path));
    d->err = spool_unlink_sync(path);
    dl_path(d, 'c', path, sizeof(path));
    if (d->err == 0)
        d->err = spool_unlink_sync(path);
    if (d->err == 0)
        spool_fsync_dir_sync(d->dir);
}

/* The final write or removal found the lock not sure when it ran: back to
 * waiting for it (the results are not lost while the run lives). */
static int dl_await_lock(struct delivery *d)
{
    if (d->err != ECANCELED || d->fenced || lease_lost(&d->lease))
        return 0;
    d->phase = DL_FINISH;
    d->await_lock = 1;
    return 1;
}

static void dl_removed(struct delivery *d)
{
    if (dl_await_lock(d))
        return;
    if (d->fenced || d->err == ECANCELED) {
        log_warn("%s: the file is no longer ours (a newer holder, or the lock may "
                 "have lapsed); leaving it", d->claim.qid);
        dl_over(d, -1);
        return;
    }
    if (d->err) {
        log_warn("%s: cannot remove the delivered message: %s", d->claim.qid,
                 strerror(d->err));
        dl_over(d, d->now + 60);
        return;
    }
    log_summary(d->claim.qid, "removed");
    dl_over(d, -1);
}

/* Thread pool: the report about the failed recipients, queued. */
static void dl_report_work(void *arg)
{
    struct delivery *d = arg;

    d->err = delivery_report_make(&d->report);
}

static void dl_final_step(struct delivery *d);
static void dl_last_written(struct delivery *d);

static void dl_reported(struct delivery *d)
{
    if (d->err) {
        log_warn("%s: cannot queue the delivery report: %s", d->claim.qid,
                 strerror(d->err));
        dl_final_step(d);   /* failed recipients stay F: reported next run */
        return;
    }
    log_summary(d->claim.qid, "report %s queued to=<%s>", d->report.id,
                delivery_report_to(&d->report));
    coord_announce(d->env->coord, "main", d->report.id, 0, COORD_ANN_NEW);
    for (size_t i = 0; i < d->qf.nrcpt; i++)
        if (d->qf.rcpt[i].state == QF_FAILED)
            d->qf.rcpt[i].state = QF_REPORTED;
    dl_final_step(d);
}

static int dl_count(const struct delivery *d, char state)
{
    int n = 0;

    for (size_t i = 0; i < d->qf.nrcpt; i++)
        n += d->qf.rcpt[i].state == state;
    return n;
}

/* Removal when nothing is left, else the l file with its next try. */
static void dl_final_step(struct delivery *d)
{
    long next = dl_next_due(d);

    if (d->phase >= DL_ENDING)
        return;
    if (d->fenced || lease_lost(&d->lease)) {
        if (!d->fenced)
            log_warn("%s: the lock lapsed; leaving the file to its next holder",
                     d->claim.qid);
        d->fenced = 1;
        dl_over(d, -1);
        return;
    }
    if (!lease_valid(&d->lease)) {
        d->await_lock = 1;   /* LEASE_SURE comes back here, LEASE_LOST ends it */
        return;
    }
    d->phase = DL_ENDING;
    if (next < 0 && dl_count(d, QF_FAILED) == 0) {
        dl_thread(d, dl_remove_work, dl_removed);
        return;
    }
    buf_reset(&d->ltext);
    qf_format(&d->qf, &d->ltext);
    dl_thread(d, dl_write_work, dl_last_written);
}

static void dl_report_failures(struct delivery *d);

/* Event.error_report: Deny! sends no report (the recipients are marked
 * reported, and the summary log says so). */
/* The failed recipients are final without a report (why: for the log). */
static void dl_no_report(struct delivery *d, const char *why)
{
    for (size_t i = 0; i < d->qf.nrcpt; i++)
        if (d->qf.rcpt[i].state == QF_FAILED) {
            d->qf.rcpt[i].state = QF_REPORTED;
            log_summary(d->claim.qid, "no report to=<%s> (%s)", d->qf.rcpt[i].addr, why);
        }
    dl_final_step(d);
}

/* Nobody to tell: a null sender, except that our own reports come first
 * (their sender is null too), and notices to Postmaster. */
static int dl_nobody_to_tell(const struct delivery *d)
{
    return (d->qf.from[0] == '\0' && !dl_is_bounce(d)) || (d->qf.flags & QF_F_NOTICE);
}

static void dl_report_judged(void *arg)
{
    struct delivery *d = arg;

    d->rules_wait = 0;
    d->report_judged = 1;
    if (delivery_rules_outcome(&d->rules)->verdict == RULES_DENY)
        dl_no_report(d, "Event.error_report");
    else
        dl_report_failures(d);
}

static void dl_report_failures(struct delivery *d)
{
    if (dl_nobody_to_tell(d)) {
        dl_no_report(d, "null sender");
        return;
    }
    if (!d->report_judged) {
        if (dl_rules(d, RULES_EV_ERROR_REPORT, NULL, NULL, dl_report_judged, d))
            dl_report_judged(d);
        return;
    }
    queue_id_next(d->env->idgen, d->report.id);
    d->report.conf = d->conf;
    d->report.qf = &d->qf;
    d->report.qid = d->claim.qid;
    d->report.content = d->content.data;
    d->report.len = d->content.len;
    d->report.now = d->now;
    dl_thread(d, dl_report_work, dl_reported);
}

static void dl_last_written(struct delivery *d)
{
    if (dl_await_lock(d))
        return;
    if (d->err == ECANCELED) {
        log_warn("%s: the lock may have lapsed before the results were written; "
                 "leaving the file to its next holder", d->claim.qid);
        d->fenced = 1;
    } else if (d->err) {
        log_warn("%s: cannot write the queue file: %s", d->claim.qid, strerror(d->err));
    }
    dl_over(d, d->fenced ? -1 : dl_next_due(d));
}

static void dl_finish_after_rules(void *arg)
{
    ((struct delivery *)arg)->rules_wait = 0;
    delivery_finish(arg);
}

void delivery_finish(struct delivery *d)
{
    if (d->phase >= DL_ENDING)
        return;
    if (d->jobs_left > 0 || d->lookup_pending || d->rules_wait)
        return;
    d->phase = DL_FINISH;
    if (d->busy)
        return;                      /* dl_written comes back here */
    if (d->fenced || d->stopping) {
        dl_final_step(d);
        return;
    }
    if (!d->qend_done) {             /* Event.qend_process: side actions only */
        d->qend_done = 1;
        if (!dl_rules(d, RULES_EV_QEND, NULL, NULL, dl_finish_after_rules, d))
            return;
    }
    if (dl_count(d, QF_FAILED) > 0) {
        dl_report_failures(d);
        return;
    }
    dl_final_step(d);
}

/* ---- start and stop ---- */

/* keep_committed: an SMTP delivery whose content went out is left to
 * finish (see dl_lease_event). */
static void dl_stop_jobs(struct delivery *d, int keep_committed)
{
    d->stopping = 1;
    async_owner_cancel(&d->lookups);
    d->lookup_pending = 0;
    d->rules_wait = 0;
    for (struct dl_job *j = d->jobs; j; j = j->next) {
        if (j->finished)
            continue;
        /* answers waiting for Event.dl_rcpt are recorded as they came */
        for (; j->res && j->k < j->nres; j->k++)
            delivery_result(d, j->idx[j->k], j->res[j->k].status, j->res[j->k].answer,
                            j->res[j->k].host);
        if (j->res && j->running)
            delivery_domains_give(&d->env->domains, j->sreq.domain);
        if (keep_committed && j->running && j->smtp && deliver_smtp_committed(j->smtp))
            continue;
        if (j->mda)
            deliver_local_cancel(j->mda);
        if (j->smtp) {
            deliver_smtp_cancel(j->smtp);
            delivery_domains_give(&d->env->domains, j->sreq.domain);
        }
        if (j->slot)
            coord_slot_release(d->env->coord, "dlocal", j->slot);
        j->mda = NULL;
        j->smtp = NULL;
        j->slot = 0;
        j->finished = 1;
        d->jobs_left--;
    }
    uv_timer_stop(&d->slot_timer);
}

void delivery_stop(struct delivery *d)
{
    if (d->stopping || d->phase == DL_OVER)
        return;
    dl_stop_jobs(d, 0);
    if (d->phase != DL_LOAD)
        delivery_finish(d);
}

struct delivery *delivery_start(struct delivery_env *env,
                                const struct coord_claim *claim,
                                delivery_done_fn *done, void *arg)
{
    struct delivery *d = mem_zalloc(sizeof(*d));

    async_owner_init(&d->own);
    async_owner_init(&d->lookups);
    d->env = env;
    d->conf = config_hold(selor_conf);   /* a reload meanwhile: this one stays */
    d->gen = d->conf;
    d->claim = *claim;
    d->done = done;
    d->done_arg = arg;
    arena_init(&d->mem, 4096);
    delivery_rules_init(&d->rules);
    qf_init(&d->qf);
    buf_init(&d->ltext, 0);
    buf_init(&d->content, 0);
    buf_init(&d->report.text, 0);
    buf_init(&d->report.envelope, 0);
    uv_timer_init(env->loop, &d->slot_timer);
    d->slot_timer.data = d;
    d->waiter.wake = dl_domain_freed;
    d->waiter.arg = d;
    lease_init(&d->lease, env->loop, dl_lease_event, d);
    lease_begin(&d->lease, env->coord, &d->own, claim, d->conf->Lock_lease);
    d->queue = d->claim.queue;   /* until the load finds the directory */
    d->auth = "";
    d->phase = DL_LOAD;
    dl_thread(d, dl_load_work, dl_loaded);
    return d;
}
