/*
 * smtp_server.c - the life of one SMTP session (see smtp_server.h and
 * smtp_session.h; docs/smtp.md).
 *
 * Life of a session:
 *   CONNECT  limits checked (coordination), reverse name (Resolve_all);
 *            then the greeting
 *   PROXY    (a peer in Proxy_protocol only, from CONNECT before any
 *            check) its PROXY header is read within SMTP_PROXY_TIME_LIMIT
 *            seconds; the client it names becomes the session's address,
 *            and the session goes back to CONNECT for its checks
 *   COMMAND  complete command lines are handled in arrival order; each
 *            reply is appended to `out`, which is written when the input
 *            holds no further complete line (pipelining: one write a batch)
 *   WAIT     a command waits for an answer (DNS, an account lookup) or a
 *            delay; input keeps being buffered and is handled afterwards
 *   DATA     content goes through the DATA parser to the spool
 *   COMMIT   the spool makes the message durable; the reply follows
 *   CLOSING  the last reply is being written; then the socket is closed
 *   CLOSED   handles are closing; the session is freed after them
 * Every change goes through smtp_session_set_state, which checks it
 * against the table below and logs it.  Entering CLOSING or CLOSED ends
 * the transaction and cancels every request the session has out, so a
 * late answer is dropped instead of reaching a session that is going.
 * Must not: decide what a command means (smtp_policy.c does) or block.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "async.h"
#include "buf.h"
#include "config.h"
#include "coord.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "net.h"
#include "node.h"
#include "smtp_proxy.h"
#include "smtp_reply.h"
#include "smtp_server.h"
#include "smtp_session.h"
#include "smtp_worker.h"
#include "spool_queues.h"
#include "stream.h"

#define SMTP_IN_LIMIT (64 * 1024)     /* unhandled input before reading stops */
#define SMTP_OUT_LIMIT (64 * 1024)    /* unsent replies before reading stops */
#define SMTP_PROXY_TIME_LIMIT 5       /* seconds for a balancer's PROXY header */

static const char *const smtp_state_names[SMTP_NSTATES] = {
    "connect", "command", "wait", "data", "commit", "closing", "closed", "proxy",
};

#define T(st) (1u << (st))
/* The transitions a session may make; anything else is a bug. */
static const unsigned smtp_next_states[SMTP_NSTATES] = {
    [SMTP_S_CONNECT] = T(SMTP_S_PROXY) | T(SMTP_S_COMMAND) | T(SMTP_S_CLOSING) |
                       T(SMTP_S_CLOSED),
    /* no reply is ever written in PROXY: a bad header closes at once */
    [SMTP_S_PROXY] = T(SMTP_S_CONNECT) | T(SMTP_S_CLOSED),
    [SMTP_S_COMMAND] = T(SMTP_S_WAIT) | T(SMTP_S_DATA) | T(SMTP_S_CLOSING) |
                       T(SMTP_S_CLOSED),
    [SMTP_S_WAIT] = T(SMTP_S_COMMAND) | T(SMTP_S_WAIT) | T(SMTP_S_DATA) |
                    T(SMTP_S_CLOSING) | T(SMTP_S_CLOSED),
    [SMTP_S_DATA] = T(SMTP_S_COMMIT) | T(SMTP_S_COMMAND) | T(SMTP_S_CLOSING) |
                    T(SMTP_S_CLOSED),
    [SMTP_S_COMMIT] = T(SMTP_S_COMMAND) | T(SMTP_S_CLOSING) | T(SMTP_S_CLOSED),
    [SMTP_S_CLOSING] = T(SMTP_S_CLOSED),
    [SMTP_S_CLOSED] = 0,
};
#undef T

static void smtp_close(struct smtp_session *s, const char *why);
static void smtp_proxy_input(struct smtp_session *s);
static void smtp_flush(struct smtp_session *s);
static void smtp_timer_reset(struct smtp_session *s);

/* ---- the state machine ---- */

