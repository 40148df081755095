/*
 * deliver_smtp.c - SMTP delivery to one domain (see deliver_smtp.h).
 *
 * route:  Relay_host | MX records (preference order, equals shuffled)
 *         | the domain itself when it has no MX | refusal for a null MX
 * hosts:  each host's addresses are tried in turn; a failure before the
 *         mail transaction (no connection, greeting or HELO refused, lost
 *         before MAIL was answered) moves on to the next address, then the
 *         next host; any answer from MAIL on decides the batch.
 * batches: at most Tarpit_limit recipients a transaction; the next batch
 *         starts Tarpit_sleep seconds after the previous one ended.
 * reuse:  before connecting to an address, an idle session to it (same
 *         port, TLS policy and name, HELO name) is taken from the cache
 *         (not for the batches after the first: each gets a new one);
 *         after a healthy transaction the session is parked there.  A
 *         cached session that the server had closed (lost, timed out or
 *         421 before any content went) is replaced by a fresh connection
 *         to the same address: not a failure, nothing is logged.  The
 *         log's host label says conn=reused or conn=new.
 * bound:  a new connection to a destination that has Smtp_dest_conns
 *         open (in use or parked, across the process's runs) is not made:
 *         the run waits in the cache's line for a session parked by
 *         another run, or for a place when one closes, at most
 *         Connect_timeout seconds, then connects anyway (a wait is never a
 *         failure).  A Tarpit_limit batch after the first, and the fresh
 *         connection that replaces a dead cached one or retries in clear,
 *         do not wait (they follow a connection of this run's own).
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "async.h"
#include "config.h"
#include "deliver_smtp.h"
#include "dns.h"
#include "mem.h"
#include "net.h"
#include "smtp_cache.h"
#include "smtp_client.h"

#define DS_SMTP_PORT 25

struct ds_host {
    char name[256];
    int port;
};

/* A service to its owner (req), and the owner of its own DNS queries and
 * SMTP sessions (own), which its cancel takes down with it. */
struct deliver_smtp {
    struct async_req req;
    struct async_owner own;
    uv_loop_t *loop;
    const struct deliver_smtp_req *rq;
    deliver_smtp_done_fn *done;
    void *arg;
    struct deliver_rcpt_result *res;
    size_t batch_start, batch_len;
    struct ds_host hosts[DNS_MAX_MX];
    size_t nhosts, host_i;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t naddrs, addr_i;
    struct smtp_client_msg msg;
    struct smtp_client *client;      /* the session under way */
    int reused;                      /* it came from the cache */
    char key[SMTP_CACHE_KEY_MAX];    /* its destination in the cache */
    int counted;                     /* the cache counts a connection for us */
    struct smtp_cache_wait wait;     /* in line for key (the timer times it) */
    int committed;                   /* some content was sent in full */
    int tls_fallback;                /* this address again, in clear */
    char last_error[DELIVER_ANSWER_MAX];
    uv_timer_t timer;
};

static void ds_route_host(struct deliver_smtp *d);
static void ds_try_addr(struct deliver_smtp *d);
static void ds_client_done(void *arg, const struct smtp_client_result *r);

/* ---- ending ---- */

static void ds_closed(uv_handle_t *h)
{
    struct deliver_smtp *d = h->data;

    mem_free(d->res);
    mem_free(d);
}

static void ds_finish_cb(uv_timer_t *t)
{
    struct deliver_smtp *d = t->data;

    if (async_req_end(&d->req))
        d->done(d->arg, d->res, d->rq->nrcpt);
    uv_close((uv_handle_t *)&d->timer, ds_closed);
}

/* Results are complete: report them from the loop (never synchronously). */
static void ds_finish(struct deliver_smtp *d)
{
    uv_timer_start(&d->timer, ds_finish_cb, 0, 0);
}

static void ds_set(struct deliver_rcpt_result *r, int status, const char *answer,
                   const char *host)
{
    r->status = status;
    snprintf(r->answer, sizeof(r->answer), "%s", answer);
    snprintf(r->host, sizeof(r->host), "%s", host ? host : "");
}

