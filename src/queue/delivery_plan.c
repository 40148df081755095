/*
 * delivery_plan.c - the PLAN phase of a delivery run: each due recipient
 * asked of the accounts again, one at a time, and sorted into a mailbox
 * (an MDA job), a remote domain (one SMTP job per domain and sender, the
 * sender rewritten by SRS where an alias forwards out), an alias found
 * only now (its targets join the file), or a failure.
 *
 * Owns: the jobs a run will do.  Must not: start them (delivery.c does)
 * or write the l file.
 */
#include <stdio.h>
#include <string.h>

#include "accounts.h"
#include "config.h"
#include "deliver_smtp.h"
#include "delivery_int.h"
#include "log.h"
#include "mem.h"
#include "queue_file.h"
#include "srs.h"

static int dl_has_rcpt(struct delivery *d, const char *addr)
{
    if (d->rcpt_set.n == 0)
        for (size_t i = 0; i < d->qf.nrcpt; i++)
            strset_add(&d->rcpt_set, d->qf.rcpt[i].addr);
    return strset_has(&d->rcpt_set, addr);
}

static struct dl_job *dl_job_new(struct delivery *d, int local, size_t n)
{
    struct dl_job *j = mem_zalloc(sizeof(*j));

    j->d = d;
    j->local = local;
    j->idx = arena_alloc(&d->mem, n * sizeof(*j->idx));
    j->addrs = arena_alloc(&d->mem, n * sizeof(*j->addrs));
    j->next = d->jobs;
    d->jobs = j;
    d->jobs_left++;
    return j;
}

static void dl_plan_local(struct delivery *d, size_t i, const struct accounts_result *r)
{
    struct dl_job *j = dl_job_new(d, 1, 1);
    struct selor_mailbox *m = &j->mbox;

    j->idx[0] = i;
    j->n = 1;
    *m = r->mbox;
    m->user = arena_strdup(&d->mem, m->user ? m->user : "");
    m->home = arena_strdup(&d->mem, m->home ? m->home : "");
    m->dlocal = arena_strdup(&d->mem, m->dlocal ? m->dlocal : "");
}

/*
 * Alias targets not in the file yet join it (an alias that was not there
 * when the message was accepted).  The recipient itself is done with only
 * when it is no mailbox: a mailbox that is also an alias (Force_alias_seek)
 * still gets its own delivery.
 */
static void dl_plan_alias(struct delivery *d, size_t i, const struct accounts_result *r,
                          int mailbox_too)
{
    const char *orcpt = d->qf.rcpt[i].orcpt[0] ? d->qf.rcpt[i].orcpt : d->qf.rcpt[i].addr;
    int bcast_ok = accounts_broadcast_allowed(r, d->qf.from, d->qf.auth);
    size_t added = 0;

    orcpt = qf_str(&d->qf, orcpt);
    for (size_t k = 0; k < r->ntargets; k++) {
        if (dl_has_rcpt(d, r->targets[k]) || d->qf.nrcpt >= DL_MAX_RCPT ||
            (!bcast_ok && strncmp(r->via[k], "broadcast:", 10) == 0))
            continue;
        struct qf_rcpt *nr = qf_add_rcpt(&d->qf, r->targets[k], orcpt);
        nr->via = qf_str(&d->qf, r->via[k]);
        strset_add(&d->rcpt_set, nr->addr);
        added++;
    }
    if (mailbox_too) {
        if (added)
            log_summary(d->claim.qid, "expanded to=<%s> new=%zu", d->qf.rcpt[i].addr,
                        added);
        return;
    }
    d->qf.rcpt[i].state = QF_DELIVERED;
    d->qf.rcpt[i].answer = qf_str(&d->qf, added ? "alias expanded" : "alias: no new recipients");
    log_summary(d->claim.qid, "expanded to=<%s> new=%zu", d->qf.rcpt[i].addr, added);
}

/*
 * Kept beside the file, not in a recipient's state: a run stopped while
 * planning writes the file, and a made-up state there would make it
 * unreadable.
 */
static void dl_plan_remote(struct delivery *d, size_t i)
{
    if (d->nremote == d->remote_alloc) {
        d->remote_alloc = d->remote_alloc ? d->remote_alloc * 2 : 8;
        d->remote = mem_realloc(d->remote, d->remote_alloc * sizeof(*d->remote));
    }
    d->remote[d->nremote++] = i;
}