void smtp_session_set_state(struct smtp_session *s, enum smtp_state st, const char *why)
{
    enum smtp_state from = s->state;

    if (from == st && st != SMTP_S_WAIT)
        return;
    /* one header a connection: a second would let the client name itself */
    if (!(smtp_next_states[from] & (1u << st)) || (st == SMTP_S_PROXY && s->proxy[0]))
        log_panic("%s: SMTP session state %s -> %s is not allowed (%s)", s->cid,
                  smtp_state_names[from], smtp_state_names[st], why ? why : "-");
    s->state = st;
    s->wait_for = st == SMTP_S_WAIT ? why : NULL;
    if (s->conf->Log_lvl == 0)
        log_central(s->txn.qid, "%s %s * state %s -> %s%s%s%s", s->cid, s->ip,
                    smtp_state_names[from], smtp_state_names[st], why ? " (" : "",
                    why ? why : "", why ? ")" : "");
    if (st == SMTP_S_CLOSING || st == SMTP_S_CLOSED) {
        /* Nothing may act on this session any more: no transaction, and
         * every answer still on its way is dropped. */
        smtp_policy_txn_reset(s);
        async_owner_cancel(&s->own);
    }
    if (st == SMTP_S_CLOSING)   /* a client that does not read is cut off too */
        smtp_timer_reset(s);
}

/* ---- replies and logs ---- */

static void smtp_log(struct smtp_session *s, char dir, const char *text, size_t n)
{
    if (s->conf->Log_lvl > 0)
        return;
    log_central(s->txn.qid, "%s %s %c %.*s", s->cid, s->ip, dir, (int)n, text);
}

void smtp_session_reply(struct smtp_session *s, const char *msg, const char *detail,
                        const char *prefix, const char *suffix)
{
    size_t start = s->out.len;

    smtp_reply_msg(&s->out, msg, detail, s->esmtp, prefix, suffix);
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
}

void smtp_session_reply_raw(struct smtp_session *s, const char *fmt, ...)
{
    size_t start = s->out.len;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
}

void smtp_session_refused(struct smtp_session *s, const char *what, const char *msg)
{
    if (s->conf->Refused_log[0])
        log_refused(s->txn.qid, "%s %s %s: %s", s->cid, s->ip, what, msg);
}

void smtp_session_hangup(struct smtp_session *s, const char *msg, const char *detail,
                         const char *why)
{
    if (s->state == SMTP_S_CLOSING || s->state == SMTP_S_CLOSED)
        return;
    smtp_session_reply(s, msg, detail, NULL, NULL);
    smtp_session_set_state(s, SMTP_S_CLOSING, why);
    smtp_flush(s);
}

/* ---- output ---- */

static void smtp_write_done(void *arg, int status, size_t len)
{
    struct smtp_session *s = arg;

    s->out_pending -= len;
    if (status < 0) {
        smtp_close(s, status == UV_ECANCELED ? NULL : "write error");
        return;
    }
    if (s->state == SMTP_S_CLOSING && s->out_pending == 0 && s->out.len == 0) {
        smtp_close(s, "last reply written");
        return;
    }
    if (s->out_pending < SMTP_OUT_LIMIT && s->state != SMTP_S_CLOSING)
        smtp_session_process(s);
}

static void smtp_flush(struct smtp_session *s)
{
    size_t n = s->out.len, sent;

    if (s->state == SMTP_S_CLOSED)
        return;
    if (n == 0) {
        if (s->state == SMTP_S_CLOSING && s->out_pending == 0)
            smtp_close(s, "last reply written");
        return;
    }
    sent = stream_try_write(&s->io, s->out.data, n);
    if (sent == n) {
        buf_reset(&s->out);
        buf_shrink(&s->out, 4096);
        if (s->state == SMTP_S_CLOSING && s->out_pending == 0)
            smtp_close(s, "last reply written");
        return;
    }
    buf_consume(&s->out, sent);
    n -= sent;
    s->out_pending += n;
    if (stream_write(&s->io, s->out.data, n, smtp_write_done) < 0) {
        s->out_pending -= n;
        buf_reset(&s->out);
        smtp_close(s, "write error");
        return;
    }
    buf_reset(&s->out);
    buf_shrink(&s->out, 4096);
}

/* ---- input ---- */

