/*
 * coord_redis.c - the cluster coordination backend: Redis.
 *
 * Owns: every cluster decision, each made by one Lua script run by SHA
 * (loaded once per connection), so a decision is one round trip and
 * atomic: the anti-DoS judgement over the connections the whole cluster
 * saw, the due-time index (a sorted set per queue), queue-file locks (a key
 * set only if absent, with a lease, released by its owner only), fencing
 * tokens that only grow (never below Redis's clock in microseconds, so
 * they keep growing after Redis lost its data), delivery slots that are
 * leases, and the node registry (heartbeats, draining).  docs/cluster.md
 * lists the keys.
 * The limits (connection counts, the AUTH lockout, rates, delivery slots)
 * are coord_redis_limits.c's; both files share coord_redis_int.h.
 * When Redis is unreachable: connections are judged and failed logins
 * counted by this node alone (the embedded backend), announcements are dropped (the spool scan
 * rebuilds the index), claims answer COORD_DOWN (deliveries pause), and
 * the connection is retried until Redis is back; all of it is logged.
 * A claimed file stays in the index, due when its lease would end (renewals
 * push it on), so the work of a node that dies is due again the moment its
 * locks expire, without waiting for a scan.
 * After Redis lost its data nobody claims for one lease, so a holder that
 * has not noticed yet finishes or stops before anyone else starts.
 * Redis is Redis_server (its name resolved with c-ares), or the primary
 * Sentinel names (coord_sentinel.c), checked with ROLE, followed at a
 * "+switch-master", and asked for again after every lost connection; the
 * gap of a failover is an outage like any other.  The scripts themselves
 * are in coord_redis_lua.c, hiredis's loop adapter in coord_net.c.
 * Must not: block the loop (hiredis runs asynchronously on it; it is only
 * ever given numeric addresses) or touch the spool.
 */
#include <ctype.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "config.h"
#include "coord.h"
#include "coord_net.h"
#include "coord_redis_lua.h"
#include "coord_sentinel.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "net.h"
#include "version.h"

#define CR_RETRY_MIN_MS 500
#define CR_RETRY_MAX_MS 5000
#define CR_CONNECT_TIMEOUT_MS 3000
#define CR_HEARTBEAT_MS 2000
#define CR_ALIVE_TTL_MS 10000
#define CR_SCAN_CANDIDATES 16

#include "coord_redis_int.h"

static void cr_connect(struct coord_redis *cr);

/* ---- keys ---- */

void cr_key(const struct coord_redis *cr, char *out, size_t size,
            const char *a, const char *b)
{
    snprintf(out, size, "%s%s%s%s", cr->prefix, a, b ? ":" : "", b ? b : "");
}

static void cr_owner(const struct coord_claim *cl, const char *node, char *out,
                     size_t size)
{
    snprintf(out, size, "%s %llu", node, (unsigned long long)cl->token);
}

/* ---- connection ----
 * The address comes first, without blocking the loop: Redis_server's name
 * through c-ares, or the primary as Sentinel tells it (asked again after
 * every lost connection, never the old address blindly).  With Sentinel
 * the node coordinates only once ROLE says "master". */

static void cr_log_down(struct coord_redis *cr, const char *why)
{
    if (cr->down_logged)
        return;
    cr->down_logged = 1;
    log_warn("Redis %s unreachable (%s): accepting goes on, limits are this "
             "node's own, deliveries that need a lock wait", cr->where, why);
}

static void cr_retry(uv_timer_t *t)
{
    cr_connect(t->data);
}

static void cr_schedule_retry(struct coord_redis *cr)
{
    if (!cr->timers_on)
        return;
    uv_timer_start(&cr->retry_timer, cr_retry, (uint64_t)cr->retry_ms, 0);
    cr->retry_ms = cr->retry_ms * 2 > CR_RETRY_MAX_MS ? CR_RETRY_MAX_MS : cr->retry_ms * 2;
}

static void cr_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    struct cr_call *call = priv;
    struct coord_redis *cr = call->cr;
    redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(cr->sha[call->script], reply->str, 41);
    else if (reply)
        log_warn("Redis: loading script %d failed: %s", call->script,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
    mem_free(call);
    for (int i = 0; i < CR_NSCRIPTS; i++)
        if (cr->sha[i][0] == '\0')
            return;
    cr->scripts_ready = 1;
}

static void cr_load_scripts(struct coord_redis *cr)
{
    cr->scripts_ready = 0;
    for (int i = 0; i < CR_NSCRIPTS; i++) {
        struct cr_call *call = mem_zalloc(sizeof(*call));
        call->cr = cr;
        call->script = i;
        cr->sha[i][0] = '\0';
        redisAsyncCommand(cr->ac, cr_script_loaded, call, "SCRIPT LOAD %s", cr_scripts[i]);
        cr->commands++;
    }
}

