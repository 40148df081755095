/*
 * pgsql_conn.c - the pgsql module's connections to PostgreSQL, on one
 * child's event loop: Pgsql_connections of them, each connected with
 * PQconnectStartParams/PQconnectPoll, queried with PQsendQueryParams (the
 * key is parameter $1, never part of the SQL text) and read from a uv_poll
 * on PQsocket.  A broken connection is retried with a doubling backoff; a
 * query past Pgsql_timeout is answered TEMPFAIL at once and cancelled
 * (PQcancel blocks, so it runs on the thread pool), its late result
 * drained before the connection serves again.
 * Owns: the PGconn handles, their uv_poll and uv_timer handles, the
 * "database down/back" log lines.
 * Must not: block the loop (no PQexec, PQgetResult only when !PQisBusy,
 * no PQcancel on the loop), watch a socket libpq may have replaced, or
 * free a handle before its close callback.
 *
 * Name lookups: libpq resolves a host= name itself, inside PQconnectPoll,
 * with a blocking getaddrinfo.  Selor does not resolve for libpq; init()
 * warns about such a name and docs/modules.md asks for hostaddr= (or a
 * Unix socket directory), which never resolves.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql.h"

struct pgsql_watch {
    uv_poll_t poll;
    struct pgsql_conn *c;        /* NULL once the connection let it go */
    int fd;
};

struct pgsql_cancel_job {
    uv_work_t work;
    struct pgsql_state *st;
    struct pgsql_conn *c;
    unsigned gen;                /* c->gen when the cancel was sent */
    PGcancel *cancel;
};

static void pgsql_on_poll(uv_poll_t *h, int status, int events);
static void pgsql_on_timer(uv_timer_t *t);

/* ---- the socket watch ------------------------------------------------------- */

static void pgsql_watch_closed(uv_handle_t *h)
{
    struct pgsql_watch *w = PGSQL_CONTAINER(h, struct pgsql_watch, poll);
    struct pgsql_state *st = w->c ? w->c->st : h->data;

    free(w);
    st->busy--;
    pgsql_maybe_free(st);
}

/* Stops watching; called before libpq closes the socket (PQfinish). */
static void pgsql_unwatch(struct pgsql_conn *c)
{
    struct pgsql_watch *w = c->watch;

    if (w == NULL)
        return;
    c->watch = NULL;
    w->c = NULL;
    w->poll.data = c->st;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, pgsql_watch_closed);
}

/* Watches PQsocket for events.  fresh: libpq may have closed the socket
 * and opened another one with the same number (PQconnectPoll trying the
 * next host): register it again from scratch. */
static int pgsql_watch(struct pgsql_conn *c, int events, int fresh)
{
    int fd = PQsocket(c->pg);
    struct pgsql_watch *w = c->watch;

    if (fd < 0)
        return -1;
    if (w != NULL && w->fd != fd)
        pgsql_unwatch(c);
    if ((w = c->watch) != NULL && fresh)
        uv_poll_stop(&w->poll);
    if (w == NULL) {
        if ((w = calloc(1, sizeof(*w))) == NULL)
            return -1;
        if (uv_poll_init(c->st->loop, &w->poll, fd) < 0) {
            free(w);
            return -1;
        }
        w->c = c;
        w->fd = fd;
        w->poll.data = c;
        c->watch = w;
        c->st->busy++;
    }
    return uv_poll_start(&w->poll, events, pgsql_on_poll) < 0 ? -1 : 0;
}

/* ---- the state of the pool ---------------------------------------------------- */

int pgsql_pool_can_serve(const struct pgsql_state *st)
{
    for (int i = 0; st->conns && i < st->nconn; i++)
        if (st->conns[i].state != PGSQL_DOWN)
            return 1;
    return 0;
}

static int pgsql_pool_up(const struct pgsql_state *st)
{
    for (int i = 0; i < st->nconn; i++)
        if (st->conns[i].state >= PGSQL_READY)
            return 1;
    return 0;
}

struct pgsql_conn *pgsql_pool_ready(struct pgsql_state *st)
{
    for (int i = 0; st->conns && i < st->nconn; i++)
        if (st->conns[i].state == PGSQL_READY)
            return &st->conns[i];
    return NULL;
}