static void smtp_read(void *arg, ssize_t n, const char *data)
{
    struct smtp_session *s = arg;

    if (n < 0) {
        if (n != UV_EOF)
            log_central(s->txn.qid, "%s %s * read error: %s%s%s", s->cid, s->ip,
                        uv_strerror((int)n), n == UV_EPROTO ? ": " : "",
                        n == UV_EPROTO ? stream_tls_error(&s->io) : "");
        smtp_close(s, n == UV_EOF ? "client closed the connection" : "read error");
        return;
    }
    buf_append(&s->in, data, (size_t)n);
    if (s->state == SMTP_S_PROXY) {   /* its time limit runs from the connection */
        smtp_proxy_input(s);
        return;
    }
    smtp_timer_reset(s);
    smtp_session_process(s);
}

static void smtp_read_control(struct smtp_session *s)
{
    int want = s->state != SMTP_S_CLOSING && s->state != SMTP_S_CLOSED &&
               s->in.len < SMTP_IN_LIMIT && s->out_pending < SMTP_OUT_LIMIT &&
               !(s->txn.msg && spool_msg_backlogged(s->txn.msg));

    if (want && !s->reading)
        stream_read_start(&s->io, smtp_read);
    else if (!want && s->reading)
        stream_read_stop(&s->io);
    s->reading = want;
}

/*
 * Takes one complete command line out of `in` and handles it; 0 if there
 * is none.  The line leaves the buffer before it is handled, so whatever
 * the command does to the input (an answer arriving at once resumes
 * processing) cannot shift it under us.
 */
static int smtp_command_input(struct smtp_session *s)
{
    char line[SMTP_CMD_LINE_MAX];
    char *nl = memchr(s->in.data, '\n', s->in.len);
    size_t n, used;
    int too_long;

    if (nl == NULL) {
        if (s->in.len >= SMTP_CMD_LINE_MAX) {
            s->skip_line = 1;  /* answered once the line ends */
            buf_reset(&s->in);
        }
        return 0;
    }
    used = (size_t)(nl - s->in.data) + 1;
    n = used - 1;
    if (n > 0 && s->in.data[n - 1] == '\r')
        n--;
    too_long = s->skip_line || used > SMTP_CMD_LINE_MAX;
    if (!too_long)
        memcpy(line, s->in.data, n);
    buf_consume(&s->in, used);
    s->skip_line = 0;
    if (too_long) {
        smtp_log(s, '<', "(line too long)", 15);
        smtp_policy_line_too_long(s);
    } else {
        size_t shown = n;   /* never a credential in the log */
        const char *text = smtp_auth_loggable(s, line, &shown);
        smtp_log(s, '<', text, shown);
        smtp_policy_command(s, line, n);
    }
    return 1;
}

/* Re-entered from an answer that arrived while a command was being
 * handled: the loop already running goes on instead. */
void smtp_session_process(struct smtp_session *s)
{
    if (s->state == SMTP_S_CLOSED)
        return;
    if (s->processing) {
        s->process_again = 1;
        return;
    }
    s->processing = 1;
    do {
        s->process_again = 0;
        while (s->in.len > 0 && s->out_pending < SMTP_OUT_LIMIT) {
            if (s->state == SMTP_S_COMMAND) {
                if (!smtp_command_input(s))
                    break;
            } else if (s->state == SMTP_S_DATA) {
                if (!smtp_message_input(s))
                    break;
            } else {
                break;
            }
        }
    } while (s->process_again && s->state != SMTP_S_CLOSED);
    s->processing = 0;
    if (s->state == SMTP_S_CLOSED)
        return;
    if (s->in.len == 0)
        buf_shrink(&s->in, 4096);
    if (s->shutdown && s->state == SMTP_S_COMMAND && !s->txn.active)
        smtp_session_hangup(s, s->conf->Msg_perm_deny, "3.2", "node stopping");
    if (s->state == SMTP_S_CLOSED)
        return;
    smtp_flush(s);
    if (s->state != SMTP_S_CLOSED)
        smtp_read_control(s);
}

/* ---- WAIT: one way in, one way out ---- */

