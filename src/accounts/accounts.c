/*
 * accounts.c - account lookups through the modules (see accounts.h).
 *
 * A recipient goes through up to four phases, each asking the modules of
 * its Modseq_* list in order until one finds the key:
 *   domain   (Modseq_domain, key "domain")      not found: remote
 *   mailbox  (Modseq_mail,   key "user@domain")
 *   alias    (Modseq_alias,  key "user@domain") also after a mailbox when
 *                                               Force_alias_seek is 1
 *   default  (Modseq_alias,  key "@domain")     when Seek_df_alias is 1
 * An SRS address (Srs_key) of a local domain is no mailbox: after the
 * domain phase it is checked and stands for the address it was made from.
 *   list     (Modseq_mail,   key "domain")      per "@domain" alias target
 *                                               (Allow_broadcasts)
 * In a phase, the first FOUND wins (the list phase takes the union of every
 * module's mailboxes); TEMPFAIL from any module with no FOUND makes the
 * whole answer TEMPFAIL (an unreachable database must not turn into "no
 * such user").  Every target carries which module put it there, so the l
 * file can say how a recipient came to be.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "accounts.h"
#include "arena.h"
#include "async.h"
#include "config.h"
#include "mem.h"
#include "module.h"
#include "srs.h"
#include "strset.h"

enum acc_phase { PH_DOMAIN, PH_MAILBOX, PH_ALIAS, PH_DEFAULT, PH_LIST, PH_AUTH, PH_END };

struct accounts_req {
    struct selor_lookup lk;       /* first: host->alloc finds the arena */
    struct arena mem;
    const struct module_set *mods;
    const struct config *conf;
    enum acc_phase phase;
    const struct module_inst *chain[MODULE_MAX];
    size_t nchain, pos;
    int tempfail, found_any;
    const char *addr, *domain, *password;
    struct accounts_result res;
    size_t targets_alloc;
    struct strset seen;           /* the targets, for duplicates */
    size_t listed;                /* broadcast domains asked so far */
    accounts_fn *fn;
    void *arg;
    struct async_owner *owner;
    struct async_req wait;            /* while a module answers later */
    const struct module_inst *asked;  /* module with a pending lookup */
};

void *accounts_lookup_alloc(struct selor_lookup *lk, size_t size)
{
    struct accounts_req *r = (struct accounts_req *)lk;

    return arena_alloc(&r->mem, size);
}

static const char *acc_seq_option(const struct config *c, enum acc_phase ph)
{
    switch (ph) {
    case PH_DOMAIN: return c->Modseq_domain;
    case PH_MAILBOX:
    case PH_LIST: return c->Modseq_mail;
    case PH_AUTH: return c->Modseq_auth;
    default: return c->Modseq_alias;
    }
}

static enum selor_lookup_kind acc_kind(enum acc_phase ph)
{
    switch (ph) {
    case PH_DOMAIN: return SELOR_LOOKUP_DOMAIN;
    case PH_MAILBOX: return SELOR_LOOKUP_MAILBOX;
    case PH_LIST: return SELOR_LOOKUP_DOMAIN_MAILBOXES;
    case PH_AUTH: return SELOR_LOOKUP_AUTH;
    default: return SELOR_LOOKUP_ALIAS;
    }
}

/*
 * The modules to ask, in order: those named in the Modseq_* option, or
 * every loaded module that answers this kind when the option is empty.
 * Returns the name of an unknown module, or NULL.
 */
static const char *acc_chain(const struct module_set *mods, const char *seq,
                             enum selor_lookup_kind kind,
                             const struct module_inst **chain, size_t *n)
{
    char name[64];
    const char *p = seq;

    *n = 0;
    if (seq[0] == '\0') {
        for (size_t i = 0; i < mods->n; i++)
            if (mods->m[i].mod->kinds & (1u << kind))
                chain[(*n)++] = &mods->m[i];
        return NULL;
    }
    while (*p) {
        size_t len = strcspn(p, " ,\t");
        if (len > 0) {
            const struct module_inst *mi;
            snprintf(name, sizeof(name), "%.*s", (int)len, p);
            mi = module_find(mods, name);
            if (mi == NULL)
                return p;
            if ((mi->mod->kinds & (1u << kind)) && *n < MODULE_MAX)
                chain[(*n)++] = mi;
        }
        p += len;
        p += strspn(p, " ,\t");
    }
    return NULL;
}

static const struct { int idx; enum acc_phase ph; } acc_seqs[] = {
    {CONF_IDX_Modseq_domain, PH_DOMAIN}, {CONF_IDX_Modseq_mail, PH_MAILBOX},
    {CONF_IDX_Modseq_alias, PH_ALIAS}, {CONF_IDX_Modseq_auth, PH_AUTH},
};