/* Redis answers as it should: from now on the node coordinates through it. */
static void cr_up(struct coord_redis *cr)
{
    cr->retry_ms = CR_RETRY_MIN_MS;
    if (cr->down_logged || !cr->ever_connected)
        log_info("Redis %s reachable: cluster coordination %s", cr->where,
                 cr->ever_connected ? "resumes" : "starts");
    cr->ever_connected = 1;
    cr->down_logged = 0;
    cr->rescan = 1;        /* Redis may have lost the index: rebuild it */
    if (cr->wake)
        cr->wake(cr->wake_arg);
}

static void cr_on_connect(const redisAsyncContext *ac, int status)
{
    struct coord_redis *cr = ac->data;

    if (ac != cr->ac)
        return;
    uv_timer_stop(&cr->connect_timer);
    if (status != REDIS_OK) {
        cr->ac = NULL;   /* hiredis frees it */
        cr->attempt++;
        cr_log_down(cr, ac->errstr);
        cr_schedule_retry(cr);
        return;
    }
    cr->connected = 1;
    if (cr->role_ok)
        cr_up(cr);
}

static void cr_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct coord_redis *cr = ac->data;

    if (ac != cr->ac)
        return;   /* one we dropped ourselves */
    cr->ac = NULL;   /* hiredis frees it after this */
    cr->connected = 0;
    cr->scripts_ready = 0;
    if (status != REDIS_OK || cr->timers_on) {
        cr_log_down(cr, ac->errstr[0] ? ac->errstr : "connection closed");
        cr_schedule_retry(cr);
    }
}

/* Our connection goes now (a failover, a Redis that is not the primary, no
 * answer): commands still due are answered with no reply. */
static void cr_drop(struct coord_redis *cr)
{
    redisAsyncContext *ac = cr->ac;

    cr->ac = NULL;
    cr->connected = 0;
    cr->scripts_ready = 0;
    uv_timer_stop(&cr->connect_timer);
    if (ac)
        redisAsyncFree(ac);   /* inside its own callback: once that is over */
}

/* A connection that never completes: hiredis would not tell us. */
static void cr_connect_timeout(uv_timer_t *t)
{
    struct coord_redis *cr = t->data;

    if (cr->ac == NULL || cr->connected)
        return;
    cr_drop(cr);
    cr->attempt++;
    cr_log_down(cr, "connection timed out");
    cr_schedule_retry(cr);
}

static void cr_auth_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("Redis refused Redis_password: %s", reply->str);
}

/* ROLE confirmed the primary: a new one is logged (the first quietly). */
static void cr_note_primary(struct coord_redis *cr)
{
    char now[sizeof(cr->primary)];
    const char *name = csen_master_name(cr->sen);

    snprintf(now, sizeof(now), strchr(cr->ip, ':') ? "[%s]:%d" : "%s:%d", cr->ip,
             cr->port);
    if (strcmp(now, cr->primary) == 0)
        return;
    if (cr->primary[0])
        log_warn("Redis primary is now %s (was %s), from Sentinel %s, master %s", now,
                 cr->primary, cr->told_by, name);
    else
        log_info("Redis primary is %s, from Sentinel %s, master %s", now, cr->told_by,
                 name);
    snprintf(cr->primary, sizeof(cr->primary), "%s", now);
    snprintf(cr->where, sizeof(cr->where), "%s (Sentinel master %s)", now, name);
}

/* With Sentinel: the address it gave must be the primary (a sentinel may
 * not know of a failover yet, and a returning old primary is a replica). */
static void cr_role_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct coord_redis *cr = priv;
    redisReply *reply = r;
    const char *role = "no answer";

    if (ac != cr->ac || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_STRING)
        role = reply->element[0]->str;
    else if (reply->type == REDIS_REPLY_ERROR)
        role = reply->str;
    if (strcmp(role, "master") == 0) {
        cr->role_ok = 1;
        cr_note_primary(cr);
        if (cr->connected)
            cr_up(cr);
        return;
    }
    log_warn("Redis %s:%d is not the primary (ROLE: %.60s): asking Sentinel again",
             cr->ip, cr->port, role);
    cr_drop(cr);
    cr_log_down(cr, "not the primary");
    cr_schedule_retry(cr);
}