void smtp_session_wait(struct smtp_session *s, const char *what)
{
    smtp_session_set_state(s, SMTP_S_WAIT, what);
}

static void smtp_delay_over(uv_timer_t *t)
{
    struct smtp_session *s = t->data;

    buf_puts(&s->out, s->held_reply);
    s->held_reply[0] = '\0';
    smtp_session_set_state(s, SMTP_S_COMMAND, "delay over");
    smtp_timer_reset(s);
    smtp_session_process(s);
}

void smtp_session_resume(struct smtp_session *s, size_t reply_start, long delay)
{
    size_t n = s->out.len - reply_start;

    if (s->state == SMTP_S_CLOSING || s->state == SMTP_S_CLOSED)
        return;
    if (delay > 0 && n < sizeof(s->held_reply)) {
        memcpy(s->held_reply, s->out.data + reply_start, n);
        s->held_reply[n] = '\0';
        s->out.len = reply_start;
        smtp_session_set_state(s, SMTP_S_WAIT, "delay");
        uv_timer_start(&s->timer, smtp_delay_over, (uint64_t)delay * 1000, 0);
        return;
    }
    if (s->state != SMTP_S_WAIT)
        return;   /* answered at once, inside the command: its loop goes on */
    smtp_session_set_state(s, SMTP_S_COMMAND, "answered");
    smtp_timer_reset(s);
    smtp_session_process(s);
}

/* ---- announcing accepted mail ---- */

/*
 * Tells the queue about a new message, as Immed_delivery asks: 2 at once,
 * 1 when the client leaves, 0 at the next queue run.  The index is that of
 * the queue the message went to: qlimit's, or main's, which alternate
 * queues (Def! Queue_path) share (spool_queues.h).
 */
void smtp_session_announce(struct smtp_session *s, const char *id)
{
    const char *queue = spool_queues_coord(s->txn.qlimit ? "qlimit"
                                           : spool_queues_for_path(s->conf->Queue_path));
    long mode = s->conf->Immed_delivery;

    if (mode == 1) {
        buf_printf(&s->announce, "%s %s\n", queue, id);
        return;
    }
    coord_announce(s->w->node->coord, queue, id,
                   mode == 2 ? 0 : (long)time(NULL) + s->conf->Qsleep_time,
                   COORD_ANN_NEW);
}

static void smtp_announce_held(struct smtp_session *s)
{
    char queue[16], id[QUEUE_ID_MAX];
    const char *p = buf_cstr(&s->announce);
    int n;

    while (sscanf(p, "%15s %63s\n%n", queue, id, &n) == 2) {
        coord_announce(s->w->node->coord, queue, id, 0, COORD_ANN_NEW);
        p += n;
    }
    buf_free(&s->announce);
}

/* ---- TLS ---- */

int smtp_session_tls_available(const struct smtp_session *s)
{
    return s->w->node->tls.ops != NULL && s->conf->Tls_pubkey[0];
}

static void smtp_tls_done(void *arg, int status)
{
    struct smtp_session *s = arg;

    metrics_inc1(METRIC_TLS_HANDSHAKES, METRICS_DIR_IN);
    if (status < 0) {
        metrics_inc1(METRIC_TLS_FAILURES, METRICS_DIR_IN);
        metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_TLS);
        log_central(NULL, "%s %s * TLS handshake failed: %s", s->cid, s->ip,
                    stream_tls_error(&s->io));
        smtp_close(s, "TLS handshake failed");
        return;
    }
    s->tls = 1;
    log_central(NULL, "%s %s * TLS %s with cipher %s (%d bits)", s->cid, s->ip,
                stream_tls_version(&s->io), stream_tls_cipher(&s->io),
                stream_tls_bits(&s->io));
}

static int smtp_tls_start(struct smtp_session *s)
{
    if (stream_start_tls(&s->io, &s->w->node->tls, 1, NULL, smtp_tls_done) == 0)
        return 0;
    metrics_inc1(METRIC_TLS_FAILURES, METRICS_DIR_IN);
    metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_TLS);
    log_central(NULL, "%s %s * TLS cannot start: %s", s->cid, s->ip,
                stream_tls_error(&s->io));
    smtp_close(s, "TLS cannot start");
    return -1;
}

