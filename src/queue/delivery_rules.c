/*
 * delivery_rules.c - the rules engine as a delivery run sees it: the
 * events qstart_process, qend_process, error_report and dl_rcpt.
 *
 * Owns: what a run gives the rules (the message's client, sender,
 * recipients, login and hits from the l file, the content file for
 * programs, the remote answer of dl_rcpt as %T) and the run's overlay that
 * their Def!s write (made on first use, on top of the connection's
 * settings).  Which rules file runs is the run's view of Event.* (a
 * connection's Def! of an Event.q* option reaches here through the l
 * file).  Every request belongs to the run's owner.  What a verdict means
 * is decided in delivery.c.  Must not: write the l file or decide a
 * recipient's fate.
 */
#include <string.h>

#include "config.h"
#include "delivery_rules.h"
#include "queue_file.h"

void delivery_rules_init(struct delivery_rules *r)
{
    memset(r, 0, sizeof(*r));
    rules_cache_init(&r->cache);
    r->set = rules_ref(rules_current);   /* a reload meanwhile does not pull it away */
}

void delivery_rules_free(struct delivery_rules *r)
{
    rules_unref(r->set);
    r->set = NULL;
}

const struct rules_file *delivery_rules_file(const struct delivery_rules *r,
                                             const struct config *c, enum rules_event ev)
{
    return rules_for(r->set, config_value_text(c, rules_event_option(ev), NULL, 0));
}

static void delivery_rules_fill(struct delivery_rules *r, const struct delivery_rules_in *in)
{
    const struct queue_file *qf = in->qf;
    struct rules_ctx *c = &r->ctx;

    if (r->rcpts == NULL) {
        r->rcpts = arena_alloc(in->mem, (qf->nrcpt + 1) * sizeof(char *));
        for (size_t i = 0; i < qf->nrcpt; i++)
            r->rcpts[i] = qf->rcpt[i].orcpt && qf->rcpt[i].orcpt[0] ? qf->rcpt[i].orcpt
                                                                     : qf->rcpt[i].addr;
    }
    memset(c, 0, sizeof(*c));
    c->ip = qf->client_ip;
    c->rdns = qf->client_name;
    c->helo = qf->helo;
    c->from = qf->from;
    c->auth = qf->auth;
    c->auth_ok = qf->auth && qf->auth[0];
    c->qid = qf->id;
    c->rcpt = in->rcpt;
    c->local = in->local;
    c->answer = in->answer ? in->answer : "";
    c->rcpts = r->rcpts;
    c->nrcpts = in->rcpt ? 0 : qf->nrcpt;
    c->msgfile = in->msgfile;
    c->size = qf->size;
    c->hits = in->hits;
    c->conf = *in->conf;
    c->mem = in->mem;
    c->loop = in->loop;
    c->own = in->own;
    c->dns = in->dns;
    c->coord = in->coord;
    c->exec = in->exec;
    c->receiver = (*in->conf)->Server_name;
    c->cache = &r->cache;
    c->cid = qf->id;
}

int delivery_rules_event(struct delivery_rules *r, enum rules_event ev,
                         const struct delivery_rules_in *in, rules_done_fn *next, void *arg)
{
    const struct rules_file *f = delivery_rules_file(r, *in->conf, ev);

    if (f == NULL) {
        memset(&r->run.out, 0, sizeof(r->run.out));
        return 1;
    }
    /* Def! at delivery: an overlay of the run's own (made once). */
    if (!r->writable) {
        *in->conf = config_overlay(*in->conf, in->mem);
        r->writable = 1;
    }
    delivery_rules_fill(r, in);
    return rules_run(&r->run, f, ev, &r->ctx, next, arg);
}

const struct rules_outcome *delivery_rules_outcome(const struct delivery_rules *r)
{
    return &r->run.out;
}