/* Connects to a numeric address (hiredis would resolve a name blocking). */
static void cr_connect_to(struct coord_redis *cr, const char *ip, int port)
{
    const struct config *c = cr->conf;
    redisAsyncContext *ac;

    if (cr->ac || !cr->timers_on)
        return;
    snprintf(cr->ip, sizeof(cr->ip), "%s", ip);
    cr->port = port;
    ac = redisAsyncConnect(ip, port);
    if (ac == NULL || ac->err) {
        cr_log_down(cr, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        cr_schedule_retry(cr);
        return;
    }
    ac->data = cr;
    if (coord_ev_attach(ac, cr->loop) < 0) {
        redisAsyncFree(ac);
        cr_schedule_retry(cr);
        return;
    }
    cr->ac = ac;
    cr->role_ok = cr->sen == NULL;
    redisAsyncSetConnectCallback(ac, cr_on_connect);
    redisAsyncSetDisconnectCallback(ac, cr_on_disconnect);
    if (c->Redis_password[0]) {
        redisAsyncCommand(ac, cr_auth_reply, cr, "AUTH %s", c->Redis_password);
        cr->commands++;
    }
    if (c->Redis_db) {
        redisAsyncCommand(ac, NULL, NULL, "SELECT %ld", c->Redis_db);
        cr->commands++;
    }
    if (cr->sen) {
        redisAsyncCommand(ac, cr_role_reply, cr, "ROLE");
        cr->commands++;
    }
    cr_load_scripts(cr);
    uv_timer_start(&cr->connect_timer, cr_connect_timeout, CR_CONNECT_TIMEOUT_MS, 0);
}

/* Redis_server's addresses: a name with several is tried in turn. */
static void cr_resolved(void *arg, const struct coord_addrs *a)
{
    struct coord_redis *cr = arg;

    cr->finding = 0;
    if (a->n == 0) {
        cr_log_down(cr, a->why);
        cr_schedule_retry(cr);
        return;
    }
    cr_connect_to(cr, a->ip[cr->attempt % (unsigned)a->n], a->port);
}

static void cr_sen_found(void *arg, const char *ip, int port, const char *who,
                         const char *why)
{
    struct coord_redis *cr = arg;

    cr->finding = 0;
    if (ip == NULL) {
        cr_log_down(cr, why);
        cr_schedule_retry(cr);
        return;
    }
    snprintf(cr->told_by, sizeof(cr->told_by), "%s", who);
    cr_connect_to(cr, ip, port);
}

/* A sentinel announced a failover: leave the old primary now, and go to the
 * new one at once (ROLE checks it). */
static void cr_sen_switch(void *arg, const char *ip, int port, const char *who)
{
    struct coord_redis *cr = arg;

    snprintf(cr->told_by, sizeof(cr->told_by), "%s", who);
    cr->retry_ms = CR_RETRY_MIN_MS;
    if (cr->ac && (cr->port != port || strcmp(cr->ip, ip) != 0)) {
        cr_drop(cr);
        cr_log_down(cr, "failover");
    }
    if (cr->ac == NULL && !cr->finding && cr->timers_on) {
        uv_timer_stop(&cr->retry_timer);
        cr_connect_to(cr, ip, port);
    }
}

static void cr_connect(struct coord_redis *cr)
{
    if (cr->ac || !cr->timers_on || cr->finding)
        return;
    cr->finding = 1;   /* the answer may come before the call returns */
    if (cr->sen)
        csen_ask(cr->sen, &cr->own);
    else
        coord_resolve(&cr->res, cr->dns, &cr->own, &cr->hp, cr_resolved, cr);
}

int cr_ready(const struct coord_redis *cr)
{
    return cr->ac && cr->connected && cr->role_ok && cr->scripts_ready;
}

/* ---- running scripts ---- */

static void cr_call_free(struct cr_call *call)
{
    for (int i = 0; i < call->argc; i++)
        mem_free(call->argv[i]);
    mem_free(call->argv);
    mem_free(call->argvlen);
    mem_free(call);
}

static void cr_send(struct cr_call *call, int use_sha);

/* The reply is there (NULL: none will come): to the owner if it is still
 * there, then the call is over. */
static void cr_call_done(struct cr_call *call, redisReply *r)
{
    int live = call->owned ? async_req_end(&call->req) : 1;

    call->reply(call, r, live);
    cr_call_free(call);
}

static void cr_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct cr_call *call = priv;
    redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && call->cr->ac) {
        cr_send(call, 0);   /* scripts were flushed: send the text once */
        return;
    }
    metrics_inc(METRIC_REDIS_COMMANDS);
    metrics_add(METRIC_REDIS_ERRORS, !reply || reply->type == REDIS_REPLY_ERROR);
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("Redis: script %d: %s", call->script, reply->str);
    cr_call_done(call, reply && reply->type != REDIS_REPLY_ERROR ? reply : NULL);
}

static void cr_send(struct cr_call *call, int use_sha)
{
    struct coord_redis *cr = call->cr;

    mem_free(call->argv[0]);
    mem_free(call->argv[1]);
    call->argv[0] = mem_strdup(use_sha ? "EVALSHA" : "EVAL");
    call->argv[1] = mem_strdup(use_sha ? cr->sha[call->script] : cr_scripts[call->script]);
    call->argvlen[0] = strlen(call->argv[0]);
    call->argvlen[1] = strlen(call->argv[1]);
    cr->commands++;
    if (redisAsyncCommandArgv(cr->ac, cr_on_reply, call, call->argc,
                              (const char **)call->argv, call->argvlen) != REDIS_OK)
        cr_call_done(call, NULL);
}