/* Every recipient from the current batch on gets the same answer. */
static void ds_fail_rest(struct deliver_smtp *d, int status, const char *answer)
{
    for (size_t i = d->batch_start; i < d->rq->nrcpt; i++)
        ds_set(&d->res[i], status, answer, NULL);
    ds_finish(d);
}

/* ---- batches ---- */

static void ds_batch_begin(struct deliver_smtp *d)
{
    long limit = d->rq->conf->Tarpit_limit;
    size_t left = d->rq->nrcpt - d->batch_start;

    d->batch_len = limit > 0 && (size_t)limit < left ? (size_t)limit : left;
    d->msg.rcpts = d->rq->rcpts + d->batch_start;
    d->msg.nrcpt = d->batch_len;
    d->host_i = 0;
    d->last_error[0] = '\0';
    ds_route_host(d);
}

static void ds_tarpit_done(uv_timer_t *t)
{
    ds_batch_begin(t->data);
}

static void ds_batch_end(struct deliver_smtp *d)
{
    d->batch_start += d->batch_len;
    if (d->batch_start >= d->rq->nrcpt) {
        ds_finish(d);
        return;
    }
    uv_timer_start(&d->timer, ds_tarpit_done,
                   (uint64_t)d->rq->conf->Tarpit_sleep * 1000, 0);
}

/* ---- SMTP sessions ---- */

static int ds_status_of(int code)
{
    if (code >= 200 && code < 300)
        return DELIVER_OK;
    if (code >= 500 && code < 600)
        return DELIVER_PERM;
    return DELIVER_TEMP;
}

/* "mx.example.com[192.0.2.1]:25 tls=TLSv1.3/TLS_AES_256_GCM_SHA384": the
 * delivery log says whether each delivery was encrypted. */
static void ds_host_label(struct deliver_smtp *d, const struct smtp_client_result *r,
                          char *out, size_t size)
{
    char ip[64];
    int port;

    net_ntop((struct sockaddr *)&d->addrs[d->addr_i], ip, sizeof(ip), &port);
    snprintf(out, size, "%s[%s]:%d tls=%s%s%s%s conn=%s", d->hosts[d->host_i].name, ip,
             port, r->tls_version[0] ? r->tls_version : "no", r->tls_version[0] ? "/" : "",
             r->tls_cipher, r->tls_version[0] && r->tls_verified ? "/verified" : "",
             r->reused ? "reused" : "new");
}

/* Smtp_reuse_time and Smtp_reuse_max of the run's configuration. */
static int ds_reuse_on(const struct deliver_smtp *d)
{
    const struct config *c = d->rq->conf;

    return d->rq->cache && c->Smtp_reuse_time > 0 && c->Smtp_reuse_max > 0;
}

/* The connection counted for us ended without being parked. */
static void ds_uncount(struct deliver_smtp *d)
{
    if (d->counted)
        smtp_cache_close(d->rq->cache, d->key);
    d->counted = 0;
}

/* Counted for us: a session c from the cache (RSET + MAIL), or a new one. */
static void ds_open(struct deliver_smtp *d, struct smtp_client *c)
{
    d->reused = c != NULL;
    if (c) {
        d->client = c;
        smtp_client_reuse(c, &d->own, &d->msg, ds_client_done, d);
        return;
    }
    d->client = smtp_client_start(d->loop, &d->own,
                                  (const struct sockaddr *)&d->addrs[d->addr_i], &d->msg,
                                  ds_client_done, d);
}

/* The wait is over (woken, or Connect_timeout): go on what we were given. */
static void ds_wait_over(uv_timer_t *t)
{
    struct deliver_smtp *d = t->data;

    d->counted = 1;
    ds_open(d, smtp_cache_wait_end(&d->wait));
}

/* Our turn came (called from inside the cache: only schedule). */
static void ds_wake(void *arg)
{
    struct deliver_smtp *d = arg;

    uv_timer_start(&d->timer, ds_wait_over, 0, 0);
}

