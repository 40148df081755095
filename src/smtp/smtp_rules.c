/*
 * smtp_rules.c - the rules engine as an SMTP session sees it.
 *
 * Owns: what a session gives the rules (its client, HELO, sender,
 * recipients, login, score, lookups cache) and the overlay its Def!s write
 * (s->conf: every later check of the session reads it, and it goes into
 * the l file for delivery); running an event and coming back to the
 * command that asked (a rule that waits puts the session in WAIT through
 * smtp_session_wait, and the run's requests belong to the session, so a
 * client that leaves cancels them).  What a verdict means for each command
 * is decided where the command is (smtp_policy.c, smtp_server.c,
 * smtp_auth.c).  Must not: parse or evaluate rules (src/rules/ does).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "smtp_session.h"
#include "smtp_worker.h"

void smtp_rules_init(struct smtp_session *s)
{
    struct smtp_rules_state *r = &s->rules;

    arena_init(&r->mem, 1024);
    rules_cache_init(&r->cache);
    r->set = rules_ref(rules_current);
    /* The overlay costs one copy of the option values: made only when a
     * rule can run, so a node without rules reads the generation. */
    if (rules_hash(r->set)[0] != '-') {
        r->ov = config_overlay(s->conf, &r->mem);
        s->conf = r->ov;
    }
}

void smtp_rules_free(struct smtp_session *s)
{
    rules_unref(s->rules.set);
    s->rules.set = NULL;
    arena_clear(&s->rules.mem);
}

void smtp_rules_txn_begin(struct smtp_session *s)
{
    struct smtp_rules_state *r = &s->rules;

    if (r->ov == NULL)
        return;
    if (r->txn_ov == NULL)
        r->txn_ov = arena_alloc(&r->mem, sizeof(*r->txn_ov));
    memcpy(r->txn_ov, r->ov, sizeof(*r->txn_ov));
    s->conf = r->txn_ov;
}

void smtp_rules_txn_end(struct smtp_session *s)
{
    if (s->rules.ov)
        s->conf = s->rules.ov;
}

const struct rules_outcome *smtp_rules_outcome(const struct smtp_session *s)
{
    return &s->rules.run.out;
}

const char *smtp_rules_reply(const struct smtp_session *s, const char *dflt)
{
    const char *r = s->rules.run.out.reply;

    return r[0] ? r : dflt;
}

static void smtp_rules_fill(struct smtp_session *s, enum rules_event ev)
{
    struct smtp_rules_state *r = &s->rules;
    struct rules_ctx *c = &r->ctx;
    /* To? outside Event.rcpt looks at every recipient so far: a list in the
     * transaction's memory, for the events that come once a message */
    size_t n = ev == RULES_EV_DATA_CMD || ev == RULES_EV_DATA ? s->txn.nrcpt : 0;
    const char **rcpts = n ? arena_alloc(&s->txn.mem, n * sizeof(*rcpts)) : NULL;

    memset(c, 0, sizeof(*c));
    c->ip = s->ip;
    c->rdns = s->rdns;
    c->helo = s->helo;
    c->from = s->txn.active || ev >= RULES_EV_FROM ? s->txn.from : NULL;
    c->auth = s->auth;
    c->qid = s->txn.qid;
    for (size_t i = 0; i < n; i++)
        rcpts[i] = s->txn.rcpt[i].orcpt;
    c->rcpts = rcpts;
    c->nrcpts = n;
    c->rcpt = ev == RULES_EV_RCPT || ev == RULES_EV_LRCPT_REFUSED ? r->rcpt : NULL;
    c->msgfile = ev == RULES_EV_DATA && r->msgfile[0] ? r->msgfile : NULL;
    c->local = r->local;
    c->size = r->size;
    c->auth_ok = s->auth[0] != '\0';
    c->tls = s->tls;
    c->hits = &r->hits;
    c->conf = r->ov ? (struct config *)s->conf : NULL;   /* ov or txn_ov: the session's own */
    /* what a transaction's events keep (its Def! values, copies, header
     * fields) goes with the transaction: a client repeating transactions
     * cannot make the session grow */
    c->mem = ev >= RULES_EV_FROM && ev <= RULES_EV_DATA ? &s->txn.mem : &r->mem;
    c->loop = &s->w->loop;
    c->own = &s->own;
    c->dns = s->w->dns;
    c->coord = s->w->node->coord;
    c->exec = s->w->exec;
    c->receiver = s->conf->Server_name;
    c->cache = &r->cache;
    c->cid = s->cid;
}

/* What every event's outcome does the same way, whatever the command. */
static void smtp_rules_common(struct smtp_session *s)
{
    const struct rules_outcome *o = &s->rules.run.out;

    if (o->rules_run)
        log_central(NULL, "%s %s * %s: %u rule%s ran, hits=%ld%s%s", s->cid, s->ip,
                    rules_event_name(s->rules.ev), o->rules_run, o->rules_run == 1 ? "" : "s",
                    s->rules.hits, o->verdict ? ", verdict " : "",
                    o->verdict == RULES_ACCEPT ? "accept" : o->verdict == RULES_DENY ? "deny" :
                    o->verdict == RULES_DEFER ? "defer" : o->verdict == RULES_CLOSE ? "close"
                                                                                    : "");
    if (s->rdns[0] == '\0' && s->rules.cache.rev == 0)
        snprintf(s->rdns, sizeof(s->rdns), "%s", s->rules.cache.rdns);
    if (s->txn.active && o->qlimit)
        s->txn.qlimit = 1;
    if (s->txn.active && o->data_reply[0])
        s->txn.data_reply = arena_strdup(&s->txn.mem, o->data_reply);
    for (size_t i = 0; s->txn.active && i < o->nheaders &&
                       s->txn.nheaders < RULES_MAX_HEADERS; i++)
        s->txn.headers[s->txn.nheaders++] = arena_strdup(&s->txn.mem, o->headers[i]);
}

static void smtp_rules_done(void *arg)
{
    struct smtp_session *s = arg;

    smtp_rules_common(s);
    s->rules.next(s);
}

void smtp_rules_event(struct smtp_session *s, enum rules_event ev,
                      void (*next)(struct smtp_session *s))
{
    struct smtp_rules_state *r = &s->rules;
    const char *spec = config_value_text(s->conf, rules_event_option(ev), NULL, 0);
    const struct rules_file *f = rules_for(r->set, spec);

    r->ev = ev;
    r->next = next;
    if (f == NULL) {
        memset(&r->run.out, 0, sizeof(r->run.out));
        next(s);
        return;
    }
    smtp_rules_fill(s, ev);
    if (rules_run(&r->run, f, ev, &r->ctx, smtp_rules_done, s)) {
        smtp_rules_common(s);
        next(s);
        return;
    }
    if (s->state == SMTP_S_COMMAND || s->state == SMTP_S_WAIT)
        smtp_session_wait(s, rules_event_name(ev));
}
