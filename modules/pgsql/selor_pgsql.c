/*
 * selor_pgsql.c - the "pgsql" account module: local domains, mailboxes,
 * aliases, logins and broadcast lists from PostgreSQL, one query per kind
 * (Pgsql_query_*), the key always passed as parameter $1.  See the pgsql
 * section of docs/modules.md.
 *
 * Owns: the options and their checks (init, in the master: no connection
 * there), the module entry points, the per-process request queue and the
 * path of an answer from a result (or the cache) to done().
 * Must not: connect or block in init (it runs as root before the fork),
 * block the loop thread, call done() or touch a request after cancel() or
 * detach(), cache a TEMPFAIL, or include Selor's internal headers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql.h"

static const char *const pgsql_query_options[PGSQL_KINDS] = {
    [SELOR_LOOKUP_DOMAIN] = "Pgsql_query_domain",
    [SELOR_LOOKUP_MAILBOX] = "Pgsql_query_mailbox",
    [SELOR_LOOKUP_ALIAS] = "Pgsql_query_alias",
    [SELOR_LOOKUP_AUTH] = "Pgsql_query_auth",
    [SELOR_LOOKUP_DOMAIN_MAILBOXES] = "Pgsql_query_domain_mailboxes",
};

/* ---- state -------------------------------------------------------------------- */

static void pgsql_state_free(struct pgsql_state *st)
{
    for (int k = 0; k < PGSQL_KINDS; k++)
        free(st->query[k]);
    free(st->conninfo);
    free(st->conns);
    pgsql_cache_free(st->cache);
    free(st);
}

/* After detach, the state goes when the last handle and job are done. */
void pgsql_maybe_free(struct pgsql_state *st)
{
    if (st->detaching && st->busy == 0)
        pgsql_state_free(st);
}

/* ---- requests ----------------------------------------------------------------- */

void pgsql_req_free(struct pgsql_req *pr)
{
    free(pr);
}

static struct pgsql_req *pgsql_req_new(struct pgsql_state *st,
                                       struct selor_lookup *req)
{
    size_t n = strlen(req->key) + 1;
    struct pgsql_req *pr = calloc(1, sizeof(*pr) + n);

    if (pr == NULL)
        return NULL;
    pr->st = st;
    pr->req = req;
    pr->kind = (int)req->kind;
    memcpy(pr->key, req->key, n);
    return pr;
}

/* Answers and frees pr (quietly when it was cancelled). */
static void pgsql_req_answer(struct pgsql_req *pr, int result)
{
    struct selor_lookup *req = pr->req;

    pgsql_req_free(pr);
    if (req != NULL) {
        req->result = result;
        req->done(req);
    }
}