/* A session for the current address: a parked one when from_cache and
 * the cache has one, else a new connection, once the destination's bound
 * leaves room (from_cache 0: at once). */
static void ds_connect(struct deliver_smtp *d, int from_cache)
{
    const struct sockaddr *a = (const struct sockaddr *)&d->addrs[d->addr_i];
    struct smtp_cache *sc = d->rq->cache;
    struct smtp_client *c = NULL;

    d->msg.keep = ds_reuse_on(d);
    if (sc == NULL) {
        ds_open(d, NULL);
        return;
    }
    if (!d->counted) {      /* else: our own connection's place, same key */
        smtp_cache_key(a, &d->msg, d->key, sizeof(d->key));
        if (from_cache && d->msg.keep)
            c = smtp_cache_take(sc, d->key);
        if (c == NULL &&
            !smtp_cache_open(sc, d->key, from_cache ? d->rq->conf->Smtp_dest_conns : 0)) {
            smtp_cache_wait(sc, &d->own, d->key, &d->wait, ds_wake, d);
            uv_timer_start(&d->timer, ds_wait_over,
                           (uint64_t)d->rq->conf->Connect_timeout * 1000, 0);
            return;
        }
        d->counted = 1;
    }
    ds_open(d, c);
}

/* A cached session the server (or a firewall) had closed meanwhile: lost,
 * timed out or 421, before any content went, so nothing of the message
 * was taken. */
static int ds_dead_cached(const struct smtp_client_result *r, int sent)
{
    return r->reused && !sent && (r->lost || r->code == 0 || r->code == 421) &&
           (r->stage == SMTP_CLIENT_MAIL || r->stage == SMTP_CLIENT_RCPT ||
            r->stage == SMTP_CLIENT_DATA);
}

static int ds_connection_failure(const struct smtp_client_result *r)
{
    return r->stage == SMTP_CLIENT_CONNECT || r->stage == SMTP_CLIENT_GREETING ||
           r->stage == SMTP_CLIENT_HELO || (r->stage == SMTP_CLIENT_MAIL && r->code == 0);
}

static void ds_client_done(void *arg, const struct smtp_client_result *r)
{
    struct deliver_smtp *d = arg;
    struct smtp_client *c = d->client;
    int sent = smtp_client_content_sent(c);
    char host[300];

    d->committed |= sent;
    d->client = NULL;
    ds_host_label(d, r, host, sizeof(host));
    if (r->reusable && d->msg.keep &&
        smtp_cache_put(d->rq->cache, d->key, c, d->rq->conf->Smtp_reuse_time,
                       d->rq->conf->Smtp_reuse_max))
        d->counted = 0;          /* the cache's now */
    if (ds_dead_cached(r, sent)) {
        ds_connect(d, 0);        /* once, in its place: a fresh connection is not "reused" */
        return;
    }
    ds_uncount(d);
    /* Tls_delivery 1: a handshake that failed is tried again in clear,
     * as opportunistic TLS does (once per address) */
    if (r->tls_failed && d->rq->conf->Tls_delivery == 1 && !d->tls_fallback) {
        d->tls_fallback = 1;
        d->msg.tls = 0;
        ds_connect(d, 0);
        return;
    }
    d->tls_fallback = 0;
    d->msg.tls = (int)d->rq->conf->Tls_delivery;
    if (ds_connection_failure(r)) {
        snprintf(d->last_error, sizeof(d->last_error), "%.200s: %.300s", host, r->answer);
        d->addr_i++;
        ds_try_addr(d);
        return;
    }
    for (size_t i = 0; i < d->batch_len && i < r->nrcpt; i++) {
        char answer[DELIVER_ANSWER_MAX];
        if (r->rcpt_code[i])
            snprintf(answer, sizeof(answer), "%d %.500s", r->rcpt_code[i],
                     r->rcpt_answer[i]);
        else
            snprintf(answer, sizeof(answer), "%.500s", r->rcpt_answer[i]);
        ds_set(&d->res[d->batch_start + i], ds_status_of(r->rcpt_code[i]), answer, host);
    }
    ds_batch_end(d);
}

