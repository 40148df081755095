/*
 * smtp_client.c - one outgoing SMTP session (see smtp_client.h).
 *
 * Life of a session:
 *   CONNECT   uv_tcp_connect under the connect timer (or a failure found in
 *             smtp_client_start, reported from a 0 ms timer: done never
 *             runs inside smtp_client_start)
 *   GREETING  the server's greeting must be 2xx
 *   EHLO      EHLO, extensions read; when refused, HELO instead
 *   HELO      HELO (no extensions)
 *   STARTTLS  the reply to STARTTLS (when msg->tls asks and the server
 *             offers it); 220, then the handshake (TLS), then EHLO again
 *   TLS       the TLS handshake is under way
 *   MAIL      the reply to MAIL; with PIPELINING, MAIL, every RCPT and DATA
 *             went out in one write and their replies are read in order
 *   RCPT      the replies to RCPT, one per recipient
 *   DATA      the reply to DATA (354 expected)
 *   CONTENT   the encoded content is written in chunks, then ".", and the
 *             final reply is awaited
 *   LEAVING   the result has been given; replies still owed are read, then
 *             QUIT is sent and its reply waited for a short moment
 *   IDLE      parked (smtp_client_park): nothing owed, the idle timer runs;
 *             anything the server sends, or EOF, ends it (gone)
 *   REUSE     smtp_client_reuse: the next transaction begins from a 0 ms
 *             timer (never inside the call) with RSET or MAIL
 *   RSET      the reply to RSET (the last transaction ended midway)
 *   DRAIN     MAIL, or every RCPT, was refused while pipelined RCPTs or
 *             DATA still owe replies: they are read before the result is
 *             given, so the session can be parked clean (msg->keep only)
 *   CLOSED    the handles are closing; the last close callback frees
 * Every state change goes through sc_set_state.  One timer serves the
 * connect timeout, each reply wait, the QUIT moment and the deferred
 * failure.
 *
 * done runs as soon as the result is known, before QUIT: the result does
 * not depend on it.  The handles close up to SC_QUIT_WAIT_MS later and the
 * last close callback frees; nothing after done touches msg or arg.  ok is
 * set only for a 2xx final reply: a 4xx/5xx one ends the transaction
 * (stage DONE) but delivers nothing, so a caller that looks only at ok
 * cannot lose mail.
 *
 * Must not: log (the caller logs the result), retry, choose addresses, or
 * call done more than once, inside smtp_client_start, or after
 * smtp_client_cancel.  Everything the server sends goes through bounded
 * buffers: 4 KB a reply line, 64 KB a reply; more ends the session.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "async.h"
#include "buf.h"
#include "mem.h"
#include "metrics.h"
#include "net.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "smtp_encode.h"
#include "smtp_reply.h"
#include "stream.h"

static void sc_on_timer(uv_timer_t *t);
static void sc_close(struct smtp_client *c);
static void sc_leave(struct smtp_client *c);
static void sc_send_content(struct smtp_client *c);
static void sc_cancel(struct async_req *r);
static void sc_after_ehlo(struct smtp_client *c);
static void sc_send_mail(struct smtp_client *c);
static void sc_idle_end(struct smtp_client *c);
static void sc_drain_end(struct smtp_client *c, int healthy);
static void sc_expect(struct smtp_client *c, enum sc_state st);

/* ---- state, texts ---- */

static void sc_set_state(struct smtp_client *c, enum sc_state st)
{
    c->state = st;
}

static enum smtp_client_stage sc_stage(const struct smtp_client *c)
{
    switch (c->state) {
    case SC_S_CONNECT: return SMTP_CLIENT_CONNECT;
    case SC_S_GREETING: return SMTP_CLIENT_GREETING;
    case SC_S_EHLO:
    case SC_S_HELO:
    case SC_S_STARTTLS:
    case SC_S_TLS: return SMTP_CLIENT_HELO;
    case SC_S_MAIL:
    case SC_S_REUSE:
    case SC_S_RSET: return SMTP_CLIENT_MAIL;
    case SC_S_RCPT: return SMTP_CLIENT_RCPT;
    default: return SMTP_CLIENT_DATA;
    }
}