/*
 * Runs a script with nkeys keys followed by arguments (NULL-terminated
 * list of strings after the keys).
 */
void cr_eval(struct cr_call *call, int nkeys, const char *const *args)
{
    int n = 0;

    while (args[n])
        n++;
    call->argc = n + 3;
    call->argv = mem_zalloc((size_t)call->argc * sizeof(char *));
    call->argvlen = mem_zalloc((size_t)call->argc * sizeof(size_t));
    call->argv[2] = mem_alloc(16);
    snprintf(call->argv[2], 16, "%d", nkeys);
    call->argvlen[2] = strlen(call->argv[2]);
    for (int i = 0; i < n; i++) {
        call->argv[i + 3] = mem_strdup(args[i]);
        call->argvlen[i + 3] = strlen(args[i]);
    }
    cr_send(call, 1);
}

/* o: the owner of the answer, or NULL for a call nobody waits for. */
struct cr_call *cr_call_new(struct coord_redis *cr, struct async_owner *o,
                            enum cr_script s,
                            void (*reply)(struct cr_call *, redisReply *, int), void *arg)
{
    struct cr_call *call = mem_zalloc(sizeof(*call));

    call->cr = cr;
    call->script = s;
    call->reply = reply;
    call->arg = arg;
    if (o) {
        async_req_start(&call->req, o, NULL, 0);   /* Redis cannot take it back */
        call->owned = 1;
    }
    return call;
}

long long cr_int(const redisReply *r)
{
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return -1;
}

void cr_ignore_reply(struct cr_call *call, redisReply *r, int live)
{
}

/* ---- the due-time index, claims, locks ---- */

/* Wakes this node's queue process once Redis has the file in its index
 * (or the call failed): woken before, its claim could find nothing and it
 * would not ask again until the next wake-up or tick. */
static void cr_announce_reply(struct cr_call *call, redisReply *r, int live)
{
    coord_announce(call->cr->local, call->queue, call->login, call->num, call->mode);
}

static void cr_announce(struct coord *c, const char *queue, const char *qid, long due,
                        int mode)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char kdue[256], klock[256], sdue[32];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        coord_announce(cr->local, queue, qid, due, mode);   /* wakes this node's queue */
        return;   /* the scan puts it in the index once Redis is back */
    }
    call = cr_call_new(cr, NULL, CR_S_ANNOUNCE, cr_announce_reply, NULL);
    snprintf(call->queue, sizeof(call->queue), "%s", queue);
    snprintf(call->login, sizeof(call->login), "%s", qid);
    call->num = due;
    call->mode = mode;
    cr_key(cr, kdue, sizeof(kdue), "due", queue);
    cr_key(cr, klock, sizeof(klock), "lock", qid);
    snprintf(sdue, sizeof(sdue), "%ld", due > 0 ? due : 0L);   /* 0: Redis's now */
    cr_eval(call, 2, (const char *const[]){kdue, klock, sdue, qid,
                                           mode == COORD_ANN_NEW ? "new" : "force",
                                           NULL});
}

static int cr_claim_status(const redisReply *r, struct coord_claim *cl)
{
    const char *word;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return COORD_DOWN;
    word = r->element[0]->str;
    if (strcmp(word, "OK") == 0 && r->elements >= 3 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(cl->qid, sizeof(cl->qid), "%s", r->element[1]->str);
        cl->token = (uint64_t)cr_int(r->element[2]);
        return COORD_OK;
    }
    if (strcmp(word, "FULL") == 0)
        return COORD_FULL;
    if (strcmp(word, "BUSY") == 0)
        return COORD_BUSY;
    if (strcmp(word, "EMPTY") == 0)
        return COORD_EMPTY;
    return COORD_DOWN;   /* PAUSED: Redis lost its data a moment ago */
}

static void cr_release(struct coord *c, const struct coord_claim *cl, long next_due);

/* A lock nobody wants any more goes back at once: a file claimed for a
 * delivery is due again now, one claimed for the operator keeps its time. */
/* The claim's fourth field: the owner ("SID token") whose lock lapsed
 * without a release.  Another node's: a takeover (this node's own, after
 * Redis was away, is none). */
static void cr_note_prev(struct coord_redis *cr, const char *prev, const char *qid)
{
    size_t n = strcspn(prev, " ");

    if (n == 0 || (n == strlen(cr->node) && strncmp(prev, cr->node, n) == 0))
        return;
    metrics_inc(METRIC_LOCK_TAKEOVERS);
    log_info("%s: taken over from node %.*s (its lock lapsed without a release)", qid,
             (int)(n > 64 ? 64 : n), prev);
}