/* Mx_alias_ip: an address of this machine on our own port is a loop. */
static int ds_is_self(struct deliver_smtp *d, const struct sockaddr_storage *a)
{
    const struct config *c = d->rq->conf;
    struct ifaddrs *ifs, *i;
    char ip[64], mine[64];
    int port, self = 0;

    net_ntop((const struct sockaddr *)a, ip, sizeof(ip), &port);
    if (!c->Mx_alias_ip || port != c->Port)
        return 0;
    if (c->Bind_address[0])
        return strcmp(ip, c->Bind_address) == 0;
    if (getifaddrs(&ifs) < 0)
        return 0;
    for (i = ifs; i && !self; i = i->ifa_next) {
        if (i->ifa_addr == NULL || (i->ifa_addr->sa_family != AF_INET &&
                                    i->ifa_addr->sa_family != AF_INET6))
            continue;
        net_ntop(i->ifa_addr, mine, sizeof(mine), NULL);
        self = strcmp(ip, mine) == 0;
    }
    freeifaddrs(ifs);
    return self;
}

static void ds_try_addr(struct deliver_smtp *d)
{
    while (d->addr_i < d->naddrs && ds_is_self(d, &d->addrs[d->addr_i])) {
        snprintf(d->last_error, sizeof(d->last_error),
                 "%.256s: MX points back to this server (loop)", d->hosts[d->host_i].name);
        d->addr_i++;
    }
    if (d->addr_i >= d->naddrs) {
        d->host_i++;
        ds_route_host(d);
        return;
    }
    d->msg.tls_host = d->hosts[d->host_i].name;
    /* a Tarpit_limit batch after the first: a new connection, as the
     * server that limits recipients expects */
    ds_connect(d, d->batch_start == 0);
}

/* ---- addresses of a host ---- */