int accounts_check_seq(const struct module_set *mods, int idx, const char *value,
                       struct buf *why)
{
    const struct module_inst *chain[MODULE_MAX];
    size_t n;

    for (size_t i = 0; i < sizeof(acc_seqs) / sizeof(acc_seqs[0]); i++) {
        const char *bad;
        if (acc_seqs[i].idx != idx)
            continue;
        bad = acc_chain(mods, value, acc_kind(acc_seqs[i].ph), chain, &n);
        if (bad) {
            buf_printf(why, "%s names a module that is not loaded: %.*s",
                       config_option(idx)->name, (int)strcspn(bad, " ,\t"), bad);
            return -1;
        }
    }
    return 0;
}

int accounts_check_config(const struct module_set *mods,
                          const struct config *conf, struct buf *err)
{
    struct buf why = BUF_INIT(0);

    for (size_t i = 0; i < sizeof(acc_seqs) / sizeof(acc_seqs[0]); i++) {
        int idx = acc_seqs[i].idx;
        if (accounts_check_seq(mods, idx, acc_seq_option(conf, acc_seqs[i].ph), &why) < 0) {
            buf_printf(err, "%s:%d: %s", conf->path, conf->line[idx], buf_cstr(&why));
            buf_free(&why);
            return -1;
        }
    }
    buf_free(&why);
    return 0;
}

static void acc_add_target(struct accounts_req *r, const char *t, const char *how,
                           const struct module_inst *mi)
{
    struct accounts_result *res = &r->res;
    size_t max = r->phase == PH_LIST ? SELOR_LIST_MAX_TARGETS : SELOR_ALIAS_MAX_TARGETS;
    char via[96];
    const char *copy;

    if (res->ntargets >= max || strset_has(&r->seen, t))
        return;
    if (res->ntargets == r->targets_alloc) {
        size_t n = r->targets_alloc ? r->targets_alloc * 2 : 4;
        const char **nt = arena_alloc(&r->mem, n * sizeof(*nt));
        const char **nv = arena_alloc(&r->mem, n * sizeof(*nv));
        if (res->ntargets) {
            memcpy(nt, res->targets, res->ntargets * sizeof(*nt));
            memcpy(nv, res->via, res->ntargets * sizeof(*nv));
        }
        res->targets = nt;
        res->via = nv;
        r->targets_alloc = n;
    }
    if (mi)
        snprintf(via, sizeof(via), "%s:%s", how, mi->mod->name);
    else
        snprintf(via, sizeof(via), "%s", how);
    copy = arena_strdup(&r->mem, t);
    strset_add(&r->seen, copy);
    res->via[res->ntargets] = arena_strdup(&r->mem, via);
    res->targets[res->ntargets++] = copy;
}

/* An alias target "@domain": every mailbox of the domain, when allowed. */
static void acc_add_broadcast(struct accounts_req *r, const char *domain)
{
    struct accounts_result *res = &r->res;
    char *d;

    if (!r->conf->Allow_broadcasts || domain[0] == '\0' ||
        res->nbroadcast == ACCOUNTS_BROADCASTS_MAX)
        return;
    for (size_t i = 0; i < res->nbroadcast; i++)
        if (strcasecmp(res->broadcast[i], domain) == 0)
            return;
    d = arena_strdup(&r->mem, domain);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    res->broadcast[res->nbroadcast++] = d;
}

static const char *acc_dup(struct accounts_req *r, const char *s)
{
    return arena_strdup(&r->mem, s ? s : "");
}

static void acc_take_mailbox(struct accounts_req *r)
{
    struct selor_mailbox *m = &r->res.mbox;

    *m = r->lk.mbox;
    m->user = acc_dup(r, m->user);
    m->home = acc_dup(r, m->home);
    m->dlocal = acc_dup(r, m->dlocal);
    r->res.has_mailbox = 1;
}

static void acc_begin_phase(struct accounts_req *r, enum acc_phase ph)
{
    r->phase = ph;
    r->pos = 0;
    r->tempfail = 0;
    r->found_any = 0;
    if (ph != PH_END)
        acc_chain(r->mods, acc_seq_option(r->conf, ph), acc_kind(ph), r->chain,
                  &r->nchain);
}

static void acc_finish(struct accounts_req *r, enum accounts_status st)
{
    r->res.status = st;
    r->phase = PH_END;
}

