/*
 * queue_ctl.c - control socket of the queue process (see queue_ctl.h).
 *
 * A request for one ID: find its queue (thread pool), claim it (BUSY when a
 * delivery run holds it: the operator tries again), change it (thread
 * pool) while keeping the claim's lease, release it with its new due time.
 * "flush" without an ID lists both queues and flushes each file in turn.
 *
 * Who may ask: a node started as root runs its processes, and its MDAs, as
 * User; so does anything an MDA starts.  Such a peer must not flush, hold
 * or delete mail, so when the node dropped privileges only root may
 * (SO_PEERCRED, checked when the connection is accepted).  A node started
 * by an ordinary user serves that user.
 *
 * Each connection owns its requests (claims, jobs, renewals): a selorctl
 * that goes away mid-request cancels them, and the connection's memory
 * goes once its jobs are over; a claim it still held is given back then.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "buf.h"
#include "config.h"
#include "coord.h"
#include "delivery.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "queue_ctl.h"
#include "queue_edit.h"
#include "queue_id.h"
#include "spool.h"
#include "spool_queues.h"

#define CTL_LINE_MAX 256

struct queue_ctl {
    uv_loop_t *loop;
    uv_pipe_t server;
    int open;
    int root_only;               /* the node dropped privileges */
    const struct delivery_env *env;
};

struct ctl_conn {
    struct async_owner own;
    struct queue_ctl *ctl;
    uv_pipe_t pipe;
    char in[CTL_LINE_MAX + 1];
    size_t inlen;
    struct buf reply;
    int op;
    char **ids;                  /* the files to change */
    size_t nids, next, done_ok, busy;
    const char *queue;           /* of ids[next], found on the thread pool */
    struct coord_claim claim;
    struct lease lease;
    int holding;                 /* claim held, lease running */
    int err;
    char why[200];
    int replied, closing;
};

static void ctl_next(struct ctl_conn *cc);

/* ---- ending a connection ---- */

static void ctl_free(struct ctl_conn *cc)
{
    for (size_t i = 0; i < cc->nids; i++)
        mem_free(cc->ids[i]);
    mem_free(cc->ids);
    buf_free(&cc->reply);
    mem_free(cc);
}

/* Gives the file back (due as given; COORD_DUE_KEEP: as the claim left it). */
static void ctl_give_back(struct ctl_conn *cc, long due)
{
    if (!cc->holding)
        return;
    cc->holding = 0;
    lease_mark_lost(&cc->lease);
    lease_stop(&cc->lease);
    coord_release(cc->ctl->env->coord, &cc->claim, due);
}

/* No job uses the connection any more: a claim still held goes back. */
static void ctl_release(struct async_owner *o)
{
    struct ctl_conn *cc = (struct ctl_conn *)((char *)o - offsetof(struct ctl_conn, own));

    ctl_give_back(cc, COORD_DUE_KEEP);
    ctl_free(cc);
}

static void ctl_lease_closed(uv_handle_t *h)
{
    struct ctl_conn *cc = ((struct lease *)h->data)->arg;

    async_owner_close(&cc->own, ctl_release);
}

/* A change job still running finds the lease lost at its commit point. */
static void ctl_pipe_closed(uv_handle_t *h)
{
    struct ctl_conn *cc = h->data;

    lease_mark_lost(&cc->lease);
    lease_close(&cc->lease, ctl_lease_closed);
}

static void ctl_end(struct ctl_conn *cc)
{
    if (cc->closing)
        return;
    cc->closing = 1;
    async_owner_cancel(&cc->own);
    uv_close((uv_handle_t *)&cc->pipe, ctl_pipe_closed);
}

static void ctl_written(uv_write_t *req, int status)
{
    struct ctl_conn *cc = req->data;

    mem_free(req);
    ctl_end(cc);
}

