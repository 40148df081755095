/*
 * ops_http.c - the HTTP side of the ops process, on Metrics_port:
 *
 *   GET /metrics   200, the node's counters (metrics_render), Content-Type
 *                  text/plain; version=0.0.4 (Prometheus text format)
 *   GET /health    200 "ok", or 503 and the reason (ops_unready; also
 *                  "coordination backend unreachable" when Redis is)
 *   anything else  404 (another path), 405 (another method), 400 (not
 *                  HTTP), 431 (a request head over OPS_HTTP_MAX bytes)
 *
 * Owns: a deliberately small HTTP/1.0 and 1.1 server: one request per
 * connection, answered with Connection: close; the request head must
 * arrive within OPS_HTTP_TIMEOUT_MS and OPS_HTTP_MAX bytes; at most
 * OPS_HTTP_CLIENTS clients at once (more are closed at once).  A request
 * body is never read.  Must not: serve files, keep connections alive, or
 * let one client delay another.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "ops.h"

#define OPS_HTTP_MAX 4096
#define OPS_HTTP_TIMEOUT_MS 5000
#define OPS_HTTP_CLIENTS 32
#define OPS_HTTP_LINGER_MS 2000   /* after the answer, for the client's close */

struct ops_http_client {
    struct ops_http *h;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    char req[OPS_HTTP_MAX + 1];
    char discard[512];             /* what comes after the request head */
    size_t len;
    struct buf out;
    int answered, closing, handles;
};

struct ops_http {
    struct ops *o;
    uv_tcp_t listener;
    int nclients;
    int closed;
};

static void ops_http_freed(uv_handle_t *hd)
{
    struct ops_http_client *c = hd->data;
    struct ops_http *h = c->h;

    if (--c->handles > 0)
        return;
    buf_free(&c->out);
    mem_free(c);
    h->nclients--;
    if (h->closed && h->nclients == 0 && h->listener.data == NULL)
        mem_free(h);
}

static void ops_http_end(struct ops_http_client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, ops_http_freed);
    uv_close((uv_handle_t *)&c->tcp, ops_http_freed);
}

/* The answer is sent: wait for the client to close (or the linger time).
 * Closing at once with unread bytes (a body, a request cut at the size
 * limit) would reset the connection and could take the answer with it. */
static void ops_http_shut(uv_shutdown_t *req, int status)
{
    if (status < 0)
        ops_http_end(req->data);
}

static void ops_http_written(uv_write_t *req, int status)
{
    struct ops_http_client *c = req->data;

    if (status < 0 || c->closing) {
        ops_http_end(c);
        return;
    }
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, ops_http_shut) < 0)
        ops_http_end(c);
}

static void ops_http_text(struct ops_http_client *c, int code, const char *text);

/* A client too slow to send its request gets a 408; one that does not
 * read its answer or close after it, the end. */
static void ops_http_timeout(uv_timer_t *t)
{
    struct ops_http_client *c = t->data;

    if (c->answered)
        ops_http_end(c);
    else
        ops_http_text(c, 408, "request timeout\n");
}

static void ops_http_reply(struct ops_http_client *c, int code, const char *type,
                           const char *body, size_t blen, int head_only)
{
    static const struct { int code; const char *text; } texts[] = {
        {200, "OK"}, {400, "Bad Request"}, {404, "Not Found"},
        {405, "Method Not Allowed"}, {408, "Request Timeout"},
        {431, "Request Header Fields Too Large"}, {503, "Service Unavailable"},
    };
    const char *text = "Error";
    uv_buf_t b;

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].code == code)
            text = texts[i].text;
    c->answered = 1;
    uv_timer_start(&c->timer, ops_http_timeout, OPS_HTTP_LINGER_MS, 0);
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n%s\r\n", code, text, type, blen,
               code == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head_only)
        buf_append(&c->out, body, blen);
    b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, ops_http_written) < 0)
        ops_http_end(c);
}

static void ops_http_text(struct ops_http_client *c, int code, const char *text)
{
    ops_http_reply(c, code, "text/plain; charset=utf-8", text, strlen(text), 0);
}