/* The address is ours: broadcast domains are listed, then it is done. */
static void acc_local(struct accounts_req *r)
{
    if (r->listed < r->res.nbroadcast) {
        r->listed++;
        acc_begin_phase(r, PH_LIST);
        return;
    }
    /* an alias left with nothing (a broadcast that is off, an empty
     * domain) reaches nobody */
    acc_finish(r, r->res.ntargets ? ACCOUNTS_LOCAL : ACCOUNTS_NOMAILBOX);
}

/* Mail to one of our SRS addresses goes back to the address behind it. */
static void acc_srs(struct accounts_req *r)
{
    char out[SRS_ADDR_MAX + 1];
    enum srs_status st = srs_reverse(r->conf->Srs_key, (uint8_t)r->conf->Srs_shift,
                                     r->addr, time(NULL), out, sizeof(out));

    if (st != SRS_OK) {
        r->res.error = srs_status_str(st);
        acc_finish(r, ACCOUNTS_SRS_INVALID);
        return;
    }
    acc_add_target(r, out, "srs", NULL);
    acc_finish(r, ACCOUNTS_LOCAL);
}

/* A phase ended with found (1), not found (0) or tempfail (-1). */
static void acc_phase_done(struct accounts_req *r, int found)
{
    int mbox = r->res.has_mailbox;

    if (found < 0) {
        acc_finish(r, ACCOUNTS_TEMPFAIL);
        return;
    }
    switch (r->phase) {
    case PH_DOMAIN:
        if (!found)
            acc_finish(r, ACCOUNTS_REMOTE);
        else if (r->conf->Srs_key[0] && srs_is_srs(r->addr))
            acc_srs(r);
        else
            acc_begin_phase(r, PH_MAILBOX);
        return;
    case PH_MAILBOX:
        if (!found || r->conf->Force_alias_seek)
            acc_begin_phase(r, PH_ALIAS);
        else
            acc_local(r);
        return;
    case PH_ALIAS:
        if (found || mbox)
            acc_local(r);
        else if (r->conf->Seek_df_alias)
            acc_begin_phase(r, PH_DEFAULT);
        else
            acc_finish(r, ACCOUNTS_NOMAILBOX);
        return;
    case PH_DEFAULT:
        if (found)
            acc_local(r);
        else
            acc_finish(r, ACCOUNTS_NOMAILBOX);
        return;
    case PH_LIST:
        acc_local(r);
        return;
    case PH_AUTH:
        acc_finish(r, found ? ACCOUNTS_AUTH_OK : ACCOUNTS_AUTH_FAIL);
        return;
    case PH_END:
        return;
    }
}

static const char *acc_key(struct accounts_req *r)
{
    switch (r->phase) {
    case PH_DOMAIN: return r->domain;
    case PH_DEFAULT: return r->domain - 1;  /* "@domain" */
    case PH_LIST: return r->res.broadcast[r->listed - 1];
    default: return r->addr;
    }
}

/* A FOUND answer's targets. */
static void acc_take_found(struct accounts_req *r, const struct module_inst *mi)
{
    if (r->phase == PH_MAILBOX) {
        acc_take_mailbox(r);
        acc_add_target(r, r->addr, "mailbox", mi);
    } else if (r->phase == PH_AUTH) {
        acc_take_mailbox(r);
    } else if (r->phase == PH_LIST) {
        for (size_t i = 0; i < r->lk.ntargets; i++)
            if (strchr(r->lk.targets[i], '@') > r->lk.targets[i])
                acc_add_target(r, r->lk.targets[i], "broadcast", mi);
    } else if (r->phase == PH_ALIAS || r->phase == PH_DEFAULT) {
        for (size_t i = 0; i < r->lk.ntargets; i++) {
            if (r->lk.targets[i][0] == '@')
                acc_add_broadcast(r, r->lk.targets[i] + 1);
            else
                acc_add_target(r, r->lk.targets[i], "alias", mi);
        }
    }
}

/* Takes one module's answer; moves to the next module or phase. */
static void acc_take(struct accounts_req *r, const struct module_inst *mi, int result)
{
    if (result == SELOR_FOUND) {
        acc_take_found(r, mi);
        r->found_any = 1;
        if (r->phase != PH_LIST) {   /* a list asks every module */
            acc_phase_done(r, 1);
            return;
        }
    }
    if (result == SELOR_TEMPFAIL) {
        r->tempfail = 1;
        r->res.error = acc_dup(r, r->lk.error[0] ? r->lk.error : "module temporary failure");
    }
    if (++r->pos >= r->nchain)
        acc_phase_done(r, r->tempfail ? -1 : r->found_any);
}

static void acc_on_done(struct selor_lookup *lk);

