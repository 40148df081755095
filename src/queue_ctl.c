/*
 * queue_ctl.c - control socket of the queue process (see queue_ctl.h).
 *
 * A request for one ID: find its queue (thread pool), claim it (BUSY when a
 * delivery run holds it: the operator tries again), change it (thread
 * pool), release it with its new due time.  "flush" without an ID lists
 * both queues and flushes each file in turn.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "coord.h"
#include "delivery.h"
#include "log.h"
#include "mem.h"
#include "queue_ctl.h"
#include "queue_edit.h"
#include "queue_id.h"
#include "spool.h"

#define CTL_LINE_MAX 256

struct queue_ctl {
    uv_loop_t *loop;
    uv_pipe_t server;
    int open;
    const struct delivery_env *env;
};

struct ctl_conn {
    struct queue_ctl *ctl;
    uv_pipe_t pipe;
    uv_work_t work;
    char in[CTL_LINE_MAX + 1];
    size_t inlen;
    struct buf reply;
    int op;
    char **ids;                  /* the files to change */
    size_t nids, next, done_ok, busy;
    const char *queue;           /* of ids[next], found on the thread pool */
    struct coord_claim claim;
    int err;
    char why[200];
    int replied;
};

/* ---- ending a connection ---- */

static void ctl_conn_closed(uv_handle_t *h)
{
    struct ctl_conn *cc = h->data;

    for (size_t i = 0; i < cc->nids; i++)
        mem_free(cc->ids[i]);
    mem_free(cc->ids);
    buf_free(&cc->reply);
    mem_free(cc);
}

static void ctl_written(uv_write_t *req, int status)
{
    struct ctl_conn *cc = req->data;

    mem_free(req);
    uv_close((uv_handle_t *)&cc->pipe, ctl_conn_closed);
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

static void ctl_next(struct ctl_conn *cc);

static void ctl_changed(uv_work_t *w, int status)
{
    struct ctl_conn *cc = w->data;
    long due = cc->op == QUEUE_EDIT_HOLD ? (long)time(NULL) + 3600 : 0;

    if (cc->op == QUEUE_EDIT_DELETE && cc->err == 0)
        due = -1;
    coord_release(cc->ctl->env->coord, &cc->claim, due);
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

static void ctl_change_work(uv_work_t *w)
{
    struct ctl_conn *cc = w->data;

    cc->why[0] = '\0';
    cc->err = queue_edit_apply(cc->queue, cc->ids[cc->next], cc->op, cc->why,
                               sizeof(cc->why));
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
    cc->work.data = cc;
    uv_queue_work(cc->ctl->loop, &cc->work, ctl_change_work, ctl_changed);
}

static void ctl_find_work(uv_work_t *w)
{
    struct ctl_conn *cc = w->data;

    cc->queue = queue_edit_find(cc->ids[cc->next]);
}

static void ctl_found(uv_work_t *w, int status)
{
    struct ctl_conn *cc = w->data;

    if (cc->queue == NULL) {
        if (cc->nids == 1) {
            ctl_reply(cc, "error no message %s in the queue", cc->ids[0]);
            return;
        }
        cc->next++;
        ctl_next(cc);
        return;
    }
    coord_claim_id(cc->ctl->env->coord, cc->queue, cc->ids[cc->next], ctl_claimed, cc);
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
    cc->work.data = cc;
    uv_queue_work(cc->ctl->loop, &cc->work, ctl_find_work, ctl_found);
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

static void ctl_list_work(uv_work_t *w)
{
    struct ctl_conn *cc = w->data;
    char dir[2048];

    config_queue_dir(selor_conf, "main", dir, sizeof(dir));
    spool_scan_sync(dir, ctl_list_one, cc);
    config_queue_dir(selor_conf, "qlimit", dir, sizeof(dir));
    spool_scan_sync(dir, ctl_list_one, cc);
}

static void ctl_listed(uv_work_t *w, int status)
{
    ctl_next(w->data);
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
    cc->work.data = cc;
    uv_queue_work(cc->ctl->loop, &cc->work, ctl_list_work, ctl_listed);
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
            uv_close((uv_handle_t *)&cc->pipe, ctl_conn_closed);
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

static void ctl_on_connection(uv_stream_t *server, int status)
{
    struct queue_ctl *ctl = server->data;
    struct ctl_conn *cc;

    if (status < 0)
        return;
    cc = mem_zalloc(sizeof(*cc));
    cc->ctl = ctl;
    buf_init(&cc->reply, 0);
    uv_pipe_init(ctl->loop, &cc->pipe, 0);
    cc->pipe.data = cc;
    if (uv_accept(server, (uv_stream_t *)&cc->pipe) < 0) {
        uv_close((uv_handle_t *)&cc->pipe, ctl_conn_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc, ctl_read);
}

struct queue_ctl *queue_ctl_open(uv_loop_t *loop, int fd, const struct delivery_env *env)
{
    struct queue_ctl *c = mem_zalloc(sizeof(*c));

    c->loop = loop;
    c->env = env;
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