/* Once per outage and process, not once per lookup. */
static void pgsql_note_down(struct pgsql_state *st, const char *why)
{
    snprintf(st->last_error, sizeof(st->last_error), "%s", why);
    if (st->down_logged || pgsql_pool_up(st) || st->detaching)
        return;
    st->down_logged = 1;
    st->host->log_warn("pgsql: database unavailable (%s); lookups answer a "
                       "temporary error until it is back", why);
}

static void pgsql_note_up(struct pgsql_conn *c)
{
    struct pgsql_state *st = c->st;

    if (!st->down_logged)
        return;
    st->down_logged = 0;
    st->host->log_info("pgsql: database available again (%s:%s)",
                       PQhost(c->pg) ? PQhost(c->pg) : "?",
                       PQport(c->pg) ? PQport(c->pg) : "?");
}

/* libpq's first line of an error, without its newline. */
static void pgsql_errline(PGconn *pg, char *out, size_t len)
{
    const char *msg = pg ? PQerrorMessage(pg) : "out of memory";

    snprintf(out, len, "%.*s", (int)strcspn(msg, "\n"), msg[0] ? msg : "connection lost");
}

static void pgsql_conn_close(struct pgsql_conn *c)
{
    uv_timer_stop(&c->timer);
    pgsql_unwatch(c);
    if (c->res != NULL)
        PQclear(c->res);
    c->res = NULL;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    c->state = PGSQL_DOWN;
    c->gen++;
    c->cancelling = c->drained = 0;
}

static void pgsql_retry_later(struct pgsql_conn *c)
{
    if (c->st->detaching)
        return;
    uv_timer_start(&c->timer, pgsql_on_timer, c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > PGSQL_BACKOFF_MAX_MS
                    ? PGSQL_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* The connection failed or broke: its request answers TEMPFAIL, a new
 * try comes after the backoff, and when no connection is left to wait
 * for, the queue is answered too. */
void pgsql_conn_fail(struct pgsql_conn *c, const char *why)
{
    struct pgsql_state *st = c->st;
    struct pgsql_req *pr = c->cur;

    c->cur = NULL;
    pgsql_conn_close(c);
    pgsql_note_down(st, why);
    pgsql_retry_later(c);
    if (pr != NULL)
        pgsql_req_tempfail(pr, "database connection lost: %s", why);
    if (!pgsql_pool_can_serve(st))
        pgsql_queue_flush(st, st->last_error);
}

static void pgsql_conn_fail_pg(struct pgsql_conn *c)
{
    char why[128];

    pgsql_errline(c->pg, why, sizeof(why));
    pgsql_conn_fail(c, why);
}

/* ---- connecting ----------------------------------------------------------- */

static void pgsql_notice_ignore(void *arg, const char *message)
{
    /* libpq's default prints server notices on stderr: keep them out. */
}

static void pgsql_conn_start(struct pgsql_conn *c)
{
    struct pgsql_state *st = c->st;
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {st->conninfo, "selor", NULL};

    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        pgsql_conn_fail_pg(c);
        return;
    }
    PQsetNoticeProcessor(c->pg, pgsql_notice_ignore, NULL);
    c->state = PGSQL_CONNECTING;
    /* libpq's connect_timeout is the caller's job in this mode. */
    uv_timer_start(&c->timer, pgsql_on_timer, (uint64_t)st->timeout_s * 1000, 0);
    if (pgsql_watch(c, UV_WRITABLE, 1) < 0)
        pgsql_conn_fail(c, "cannot watch the connection's socket");
}

static void pgsql_conn_up(struct pgsql_conn *c)
{
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || pgsql_watch(c, UV_READABLE, 1) < 0) {
        pgsql_conn_fail_pg(c);
        return;
    }
    c->state = PGSQL_READY;
    c->backoff_ms = PGSQL_BACKOFF_MIN_MS;
    pgsql_note_up(c);
    pgsql_pool_dispatch(c->st);
}