/* Asks modules until an answer is pending or the request is finished. */
static enum accounts_wait acc_run(struct accounts_req *r)
{
    while (r->phase != PH_END) {
        const struct module_inst *mi;
        int result;
        if (r->pos >= r->nchain) {
            acc_phase_done(r, r->tempfail ? -1 : r->found_any);
            continue;
        }
        mi = r->chain[r->pos];
        memset(&r->lk.mbox, 0, sizeof(r->lk.mbox));
        r->lk.targets = NULL;
        r->lk.ntargets = 0;
        r->lk.error[0] = '\0';
        r->lk.kind = acc_kind(r->phase);
        r->lk.key = acc_key(r);
        r->lk.password = r->password;
        r->lk.done = acc_on_done;
        result = mi->mod->lookup(mi->state, &r->lk);
        if (result == SELOR_PENDING) {
            r->asked = mi;
            return ACCOUNTS_WAIT;
        }
        acc_take(r, mi, result);
    }
    return ACCOUNTS_DONE;
}

static void acc_free(struct accounts_req *r)
{
    if (r->password)
        memset((char *)r->password, 0, strlen(r->password));
    strset_free(&r->seen);
    arena_clear(&r->mem);
    mem_free(r);
}

static void acc_on_done(struct selor_lookup *lk)
{
    struct accounts_req *r = (struct accounts_req *)lk;
    const struct module_inst *mi = r->asked;

    r->asked = NULL;
    acc_take(r, mi, lk->result);
    if (acc_run(r) == ACCOUNTS_WAIT)
        return;
    if (async_req_end(&r->wait))
        r->fn(r->arg, r);
    acc_free(r);
}

/* The owner went while a module was answering: the module stops. */
static void acc_cancel(struct async_req *ar)
{
    struct accounts_req *r = (struct accounts_req *)((char *)ar -
                                                     offsetof(struct accounts_req, wait));

    if (r->asked && r->asked->mod->cancel)
        r->asked->mod->cancel(r->asked->state, &r->lk);
    acc_free(r);
}

/* The first phase's answer: at once, or later on behalf of the owner. */
static enum accounts_wait acc_start(struct accounts_req *r, struct accounts_req **reqp)
{
    if (acc_run(r) == ACCOUNTS_DONE) {
        *reqp = r;
        return ACCOUNTS_DONE;
    }
    *reqp = NULL;
    async_req_start(&r->wait, r->owner, acc_cancel, 0);
    return ACCOUNTS_WAIT;
}

static struct accounts_req *acc_new(const struct module_set *mods,
                                    const struct config *conf, struct async_owner *o,
                                    accounts_fn *fn, void *arg)
{
    struct accounts_req *r = mem_zalloc(sizeof(*r));

    arena_init(&r->mem, 1024);
    r->mods = mods;
    r->conf = conf;
    r->owner = o;
    r->fn = fn;
    r->arg = arg;
    return r;
}

enum accounts_wait accounts_resolve(const struct module_set *mods,
                                    const struct config *conf, struct async_owner *o,
                                    const char *addr, struct accounts_req **reqp,
                                    accounts_fn *fn, void *arg)
{
    struct accounts_req *r = acc_new(mods, conf, o, fn, arg);
    const char *at = strrchr(addr, '@');
    char *copy = arena_strdup(&r->mem, addr);

    r->addr = copy;
    r->domain = at ? copy + (at - addr) + 1 : copy + strlen(copy);
    if (at == NULL)
        acc_finish(r, ACCOUNTS_NOMAILBOX);
    else
        acc_begin_phase(r, PH_DOMAIN);
    return acc_start(r, reqp);
}

enum accounts_wait accounts_auth(const struct module_set *mods,
                                 const struct config *conf, struct async_owner *o,
                                 const char *user, const char *password,
                                 struct accounts_req **reqp, accounts_fn *fn, void *arg)
{
    struct accounts_req *r = acc_new(mods, conf, o, fn, arg);

    r->addr = arena_strdup(&r->mem, user);
    r->domain = "";
    r->password = arena_strdup(&r->mem, password);
    acc_begin_phase(r, PH_AUTH);
    return acc_start(r, reqp);
}

const struct accounts_result *accounts_result(const struct accounts_req *req)
{
    return &req->res;
}

int accounts_broadcast_allowed(const struct accounts_result *r, const char *sender,
                               const char *auth)
{
    const char *at = sender ? strrchr(sender, '@') : NULL;

    if (r->nbroadcast == 0 || (auth && auth[0]))
        return 1;
    for (size_t i = 0; i < r->nbroadcast; i++)
        if (at == NULL || strcasecmp(at + 1, r->broadcast[i]) != 0)
            return 0;
    return 1;
}

void accounts_free(struct accounts_req *r)
{
    if (r)
        acc_free(r);
}