/*
 * The 220 goes out in clear, then the connection is TLS.  What the client
 * sent after STARTTLS in the same breath is dropped, never read as
 * commands (the command injection of CVE-2011-0411 and its kin), and the
 * session starts over: no EHLO, no transaction (RFC 3207, 4.2).
 */
void smtp_session_starttls(struct smtp_session *s)
{
    smtp_milter_reset(s);   /* the milters hear the TLS session at the next MAIL */
    smtp_flush(s);
    if (s->state == SMTP_S_CLOSED)
        return;
    buf_reset(&s->in);
    s->skip_line = 0;
    smtp_policy_txn_reset(s);
    s->greeted = s->esmtp = 0;
    s->helo[0] = '\0';
    s->auth[0] = '\0';        /* a login made in clear does not carry over */
    smtp_tls_start(s);
}

/* ---- timers, close ---- */

static void smtp_session_link(struct smtp_worker *w, struct smtp_session *s)
{
    s->prev = NULL;
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
}

static void smtp_session_unlink(struct smtp_worker *w, struct smtp_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nsessions--;
}

static void smtp_timeout(uv_timer_t *t)
{
    struct smtp_session *s = t->data;

    log_central(s->txn.qid, "%s %s * timeout in state %s%s%s", s->cid, s->ip,
                smtp_state_names[s->state], s->wait_for ? " waiting for " : "",
                s->wait_for ? s->wait_for : "");
    if (s->state == SMTP_S_CLOSING) {
        smtp_close(s, "timeout writing the last reply");
        return;
    }
    smtp_session_hangup(s, s->conf->Msg_perm_deny, "4.2", "timeout");
}

/* The idle timeout.  A WAIT is bounded from its start: input arriving
 * meanwhile does not extend it (and a delay keeps its own time); so is
 * PROXY, or a balancer's peer could drip its header forever. */
static void smtp_timer_reset(struct smtp_session *s)
{
    if (s->state == SMTP_S_WAIT || s->state == SMTP_S_CLOSED || s->state == SMTP_S_PROXY)
        return;
    uv_timer_start(&s->timer, smtp_timeout, (uint64_t)s->conf->Timeout * 1000, 0);
}

static void smtp_session_free(struct async_owner *o)
{
    struct smtp_session *s = (struct smtp_session *)((char *)o -
                                                     offsetof(struct smtp_session, own));
    struct smtp_worker *w = s->w;

    smtp_session_unlink(w, s);
    smtp_rules_free(s);
    smtp_milter_free(s);
    config_release(s->gen);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->chunk);
    buf_free(&s->announce);
    mem_free(s);
    smtp_worker_session_gone(w);
}

static void smtp_handle_closed(uv_handle_t *h)
{
    struct smtp_session *s = h->data;

    if (--s->handles_open > 0)
        return;
    async_owner_close(&s->own, smtp_session_free);
}

static void smtp_close(struct smtp_session *s, const char *why)
{
    if (s->state == SMTP_S_CLOSED)
        return;
    smtp_session_set_state(s, SMTP_S_CLOSED, why);
    log_central(NULL, "%s %s * disconnect msgs=%u", s->cid, s->ip, s->msgs);
    smtp_announce_held(s);
    smtp_policy_txn_free(s);
    smtp_milter_close(s);
    uv_close((uv_handle_t *)&s->timer, smtp_handle_closed);
    stream_close(&s->io, smtp_handle_closed);
}

/* ---- before the greeting ---- */

static void smtp_greet_now(struct smtp_session *s, long delay)
{
    const char *msg = s->conf->Msg_welcome, *text = msg + 3;
    size_t start = s->out.len;

    while (*text == ' ')
        text++;
    buf_printf(&s->out, "%.3s %s %s\r\n", msg, s->conf->Server_name,
               text[0] ? text : "ESMTP Selor");
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
    if (msg[0] != '2') {
        smtp_session_set_state(s, SMTP_S_CLOSING, "greeting refuses");
    } else {
        smtp_session_set_state(s, SMTP_S_COMMAND, "greeted");
        if (delay > 0) {
            smtp_session_resume(s, start, delay);
            return;
        }
    }
    smtp_session_process(s);
}