static void cr_note_takeover(struct coord_redis *cr, const redisReply *r, const char *qid)
{
    if (r->elements >= 4 && r->element[3]->type == REDIS_REPLY_STRING)
        cr_note_prev(cr, r->element[3]->str, qid);
}

static void cr_claim_reply(struct cr_call *call, redisReply *r, int live)
{
    int st = cr_claim_status(r, &call->cl);

    if (st == COORD_OK)
        cr_note_takeover(call->cr, r, call->cl.qid);
    if (!live) {
        if (st == COORD_OK)
            cr_release(&call->cr->base, &call->cl,
                       call->script == CR_S_CLAIM ? (long)time(NULL) : COORD_DUE_KEEP);
        return;
    }
    call->fn.claim(call->arg, st, st == COORD_OK ? &call->cl : NULL);
}

/* The keys and numbers every claiming script starts with. */
struct cr_claim_args {
    char kdue[256], kslots[256], ktok[256], kepoch[256], kheld[256];
    char slimit[32], slease[32], scand[16];
};

/* A claim call of queue for call->fn's owner: its keys and numbers. */
static void cr_claim_prepare(struct coord_redis *cr, struct cr_call *call, const char *queue,
                             long limit, struct cr_claim_args *a)
{
    call->cl.asked_ms = coord_mono_ms();
    snprintf(call->cl.queue, sizeof(call->cl.queue), "%s", queue);
    call->cl.slot = limit > 0;
    cr_key(cr, a->kdue, sizeof(a->kdue), "due", queue);
    cr_key(cr, a->kslots, sizeof(a->kslots), "slots", queue);
    cr_key(cr, a->ktok, sizeof(a->ktok), "token", NULL);
    cr_key(cr, a->kepoch, sizeof(a->kepoch), "epoch", NULL);
    cr_key(cr, a->kheld, sizeof(a->kheld), "held", NULL);
    snprintf(a->slimit, sizeof(a->slimit), "%ld", limit);
    snprintf(a->slease, sizeof(a->slease), "%ld", cr->lease_ms);
    snprintf(a->scand, sizeof(a->scand), "%d", CR_SCAN_CANDIDATES);
}

static void cr_claim_next(struct coord *c, struct async_owner *o, const char *queue,
                          long limit, long now, coord_claim_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    struct cr_claim_args a;
    char klock[256];
    struct cr_call *call;

    if (!cr_ready(cr) || cr->draining) {
        fn(arg, cr->draining ? COORD_EMPTY : COORD_DOWN, NULL);
        return;
    }
    call = cr_call_new(cr, o, CR_S_CLAIM, cr_claim_reply, arg);
    call->fn.claim = fn;
    cr_claim_prepare(cr, call, queue, limit, &a);
    snprintf(klock, sizeof(klock), "%slock:", cr->prefix);   /* + qid in the script */
    cr_eval(call, 5, (const char *const[]){a.kdue, a.kslots, a.ktok, a.kepoch, a.kheld,
                                           a.slimit, a.slease, cr->node, klock, a.scand,
                                           NULL});
}

static void cr_claim_id(struct coord *c, struct async_owner *o, const char *queue,
                        const char *qid, coord_claim_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char klock[256], kdue[256], ktok[256], kepoch[256], kheld[256], slease[32];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        fn(arg, COORD_DOWN, NULL);
        return;
    }
    call = cr_call_new(cr, o, CR_S_CLAIM_ID, cr_claim_reply, arg);
    call->fn.claim = fn;
    call->cl.asked_ms = coord_mono_ms();
    snprintf(call->cl.queue, sizeof(call->cl.queue), "%s", queue);
    cr_key(cr, klock, sizeof(klock), "lock", qid);
    cr_key(cr, kdue, sizeof(kdue), "due", queue);
    cr_key(cr, ktok, sizeof(ktok), "token", NULL);
    cr_key(cr, kepoch, sizeof(kepoch), "epoch", NULL);
    cr_key(cr, kheld, sizeof(kheld), "held", NULL);
    snprintf(slease, sizeof(slease), "%ld", cr->lease_ms);
    cr_eval(call, 5, (const char *const[]){klock, kdue, ktok, kepoch, kheld, cr->node, slease,
                                           qid, NULL});
}

static void cr_status_reply(struct cr_call *call, redisReply *r, int live)
{
    long long v = cr_int(r);

    if (live)
        call->fn.status(call->arg, v == 1 ? COORD_OK : v == 0 ? COORD_LOST : COORD_DOWN);
}

static void cr_renew(struct coord *c, struct async_owner *o, const struct coord_claim *cl,
                     coord_status_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char klock[256], kslots[256], kdue[256], owner[128], slease[32];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        fn(arg, COORD_DOWN);
        return;
    }
    call = cr_call_new(cr, o, CR_S_RENEW, cr_status_reply, arg);
    call->fn.status = fn;
    cr_key(cr, klock, sizeof(klock), "lock", cl->qid);
    cr_key(cr, kslots, sizeof(kslots), "slots", cl->queue);
    cr_key(cr, kdue, sizeof(kdue), "due", cl->queue);
    cr_owner(cl, cr->node, owner, sizeof(owner));
    snprintf(slease, sizeof(slease), "%ld", cr->lease_ms);
    cr_eval(call, 3, (const char *const[]){klock, kslots, kdue, owner, slease,
                                           cl->slot ? "1" : "0", cl->qid, NULL});
}

