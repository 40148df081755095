/*
 * rules_test.c - `selorctl rules test`: a dry run of a session's events
 * (as Exim's -bh), printing every rule that ran and each verdict.
 *
 * Owns: the order of the session's events for a made-up client (connection,
 * helo, auth, from, each rcpt, data_cmd, data) and what the dry run can and
 * cannot look at: DNS and programs are real (Rbl?, Spf_resp, Rev_fail?,
 * Exec? are answered as a session would get them), the accounts modules say
 * whether a recipient is local, but nothing is sent, queued or counted:
 * Rate? is false (a test must not spend a user's budget).  Must not: open
 * a listening socket or write to the spool.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "accounts.h"
#include "config.h"
#include "dns.h"
#include "module.h"
#include "rules_exec.h"
#include "rules_test.h"

struct rules_test {
    const struct config *conf;
    struct config *ov;
    struct arena mem;
    uv_loop_t loop;
    struct async_owner own;
    struct dns *dns;
    struct rules_exec_pool *exec;
    struct rules_cache cache;
    struct rules_ctx ctx;
    struct rules_run run;
    struct buf trace;
    long hits;
    int done;
    const char *rcpts[RULES_TEST_MAX_RCPT];
    size_t nrcpts;
    enum rules_verdict last;
};

static const char *rules_test_verdict(enum rules_verdict v)
{
    switch (v) {
    case RULES_ACCEPT: return "accept";
    case RULES_DENY: return "deny";
    case RULES_DEFER: return "defer";
    case RULES_CLOSE: return "close";
    default: return "none (Selor's own checks decide)";
    }
}

static void rules_test_done(void *arg)
{
    ((struct rules_test *)arg)->done = 1;
}

/* Runs one event to its end (the loop turns while a rule waits). */
static void rules_test_event(struct rules_test *t, enum rules_event ev)
{
    const char *spec = config_value_text(t->ov, rules_event_option(ev), NULL, 0);
    const struct rules_file *f = rules_for(rules_current, spec);
    const struct rules_outcome *o = &t->run.out;

    if (f == NULL) {
        printf("%s: no rules\n", rules_event_name(ev));
        return;
    }
    t->ctx.rcpts = t->rcpts;
    t->ctx.nrcpts = t->nrcpts;
    buf_reset(&t->trace);
    t->done = 0;
    if (rules_run(&t->run, f, ev, &t->ctx, rules_test_done, t) == 0)
        while (!t->done && uv_run(&t->loop, UV_RUN_ONCE))
            ;
    if (t->trace.len)
        fputs(buf_cstr(&t->trace), stdout);
    printf("%s: %u rule%s ran, hits %ld, verdict %s%s%s\n", rules_event_name(ev),
           o->rules_run, o->rules_run == 1 ? "" : "s", t->hits, rules_test_verdict(o->verdict),
           o->reply[0] ? ", reply " : "", o->reply);
    for (size_t i = 0; i < o->ncp; i++)
        printf("%s: copy to %s\n", rules_event_name(ev), o->cp[i]);
    for (size_t i = 0; i < o->nheaders; i++)
        printf("%s: header %s\n", rules_event_name(ev), o->headers[i]);
    if (o->data_reply[0])
        printf("%s: data reply %s\n", rules_event_name(ev), o->data_reply);
    if (o->qlimit)
        printf("%s: to the qlimit queue\n", rules_event_name(ev));
    t->last = o->verdict;
}

static void rules_test_local_done(void *arg, struct accounts_req *req)
{
    struct rules_test *t = arg;
    enum accounts_status st = accounts_result(req)->status;

    t->ctx.local = st == ACCOUNTS_LOCAL || st == ACCOUNTS_NOMAILBOX ||
                   st == ACCOUNTS_SRS_INVALID;
    t->done = 1;
}

/* Local?: the modules are asked as a session would ask them. */
static void rules_test_local(struct rules_test *t, const struct module_set *mods,
                             const char *rcpt)
{
    struct accounts_req *req;

    t->done = 0;
    if (accounts_resolve(mods, t->ov, &t->own, rcpt, &req, rules_test_local_done, t) ==
        ACCOUNTS_WAIT) {
        while (!t->done && uv_run(&t->loop, UV_RUN_ONCE))
            ;
        return;
    }
    rules_test_local_done(t, req);
    accounts_free(req);
}

static int rules_test_stopped(const struct rules_test *t)
{
    return t->last == RULES_CLOSE || t->last == RULES_DENY || t->last == RULES_DEFER;
}

static void rules_test_session(struct rules_test *t, const struct module_set *mods,
                               const struct rules_test_args *a)
{
    rules_test_event(t, RULES_EV_CONNECTION);
    if (rules_test_stopped(t) || (a->helo && (rules_test_event(t, RULES_EV_HELO),
                                              rules_test_stopped(t))))
        return;
    if (a->auth) {
        t->ctx.auth = a->auth;
        t->ctx.auth_ok = 1;
        rules_test_event(t, RULES_EV_AUTH);
    }
    if (a->from == NULL)
        return;
    t->ctx.from = a->from;
    rules_test_event(t, RULES_EV_FROM);
    if (t->last != RULES_ACCEPT && rules_test_stopped(t))
        return;
    for (size_t i = 0; i < a->nrcpt; i++) {
        t->ctx.rcpt = a->rcpt[i];
        rules_test_local(t, mods, a->rcpt[i]);
        rules_test_event(t, RULES_EV_RCPT);
        if (!rules_test_stopped(t) && t->nrcpts < RULES_TEST_MAX_RCPT)
            t->rcpts[t->nrcpts++] = a->rcpt[i];
    }
    t->ctx.rcpt = NULL;
    if (t->nrcpts == 0)
        return;
    rules_test_event(t, RULES_EV_DATA_CMD);
    if (rules_test_stopped(t) || a->data == NULL)
        return;
    t->ctx.msgfile = a->data;
    rules_test_event(t, RULES_EV_DATA);
}

int rules_test_run(const struct config *c, struct module_set *mods,
                   const struct rules_test_args *a)
{
    struct rules_test t;
    char err[256];
    struct stat st;

    memset(&t, 0, sizeof(t));
    t.conf = c;
    arena_init(&t.mem, 4096);
    t.ov = config_overlay(c, &t.mem);
    uv_loop_init(&t.loop);
    async_owner_init(&t.own);
    t.dns = dns_new(&t.loop, c->Dns_servers, err, sizeof(err));
    if (t.dns == NULL) {
        fprintf(stderr, "selorctl: %s\n", err);
        return 1;
    }
    t.exec = rules_exec_pool_new(&t.loop, (int)c->Rules_exec_max, 100);
    module_attach_all(mods, &t.loop);
    rules_cache_init(&t.cache);
    buf_init(&t.trace, 0);
    t.ctx = (struct rules_ctx){
        .ip = a->ip, .helo = a->helo, .hits = &t.hits, .conf = t.ov, .mem = &t.mem,
        .loop = &t.loop, .own = &t.own, .dns = t.dns, .exec = t.exec,
        .receiver = c->Server_name, .cache = &t.cache, .trace = &t.trace, .cid = "test",
        .size = a->data && stat(a->data, &st) == 0 ? (long)st.st_size : 0,
    };
    printf("rules %s, client %s\n", rules_hash(rules_current), a->ip);
    rules_test_session(&t, mods, a);
    async_owner_cancel(&t.own);
    module_detach_all(mods);
    rules_exec_pool_free(t.exec);
    dns_free(t.dns);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    uv_loop_close(&t.loop);
    buf_free(&t.trace);
    arena_clear(&t.mem);
    return 0;
}