static void pgsql_connect_step(struct pgsql_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (pgsql_watch(c, UV_READABLE, 1) < 0)
            pgsql_conn_fail(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (pgsql_watch(c, UV_WRITABLE, 1) < 0)
            pgsql_conn_fail(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_OK:
        pgsql_conn_up(c);
        return;
    default:
        pgsql_conn_fail_pg(c);
        return;
    }
}

/* ---- queries ----------------------------------------------------------------- */

int pgsql_conn_send(struct pgsql_conn *c, struct pgsql_req *pr)
{
    struct pgsql_state *st = c->st;
    const char *params[1] = {pr->key};
    int flushed;

    if (!PQsendQueryParams(c->pg, st->query[pr->kind], 1, NULL, params, NULL, NULL, 0))
        return -1;
    flushed = PQflush(c->pg);
    if (flushed < 0 || pgsql_watch(c, flushed ? UV_READABLE | UV_WRITABLE : UV_READABLE,
                                   0) < 0)
        return -1;
    c->cur = pr;
    c->state = PGSQL_BUSY;
    pr->where = PGSQL_RUNNING;
    uv_timer_start(&c->timer, pgsql_on_timer, (uint64_t)st->timeout_s * 1000, 0);
    return 0;
}

void pgsql_pool_dispatch(struct pgsql_state *st)
{
    struct pgsql_conn *c;

    while (st->qhead != NULL && !st->detaching && (c = pgsql_pool_ready(st)) != NULL) {
        struct pgsql_req *pr = pgsql_queue_pop(st);
        if (pgsql_conn_send(c, pr) < 0) {
            pgsql_conn_fail_pg(c);
            pgsql_req_tempfail(pr, "cannot send the query: %s", st->last_error);
        }
    }
}

/* The query's last result came: answer (or drop a late one), serve on. */
static void pgsql_query_done(struct pgsql_conn *c)
{
    struct pgsql_req *pr = c->cur;
    PGresult *res = c->res;

    /* libpq may have closed the socket on the way (the server went away):
     * never keep watching a number the kernel can give to another socket. */
    if (PQstatus(c->pg) == CONNECTION_BAD || c->watch == NULL ||
        PQsocket(c->pg) != c->watch->fd) {
        pgsql_conn_fail_pg(c);
        return;
    }
    c->cur = NULL;
    c->res = NULL;
    if (c->state == PGSQL_DRAINING && c->cancelling) {
        /* A cancel that lands after the next query started would cancel
         * that one: serve again only once PQcancel has returned. */
        if (res != NULL)
            PQclear(res);
        c->drained = 1;
        return;
    }
    c->state = PGSQL_READY;
    uv_timer_stop(&c->timer);
    if (pr != NULL) {
        if (res != NULL)
            pgsql_req_result(pr, res);
        else
            pgsql_req_tempfail(pr, "the query returned nothing");
    }
    if (res != NULL)
        PQclear(res);
    pgsql_pool_dispatch(c->st);
}

/* Reads what came; results are taken only when libpq has them whole. */
static void pgsql_read(struct pgsql_conn *c)
{
    PGnotify *n;

    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        pgsql_conn_fail_pg(c);
        return;
    }
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
    if (c->state == PGSQL_READY)
        return;
    while (!PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (res == NULL) {
            pgsql_query_done(c);
            return;
        }
        if (c->res == NULL)
            c->res = res;
        else
            PQclear(res);
    }
}

static void pgsql_on_poll(uv_poll_t *h, int status, int events)
{
    struct pgsql_conn *c = h->data;
    int flushed;

    if (c->state == PGSQL_CONNECTING) {
        pgsql_connect_step(c);
        return;
    }
    if (status < 0) {
        /* POLLERR (libuv says EBADF): libpq knows what really happened. */
        if (!PQconsumeInput(c->pg))
            pgsql_conn_fail_pg(c);
        else
            pgsql_conn_fail(c, "error on the connection's socket");
        return;
    }
    if (events & UV_WRITABLE) {
        if ((flushed = PQflush(c->pg)) < 0) {
            pgsql_conn_fail_pg(c);
            return;
        }
        if (flushed == 0 && pgsql_watch(c, UV_READABLE, 0) < 0) {
            pgsql_conn_fail(c, "cannot watch the connection's socket");
            return;
        }
    }
    if (events & (UV_READABLE | UV_DISCONNECT))
        pgsql_read(c);
}

/* ---- time limits --------------------------------------------------------------- */

static void pgsql_cancel_work(uv_work_t *w)
{
    struct pgsql_cancel_job *job = PGSQL_CONTAINER(w, struct pgsql_cancel_job, work);
    char err[256];

    /* Blocks: a connection to the server to deliver the cancel request. */
    PQcancel(job->cancel, err, sizeof(err));
}