/* The command whose reply is awaited, for error texts. */
static const char *sc_awaited(const struct smtp_client *c)
{
    switch (c->state) {
    case SC_S_EHLO: return "EHLO";
    case SC_S_HELO: return "HELO";
    case SC_S_STARTTLS: return "STARTTLS";
    case SC_S_TLS: return "the TLS handshake";
    case SC_S_MAIL: return "MAIL";
    case SC_S_RSET: return "RSET";
    case SC_S_RCPT: return "RCPT";
    case SC_S_DATA: return "DATA";
    case SC_S_CONTENT: return "end of data";
    default: return "greeting";
    }
}

/*
 * Copies reply text for results and logs: lines joined by a space, control
 * characters replaced, cut to fit.  The server chooses these bytes and
 * they end up in our logs and in bounces.
 */
static void sc_clean_copy(char *out, size_t size, const char *p, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)p[i];
        out[o++] = ch == '\n' || ch == '\t' ? ' ' : ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[o] = '\0';
}

static void sc_reply_text(struct smtp_client *c, char *out, size_t size)
{
    sc_clean_copy(out, size, c->rin.text.data ? c->rin.text.data : "", c->rin.text.len);
}

/* ---- the result ---- */

/*
 * Gives the result once: every recipient not refused at RCPT gets the
 * session's end (the final reply, or what broke the session).
 */
static void sc_finish(struct smtp_client *c, enum smtp_client_stage stage, int code,
                      const char *text)
{
    struct smtp_client_result *r = &c->res;

    if (c->finished)
        return;
    c->finished = 1;
    c->dirty = c->state != SC_S_CONTENT;
    r->stage = stage;
    r->ok = stage == SMTP_CLIENT_DONE && code / 100 == 2;
    r->code = code;
    snprintf(r->answer, sizeof(r->answer), "%s", text);
    for (size_t i = 0; i < r->nrcpt; i++) {
        if (c->rstate[i] == SC_R_REFUSED)
            continue;
        r->rcpt_code[i] = code;
        memcpy(r->rcpt_answer[i], r->answer, sizeof(r->answer));
    }
    if (async_req_end(&c->req))
        c->done(c->arg, r);
}

/*
 * Ends the session at the current stage.  polite: the server is waiting
 * for a command, so QUIT may follow; otherwise the connection is closed.
 */
static void sc_end(struct smtp_client *c, int code, const char *text, int polite)
{
    if (c->state == SC_S_IDLE) {
        sc_idle_end(c);
        return;
    }
    if (c->state == SC_S_DRAIN) {     /* lost, timeout, nonsense */
        sc_drain_end(c, 0);
        return;
    }
    if (polite && code != 421 && smtp_client_drain_first(c)) {
        c->drain_stage = sc_stage(c);
        c->drain_code = code;
        snprintf(c->drain_text, sizeof(c->drain_text), "%s", text);
        sc_expect(c, SC_S_DRAIN);
        return;
    }
    c->res.reusable = polite && code != 421 && smtp_client_can_park(c);
    sc_finish(c, sc_stage(c), code, text);
    if (c->state == SC_S_CLOSED || c->state == SC_S_IDLE)  /* cancelled, parked */
        return;
    if (polite)
        sc_leave(c);
    else
        sc_close(c);
}

/* The refusal whose pipelined replies were awaited; healthy: they all
 * came, and none was a 354 (the server would read content) or a 421. */
static void sc_drain_end(struct smtp_client *c, int healthy)
{
    c->res.reusable = healthy;
    c->res.lost = 0;           /* the refusal decided, not what came after */
    sc_finish(c, c->drain_stage, c->drain_code, c->drain_text);
    if (c->state == SC_S_CLOSED || c->state == SC_S_IDLE)
        return;
    if (healthy)
        sc_leave(c);
    else
        sc_close(c);
}

static void sc_got_drained(struct smtp_client *c)
{
    if (c->rin.code / 100 == 3 || c->rin.code == 421)
        sc_drain_end(c, 0);
    else if (c->unanswered == 0)
        sc_drain_end(c, 1);
}

static void sc_end_reply(struct smtp_client *c, int polite)
{
    char text[SMTP_CLIENT_ANSWER_MAX];

    sc_reply_text(c, text, sizeof(text));
    sc_end(c, c->rin.code, text, polite);
}