/*
 * After Event.connection: Deny! greets with 554 and then answers 503 to
 * everything but QUIT (RFC 5321 section 3.1), Close! and Defer! hang up
 * with 421, Delay! holds the greeting back.
 */
static void smtp_connection_judged(struct smtp_session *s)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);
    const char *msg;
    size_t start = s->out.len;

    if (o->verdict == RULES_CLOSE || o->verdict == RULES_DEFER) {
        msg = smtp_rules_reply(s, s->conf->Msg_perm_deny);
        metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_RULES);
        smtp_session_refused(s, "connection (rules)", msg);
        smtp_session_hangup(s, msg[0] == '4' || msg[0] == '5' ? msg : s->conf->Msg_perm_deny,
                            "7.0", "rules");
        return;
    }
    if (o->verdict != RULES_DENY) {
        smtp_greet_now(s, o->delay);
        return;
    }
    msg = smtp_rules_reply(s, "554 No SMTP service here");
    metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_RULES);
    smtp_session_refused(s, "connection (rules)", msg);
    s->rules.denied = 1;
    buf_printf(&s->out, "554 %s %s\r\n", s->conf->Server_name, msg[3] ? msg + 4 : "");
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
    smtp_session_set_state(s, SMTP_S_COMMAND, "greeted (refused by rules)");
    smtp_session_process(s);
}

static void smtp_greet(struct smtp_session *s)
{
    struct rules_cache *c = &s->rules.cache;

    if (s->conf->Resolve_all) {     /* the rules need not ask again */
        c->rev = s->rdns[0] ? 0 : 1;
        snprintf(c->rdns, sizeof(c->rdns), "%s", s->rdns);
    }
    smtp_rules_event(s, RULES_EV_CONNECTION, smtp_connection_judged);
}

/* The name of the client is the one whose addresses include the client's. */
static void smtp_rdns_confirmed(void *arg, int status, const struct sockaddr_storage *a,
                                size_t n)
{
    struct smtp_session *s = arg;
    char ip[64];
    int ok = 0;

    for (size_t i = 0; status == DNS_OK && i < n && !ok; i++) {
        net_ntop((const struct sockaddr *)&a[i], ip, sizeof(ip), NULL);
        ok = strcmp(ip, s->ip) == 0;
    }
    log_central(NULL, "%s %s * reverse name %s%s", s->cid, s->ip, s->rdns,
                ok ? "" : " (not confirmed by its addresses)");
    if (!ok)
        s->rdns[0] = '\0';
    smtp_greet(s);
}

/* A name that is no domain (DNS labels may hold any byte) is not used:
 * it would go into Received: and the queue file. */
static void smtp_rdns_done(void *arg, int status, const char *name)
{
    struct smtp_session *s = arg;

    if (status != DNS_OK || name == NULL || strlen(name) >= sizeof(s->rdns) ||
        !addr_valid_domain(name, strlen(name))) {
        log_central(NULL, "%s %s * no reverse name (%s)", s->cid, s->ip,
                    status == DNS_OK ? "not a domain name" : dns_strstatus(status));
        smtp_greet(s);
        return;
    }
    snprintf(s->rdns, sizeof(s->rdns), "%s", name);
    dns_addrs(s->w->dns, &s->own, s->rdns, smtp_rdns_confirmed, s);
}

static void smtp_conn_go(struct smtp_session *s)
{
    if (s->conf->Resolve_all) {
        dns_ptr(s->w->dns, &s->own, s->ip, smtp_rdns_done, s);
        return;
    }
    smtp_greet(s);
}

/* After Event.limit: Accept! exempts the client; otherwise (no rule, or
 * any other verdict) the anti-DoS refusal stands, with Reply!'s text. */