static void pgsql_cancel_after(uv_work_t *w, int status)
{
    struct pgsql_cancel_job *job = PGSQL_CONTAINER(w, struct pgsql_cancel_job, work);
    struct pgsql_state *st = job->st;
    struct pgsql_conn *c = job->c;
    int same = !st->detaching && c->gen == job->gen && c->state == PGSQL_DRAINING;

    PQfreeCancel(job->cancel);
    free(job);
    st->busy--;
    if (same) {
        c->cancelling = 0;
        if (c->drained) {
            c->drained = 0;
            c->state = PGSQL_READY;
            uv_timer_stop(&c->timer);
            pgsql_pool_dispatch(st);
        }
    }
    pgsql_maybe_free(st);
}

static int pgsql_cancel_start(struct pgsql_conn *c)
{
    struct pgsql_cancel_job *job = calloc(1, sizeof(*job));

    if (job == NULL || (job->cancel = PQgetCancel(c->pg)) == NULL) {
        free(job);
        return -1;
    }
    job->st = c->st;
    job->c = c;
    job->gen = c->gen;
    if (uv_queue_work(c->st->loop, &job->work, pgsql_cancel_work, pgsql_cancel_after) < 0) {
        PQfreeCancel(job->cancel);
        free(job);
        return -1;
    }
    c->st->busy++;
    return 0;
}

/* Starts over at once: not an outage, a connection we gave up on. */
static void pgsql_conn_restart(struct pgsql_conn *c)
{
    pgsql_conn_close(c);
    pgsql_conn_start(c);
}

/* A query past Pgsql_timeout: TEMPFAIL now, cancel it in the background,
 * drain its late result (for at most another Pgsql_timeout). */
static void pgsql_query_timeout(struct pgsql_conn *c)
{
    struct pgsql_state *st = c->st;
    struct pgsql_req *pr = c->cur;

    c->cur = NULL;
    c->state = PGSQL_DRAINING;
    c->drained = 0;
    if (pgsql_cancel_start(c) < 0) {
        pgsql_conn_restart(c);
    } else {
        c->cancelling = 1;
        uv_timer_start(&c->timer, pgsql_on_timer, (uint64_t)st->timeout_s * 1000, 0);
    }
    if (pr != NULL)
        pgsql_req_tempfail(pr, "query timed out after %ld s", st->timeout_s);
}

static void pgsql_on_timer(uv_timer_t *t)
{
    struct pgsql_conn *c = PGSQL_CONTAINER(t, struct pgsql_conn, timer);

    switch (c->state) {
    case PGSQL_DOWN:
        pgsql_conn_start(c);
        return;
    case PGSQL_CONNECTING:
        pgsql_conn_fail(c, "connection timed out");
        return;
    case PGSQL_BUSY:
        pgsql_query_timeout(c);
        return;
    case PGSQL_DRAINING:
        pgsql_conn_restart(c);
        return;
    case PGSQL_READY:
        return;
    }
}

/* ---- the pool's life ------------------------------------------------------------- */

static void pgsql_timer_closed(uv_handle_t *h)
{
    struct pgsql_conn *c = PGSQL_CONTAINER(h, struct pgsql_conn, timer);
    struct pgsql_state *st = c->st;

    st->busy--;
    pgsql_maybe_free(st);
}

int pgsql_pool_start(struct pgsql_state *st)
{
    st->conns = calloc((size_t)st->nconn, sizeof(*st->conns));
    if (st->conns == NULL)
        return -1;
    for (int i = 0; i < st->nconn; i++) {
        struct pgsql_conn *c = &st->conns[i];
        c->st = st;
        c->backoff_ms = PGSQL_BACKOFF_MIN_MS;
        uv_timer_init(st->loop, &c->timer);
        st->busy++;
    }
    for (int i = 0; i < st->nconn; i++)
        pgsql_conn_start(&st->conns[i]);
    return 0;
}

/* detach: every connection closed, every handle on its way to closing. */
void pgsql_pool_close(struct pgsql_state *st)
{
    for (int i = 0; st->conns && i < st->nconn; i++) {
        struct pgsql_conn *c = &st->conns[i];
        if (c->cur != NULL) {
            c->cur->req = NULL;
            pgsql_req_free(c->cur);
            c->cur = NULL;
        }
        pgsql_conn_close(c);
        uv_close((uv_handle_t *)&c->timer, pgsql_timer_closed);
    }
}