static void cr_release(struct coord *c, const struct coord_claim *cl, long next_due)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char klock[256], kslots[256], kdue[256], kheld[256], owner[128], snext[32];
    struct cr_call *call;

    if (!cr_ready(cr))
        return;   /* the lease ends by itself; the scan re-announces the file */
    call = cr_call_new(cr, NULL, CR_S_RELEASE, cr_ignore_reply, NULL);
    cr_key(cr, klock, sizeof(klock), "lock", cl->qid);
    cr_key(cr, kslots, sizeof(kslots), "slots", cl->queue);
    cr_key(cr, kdue, sizeof(kdue), "due", cl->queue);
    cr_key(cr, kheld, sizeof(kheld), "held", NULL);
    cr_owner(cl, cr->node, owner, sizeof(owner));
    snprintf(snext, sizeof(snext), "%ld", next_due);
    cr_eval(call, 4, (const char *const[]){klock, kslots, kdue, kheld, owner, snext, cl->qid,
                                           NULL});
}

/* ---- batches: many files' releases and claims in one round trip ---- */

static void cr_claim_batch(struct coord *c, struct async_owner *o, const char *queue,
                           long limit, long now, size_t want,
                           const struct coord_release *rel, size_t nrel,
                           coord_batch_fn *fn, void *arg);

static void cr_batch_reply(struct cr_call *call, redisReply *r, int live)
{
    struct coord_claim got[COORD_BATCH_MAX];
    struct coord_release back[COORD_BATCH_MAX];
    const char *word = NULL;
    int st = COORD_DOWN;
    size_t n = 0;

    if (call->num == 0)
        return;        /* releases only: nobody waits */
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        word = r->element[0]->str;
    if (word && strcmp(word, "OK") == 0)
        st = COORD_OK;
    else if (word && strcmp(word, "EMPTY") == 0)
        st = COORD_EMPTY;
    else if (word && strcmp(word, "FULL") == 0)
        st = COORD_FULL;      /* else PAUSED (Redis lost its data) or no answer */
    for (size_t i = 1; word && i + 2 < r->elements && n < COORD_BATCH_MAX; i += 3) {
        const redisReply *id = r->element[i], *prev = r->element[i + 2];
        if (id->type != REDIS_REPLY_STRING)
            break;
        got[n] = call->cl;
        snprintf(got[n].qid, sizeof(got[n].qid), "%s", id->str);
        got[n].token = (uint64_t)cr_int(r->element[i + 1]);
        if (prev->type == REDIS_REPLY_STRING)
            cr_note_prev(call->cr, prev->str, got[n].qid);
        n++;
    }
    if (live) {
        call->fn.batch(call->arg, st, got, n);
        return;
    }
    /* Nobody wants these files any more: due again now, for whoever is free. */
    for (size_t i = 0; i < n; i++) {
        back[i].cl = got[i];
        back[i].next_due = (long)time(NULL);
    }
    if (n)
        cr_claim_batch(&call->cr->base, NULL, call->cl.queue, 0, 0, 0, back, n, NULL, NULL);
}

static void cr_claim_batch(struct coord *c, struct async_owner *o, const char *queue,
                           long limit, long now, size_t want,
                           const struct coord_release *rel, size_t nrel,
                           coord_batch_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    struct cr_claim_args a;
    char swant[16];
    const char **args;
    char (*owner)[128], (*snext)[32];
    struct cr_call *call;
    size_t k;
    int drained = cr->draining && want > 0;

    if (drained)
        want = 0;        /* it takes no new work; what it gives back still goes */
    if (!cr_ready(cr)) {
        if (want || drained)    /* the releases: the leases end by themselves */
            fn(arg, drained ? COORD_EMPTY : COORD_DOWN, NULL, 0);
        return;
    }
    if (want == 0 && nrel == 0) {
        if (drained)
            fn(arg, COORD_EMPTY, NULL, 0);
        return;
    }
    call = cr_call_new(cr, want ? o : NULL, CR_S_BATCH, cr_batch_reply, arg);
    call->fn.batch = fn;
    call->num = (long)want;
    cr_claim_prepare(cr, call, queue, limit, &a);
    snprintf(swant, sizeof(swant), "%zu", want);
    args = mem_zalloc((11 + 4 * nrel + 1) * sizeof(*args));
    owner = mem_zalloc((nrel + 1) * sizeof(*owner));
    snext = mem_zalloc((nrel + 1) * sizeof(*snext));
    args[0] = a.kdue;
    args[1] = a.kslots;
    args[2] = a.ktok;
    args[3] = a.kepoch;
    args[4] = a.kheld;
    args[5] = a.slimit;
    args[6] = a.slease;
    args[7] = cr->node;
    args[8] = cr->prefix;
    args[9] = a.scand;
    args[10] = swant;
    k = 11;
    for (size_t i = 0; i < nrel; i++) {
        cr_owner(&rel[i].cl, cr->node, owner[i], sizeof(owner[i]));
        snprintf(snext[i], sizeof(snext[i]), "%ld", rel[i].next_due);
        args[k++] = rel[i].cl.queue;
        args[k++] = rel[i].cl.qid;
        args[k++] = owner[i];
        args[k++] = snext[i];
    }
    args[k] = NULL;
    cr_eval(call, 5, args);
    mem_free(args);
    mem_free(owner);
    mem_free(snext);
    if (drained)
        fn(arg, COORD_EMPTY, NULL, 0);
}