static void smtp_limit_judged(struct smtp_session *s)
{
    const char *msg = smtp_rules_reply(s, s->conf->Msg_perm_deny);

    if (smtp_rules_outcome(s)->verdict == RULES_ACCEPT) {
        log_central(NULL, "%s %s * connection limit: exempted by Event.limit", s->cid, s->ip);
        smtp_conn_go(s);
        return;
    }
    log_central(NULL, "%s %s * connection limit (Limit_cnx) reached", s->cid, s->ip);
    metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_LIMIT);
    smtp_session_refused(s, "connection limit", msg);
    smtp_session_hangup(s, msg, "7.0", "connection limit");
}

static void smtp_conn_checked(void *arg, int verdict)
{
    struct smtp_session *s = arg;

    if (verdict == COORD_LIMIT) {
        smtp_rules_event(s, RULES_EV_LIMIT, smtp_limit_judged);
        return;
    }
    smtp_conn_go(s);
}

/* The checks before the greeting, from the client's address (the peer's,
 * or the one its balancer's PROXY header gave). */
static void smtp_conn_start(struct smtp_session *s)
{
    /* Tls_implicit: TLS from the first byte (after a PROXY header, which
     * is in clear); the greeting waits for it */
    if (s->conf->Tls_implicit && smtp_tls_start(s) < 0)
        return;
    smtp_timer_reset(s);
    smtp_read_control(s);   /* a client that leaves at once is noticed */
    if (s->balancer_own) {
        /* HAProxy's check-send-proxy: its health checks, every few
         * seconds, must not trip Limit_cnx for the balancer's address
         * (v1 UNKNOWN may be a real client whose address it lacks: counted) */
        log_central(NULL, "%s %s * the balancer's own connection: not counted in the "
                    "connection limits", s->cid, s->ip);
        smtp_conn_go(s);
        return;
    }
    coord_conn_check(s->w->node->coord, &s->own, s->ip, smtp_conn_checked, s);
}

/* ---- PROXY: a balancer's header before anything else ---- */

/*
 * Under Tls_implicit no byte after the header may be read with it: the
 * stream gives the TLS engine only what it reads after stream_start_tls.
 * The parser says how many bytes the header still has at least, so each
 * read takes no more (a v2 header: two reads; v1: a few bytes a read).
 * A plain session reads freely: what follows the header is SMTP, kept.
 */
static void smtp_proxy_read_size(struct smtp_session *s, size_t need)
{
    if (s->conf->Tls_implicit)
        s->io.rlen = need < sizeof(s->w->rbuf) ? need : sizeof(s->w->rbuf);
}

static void smtp_proxy_timeout(uv_timer_t *t)
{
    struct smtp_session *s = t->data;

    log_central(NULL, "%s %s * PROXY header refused: none within %d s (%zu bytes came)",
                s->cid, s->ip, SMTP_PROXY_TIME_LIMIT, s->in.len);
    metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_PROXY);
    smtp_close(s, "no PROXY header in time");
}

/* The client the header names replaces the balancer everywhere: limits,
 * rules, reverse name, logs, Received:, the l file. */
static void smtp_proxy_done(struct smtp_session *s, const struct smtp_proxy_result *r)
{
    int v6 = r->family == AF_INET6 && strchr(r->src, ':');

    buf_consume(&s->in, r->len);
    s->io.rlen = sizeof(s->w->rbuf);
    snprintf(s->proxy, sizeof(s->proxy), "%s", s->ip);
    if (r->local) {
        s->balancer_own = r->version == 2;
        log_central(NULL, "%s %s * proxied from %s: no client address (v%d %s), the "
                    "balancer's is kept", s->cid, s->ip, s->proxy, r->version,
                    r->version == 1 ? "UNKNOWN" : "LOCAL");
    } else {
        snprintf(s->ip, sizeof(s->ip), "%s", r->src);
        log_central(NULL, "%s %s * proxied from %s: client %s%s%s:%d", s->cid, s->ip,
                    s->proxy, v6 ? "[" : "", r->src, v6 ? "]" : "", r->src_port);
    }
    if (s->conf->Tls_implicit && s->in.len > 0) {   /* cannot happen: reads were sized */
        log_central(NULL, "%s %s * PROXY header followed by bytes read in clear before "
                    "TLS", s->cid, s->ip);
        smtp_close(s, "bytes before TLS");
        return;
    }
    uv_timer_stop(&s->timer);
    smtp_session_set_state(s, SMTP_S_CONNECT, "PROXY header read");
    smtp_conn_start(s);
}