static void ops_http_health(struct ops_http_client *c, int head_only)
{
    const struct ops *o = c->h->o;
    char why[256], body[300];
    const char *unready = ops_unready(o, why, sizeof(why));

    if (unready == NULL && o->coord_down)
        unready = "coordination backend unreachable";
    snprintf(body, sizeof(body), "%s\n", unready ? unready : "ok");
    ops_http_reply(c, unready ? 503 : 200, "text/plain; charset=utf-8", body,
                   strlen(body), head_only);
}

static void ops_http_metrics(struct ops_http_client *c, int head_only)
{
    struct buf body = BUF_INIT(0);

    metrics_render(&body);
    ops_http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                   body.data ? body.data : "", body.len, head_only);
    buf_free(&body);
}

/* The head is complete in c->req: "METHOD SP target SP HTTP/1.x". */
static void ops_http_request(struct ops_http_client *c)
{
    char method[16], target[1024], version[16];
    size_t tlen;
    int head;

    if (sscanf(c->req, "%15[A-Z] %1023[^ \r\n] %15[^\r\n]", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        ops_http_text(c, 400, "bad request\n");
        return;
    }
    head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        ops_http_text(c, 405, "only GET\n");
        return;
    }
    tlen = strcspn(target, "?");
    if (tlen == 8 && memcmp(target, "/metrics", 8) == 0)
        ops_http_metrics(c, head);
    else if (tlen == 7 && memcmp(target, "/health", 7) == 0)
        ops_http_health(c, head);
    else
        ops_http_text(c, 404, "not found\n");
}

static void ops_http_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
    struct ops_http_client *c = hd->data;

    if (c->answered) {
        *b = uv_buf_init(c->discard, sizeof(c->discard));
        return;
    }
    /* one byte over the limit tells "too large" from "exactly full" */
    *b = uv_buf_init(c->req + c->len, (unsigned)(OPS_HTTP_MAX + 1 - c->len));
}

static void ops_http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct ops_http_client *c = s->data;

    if (n < 0) {
        ops_http_end(c);
        return;
    }
    if (c->answered || n == 0)
        return;
    c->len += (size_t)n;
    if (memchr(c->req, '\0', c->len)) {
        ops_http_text(c, 400, "bad request\n");
        return;
    }
    c->req[c->len < OPS_HTTP_MAX ? c->len : OPS_HTTP_MAX] = '\0';
    if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
        ops_http_request(c);
    else if (c->len > OPS_HTTP_MAX - 1)
        ops_http_text(c, 431, "request too large\n");
}


static void ops_http_accept(uv_stream_t *l, int status)
{
    struct ops_http *h = l->data;
    struct ops_http_client *c;

    if (status < 0)
        return;
    c = mem_zalloc(sizeof(*c));
    c->h = h;
    h->nclients++;
    c->handles = 2;
    buf_init(&c->out, 0);
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 || h->nclients > OPS_HTTP_CLIENTS) {
        ops_http_end(c);
        return;
    }
    uv_timer_start(&c->timer, ops_http_timeout, OPS_HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, ops_http_alloc, ops_http_read) < 0)
        ops_http_end(c);
}

struct ops_http *ops_http_open(struct ops *o, int fd)
{
    struct ops_http *h = mem_zalloc(sizeof(*h));
    int r;

    h->o = o;
    uv_tcp_init(&o->loop, &h->listener);
    h->listener.data = h;
    if ((r = uv_tcp_open(&h->listener, fd)) < 0 ||
        (r = uv_listen((uv_stream_t *)&h->listener, 128, ops_http_accept)) < 0) {
        log_warn("ops: Metrics_port: %s", uv_strerror(r));
        return NULL;   /* the caller stops the process */
    }
    return h;
}

static void ops_http_listener_closed(uv_handle_t *hd)
{
    struct ops_http *h = hd->data;

    h->listener.data = NULL;
    if (h->nclients == 0)
        mem_free(h);
}

/* Clients under way finish (their timer bounds them). */
void ops_http_close(struct ops_http *h)
{
    h->closed = 1;
    uv_close((uv_handle_t *)&h->listener, ops_http_listener_closed);
}