static void ctl_reply(struct ctl_conn *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ctl_reply(struct ctl_conn *cc, const char *fmt, ...)
{
    uv_write_t *req = mem_alloc(sizeof(*req));
    va_list ap;
    uv_buf_t b;

    va_start(ap, fmt);
    buf_vprintf(&cc->reply, fmt, ap);
    va_end(ap);
    buf_putc(&cc->reply, '\n');
    cc->replied = 1;
    req->data = cc;
    b = uv_buf_init(cc->reply.data, (unsigned)cc->reply.len);
    if (uv_write(req, (uv_stream_t *)&cc->pipe, &b, 1, ctl_written) < 0)
        ctl_written(req, -1);
}

/* ---- one file after another ---- */

/* The lock of the file being changed lapsed or was lost: the change job
 * sees it at its commit point and writes nothing. */
static void ctl_lease_event(void *arg, enum lease_event ev)
{
}

static int ctl_still_ours(void *arg)
{
    return lease_valid(&((struct ctl_conn *)arg)->lease);
}

static void ctl_changed(void *arg, int status)
{
    struct ctl_conn *cc = arg;
    long due = cc->op == QUEUE_EDIT_HOLD ? (long)time(NULL) + 3600 : 0;

    if (status < 0 && cc->err == 0)
        cc->err = ECANCELED;
    if (cc->op == QUEUE_EDIT_DELETE && cc->err == 0)
        due = -1;
    ctl_give_back(cc, cc->err ? COORD_DUE_KEEP : due);
    if (cc->err == 0) {
        cc->done_ok++;
        log_info("%s: %s by the operator", cc->ids[cc->next],
                 cc->op == QUEUE_EDIT_FLUSH ? "flushed" : cc->op == QUEUE_EDIT_HOLD ?
                 "held" : cc->op == QUEUE_EDIT_RELEASE ? "released" : "deleted");
    } else if (cc->nids == 1) {
        ctl_reply(cc, "error %s: %s", cc->ids[0], cc->why[0] ? cc->why : strerror(cc->err));
        return;
    }
    cc->next++;
    ctl_next(cc);
}

static void ctl_change_work(void *arg)
{
    struct ctl_conn *cc = arg;

    cc->why[0] = '\0';
    cc->err = queue_edit_apply(cc->queue, cc->ids[cc->next], cc->op, cc->claim.token,
                               ctl_still_ours, cc, cc->why, sizeof(cc->why));
}

static void ctl_claimed(void *arg, int status, const struct coord_claim *cl)
{
    struct ctl_conn *cc = arg;

    if (status != COORD_OK) {
        cc->busy++;
        if (cc->nids == 1) {
            ctl_reply(cc, status == COORD_BUSY
                      ? "error %s is being delivered right now; try again"
                      : "error %s: coordination (Redis) unavailable or paused; try again",
                      cc->ids[0]);
            return;
        }
        cc->next++;
        ctl_next(cc);
        return;
    }
    cc->claim = *cl;
    cc->holding = 1;
    lease_begin(&cc->lease, cc->ctl->env->coord, &cc->own, cl, selor_conf->Lock_lease);
    if (async_work(&cc->own, cc->ctl->loop, ctl_change_work, ctl_changed, cc) < 0) {
        cc->err = EAGAIN;
        ctl_changed(cc, 0);
    }
}

static void ctl_find_work(void *arg)
{
    struct ctl_conn *cc = arg;

    cc->queue = queue_edit_find(cc->ids[cc->next]);
}

static void ctl_found(void *arg, int status)
{
    struct ctl_conn *cc = arg;

    if (cc->queue == NULL) {
        if (cc->nids == 1) {
            ctl_reply(cc, "error no message %s in the queue", cc->ids[0]);
            return;
        }
        cc->next++;
        ctl_next(cc);
        return;
    }
    coord_claim_id(cc->ctl->env->coord, &cc->own, spool_queues_coord(cc->queue),
                   cc->ids[cc->next], ctl_claimed, cc);
}

static void ctl_next(struct ctl_conn *cc)
{
    if (cc->next >= cc->nids) {
        if (cc->busy)
            ctl_reply(cc, "ok %zu message(s); %zu busy, try those again",
                      cc->done_ok, cc->busy);
        else
            ctl_reply(cc, "ok %zu message(s)", cc->done_ok);
        return;
    }
    cc->queue = NULL;
    if (async_work(&cc->own, cc->ctl->loop, ctl_find_work, ctl_found, cc) < 0)
        ctl_reply(cc, "error the node is too busy; try again");
}

/* ---- "flush" of everything: list the queues first ---- */

static void ctl_add_id(struct ctl_conn *cc, const char *id)
{
    if ((cc->nids & (cc->nids - 1)) == 0)
        cc->ids = mem_realloc(cc->ids, (cc->nids ? cc->nids * 2 : 1) * sizeof(char *));
    cc->ids[cc->nids++] = mem_strdup(id);
}

static int ctl_list_one(const char *name, void *arg)
{
    if (name[0] == 'l')
        ctl_add_id(arg, name + 1);
    return 0;
}

static void ctl_list_work(void *arg)
{
    struct ctl_conn *cc = arg;
    char dir[2048];

    for (size_t i = 0; i < spool_queues_count(); i++)
        if (spool_queues_dir(spool_queues_name(i), dir, sizeof(dir)) == 0)
            spool_scan_sync(dir, ctl_list_one, cc);
}

static void ctl_listed(void *arg, int status)
{
    ctl_next(arg);
}

/* ---- requests ---- */

static void ctl_request(struct ctl_conn *cc, char *line)
{
    char *verb = strtok(line, " \t\r"), *id = strtok(NULL, " \t\r");

    cc->op = verb ? queue_edit_op_parse(verb) : -1;
    if (cc->op < 0 || (id == NULL && cc->op != QUEUE_EDIT_FLUSH) ||
        (id && !queue_id_valid(id)) || strtok(NULL, " \t\r")) {
        ctl_reply(cc, "error usage: flush [ID] | hold ID | release ID | delete ID");
        return;
    }
    if (id) {
        ctl_add_id(cc, id);
        ctl_next(cc);
        return;
    }
    if (async_work(&cc->own, cc->ctl->loop, ctl_list_work, ctl_listed, cc) < 0)
        ctl_reply(cc, "error the node is too busy; try again");
}

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct ctl_conn *cc = h->data;

    *b = uv_buf_init(cc->in + cc->inlen, (unsigned)(CTL_LINE_MAX - cc->inlen));
}