/* Everything received so far is looked at again: a header is at most
 * SMTP_PROXY_MAX bytes, and the parser errs past that. */
static void smtp_proxy_input(struct smtp_session *s)
{
    struct smtp_proxy_result r;

    smtp_proxy_parse(s->in.data, s->in.len, &r);
    if (r.status == SMTP_PROXY_NEED_MORE) {
        smtp_proxy_read_size(s, r.need);
        return;
    }
    if (r.status == SMTP_PROXY_DONE) {
        smtp_proxy_done(s, &r);
        return;
    }
    log_central(NULL, "%s %s * PROXY header refused: %s", s->cid, s->ip, r.why);
    metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_PROXY);
    smtp_close(s, "no valid PROXY header");
}

/* A peer in Proxy_protocol: nothing is checked or sent before its header. */
static void smtp_proxy_start(struct smtp_session *s)
{
    struct smtp_proxy_result r;

    smtp_session_set_state(s, SMTP_S_PROXY, "PROXY header from a balancer");
    smtp_proxy_parse(NULL, 0, &r);
    smtp_proxy_read_size(s, r.need);
    uv_timer_start(&s->timer, smtp_proxy_timeout, SMTP_PROXY_TIME_LIMIT * 1000, 0);
    smtp_read_control(s);
}

int smtp_server_accept(struct smtp_worker *w, uv_stream_t *listener)
{
    struct smtp_session *s = mem_zalloc(sizeof(*s));
    struct sockaddr_storage ss;
    int len = sizeof(ss), port;

    s->w = w;
    s->conf = config_hold(selor_conf);   /* a reload meanwhile: this one stays */
    s->gen = s->conf;
    s->state = SMTP_S_CONNECT;
    smtp_rules_init(s);
    async_owner_init(&s->own);
    buf_init(&s->in, 0);
    buf_init(&s->out, 0);
    buf_init(&s->chunk, 0);
    buf_init(&s->announce, 0);
    arena_init(&s->txn.mem, 1024);
    stream_init(&s->io, &w->loop, s, w->rbuf, sizeof(w->rbuf), w->pbuf, sizeof(w->pbuf));
    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;
    s->handles_open = 2;
    smtp_session_link(w, s);
    snprintf(s->cid, sizeof(s->cid), "c%d.%lu", w->index, ++w->next_cid);
    if (uv_accept(listener, (uv_stream_t *)&s->io.tcp) < 0) {
        smtp_close(s, "accept failed");
        return -1;
    }
    metrics_inc(METRIC_SMTPD_CONNECTIONS);
    uv_tcp_nodelay(&s->io.tcp, 1);
    uv_tcp_getpeername(&s->io.tcp, (struct sockaddr *)&ss, &len);
    net_ntop((struct sockaddr *)&ss, s->ip, sizeof(s->ip), &port);
    log_central(NULL, "%s %s * connect port=%d", s->cid, s->ip, port);
    /* selor_conf, not the overlay: no rule may decide whom to believe */
    if (selor_conf->Proxy_protocol[0] && net_networks_match(selor_conf->Proxy_protocol, s->ip))
        smtp_proxy_start(s);
    else
        smtp_conn_start(s);
    return 0;
}

/* ---- the worker stops ---- */

void smtp_server_shutdown_all(struct smtp_worker *w)
{
    for (struct smtp_session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        s->shutdown = 1;
        if (s->state == SMTP_S_PROXY)     /* nothing said yet, nothing to lose */
            smtp_close(s, "node stopping");
        else if (s->state == SMTP_S_COMMAND && !s->txn.active)
            smtp_session_hangup(s, s->conf->Msg_perm_deny, "3.2", "node stopping");
    }
}

void smtp_server_kill_all(struct smtp_worker *w)
{
    for (struct smtp_session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        smtp_close(s, "node stopping");
    }
}