/* ---- node registry ---- */

static void cr_drain_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct coord_redis *cr = priv;
    redisReply *reply = r;
    int draining;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        return;
    draining = reply->type == REDIS_REPLY_STRING;
    if (draining != cr->draining)
        log_info("node %s %s", cr->node, draining ? "draining: it takes no new queue "
                 "work and finishes what it holds" : "active again");
    cr->draining = draining;
}

static void cr_heartbeat(uv_timer_t *t)
{
    struct coord_redis *cr = t->data;
    char knodes[256], kalive[256], kdrain[256], value[256];

    if (!cr_ready(cr))
        return;
    cr_key(cr, knodes, sizeof(knodes), "nodes", NULL);
    cr_key(cr, kalive, sizeof(kalive), "alive", cr->node);
    cr_key(cr, kdrain, sizeof(kdrain), "drain", cr->node);
    snprintf(value, sizeof(value), "%s %ld %ld %s %s", cr->draining ? "draining" : "active",
             (long)time(NULL), cr->inflight, SELOR_VERSION, cr->rules[0] ? cr->rules : "-");
    redisAsyncCommand(cr->ac, NULL, NULL, "HSET %s %s %s", knodes, cr->node, value);
    redisAsyncCommand(cr->ac, NULL, NULL, "SET %s %s PX %d", kalive, value,
                      CR_ALIVE_TTL_MS);
    redisAsyncCommand(cr->ac, cr_drain_reply, cr, "GET %s", kdrain);
    cr->commands += 3;
}

static void cr_drain_state_reply(struct cr_call *call, redisReply *r, int live)
{
    if (live)
        call->fn.drain(call->arg, r ? COORD_OK : COORD_DOWN,
                       r && r->type == REDIS_REPLY_STRING);
}

/* The key the heartbeat reads, read now (the ops process: no registry). */
static void cr_drain_state(struct coord *c, struct async_owner *o, coord_drain_fn *fn,
                           void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char kdrain[256];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        fn(arg, COORD_DOWN, 0);
        return;
    }
    call = cr_call_new(cr, o, CR_S_CONN, cr_drain_state_reply, arg);
    call->fn.drain = fn;
    cr_key(cr, kdrain, sizeof(kdrain), "drain", cr->node);
    cr->commands++;
    if (redisAsyncCommand(cr->ac, cr_on_reply, call, "GET %s", kdrain) != REDIS_OK)
        cr_call_done(call, NULL);
}

static void cr_watch(struct coord *c, coord_wake_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;

    cr->wake = fn;
    cr->wake_arg = arg;
    cr->watching = 1;
    coord_watch(cr->local, fn, arg);
    uv_timer_start(&cr->heartbeat_timer, cr_heartbeat, 0, CR_HEARTBEAT_MS);
}

/* ---- life ---- */

static int cr_attach(struct coord *c, uv_loop_t *loop)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char why[160];

    cr->loop = loop;
    coord_attach(cr->local, loop);
    uv_timer_init(loop, &cr->retry_timer);
    uv_timer_init(loop, &cr->heartbeat_timer);
    uv_timer_init(loop, &cr->connect_timer);
    cr->retry_timer.data = cr->heartbeat_timer.data = cr->connect_timer.data = cr;
    cr->timers_on = 1;
    cr->retry_ms = CR_RETRY_MIN_MS;
    async_owner_init(&cr->own);
    /* the system's resolver: Dns_servers is for mail, Redis is infrastructure */
    cr->dns = dns_new(loop, "", why, sizeof(why));
    if (cr->dns == NULL)
        log_warn("Redis: no resolver (%s): only IP addresses can be reached", why);
    if (cr->sen)
        csen_attach(cr->sen, loop, cr->dns, cr_sen_found, cr_sen_switch, cr);
    cr_connect(cr);
    return 0;
}

static void cr_timer_closed(uv_handle_t *h)
{
}