/* A local error (code 0): the connection cannot be trusted any more. */
static void sc_fail(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sc_fail(struct smtp_client *c, const char *fmt, ...)
{
    char text[SMTP_CLIENT_ANSWER_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    sc_end(c, 0, text, 0);
}

/* The connection broke (EOF, read or write error) while a reply was due. */
static void sc_lost(struct smtp_client *c, int err)
{
    const char *what = sc_awaited(c);
    const char *how = c->state == SC_S_GREETING ? "before" : "after";

    if (c->state == SC_S_LEAVING) {
        sc_close(c);
        return;
    }
    c->res.lost = 1;
    if (err == UV_EOF)
        sc_fail(c, "connection lost %s %s", how, what);
    else
        sc_fail(c, "connection lost %s %s: %s", how, what, uv_strerror(err));
}

/* ---- handles ---- */

static void sc_handle_closed(uv_handle_t *h)
{
    struct smtp_client *c = h->data;

    if (--c->handles_open > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->rin.text);
    mem_free(c->rstate);
    mem_free(c->res.rcpt_code);
    mem_free(c->res.rcpt_answer);
    mem_free(c);
}

/* Closing cancels a pending connect and writes (their callbacks see
 * UV_ECANCELED before the close callbacks run, so c is still there). */
static void sc_close(struct smtp_client *c)
{
    if (c->state == SC_S_CLOSED)
        return;
    sc_set_state(c, SC_S_CLOSED);
    uv_close((uv_handle_t *)&c->timer, sc_handle_closed);
    stream_close(&c->io, sc_handle_closed);
}

static void sc_timer(struct smtp_client *c, long ms)
{
    uv_timer_start(&c->timer, sc_on_timer, ms > 0 ? (uint64_t)ms : 0, 0);
}

/* A reply is due: each gets the full Timeout. */
static void sc_expect(struct smtp_client *c, enum sc_state st)
{
    sc_set_state(c, st);
    sc_timer(c, c->timeout_ms);
}

/* ---- output ---- */

static void sc_write_done(void *arg, int status, size_t len)
{
    struct smtp_client *c = arg;

    c->writes_pending--;
    if (c->state == SC_S_CLOSED)
        return;
    if (status < 0) {
        sc_lost(c, status);
        return;
    }
    if (c->state == SC_S_CONTENT && !c->content_done && c->writes_pending == 0)
        sc_send_content(c);
}

/*
 * Writes what b holds (and frees it) and counts the commands in it as
 * owed a reply.  Callers set their state first: a failing write ends the
 * session.
 */
static void sc_send(struct smtp_client *c, struct buf *b, int commands)
{
    int r;

    c->writes_pending++;
    c->unanswered += commands;
    r = stream_write(&c->io, b->data, b->len, sc_write_done);
    buf_free(b);
    if (r < 0) {
        c->writes_pending--;
        sc_lost(c, r);
    }
}

static void sc_send_line(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sc_send_line(struct smtp_client *c, const char *fmt, ...)
{
    struct buf b = BUF_INIT(0);
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    sc_send(c, &b, 1);
}

/*
 * The next chunk of content (and, with the last one, "."): one chunk in
 * flight at a time, so a large message costs SC_CHUNK of memory, not its
 * size.  The timer restarts with each chunk: a server that stops reading
 * times out.
 */
static void sc_send_content(struct smtp_client *c)
{
    const struct smtp_client_msg *m = c->msg;
    struct buf b = BUF_INIT(0);
    int last;

    c->content_pos = smtp_encode_some(m->content, m->len, c->content_pos, &b, SC_CHUNK);
    last = c->content_pos >= m->len;
    if (last) {
        buf_append(&b, ".\r\n", 3);
        c->content_done = 1;
    }
    sc_timer(c, m->timeout_ms);
    sc_send(c, &b, last);
}

/* ---- leaving ---- */

/* QUIT once every reply owed has been read (a pipelined batch may still
 * be answering). */
static void sc_quit_if_due(struct smtp_client *c)
{
    if (c->unanswered > 0)
        return;
    if (c->quit_sent) {
        sc_close(c);
        return;
    }
    c->quit_sent = 1;
    sc_send_line(c, "QUIT\r\n");
}

static void sc_leave(struct smtp_client *c)
{
    long ms = c->timeout_ms < SC_QUIT_WAIT_MS ? c->timeout_ms : SC_QUIT_WAIT_MS;

    sc_set_state(c, SC_S_LEAVING);
    sc_timer(c, ms);
    sc_quit_if_due(c);
}

static void sc_got_leaving(struct smtp_client *c)
{
    /* 354 to a pipelined DATA after all recipients were refused: the
     * server now reads content; closing without "." discards it. */
    if (c->rin.code / 100 == 3) {
        sc_close(c);
        return;
    }
    sc_quit_if_due(c);
}

/* ---- the dialogue ---- */

/*
 * A reply that is neither the success expected (want: its first digit)
 * nor a refusal (4xx, 5xx) makes no sense here: a protocol error, and the
 * stream is not trusted any more.  1 if it ended the session.
 */
static int sc_unexpected(struct smtp_client *c, int want)
{
    char text[SMTP_CLIENT_ANSWER_MAX - 64];
    int cls = c->rin.code / 100;

    if (cls == want || cls == 4 || cls == 5)
        return 0;
    sc_reply_text(c, text, sizeof(text));
    sc_fail(c, "unexpected reply to %s: %d %s", sc_awaited(c), c->rin.code, text);
    return 1;
}

static void sc_send_ehlo(struct smtp_client *c, enum sc_state st)
{
    sc_expect(c, st);
    sc_send_line(c, "%s %s\r\n", st == SC_S_EHLO ? "EHLO" : "HELO", c->msg->helo_name);
}

static void sc_got_greeting(struct smtp_client *c)
{
    if (sc_unexpected(c, 2))
        return;
    if (c->rin.code / 100 != 2) {
        sc_end_reply(c, 1);
        return;
    }
    sc_send_ehlo(c, SC_S_EHLO);
}

static int sc_bad_envelope(const struct smtp_client_msg *m)
{
    if (strpbrk(m->from, "\r\n") || strpbrk(m->helo_name, "\r\n"))
        return 1;
    for (size_t i = 0; i < m->nrcpt; i++)
        if (strpbrk(m->rcpts[i], "\r\n"))
            return 1;
    return 0;
}

/*
 * MAIL, and with PIPELINING every RCPT and DATA in the same write.  A
 * message the server already said it cannot take is not offered: the
 * answer is local but permanent, like the server's own would be.
 */
static void sc_send_mail(struct smtp_client *c)
{
    const struct smtp_client_msg *m = c->msg;
    struct buf b = BUF_INIT(0);
    int n = 1;

    sc_set_state(c, SC_S_MAIL);
    c->encoded_size = smtp_encode_size(m->content, m->len);
    if (c->res.size_limit > 0 && c->encoded_size > c->res.size_limit) {
        char text[SMTP_CLIENT_ANSWER_MAX];

        snprintf(text, sizeof(text), "message size %lld exceeds the server's limit %lld",
                 c->encoded_size, c->res.size_limit);
        sc_end(c, 552, text, 1);
        return;
    }
    if (sc_bad_envelope(m)) {
        sc_end(c, 501, "envelope contains a line break", 1);
        return;
    }
    buf_printf(&b, "MAIL FROM:<%s>", m->from);
    if (c->size_offered)
        buf_printf(&b, " SIZE=%lld", c->encoded_size);
    if (m->body_8bit && c->res.eightbit)
        buf_puts(&b, " BODY=8BITMIME");
    buf_puts(&b, "\r\n");
    if (c->res.pipelining) {
        for (size_t i = 0; i < m->nrcpt; i++, n++)
            buf_printf(&b, "RCPT TO:<%s>\r\n", m->rcpts[i]);
        buf_puts(&b, "DATA\r\n");
        n++;
    }
    sc_expect(c, SC_S_MAIL);
    sc_send(c, &b, n);
}

static void sc_got_ehlo(struct smtp_client *c)
{
    if (c->rin.code == 421) {  /* closing: HELO would only meet EOF */
        sc_end_reply(c, 0);
        return;
    }
    if (c->rin.code / 100 != 2) {
        sc_send_ehlo(c, SC_S_HELO);
        return;
    }
    smtp_client_parse_ehlo(c);
    sc_after_ehlo(c);
}

/* ---- STARTTLS (Tls_delivery: 1 when offered, 2 required) ---- */

static void sc_tls_done(void *arg, int status)
{
    struct smtp_client *c = arg;
    struct smtp_client_result *r = &c->res;

    if (c->state != SC_S_TLS)
        return;
    metrics_inc1(METRIC_TLS_HANDSHAKES, METRICS_DIR_OUT);
    if (status < 0) {
        metrics_inc1(METRIC_TLS_FAILURES, METRICS_DIR_OUT);
        r->tls_failed = 1;
        sc_fail(c, "TLS handshake with %s failed: %s", c->peer, stream_tls_error(&c->io));
        return;
    }
    r->tls_verified = stream_tls_verified(&c->io);
    if (c->msg->tls == 2 && !r->tls_verified) {
        sc_fail(c, "TLS required (Tls_delivery 2), but the certificate of %s (%s) "
                "does not verify", c->peer, c->msg->tls_host ? c->msg->tls_host : "?");
        return;
    }
    snprintf(r->tls_version, sizeof(r->tls_version), "%s", stream_tls_version(&c->io));
    snprintf(r->tls_cipher, sizeof(r->tls_cipher), "%s", stream_tls_cipher(&c->io));
    /* RFC 3207: what the server said before TLS is forgotten */
    r->esmtp = r->pipelining = r->eightbit = 0;
    r->size_limit = 0;
    c->size_offered = c->starttls_offered = 0;
    sc_send_ehlo(c, SC_S_EHLO);
}

static void sc_got_starttls(struct smtp_client *c)
{
    if (c->rin.code == 220) {
        sc_expect(c, SC_S_TLS);
        if (stream_start_tls(&c->io, c->msg->tls_engine, 0, c->msg->tls_host,
                             sc_tls_done) < 0) {
            metrics_inc1(METRIC_TLS_FAILURES, METRICS_DIR_OUT);
            c->res.tls_failed = 1;
            sc_fail(c, "TLS cannot start: %s", stream_tls_error(&c->io));
        }
        return;
    }
    if (c->msg->tls == 2) {
        char text[SMTP_CLIENT_ANSWER_MAX - 64];
        sc_reply_text(c, text, sizeof(text));
        sc_fail(c, "TLS required (Tls_delivery 2), STARTTLS refused: %d %s",
                c->rin.code, text);
        return;
    }
    sc_send_mail(c);         /* opportunistic: on in clear */
}

static void sc_after_ehlo(struct smtp_client *c)
{
    const struct smtp_client_msg *m = c->msg;
    int can = m->tls && m->tls_engine && m->tls_engine->ops;

    if (!stream_is_tls(&c->io) && can && c->starttls_offered) {
        sc_expect(c, SC_S_STARTTLS);
        sc_send_line(c, "STARTTLS\r\n");
        return;
    }
    if (!stream_is_tls(&c->io) && m->tls == 2) {
        sc_fail(c, "TLS required (Tls_delivery 2), but %s", !can
                ? "no TLS module is loaded (Tls_module)" : "the server offers no STARTTLS");
        return;
    }
    sc_send_mail(c);
}

static void sc_got_helo(struct smtp_client *c)
{
    if (sc_unexpected(c, 2))
        return;
    if (c->rin.code / 100 != 2) {
        sc_end_reply(c, 1);
        return;
    }
    sc_after_ehlo(c);     /* no extensions: Tls_delivery 2 fails there */
}

static void sc_send_rcpt(struct smtp_client *c)
{
    sc_expect(c, SC_S_RCPT);
    sc_send_line(c, "RCPT TO:<%s>\r\n", c->msg->rcpts[c->rcpt_next]);
}

static void sc_got_mail(struct smtp_client *c)
{
    if (sc_unexpected(c, 2))
        return;
    if (c->rin.code / 100 != 2) {
        sc_end_reply(c, 1);  /* pipelined RCPTs and DATA: drained in LEAVING */
        return;
    }
    if (c->res.pipelining)
        sc_expect(c, SC_S_RCPT);
    else
        sc_send_rcpt(c);
}

static void sc_got_rset(struct smtp_client *c)
{
    if (sc_unexpected(c, 2))
        return;
    if (c->rin.code / 100 != 2)
        sc_end_reply(c, c->rin.code != 421);
    else
        sc_send_mail(c);
}

/* Every RCPT answered: DATA, unless nobody was accepted. */
static void sc_rcpts_done(struct smtp_client *c)
{
    if (c->accepted == 0) {
        size_t i = c->last_refused;

        /* A pipelined DATA is still owed its reply (503): LEAVING reads
         * it before QUIT. */
        sc_end(c, c->res.rcpt_code[i], c->res.rcpt_answer[i], 1);
        return;
    }
    if (c->res.pipelining) {
        sc_expect(c, SC_S_DATA);
        return;
    }
    sc_expect(c, SC_S_DATA);
    sc_send_line(c, "DATA\r\n");
}

static void sc_got_rcpt(struct smtp_client *c)
{
    size_t i = c->rcpt_next++;

    if (sc_unexpected(c, 2))
        return;
    if (c->rin.code / 100 == 2) {
        c->rstate[i] = SC_R_ACCEPTED;
        c->accepted++;
    } else {
        c->rstate[i] = SC_R_REFUSED;
        c->last_refused = i;
        c->res.rcpt_code[i] = c->rin.code;
        sc_reply_text(c, c->res.rcpt_answer[i], SMTP_CLIENT_ANSWER_MAX);
    }
    if (c->rcpt_next == c->res.nrcpt)
        sc_rcpts_done(c);
    else if (c->res.pipelining)
        sc_expect(c, SC_S_RCPT);
    else
        sc_send_rcpt(c);
}

static void sc_got_data(struct smtp_client *c)
{
    if (sc_unexpected(c, 3))
        return;
    if (c->rin.code / 100 != 3) {
        sc_end_reply(c, 1);  /* the accepted recipients get this reply */
        return;
    }
    sc_set_state(c, SC_S_CONTENT);
    sc_send_content(c);
}

/*
 * The final reply decides every accepted recipient.  One that arrives
 * before our "." was queued means the server stopped reading content: the
 * rest of it must not reach its command parser, so we close.
 */
static void sc_got_final(struct smtp_client *c)
{
    char text[SMTP_CLIENT_ANSWER_MAX];
    int early = !c->content_done;

    if (early && c->rin.code / 100 == 2) {
        sc_reply_text(c, text, sizeof(text) - 64);
        sc_fail(c, "reply before end of data: %d %s", c->rin.code, text);
        return;
    }
    if (sc_unexpected(c, 2))
        return;
    sc_reply_text(c, text, sizeof(text));
    c->res.reusable = !early && c->rin.code != 421 && smtp_client_can_park(c);
    sc_finish(c, SMTP_CLIENT_DONE, c->rin.code, text);
    if (c->state == SC_S_CLOSED || c->state == SC_S_IDLE)
        return;
    if (early)
        sc_close(c);
    else
        sc_leave(c);
}

static void sc_got_reply(struct smtp_client *c)
{
    if (c->unanswered > 0)
        c->unanswered--;
    switch (c->state) {
    case SC_S_GREETING: sc_got_greeting(c); break;
    case SC_S_EHLO: sc_got_ehlo(c); break;
    case SC_S_HELO: sc_got_helo(c); break;
    case SC_S_STARTTLS: sc_got_starttls(c); break;
    case SC_S_MAIL: sc_got_mail(c); break;
    case SC_S_RCPT: sc_got_rcpt(c); break;
    case SC_S_DATA: sc_got_data(c); break;
    case SC_S_CONTENT: sc_got_final(c); break;
    case SC_S_LEAVING: sc_got_leaving(c); break;
    case SC_S_RSET: sc_got_rset(c); break;
    case SC_S_DRAIN: sc_got_drained(c); break;
    case SC_S_IDLE: sc_end_reply(c, 0); break;   /* a 421, or nonsense */
    default: break;
    }
}

/* ---- input ---- */

static void sc_bad_reply(struct smtp_client *c, int why, const char *p, size_t n)
{
    char line[128];

    if (why == -2) {
        sc_fail(c, "reply to %s too long", sc_awaited(c));
        return;
    }
    sc_clean_copy(line, sizeof(line), p, n);
    sc_fail(c, "malformed reply to %s: %s", sc_awaited(c), line);
}

/* Handles every complete line read; a partial one waits for more. */
static void sc_process(struct smtp_client *c)
{
    size_t pos = 0;

    while (c->state != SC_S_CLOSED && c->state != SC_S_TLS && pos < c->in.len) {
        const char *p = c->in.data + pos;
        const char *nl = memchr(p, '\n', c->in.len - pos);
        size_t n;
        int r;

        if (nl == NULL)
            break;
        n = (size_t)(nl - p);
        pos += n + 1;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        r = smtp_reply_parse_line(&c->rin, p, n, SC_LINE_MAX);
        if (r < 0) {
            sc_bad_reply(c, r, p, n);
            break;
        }
        if (r == 1) {
            sc_got_reply(c);
            smtp_reply_in_reset(&c->rin);
        }
    }
    buf_consume(&c->in, pos);
    /* Anything after the 220 to STARTTLS came in clear: never a reply
     * that TLS protects (the STARTTLS response injection) */
    if (c->state == SC_S_TLS)
        buf_reset(&c->in);
    if (c->state != SC_S_CLOSED && c->in.len > SC_LINE_MAX + 2)
        sc_fail(c, "reply to %s too long", sc_awaited(c));
}

static void sc_read(void *arg, ssize_t n, const char *data)
{
    struct smtp_client *c = arg;

    if (c->state == SC_S_CLOSED)
        return;
    if (n < 0) {
        if (c->state == SC_S_TLS)
            c->res.tls_failed = 1;
        if (n == UV_EPROTO && c->state == SC_S_TLS)
            return;            /* sc_tls_done tells */
        if (n == UV_EPROTO) {
            sc_fail(c, "TLS error with %s: %s", c->peer, stream_tls_error(&c->io));
            return;
        }
        sc_lost(c, (int)n);
        return;
    }
    /* in holds at most a partial line of SC_LINE_MAX + 2 bytes here */
    if (buf_append(&c->in, data, (size_t)n) < 0) {
        sc_fail(c, "reply to %s too long", sc_awaited(c));
        return;
    }
    sc_process(c);
}

/* ---- reuse: parked between transactions ---- */

/* Parked, it ended on its own: the cache hears of it, then it closes. */
static void sc_idle_end(struct smtp_client *c)
{
    if (async_req_end(&c->req) && c->gone)
        c->gone(c->gone_arg);
    sc_close(c);
}

static void sc_idle_over(struct smtp_client *c)
{
    if (async_req_end(&c->req) && c->gone)
        c->gone(c->gone_arg);
    sc_leave(c);
}

void smtp_client_park(struct smtp_client *c, struct async_owner *o, long idle_ms,
                      smtp_client_gone_fn *gone, void *arg)
{
    async_req_start(&c->req, o, sc_cancel, 0);
    c->msg = NULL;
    c->done = NULL;
    c->arg = NULL;
    c->gone = gone;
    c->gone_arg = arg;
    sc_set_state(c, SC_S_IDLE);
    sc_timer(c, idle_ms);
}

void smtp_client_reuse(struct smtp_client *c, struct async_owner *o,
                       const struct smtp_client_msg *msg, smtp_client_done_fn *done,
                       void *arg)
{
    async_req_end(&c->req);      /* no longer the cache's */
    async_req_start(&c->req, o, sc_cancel, 0);
    c->gone = NULL;
    c->msg = msg;
    c->done = done;
    c->arg = arg;
    c->timeout_ms = msg->timeout_ms;
    smtp_client_txn_reset(c, msg->nrcpt);
    sc_set_state(c, SC_S_REUSE);
    sc_timer(c, 0);
}

static void sc_reuse_begin(struct smtp_client *c)
{
    if (c->res.nrcpt == 0) {
        sc_end(c, 0, "no recipients", 1);
    } else if (c->dirty) {
        sc_expect(c, SC_S_RSET);
        sc_send_line(c, "RSET\r\n");
    } else {
        sc_send_mail(c);
    }
}

/* ---- connecting, timers ---- */

static void sc_on_timer(uv_timer_t *t)
{
    struct smtp_client *c = t->data;

    switch (c->state) {
    case SC_S_CONNECT:
        if (c->deferred)
            sc_end(c, c->deferred_code, c->deferred_text, 0);
        else
            sc_fail(c, "connect to %s: timeout", c->peer);
        break;
    case SC_S_LEAVING:
        sc_close(c);
        break;
    case SC_S_IDLE:
        sc_idle_over(c);
        break;
    case SC_S_REUSE:
        sc_reuse_begin(c);
        break;
    case SC_S_CLOSED:
        break;
    case SC_S_GREETING:
        sc_fail(c, "timeout waiting for greeting");
        break;
    case SC_S_CONTENT:
        if (!c->content_done || c->writes_pending > 0) {
            sc_fail(c, "timeout sending the message content");
            break;
        }
        /* fall through */
    default:
        sc_fail(c, "timeout waiting for reply to %s", sc_awaited(c));
        break;
    }
}

static void sc_connected(uv_connect_t *req, int status)
{
    struct smtp_client *c = req->data;

    if (status == UV_ECANCELED || c->state != SC_S_CONNECT)
        return;
    if (status < 0) {
        sc_fail(c, "connect to %s: %s", c->peer, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->io.tcp, 1);
    c->unanswered = 1;  /* the greeting */
    sc_expect(c, SC_S_GREETING);
    stream_read_start(&c->io, sc_read);
}

/* A failure known at once, reported from the loop: never inside start. */
static void sc_defer(struct smtp_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sc_defer(struct smtp_client *c, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->deferred_text, sizeof(c->deferred_text), fmt, ap);
    va_end(ap);
    c->deferred = 1;
    c->deferred_code = code;
    sc_timer(c, 0);
}

static void sc_format_peer(struct smtp_client *c, const struct sockaddr *addr)
{
    char ip[64];
    int port = 0;

    net_ntop(addr, ip, sizeof(ip), &port);
    if (strchr(ip, ':'))
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
    else
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

struct smtp_client *smtp_client_start(uv_loop_t *loop, struct async_owner *o,
                                      const struct sockaddr *addr,
                                      const struct smtp_client_msg *msg,
                                      smtp_client_done_fn *done, void *arg)
{
    struct smtp_client *c = mem_zalloc(sizeof(*c));
    size_t n = msg->nrcpt;
    int r;

    c->msg = msg;
    c->done = done;
    c->arg = arg;
    c->timeout_ms = msg->timeout_ms;
    async_req_start(&c->req, o, sc_cancel, 0);
    buf_init(&c->in, SC_LINE_MAX + 2 + SC_READ_SIZE);
    buf_init(&c->rin.text, SC_REPLY_MAX);
    smtp_client_txn_reset(c, n);
    sc_format_peer(c, addr);
    sc_set_state(c, SC_S_CONNECT);
    stream_init(&c->io, loop, c, c->rbuf, sizeof(c->rbuf), c->pbuf, sizeof(c->pbuf));
    uv_timer_init(loop, &c->timer);
    c->timer.data = c->connect.data = c;
    c->handles_open = 2;
    if (n == 0) {
        sc_defer(c, 0, "no recipients");
        return c;
    }
    r = uv_tcp_connect(&c->connect, &c->io.tcp, addr, sc_connected);
    if (r < 0)
        sc_defer(c, 0, "connect to %s: %s", c->peer, uv_strerror(r));
    else
        sc_timer(c, msg->connect_timeout_ms);
    return c;
}

/*
 * The owner no longer waits.  QUIT goes out when the server reads commands
 * (not while it reads content); it is not waited for.  uv_write tries the
 * socket at once, so it usually leaves before the close.  Nothing of the
 * owner's (msg, content) is touched after this.
 */
static void sc_cancel(struct async_req *r)
{
    struct smtp_client *c = (struct smtp_client *)r;
    enum sc_state st = c->state;

    if (st == SC_S_CLOSED)
        return;
    c->finished = 1;
    if (st != SC_S_CONNECT && st != SC_S_CONTENT && !c->quit_sent) {
        struct buf b = BUF_INIT(0);

        c->quit_sent = 1;
        buf_puts(&b, "QUIT\r\n");
        sc_send(c, &b, 1);
    }
    sc_close(c);
}

void smtp_client_cancel(struct smtp_client *c)
{
    async_req_cancel(&c->req);
}

int smtp_client_content_sent(const struct smtp_client *c)
{
    return c->content_done;
}