static void dl_plan_take(struct delivery *d, size_t i, const struct accounts_result *r)
{
    const char *addr = d->qf.rcpt[i].addr;
    int self = 0;

    switch (r->status) {
    case ACCOUNTS_LOCAL:
        for (size_t k = 0; k < r->ntargets; k++)
            self |= strcasecmp(r->targets[k], addr) == 0;
        if (r->has_mailbox && self)
            dl_plan_local(d, i, r);
        if (r->ntargets > (size_t)self || !r->has_mailbox)
            dl_plan_alias(d, i, r, r->has_mailbox && self);
        break;
    case ACCOUNTS_REMOTE:
        dl_plan_remote(d, i);   /* grouped by domain when planning ends */
        break;
    case ACCOUNTS_NOMAILBOX:
        delivery_result(d, i, DELIVER_PERM, d->conf->Msg_no_mailbox, NULL);
        break;
    case ACCOUNTS_SRS_INVALID:
        delivery_result(d, i, DELIVER_PERM, d->conf->Msg_invalid_srs, NULL);
        break;
    default:
        delivery_result(d, i, DELIVER_TEMP, r->error ? r->error : "account lookup failed", NULL);
        break;
    }
}

/*
 * The envelope sender for a remote recipient: the message's own, or, for
 * a target of one of our aliases (Srs_key, Srs_alias_redir), an SRS address
 * of the alias's domain, so that SPF at the receiving end sees a sender
 * this domain may use.  A report (null sender) is never rewritten.
 */
static const char *dl_sender_for(struct delivery *d, size_t k)
{
    const struct config *c = d->conf;
    const struct qf_rcpt *r = &d->qf.rcpt[k];
    const char *via = r->via ? r->via : "";
    char out[SRS_ADDR_MAX + 1];
    enum srs_fwd st;

    if (c->Srs_key[0] == '\0' || !c->Srs_alias_redir || d->qf.from[0] == '\0' ||
        strncmp(via, "alias:", 6) != 0 || delivery_domain_of(r->orcpt)[0] == '\0')
        return d->qf.from;
    st = srs_forward(c->Srs_key, (uint8_t)c->Srs_shift, d->qf.from, delivery_domain_of(r->orcpt),
                     time(NULL), out, sizeof(out));
    if (st == SRS_FWD_OK)
        return arena_strdup(&d->mem, out);
    if (st != SRS_FWD_KEEP)
        log_warn("%s: sender <%s> kept for <%s>: SRS: %s", d->claim.qid, d->qf.from,
                 r->addr, srs_fwd_str(st));
    return d->qf.from;
}

/* One SMTP job per domain and sender, its recipients in file order. */
static void dl_plan_group_remote(struct delivery *d)
{
    const char **from = arena_alloc(&d->mem, (d->nremote + 1) * sizeof(*from));

    for (size_t a = 0; a < d->nremote; a++)
        from[a] = dl_sender_for(d, d->remote[a]);
    for (size_t a = 0; a < d->nremote; a++) {
        const char *dom;
        size_t n = 0;
        struct dl_job *j;
        if (d->remote[a] == SIZE_MAX)
            continue;
        dom = delivery_domain_of(d->qf.rcpt[d->remote[a]].addr);
        for (size_t b = a; b < d->nremote; b++)
            n += d->remote[b] != SIZE_MAX && strcmp(from[b], from[a]) == 0 &&
                 strcasecmp(delivery_domain_of(d->qf.rcpt[d->remote[b]].addr), dom) == 0;
        j = dl_job_new(d, 0, n);
        j->from = from[a];
        for (size_t b = a; b < d->nremote; b++) {
            size_t k = d->remote[b];
            if (k == SIZE_MAX || strcmp(from[b], from[a]) != 0 ||
                strcasecmp(delivery_domain_of(d->qf.rcpt[k].addr), dom) != 0)
                continue;
            j->addrs[j->n] = arena_strdup(&d->mem, d->qf.rcpt[k].addr);
            j->idx[j->n++] = k;
            d->remote[b] = SIZE_MAX;
        }
    }
}

static void dl_plan_done(struct delivery *d)
{
    dl_plan_group_remote(d);
    d->phase = DL_RUN;
    if (d->jobs_left == 0) {
        delivery_finish(d);
        return;
    }
    delivery_next_job(d);
}

static void dl_lookup_done(void *arg, struct accounts_req *req)
{
    struct delivery *d = arg;

    d->lookup_pending = 0;
    dl_plan_take(d, d->plan_i++, accounts_result(req));
    delivery_plan_next(d);
}

/* Asks about each due pending recipient in turn. */
void delivery_plan_next(struct delivery *d)
{
    struct accounts_req *req;

    while (d->plan_i < d->qf.nrcpt && !d->stopping) {
        const struct qf_rcpt *r = &d->qf.rcpt[d->plan_i];
        if (r->state != QF_PENDING || r->next > d->now) {
            d->plan_i++;
            continue;
        }
        if (accounts_resolve(d->env->mods, d->conf, &d->lookups, r->addr, &req,
                             dl_lookup_done, d) == ACCOUNTS_WAIT) {
            d->lookup_pending = 1;
            return;
        }
        dl_plan_take(d, d->plan_i++, accounts_result(req));
        accounts_free(req);
    }
    if (d->stopping)
        delivery_finish(d);
    else
        dl_plan_done(d);
}