static void ctl_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct ctl_conn *cc = st->data;
    char *nl;

    if (n < 0) {
        uv_read_stop(st);
        if (!cc->replied)
            ctl_end(cc);   /* selorctl went away: what it asked for is dropped */
        return;
    }
    cc->inlen += (size_t)n;
    cc->in[cc->inlen] = '\0';
    nl = memchr(cc->in, '\n', cc->inlen);
    if (nl == NULL && cc->inlen < CTL_LINE_MAX)
        return;
    uv_read_stop(st);
    if (nl == NULL) {
        ctl_reply(cc, "error request too long");
        return;
    }
    *nl = '\0';
    ctl_request(cc, cc->in);
}

/* Root always; the node's own user only when the node never was root. */
static int ctl_peer_allowed(const struct queue_ctl *ctl, uv_pipe_t *pipe, struct ucred *u)
{
    uv_os_fd_t fd;
    socklen_t len = sizeof(*u);

    if (uv_fileno((uv_handle_t *)pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, u, &len) < 0)
        return 0;
    return u->uid == 0 || (!ctl->root_only && u->uid == getuid());
}

static void ctl_on_connection(uv_stream_t *server, int status)
{
    struct queue_ctl *ctl = server->data;
    struct ctl_conn *cc;
    struct ucred u = {0, 0, 0};

    if (status < 0)
        return;
    cc = mem_zalloc(sizeof(*cc));
    async_owner_init(&cc->own);
    cc->ctl = ctl;
    buf_init(&cc->reply, 0);
    uv_pipe_init(ctl->loop, &cc->pipe, 0);
    lease_init(&cc->lease, ctl->loop, ctl_lease_event, cc);   /* closed with the pipe */
    cc->pipe.data = cc;
    if (uv_accept(server, (uv_stream_t *)&cc->pipe) < 0) {
        ctl_end(cc);
        return;
    }
    if (!ctl_peer_allowed(ctl, &cc->pipe, &u)) {
        log_warn("control socket: refused pid %ld uid %ld: only root may change the "
                 "queue of a node started as root", (long)u.pid, (long)u.uid);
        ctl_reply(cc, "error permission denied: changes to the queue need root");
        return;
    }
    uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc, ctl_read);
}

struct queue_ctl *queue_ctl_open(uv_loop_t *loop, int fd, int root_only,
                                 const struct delivery_env *env)
{
    struct queue_ctl *c = mem_zalloc(sizeof(*c));

    c->loop = loop;
    c->env = env;
    c->root_only = root_only;
    if (fd < 0)
        return c;
    uv_pipe_init(loop, &c->server, 0);
    c->server.data = c;
    if (uv_pipe_open(&c->server, fd) < 0 ||
        uv_listen((uv_stream_t *)&c->server, 16, ctl_on_connection) < 0) {
        log_warn("control socket cannot be used; selorctl commands will fail");
        uv_close((uv_handle_t *)&c->server, NULL);
        return c;
    }
    c->open = 1;
    return c;
}

static void ctl_server_closed(uv_handle_t *h)
{
    mem_free(h->data);
}

void queue_ctl_close(struct queue_ctl *c)
{
    if (c == NULL)
        return;
    if (!c->open) {
        mem_free(c);
        return;
    }
    uv_close((uv_handle_t *)&c->server, ctl_server_closed);
}