void pgsql_req_tempfail(struct pgsql_req *pr, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (pr->req != NULL) {
        n = snprintf(pr->req->error, sizeof(pr->req->error), "pgsql: ");
        va_start(ap, fmt);
        vsnprintf(pr->req->error + n, sizeof(pr->req->error) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    pgsql_req_answer(pr, SELOR_TEMPFAIL);
}

static uint64_t pgsql_expiry(const struct pgsql_state *st)
{
    return uv_now(st->loop) + (uint64_t)st->ttl_s * 1000;
}

/* A query's result: cached (whoever asked is still there or not), then
 * given to the request. */
void pgsql_req_result(struct pgsql_req *pr, const PGresult *res)
{
    struct pgsql_state *st = pr->st;
    char err[128];
    struct pgsql_answer *a = pgsql_answer_from(pr->kind, res, st->host, err, sizeof(err));
    int result;

    if (a == NULL) {
        pgsql_req_tempfail(pr, "%s", err);
        return;
    }
    result = pr->req ? pgsql_answer_give(st, pr, pr->req, a) : SELOR_NOTFOUND;
    if (st->cache)
        pgsql_cache_put(st->cache, pr->kind, pr->key, a, pgsql_expiry(st));
    else
        pgsql_answer_free(a);
    if (result != SELOR_PENDING)
        pgsql_req_answer(pr, result);
}

/* ---- the queue -------------------------------------------------------------------- */

static void pgsql_queue_unlink(struct pgsql_state *st, struct pgsql_req *pr)
{
    if (pr->prev)
        pr->prev->next = pr->next;
    else
        st->qhead = pr->next;
    if (pr->next)
        pr->next->prev = pr->prev;
    else
        st->qtail = pr->prev;
    pr->prev = pr->next = NULL;
    pr->where = PGSQL_NEW;
    st->qlen--;
}

static void pgsql_on_qtimer(uv_timer_t *t);

/* The timer follows the oldest waiting request (all wait as long). */
static void pgsql_queue_arm(struct pgsql_state *st)
{
    uint64_t now = uv_now(st->loop);

    if (st->qhead == NULL || st->detaching) {
        uv_timer_stop(&st->qtimer);
        return;
    }
    uv_timer_start(&st->qtimer, pgsql_on_qtimer,
                   st->qhead->deadline > now ? st->qhead->deadline - now : 0, 0);
}

static void pgsql_queue_push(struct pgsql_state *st, struct pgsql_req *pr)
{
    pr->deadline = uv_now(st->loop) + (uint64_t)st->timeout_s * 1000;
    pr->where = PGSQL_QUEUED;
    pr->prev = st->qtail;
    pr->next = NULL;
    if (st->qtail)
        st->qtail->next = pr;
    else
        st->qhead = pr;
    st->qtail = pr;
    st->qlen++;
    if (st->qhead == pr)
        pgsql_queue_arm(st);
}

struct pgsql_req *pgsql_queue_pop(struct pgsql_state *st)
{
    struct pgsql_req *pr = st->qhead;

    if (pr != NULL) {
        pgsql_queue_unlink(st, pr);
        pgsql_queue_arm(st);
    }
    return pr;
}

void pgsql_queue_flush(struct pgsql_state *st, const char *why)
{
    struct pgsql_req *pr;

    while ((pr = pgsql_queue_pop(st)) != NULL)
        pgsql_req_tempfail(pr, "database unavailable: %s", why);
}

static void pgsql_on_qtimer(uv_timer_t *t)
{
    struct pgsql_state *st = PGSQL_CONTAINER(t, struct pgsql_state, qtimer);
    uint64_t now = uv_now(st->loop);

    while (st->qhead != NULL && st->qhead->deadline <= now) {
        struct pgsql_req *pr = pgsql_queue_pop(st);
        pgsql_req_tempfail(pr, "no database connection free for %ld s", st->timeout_s);
    }
    pgsql_queue_arm(st);
}

/* ---- lookups ---------------------------------------------------------------------- */

static int pgsql_tempfail_now(struct selor_lookup *req, const char *why)
{
    snprintf(req->error, sizeof(req->error), "pgsql: %s", why);
    return SELOR_TEMPFAIL;
}

/* From the cache: an answer now, or PENDING for a password check. */
static int pgsql_from_cache(struct pgsql_state *st, struct selor_lookup *req,
                            const struct pgsql_answer *a)
{
    struct pgsql_req *pr = NULL;
    int result;

    if (req->kind == SELOR_LOOKUP_AUTH && (pr = pgsql_req_new(st, req)) == NULL)
        return pgsql_tempfail_now(req, "out of memory");
    result = pgsql_answer_give(st, pr, req, a);
    if (result != SELOR_PENDING)
        pgsql_req_free(pr);
    return result;
}

/* Sends the lookup on a free connection, or queues it. */
static int pgsql_submit(struct pgsql_state *st, struct selor_lookup *req)
{
    struct pgsql_req *pr;
    struct pgsql_conn *c;

    if (st->loop == NULL || st->detaching)
        return pgsql_tempfail_now(req, "module not attached to an event loop");
    if (!pgsql_pool_can_serve(st))
        return pgsql_tempfail_now(req, st->last_error[0] ? st->last_error
                                  : "database unavailable");
    if (st->qlen >= PGSQL_QUEUE_MAX)
        return pgsql_tempfail_now(req, "too many lookups waiting for the database");
    if ((pr = pgsql_req_new(st, req)) == NULL)
        return pgsql_tempfail_now(req, "out of memory");
    req->module_data = pr;
    while ((c = pgsql_pool_ready(st)) != NULL) {
        if (pgsql_conn_send(c, pr) == 0)
            return SELOR_PENDING;
        pgsql_conn_fail(c, "cannot send the query");
    }
    if (!pgsql_pool_can_serve(st)) {
        pgsql_req_free(pr);
        return pgsql_tempfail_now(req, st->last_error);
    }
    pgsql_queue_push(st, pr);
    return SELOR_PENDING;
}

static int pgsql_lookup(void *state, struct selor_lookup *req)
{
    struct pgsql_state *st = state;
    const struct pgsql_answer *a;

    /* A kind without its query is not this module's: NOTFOUND, so the next
     * module of the Modseq_* list is asked. */
    if ((unsigned)req->kind >= PGSQL_KINDS || st->query[req->kind] == NULL)
        return SELOR_NOTFOUND;
    if (req->key == NULL || strlen(req->key) > PGSQL_KEY_MAX)
        return SELOR_NOTFOUND;
    if (st->cache && st->loop &&
        (a = pgsql_cache_get(st->cache, (int)req->kind, req->key, uv_now(st->loop))) != NULL)
        return pgsql_from_cache(st, req, a);
    return pgsql_submit(st, req);
}

static void pgsql_cancel(void *state, struct selor_lookup *req)
{
    struct pgsql_state *st = state;
    struct pgsql_req *pr = req->module_data;

    if (pr == NULL || pr->req != req)
        return;
    pr->req = NULL;  /* a running query or check finishes, quietly */
    req->module_data = NULL;
    if (pr->where == PGSQL_QUEUED) {
        pgsql_queue_unlink(st, pr);
        pgsql_queue_arm(st);
        pgsql_req_free(pr);
    }
}

/* ---- options ------------------------------------------------------------------------ */

static int pgsql_fail(const struct selor_host *host, const char *option,
                      char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int pgsql_fail(const struct selor_host *host, const char *option,
                      char *err, size_t errlen, const char *fmt, ...)
{
    char where[256] = "";
    va_list ap;
    int n;

    if (host != NULL && option != NULL)
        host->option_where(option, where, sizeof(where));
    n = snprintf(err, errlen, "%s%s", where, where[0] ? ": " : "");
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A number option in [min, max], def when not set. */
static int pgsql_number(const struct selor_host *host, const char *name, long def,
                        long min, long max, long *out, char *err, size_t errlen)
{
    const char *s = host->option(name);
    char *end;
    long v;

    *out = def;
    if (s == NULL || s[0] == '\0')
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return pgsql_fail(host, name, err, errlen, "%s must be a number from "
                          "%ld to %ld", name, min, max);
    *out = v;
    return 0;
}

static int pgsql_is_address(const char *s, size_t n)
{
    char buf[64];
    unsigned char bin[16];

    if (n == 0 || n >= sizeof(buf))
        return n == 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

/* libpq would resolve host names with a blocking lookup inside
 * PQconnectPoll, on the loop thread: say so once, at start. */
static void pgsql_warn_names(const struct selor_host *host, PQconninfoOption *opts)
{
    const char *hosts = NULL, *hostaddr = NULL;

    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0)
            hosts = o->val;
        if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    if (hosts == NULL || (hostaddr != NULL && hostaddr[0] != '\0'))
        return;
    for (const char *p = hosts; *p;) {
        size_t n = strcspn(p, ",");
        if (p[0] != '/' && p[0] != '@' && !pgsql_is_address(p, n)) {
            host->log_warn("pgsql: Pgsql_conninfo names the host %.*s: libpq "
                           "resolves it with a blocking lookup at each connection; "
                           "give hostaddr= (or a socket directory) as well",
                           (int)(n > 200 ? 200 : n), p);
            return;
        }
        p += n + (p[n] == ',');
    }
}

static int pgsql_init_conninfo(const struct selor_host *host, struct pgsql_state *st,
                               char *err, size_t errlen)
{
    const char *ci = host->option("Pgsql_conninfo");
    PQconninfoOption *opts;
    char *msg = NULL;

    if (ci == NULL)
        return pgsql_fail(host, "Module", err, errlen, "the pgsql module needs "
                          "Pgsql_conninfo (a libpq connection string)");
    if ((opts = PQconninfoParse(ci, &msg)) == NULL) {
        pgsql_fail(host, "Pgsql_conninfo", err, errlen, "Pgsql_conninfo: %.*s",
                   msg ? (int)strcspn(msg, "\n") : 13, msg ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    pgsql_warn_names(host, opts);
    PQconninfoFree(opts);
    st->conninfo = strdup(ci);
    return st->conninfo ? 0 : pgsql_fail(host, NULL, err, errlen, "out of memory");
}

static int pgsql_init_queries(const struct selor_host *host, struct pgsql_state *st,
                              char *err, size_t errlen)
{
    int any = 0;

    for (int k = 0; k < PGSQL_KINDS; k++) {
        const char *q = host->option(pgsql_query_options[k]);
        if (q == NULL || q[0] == '\0')
            continue;
        /* Without $1 the key could not be the query's parameter. */
        if (strstr(q, "$1") == NULL)
            return pgsql_fail(host, pgsql_query_options[k], err, errlen,
                              "%s must use $1 (the key)", pgsql_query_options[k]);
        if ((st->query[k] = strdup(q)) == NULL)
            return pgsql_fail(host, NULL, err, errlen, "out of memory");
        any = 1;
    }
    if (!any)
        return pgsql_fail(host, "Module", err, errlen, "the pgsql module needs at "
                          "least one Pgsql_query_* option");
    return 0;
}

static int pgsql_init_numbers(const struct selor_host *host, struct pgsql_state *st,
                              char *err, size_t errlen)
{
    long n;

    if (pgsql_number(host, "Pgsql_connections", 2, 1, 64, &n, err, errlen) < 0 ||
        pgsql_number(host, "Pgsql_cache_ttl", 30, 0, 86400, &st->ttl_s, err, errlen) < 0 ||
        pgsql_number(host, "Pgsql_timeout", 5, 1, 3600, &st->timeout_s, err, errlen) < 0)
        return -1;
    st->nconn = (int)n;
    return 0;
}

/* ---- entry points ------------------------------------------------------------------- */

static int pgsql_init(const struct selor_host *host, void **state, char *err,
                      size_t errlen)
{
    struct pgsql_state *st;

    *state = NULL;
    if (host == NULL || host->abi != SELOR_MODULE_ABI)
        return pgsql_fail(NULL, NULL, err, errlen, "host ABI version mismatch");
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return pgsql_fail(NULL, NULL, err, errlen, "out of memory");
    st->host = host;
    if (pgsql_init_conninfo(host, st, err, errlen) < 0 ||
        pgsql_init_queries(host, st, err, errlen) < 0 ||
        pgsql_init_numbers(host, st, err, errlen) < 0) {
        pgsql_state_free(st);
        return -1;
    }
    *state = st;
    return 0;
}

static int pgsql_attach(void *state, uv_loop_t *loop)
{
    struct pgsql_state *st = state;

    if (st->ttl_s > 0 && (st->cache = pgsql_cache_new(PGSQL_CACHE_MAX)) == NULL)
        return -1;
    st->loop = loop;
    st->attached = 1;
    uv_timer_init(loop, &st->qtimer);
    st->busy++;
    return pgsql_pool_start(st);
}

static void pgsql_qtimer_closed(uv_handle_t *h)
{
    struct pgsql_state *st = PGSQL_CONTAINER(h, struct pgsql_state, qtimer);

    st->busy--;
    pgsql_maybe_free(st);
}

/* Drops every pending request without done(), closes the connections;
 * the state goes after the last close callback or thread-pool job. */
static void pgsql_detach(void *state)
{
    struct pgsql_state *st = state;
    struct pgsql_req *pr;

    if (st == NULL || st->detaching)
        return;
    if (!st->attached) {
        pgsql_state_free(st);
        return;
    }
    st->detaching = 1;
    while ((pr = st->qhead) != NULL) {
        pgsql_queue_unlink(st, pr);
        pgsql_req_free(pr);
    }
    pgsql_pool_close(st);
    uv_timer_stop(&st->qtimer);
    uv_close((uv_handle_t *)&st->qtimer, pgsql_qtimer_closed);
}

static const struct selor_module_option pgsql_options[] = {
    {"Pgsql_conninfo", 1},
    {"Pgsql_query_domain", 1},
    {"Pgsql_query_mailbox", 1},
    {"Pgsql_query_alias", 1},
    {"Pgsql_query_auth", 1},
    {"Pgsql_query_domain_mailboxes", 1},
    {"Pgsql_connections", 0},
    {"Pgsql_cache_ttl", 0},
    {"Pgsql_timeout", 0},
    {NULL, 0},
};

extern const struct selor_module selor_module;

const struct selor_module selor_module = {
    .abi = SELOR_MODULE_ABI,
    .name = "pgsql",
    .version = "1.0",
    .options = pgsql_options,
    .init = pgsql_init,
    .attach = pgsql_attach,
    .detach = pgsql_detach,
    .kinds = (1u << SELOR_LOOKUP_DOMAIN) | (1u << SELOR_LOOKUP_MAILBOX) |
             (1u << SELOR_LOOKUP_ALIAS) | (1u << SELOR_LOOKUP_AUTH) |
             (1u << SELOR_LOOKUP_DOMAIN_MAILBOXES),
    .lookup = pgsql_lookup,
    .cancel = pgsql_cancel,
};