static void ds_set_port(struct sockaddr_storage *a, int port)
{
    if (a->ss_family == AF_INET)
        ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
    else if (a->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
}

static void ds_addrs_done(void *arg, int status, const struct sockaddr_storage *a,
                          size_t n)
{
    struct deliver_smtp *d = arg;
    const struct ds_host *h = &d->hosts[d->host_i];

    if (status != DNS_OK) {
        snprintf(d->last_error, sizeof(d->last_error), "%.256s: %s", h->name,
                 dns_strstatus(status));
        d->host_i++;
        ds_route_host(d);
        return;
    }
    d->naddrs = n < DNS_MAX_ADDRS ? n : DNS_MAX_ADDRS;
    memcpy(d->addrs, a, d->naddrs * sizeof(*a));
    for (size_t i = 0; i < d->naddrs; i++)
        ds_set_port(&d->addrs[i], h->port);
    d->addr_i = 0;
    ds_try_addr(d);
}

/* Tries the host at host_i, or ends the batch when none is left. */
static void ds_route_host(struct deliver_smtp *d)
{
    const struct ds_host *h;
    socklen_t len;

    if (d->host_i >= d->nhosts) {
        char why[DELIVER_ANSWER_MAX];
        snprintf(why, sizeof(why), "%.100s: %.400s", d->rq->conf->Msg_cannot_connect,
                 d->last_error[0] ? d->last_error : "no host to try");
        ds_fail_rest(d, DELIVER_TEMP, why);
        return;
    }
    h = &d->hosts[d->host_i];
    if (net_sockaddr(h->name, h->port, &d->addrs[0], &len) == 0) {
        d->naddrs = 1;
        d->addr_i = 0;
        ds_try_addr(d);
        return;
    }
    dns_addrs(d->rq->dns, &d->own, h->name, ds_addrs_done, d);
}

/* ---- the route ---- */

static void ds_route_fail(struct deliver_smtp *d, int status, const char *why)
{
    char answer[DELIVER_ANSWER_MAX];

    snprintf(answer, sizeof(answer), "%.100s: %.256s (%s)", d->rq->conf->Msg_cannot_resolve,
             d->rq->domain, why);
    ds_fail_rest(d, status, answer);
}

static void ds_mx_done(void *arg, int status, const struct dns_mx *mx, size_t n)
{
    struct deliver_smtp *d = arg;

    if (status == DNS_NXDOMAIN) {
        ds_route_fail(d, DELIVER_PERM, "no such domain");
        return;
    }
    if (status == DNS_TEMPFAIL) {
        ds_route_fail(d, DELIVER_TEMP, "temporary DNS failure");
        return;
    }
    if (status == DNS_NODATA || n == 0) {
        snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s", d->rq->domain);
        d->hosts[0].port = DS_SMTP_PORT;
        d->nhosts = 1;
    } else if (n == 1 && (mx[0].host[0] == '\0' || strcmp(mx[0].host, ".") == 0)) {
        ds_route_fail(d, DELIVER_PERM, "the domain accepts no mail: null MX");
        return;
    } else {
        for (size_t i = 0; i < n && i < DNS_MAX_MX; i++) {
            snprintf(d->hosts[i].name, sizeof(d->hosts[i].name), "%s", mx[i].host);
            d->hosts[i].port = DS_SMTP_PORT;
        }
        d->nhosts = n < DNS_MAX_MX ? n : DNS_MAX_MX;
    }
    ds_batch_begin(d);
}

static void ds_route(struct deliver_smtp *d)
{
    const char *relay = d->rq->conf->Relay_host;
    struct net_hostport hp;

    if (relay[0]) {
        if (net_parse_hostport(relay, DS_SMTP_PORT, &hp, NULL, 0) < 0) {
            ds_route_fail(d, DELIVER_TEMP, "bad Relay_host");
            return;
        }
        snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s", hp.host);
        d->hosts[0].port = hp.port;
        d->nhosts = 1;
        ds_batch_begin(d);
        return;
    }
    dns_mx(d->rq->dns, &d->own, d->rq->domain, ds_mx_done, d);
}

static void ds_cancel(struct async_req *r);

struct deliver_smtp *deliver_smtp_start(uv_loop_t *loop, struct async_owner *o,
                                        const struct deliver_smtp_req *req,
                                        deliver_smtp_done_fn *done, void *arg)
{
    struct deliver_smtp *d = mem_zalloc(sizeof(*d));
    const struct config *c = req->conf;

    async_req_start(&d->req, o, ds_cancel, 0);
    async_owner_init(&d->own);
    d->loop = loop;
    d->rq = req;
    d->done = done;
    d->arg = arg;
    d->res = mem_zalloc(req->nrcpt * sizeof(*d->res));
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->msg.helo_name = c->Server_name;
    d->msg.from = req->from;
    d->msg.content = req->content;
    d->msg.len = req->len;
    d->msg.body_8bit = req->body_8bit;
    d->msg.connect_timeout_ms = c->Connect_timeout * 1000;
    d->msg.timeout_ms = c->Timeout * 1000;
    d->msg.tls = (int)c->Tls_delivery;
    d->msg.tls_engine = req->tls;
    ds_route(d);
    return d;
}

/* The owner no longer waits: its DNS queries and SMTP session go too. */
static void ds_cancel(struct async_req *r)
{
    struct deliver_smtp *d = (struct deliver_smtp *)r;

    d->client = NULL;
    async_owner_cancel(&d->own);   /* the session, or our place in line */
    ds_uncount(d);
    if (!uv_is_closing((uv_handle_t *)&d->timer)) {
        uv_timer_stop(&d->timer);
        uv_close((uv_handle_t *)&d->timer, ds_closed);
    }
}

void deliver_smtp_cancel(struct deliver_smtp *d)
{
    async_req_cancel(&d->req);
}

int deliver_smtp_committed(const struct deliver_smtp *d)
{
    return d->committed || (d->client && smtp_client_content_sent(d->client));
}