static void cr_detach(struct coord *c)
{
    struct coord_redis *cr = (struct coord_redis *)c;

    if (!cr->timers_on)
        return;
    cr->timers_on = 0;
    uv_close((uv_handle_t *)&cr->retry_timer, cr_timer_closed);
    uv_close((uv_handle_t *)&cr->heartbeat_timer, cr_timer_closed);
    uv_close((uv_handle_t *)&cr->connect_timer, cr_timer_closed);
    if (cr->ac && cr->watching) {   /* a clean stop: the node leaves the registry */
        char knodes[256], kalive[256];
        cr_key(cr, knodes, sizeof(knodes), "nodes", NULL);
        cr_key(cr, kalive, sizeof(kalive), "alive", cr->node);
        redisAsyncCommand(cr->ac, NULL, NULL, "HDEL %s %s", knodes, cr->node);
        redisAsyncCommand(cr->ac, NULL, NULL, "DEL %s", kalive);
        cr->commands += 2;
    }
    if (cr->ac)
        redisAsyncDisconnect(cr->ac);   /* replies still due are answered first */
    cr->finding = 0;
    async_owner_cancel(&cr->own);       /* lookups and a Sentinel query: dropped */
    if (cr->sen)
        csen_detach(cr->sen);
    dns_free(cr->dns);
    cr->dns = NULL;
    coord_detach(cr->local);
    log_info("Redis round trips of this process: %lu", cr->commands);
}

static void cr_destroy(struct coord *c)
{
    struct coord_redis *cr = (struct coord_redis *)c;

    coord_destroy(cr->local);
    if (cr->sen)
        csen_free(cr->sen);
    mem_free(cr);
}

static int cr_take_rescan(struct coord *c)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    int r = cr->rescan;

    cr->rescan = 0;
    return r;
}

static void cr_set_rules(struct coord *c, const char *hash)
{
    struct coord_redis *cr = (struct coord_redis *)c;

    snprintf(cr->rules, sizeof(cr->rules), "%s", hash);
}

static void cr_set_inflight(struct coord *c, long n)
{
    ((struct coord_redis *)c)->inflight = n;
}

static const struct coord_ops cr_ops = {
    .name = "redis",
    .attach = cr_attach,
    .detach = cr_detach,
    .destroy = cr_destroy,
    .conn_check = crl_conn_check,
    .announce = cr_announce,
    .watch = cr_watch,
    .claim_next = cr_claim_next,
    .claim_id = cr_claim_id,
    .renew = cr_renew,
    .release = cr_release,
    .claim_batch = cr_claim_batch,
    .slot_acquire = crl_slot_acquire,
    .slot_release = crl_slot_release,
    .slot_renew = crl_slot_renew,
    .take_rescan = cr_take_rescan,
    .set_inflight = cr_set_inflight,
    .set_rules = cr_set_rules,
    .auth_check = crl_auth_check,
    .auth_failed = crl_auth_failed,
    .rate = crl_rate,
    .drain_state = cr_drain_state,
};

struct coord *coord_redis_create(const struct config *conf, struct buf *err)
{
    struct coord_redis *cr = mem_zalloc(sizeof(*cr));
    char why[160];

    cr->base.ops = &cr_ops;
    cr->conf = conf;
    if (conf->Redis_sentinels[0]) {   /* Sentinel names the primary */
        if (conf->Redis_server[0])
            log_warn("%s:%d: Redis_server is not used: Redis_sentinels is set, and "
                     "Sentinel names the primary", conf->path,
                     conf->line[CONF_IDX_Redis_server]);
        cr->sen = csen_new(conf, err);
        if (cr->sen == NULL) {
            mem_free(cr);
            return NULL;
        }
        snprintf(cr->where, sizeof(cr->where), "primary of Sentinel master %s",
                 conf->Redis_master_name);
    } else if (net_parse_hostport(conf->Redis_server, 6379, &cr->hp, why,
                                  sizeof(why)) < 0) {
        buf_printf(err, "%s:%d: Redis_server: %s", conf->path,
                   conf->line[CONF_IDX_Redis_server], why);
        mem_free(cr);
        return NULL;
    } else {
        snprintf(cr->where, sizeof(cr->where), strchr(cr->hp.host, ':') ? "[%s]:%d"
                 : "%s:%d", cr->hp.host, cr->hp.port);
    }
    snprintf(cr->prefix, sizeof(cr->prefix), "%s", conf->Redis_prefix);
    snprintf(cr->node, sizeof(cr->node), "%s", conf->Sid[0] ? conf->Sid : "node");
    cr->lease_ms = conf->Lock_lease * 1000;
    cr->local = coord_embedded_create(conf, err);
    if (cr->local == NULL) {
        if (cr->sen)
            csen_free(cr->sen);
        mem_free(cr);
        return NULL;
    }
    return &cr->base;
}
