/*
 * smtp_server.c - one SMTP session (see smtp_server.h, docs/smtp.md).
 *
 * Life of a session:
 *   CONNECT  limits checked; then the greeting
 *   COMMAND  complete command lines are handled in arrival order; each
 *            reply is appended to `out`, which is written when the input
 *            holds no further complete line (pipelining: one write a batch)
 *   WAIT     a command waits for an account lookup or a delay; input keeps
 *            being buffered (up to a limit) and is handled afterwards
 *   DATA     content goes through the DATA parser to the spool
 *   COMMIT   the spool makes the message durable; the reply follows
 *   CLOSING  the last reply is being written; then the socket is closed
 * Every state change goes through smtp_set_state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "accounts.h"
#include "addr.h"
#include "arena.h"
#include "buf.h"
#include "config.h"
#include "coord.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "net.h"
#include "node.h"
#include "queue_file.h"
#include "smtp_cmd.h"
#include "smtp_data.h"
#include "smtp_reply.h"
#include "smtp_server.h"
#include "smtp_worker.h"

#define SMTP_IN_LIMIT (64 * 1024)     /* unhandled input before reading stops */
#define SMTP_OUT_LIMIT (64 * 1024)    /* unsent replies before reading stops */
#define SMTP_MAX_ERRORS 20            /* bad commands before we hang up */
#define SMTP_MAX_TARGETS 10000        /* recipients of one message after aliases */

enum smtp_state {
    SMTP_S_CONNECT,
    SMTP_S_COMMAND,
    SMTP_S_WAIT,
    SMTP_S_DATA,
    SMTP_S_COMMIT,
    SMTP_S_CLOSING,
};

static const char *const smtp_state_names[] = {
    "connect", "command", "wait", "data", "commit", "closing",
};

struct smtp_rcpt {
    const char *addr;   /* final recipient */
    const char *orcpt;  /* as the client gave it */
};

/* One mail transaction: MAIL to the end of DATA (or RSET). */
struct smtp_txn {
    int active;
    const char *from;
    const char *body;
    struct smtp_rcpt *rcpt;
    size_t nrcpt, rcpt_alloc;
    unsigned rcpt_cmds;        /* accepted RCPT commands (Max_rcpts) */
    int qlimit;                /* goes to the qlimit queue (Qlimit!) */
    struct smtp_data data;
    struct spool_msg *msg;
    char qid[QUEUE_ID_MAX];
    struct arena mem;
};

struct smtp_session {
    uv_tcp_t tcp;
    uv_timer_t timer;           /* idle timeout, and delays while WAIT */
    struct smtp_worker *w;
    const struct config *conf;
    struct smtp_session *prev, *next;
    enum smtp_state state;
    char cid[32];
    char ip[64];
    char rdns[256];
    char helo[256];
    char auth[256];             /* authenticated user ("" none) */
    int greeted, esmtp;
    int reading, closing_handles, handles_open;
    int skip_line;              /* discarding an over-long command line */
    int shutdown;               /* the worker is stopping */
    unsigned msgs, errors;
    struct buf in, out, chunk;
    size_t out_pending;         /* bytes handed to uv_write, not yet done */
    struct accounts_req *lookup;
    struct dns_query *dnsq;     /* reverse lookup or sender domain check */
    int dns_pending;
    struct smtp_path pending_path;   /* RCPT waiting for its lookup */
    char pending_reply[512];         /* reply held during a delay */
    struct smtp_txn txn;
    struct buf announce;        /* "queue id\n" accepted, announced at close */
};

struct smtp_write {
    uv_write_t req;
    struct smtp_session *s;
    size_t len;
    char data[];
};

static void smtp_process(struct smtp_session *s);
static void smtp_close(struct smtp_session *s);
static void smtp_flush(struct smtp_session *s);

/* ---- state, replies, logging ---- */

static void smtp_set_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state == st)
        return;
    s->state = st;
}

static void smtp_log(struct smtp_session *s, char dir, const char *text, size_t n)
{
    const struct config *c = s->conf;

    if (c->Log_lvl > 0)
        return;
    log_central(s->txn.qid, "%s %s %c %.*s", s->cid, s->ip, dir, (int)n, text);
}

/* Appends a Msg_* reply (see smtp_reply_msg) and logs it. */
static void smtp_reply(struct smtp_session *s, const char *msg, const char *detail,
                       const char *prefix, const char *suffix)
{
    size_t start = s->out.len;

    smtp_reply_msg(&s->out, msg, detail, s->esmtp, prefix, suffix);
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
}

/* A reply whose text is fixed by the protocol (docs/smtp.md lists them). */
static void smtp_reply_raw(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void smtp_reply_raw(struct smtp_session *s, const char *fmt, ...)
{
    size_t start = s->out.len;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
}

static void smtp_refused(struct smtp_session *s, const char *what, const char *msg)
{
    if (s->conf->Refused_log[0])
        log_refused(s->txn.qid, "%s %s %s: %s", s->cid, s->ip, what, msg);
}

/* The final reply: after it is written the connection closes. */
static void smtp_hangup(struct smtp_session *s, const char *msg, const char *detail)
{
    smtp_reply(s, msg, detail, NULL, NULL);
    smtp_set_state(s, SMTP_S_CLOSING);
    smtp_flush(s);
}

/* ---- transaction ---- */

static void smtp_txn_reset(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;

    if (t->msg)
        spool_msg_abort(t->msg);
    t->msg = NULL;
    mem_free(t->rcpt);
    arena_clear(&t->mem);
    memset(t, 0, sizeof(*t));
    arena_init(&t->mem, 1024);
}

static int smtp_txn_add_rcpt(struct smtp_txn *t, const char *addr, const char *orcpt)
{
    for (size_t i = 0; i < t->nrcpt; i++)
        if (strcasecmp(t->rcpt[i].addr, addr) == 0)
            return 0;
    if (t->nrcpt >= SMTP_MAX_TARGETS)
        return -1;
    if (t->nrcpt == t->rcpt_alloc) {
        t->rcpt_alloc = t->rcpt_alloc ? t->rcpt_alloc * 2 : 8;
        t->rcpt = mem_realloc(t->rcpt, t->rcpt_alloc * sizeof(*t->rcpt));
    }
    t->rcpt[t->nrcpt].addr = arena_strdup(&t->mem, addr);
    t->rcpt[t->nrcpt].orcpt = arena_strdup(&t->mem, orcpt);
    t->nrcpt++;
    return 0;
}

/* ---- output ---- */

static void smtp_write_done(uv_write_t *req, int status)
{
    struct smtp_write *wr = req->data;
    struct smtp_session *s = wr->s;

    s->out_pending -= wr->len;
    mem_free(wr);
    if (status < 0) {
        smtp_close(s);
        return;
    }
    if (s->state == SMTP_S_CLOSING && s->out_pending == 0 && s->out.len == 0) {
        smtp_close(s);
        return;
    }
    if (s->out_pending < SMTP_OUT_LIMIT && s->state != SMTP_S_CLOSING)
        smtp_process(s);
}

static void smtp_flush(struct smtp_session *s)
{
    struct smtp_write *wr;
    uv_buf_t b;

    if (s->out.len == 0 || s->closing_handles) {
        if (s->state == SMTP_S_CLOSING && s->out_pending == 0)
            smtp_close(s);
        return;
    }
    wr = mem_alloc(sizeof(*wr) + s->out.len);
    wr->s = s;
    wr->len = s->out.len;
    memcpy(wr->data, s->out.data, s->out.len);
    wr->req.data = wr;
    buf_reset(&s->out);
    buf_shrink(&s->out, 4096);
    s->out_pending += wr->len;
    b = uv_buf_init(wr->data, (unsigned)wr->len);
    if (uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, smtp_write_done) < 0) {
        s->out_pending -= wr->len;
        mem_free(wr);
        smtp_close(s);
    }
}

/* ---- input ---- */

static void smtp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct smtp_session *s = h->data;

    *b = uv_buf_init(s->w->rbuf, sizeof(s->w->rbuf));
}

static void smtp_timer_reset(struct smtp_session *s);

static void smtp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct smtp_session *s = st->data;

    if (n < 0) {
        if (n != UV_EOF)
            log_central(s->txn.qid, "%s %s * read error: %s", s->cid, s->ip,
                        uv_strerror((int)n));
        else
            log_central(s->txn.qid, "%s %s * client closed the connection",
                        s->cid, s->ip);
        smtp_close(s);
        return;
    }
    if (n == 0)
        return;
    smtp_timer_reset(s);
    buf_append(&s->in, b->base, (size_t)n);
    smtp_process(s);
}

static void smtp_read_control(struct smtp_session *s)
{
    int want = !s->closing_handles && s->state != SMTP_S_CLOSING &&
               s->in.len < SMTP_IN_LIMIT && s->out_pending < SMTP_OUT_LIMIT &&
               !(s->txn.msg && spool_msg_backlogged(s->txn.msg));

    if (want && !s->reading)
        uv_read_start((uv_stream_t *)&s->tcp, smtp_alloc, smtp_read);
    else if (!want && s->reading)
        uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = want;
}

/* ---- commands ---- */

static void smtp_cmd_helo(struct smtp_session *s, const struct smtp_cmd *c)
{
    if (c->arglen == 0 || c->arglen >= sizeof(s->helo) ||
        memchr(c->arg, ' ', c->arglen)) {
        smtp_reply(s, s->conf->Msg_invalid_param, "5.5.4", NULL, NULL);
        return;
    }
    smtp_txn_reset(s);
    memcpy(s->helo, c->arg, c->arglen);
    s->helo[c->arglen] = '\0';
    s->esmtp = c->verb == SMTP_EHLO;
    s->greeted = 1;
    if (!s->esmtp) {
        smtp_reply_raw(s, "250 %s\r\n", s->conf->Server_name);
        return;
    }
    smtp_reply_raw(s, "250-%s\r\n", s->conf->Server_name);
    smtp_reply_raw(s, "250-PIPELINING\r\n");
    smtp_reply_raw(s, "250-SIZE %ld\r\n", s->conf->Max_mail_size);
    smtp_reply_raw(s, "250-8BITMIME\r\n");
    smtp_reply_raw(s, "250 ENHANCEDSTATUSCODES\r\n");
}

/* Errors of a MAIL or RCPT path, answered with the matching Msg_*. */
static void smtp_path_error(struct smtp_session *s, enum smtp_path_err e,
                            const struct smtp_path *p)
{
    switch (e) {
    case SMTP_PATH_DOMAIN:
        smtp_reply(s, s->conf->Msg_invalid_domain, "1.2", NULL, p->addr.domain);
        break;
    case SMTP_PATH_8BIT:
        smtp_reply(s, s->conf->Msg_invalid_param, "6.7", NULL, NULL);
        break;
    default:
        smtp_reply(s, s->conf->Msg_invalid_param, "5.4", NULL, NULL);
        break;
    }
}

/* A bare name gets Df_domain; without one it is refused (NULL). */
static const char *smtp_complete_addr(struct smtp_session *s, struct addr *a)
{
    char full[ADDR_PATH_MAX + 2];

    if (a->domain[0] == '\0') {
        if (s->conf->Df_domain[0] == '\0')
            return NULL;
        snprintf(a->domain, sizeof(a->domain), "%s", s->conf->Df_domain);
        addr_lower(a->domain);
    }
    addr_format(a, full, sizeof(full));
    return arena_strdup(&s->txn.mem, full);
}

static int smtp_mail_params(struct smtp_session *s, const struct smtp_path *p)
{
    const char *q = p->params, *end = p->params + p->paramslen;
    struct smtp_param prm;
    int r;

    while ((r = smtp_cmd_next_param(&q, end, &prm)) > 0) {
        if (strcmp(prm.key, "SIZE") == 0) {
            char *e;
            unsigned long long v = strtoull(prm.value, &e, 10);
            if (prm.value[0] == '\0' || *e) {
                smtp_reply(s, s->conf->Msg_invalid_param, "5.4", NULL, NULL);
                return -1;
            }
            if (v > (unsigned long long)s->conf->Max_mail_size) {
                smtp_reply(s, s->conf->Msg_mail_toobig, "3.4", NULL, NULL);
                smtp_refused(s, "size", s->conf->Msg_mail_toobig);
                return -1;
            }
        } else if (strcmp(prm.key, "BODY") == 0 &&
                   (strcasecmp(prm.value, "7BIT") == 0 ||
                    strcasecmp(prm.value, "8BITMIME") == 0)) {
            s->txn.body = prm.value[0] == '8' ? "8BITMIME" : "7BIT";
        } else {
            smtp_reply(s, s->conf->Msg_invalid_param, "5.4", NULL, NULL);
            return -1;
        }
    }
    if (r < 0) {
        smtp_reply(s, s->conf->Msg_invalid_param, "5.4", NULL, NULL);
        return -1;
    }
    return 0;
}

/* Lavg_negative: refuse new mail while the load is above it. */
static int smtp_load_too_high(const struct config *conf)
{
    double avg[1];

    return conf->Lavg_negative > 0 && getloadavg(avg, 1) == 1 &&
           avg[0] > (double)conf->Lavg_negative;
}

/* Qlimit!: the rules engine calls this; until it exists, Qlimit_senders does. */
void smtp_txn_set_qlimit(struct smtp_session *s)
{
    s->txn.qlimit = 1;
}

/* Is the sender in a list of addresses and "@domain"s? */
static int smtp_sender_listed(const char *list, const char *from)
{
    const char *at = strrchr(from, '@');
    char item[ADDR_PATH_MAX + 2];

    for (const char *p = list; *p; ) {
        size_t n = strcspn(p, " \t,");
        if (n > 0 && n < sizeof(item)) {
            memcpy(item, p, n);
            item[n] = '\0';
            if (strcasecmp(item, from) == 0 ||
                (item[0] == '@' && at && strcasecmp(item, at) == 0))
                return 1;
        }
        p += n;
        p += strspn(p, " \t,");
    }
    return 0;
}

static void smtp_mail_accept(struct smtp_session *s)
{
    const struct config *conf = s->conf;

    s->txn.active = 1;
    if (conf->Qlimit_senders[0] && smtp_sender_listed(conf->Qlimit_senders, s->txn.from))
        smtp_txn_set_qlimit(s);
    smtp_reply(s, conf->Msg_allowed_sender, "1.0", NULL, NULL);
}

/* The answer about the sender's domain (From_level_check). */
static void smtp_sender_domain_known(struct smtp_session *s, int status)
{
    const struct config *conf = s->conf;
    const char *domain = strrchr(s->txn.from, '@') + 1;

    s->dns_pending = 0;
    s->dnsq = NULL;
    smtp_set_state(s, SMTP_S_COMMAND);
    if (status == DNS_OK) {
        smtp_mail_accept(s);
    } else if (status == DNS_TEMPFAIL) {
        smtp_reply(s, conf->Msg_internal_error, "4.3", NULL, NULL);
        smtp_txn_reset(s);
    } else {
        smtp_reply(s, conf->Msg_invalid_domain, "1.8", NULL, domain);
        smtp_refused(s, "sender domain", domain);
        smtp_txn_reset(s);
    }
    smtp_process(s);
}

static void smtp_sender_addrs(void *arg, int status, const struct sockaddr_storage *a,
                              size_t n)
{
    smtp_sender_domain_known(arg, status);
}

/* Level 1: the domain has MX or address records; level 2: MX records. */
static void smtp_sender_mx(void *arg, int status, const struct dns_mx *mx, size_t n)
{
    struct smtp_session *s = arg;
    struct dns_query *q;

    if (status == DNS_NODATA && s->conf->From_level_check == 1) {
        s->dns_pending = 1;
        q = dns_addrs(s->w->dns, strrchr(s->txn.from, '@') + 1, smtp_sender_addrs, s);
        if (s->dns_pending)
            s->dnsq = q;
        return;
    }
    smtp_sender_domain_known(s, status);
}

static void smtp_check_sender_domain(struct smtp_session *s, const char *domain)
{
    struct dns_query *q;

    smtp_set_state(s, SMTP_S_WAIT);
    s->dns_pending = 1;
    q = dns_mx(s->w->dns, domain, smtp_sender_mx, s);
    if (s->dns_pending)
        s->dnsq = q;
}

static void smtp_cmd_mail(struct smtp_session *s, const struct smtp_cmd *c)
{
    const struct config *conf = s->conf;
    struct smtp_path p;
    enum smtp_path_err e;

    if (!s->greeted || s->txn.active) {
        smtp_reply(s, conf->Msg_sequence_error, "5.1", NULL, NULL);
        return;
    }
    if (smtp_load_too_high(conf)) {
        smtp_reply(s, conf->Msg_lavg, "3.2", NULL, NULL);
        smtp_refused(s, "load average", conf->Msg_lavg);
        return;
    }
    if (s->msgs >= (unsigned long)conf->Max_msgs_per_cnx) {
        smtp_refused(s, "messages per connection", conf->Msg_perm_deny);
        smtp_hangup(s, conf->Msg_perm_deny, "7.0");
        return;
    }
    e = smtp_cmd_path(c->arg, c->arglen, "FROM:", conf->Proto_level_check == 1, &p);
    if (e != SMTP_PATH_OK) {
        smtp_path_error(s, e, &p);
        return;
    }
    smtp_txn_reset(s);
    s->txn.body = "7BIT";
    if (smtp_mail_params(s, &p) < 0)
        return;
    s->txn.from = p.null ? "" : smtp_complete_addr(s, &p.addr);
    if (s->txn.from == NULL) {
        smtp_reply(s, conf->Msg_invalid_domain, "1.7", NULL, p.addr.local);
        return;
    }
    if (s->txn.from[0] && conf->From_level_check > 0) {
        smtp_check_sender_domain(s, strrchr(s->txn.from, '@') + 1);
        return;
    }
    smtp_mail_accept(s);
}

static void smtp_delay_done(uv_timer_t *t)
{
    struct smtp_session *s = t->data;

    buf_puts(&s->out, s->pending_reply);
    smtp_set_state(s, SMTP_S_COMMAND);
    smtp_timer_reset(s);
    smtp_process(s);
}

/* Holds the last reply for `seconds` (a timer, never a sleep). */
static void smtp_delay_reply(struct smtp_session *s, size_t reply_start, long seconds)
{
    size_t n = s->out.len - reply_start;

    if (seconds <= 0 || n >= sizeof(s->pending_reply))
        return;
    memcpy(s->pending_reply, s->out.data + reply_start, n);
    s->pending_reply[n] = '\0';
    s->out.len = reply_start;
    smtp_set_state(s, SMTP_S_WAIT);
    uv_timer_start(&s->timer, smtp_delay_done, (uint64_t)seconds * 1000, 0);
}

/* The relay decision for one recipient, once the accounts have answered. */
static void smtp_rcpt_decide(struct smtp_session *s, const struct accounts_result *r,
                             const char *addr)
{
    const struct config *conf = s->conf;
    size_t start = s->out.len;
    int ok = 0;

    switch (r->status) {
    case ACCOUNTS_LOCAL:
        ok = 1;
        for (size_t i = 0; i < r->ntargets && ok; i++)
            ok = smtp_txn_add_rcpt(&s->txn, r->targets[i], addr) == 0;
        if (!ok) {
            smtp_reply(s, conf->Msg_toomany_rcpts, "5.3", NULL, NULL);
            return;
        }
        break;
    case ACCOUNTS_REMOTE:
        if (s->auth[0] && conf->Auth_relay) {
            ok = smtp_txn_add_rcpt(&s->txn, addr, addr) == 0;
            break;
        }
        smtp_reply(s, conf->Msg_relay_denied, "7.1", NULL, NULL);
        smtp_refused(s, "relay", addr);
        return;
    case ACCOUNTS_NOMAILBOX:
        smtp_reply(s, conf->Msg_no_mailbox, "1.1", NULL, NULL);
        smtp_refused(s, "no mailbox", addr);
        smtp_delay_reply(s, start, conf->No_mailbox_delay);
        return;
    default:
        log_warn("%s: lookup of %s failed: %s", s->cid, addr,
                 r->error ? r->error : "temporary failure");
        smtp_reply(s, conf->Msg_internal_error, "3.0", NULL, NULL);
        return;
    }
    if (!ok) {
        smtp_reply(s, conf->Msg_toomany_rcpts, "5.3", NULL, NULL);
        return;
    }
    s->txn.rcpt_cmds++;
    smtp_reply(s, conf->Msg_allowed_rcpt, "1.5", NULL, NULL);
}

static void smtp_lookup_done(void *arg, struct accounts_req *req)
{
    struct smtp_session *s = arg;
    char addr[ADDR_PATH_MAX + 2];

    s->lookup = NULL;
    addr_format(&s->pending_path.addr, addr, sizeof(addr));
    smtp_set_state(s, SMTP_S_COMMAND);
    smtp_rcpt_decide(s, accounts_result(req), addr);
    accounts_free(req);
    smtp_process(s);
}

static void smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *c)
{
    const struct config *conf = s->conf;
    struct smtp_path *p = &s->pending_path;
    struct accounts_req *req;
    char addr[ADDR_PATH_MAX + 2];
    enum smtp_path_err e;

    if (!s->txn.active) {
        smtp_reply(s, conf->Msg_sequence_error, "5.1", NULL, NULL);
        return;
    }
    if (s->txn.rcpt_cmds >= (unsigned long)conf->Max_rcpts) {
        smtp_reply(s, conf->Msg_toomany_rcpts, "5.3", NULL, NULL);
        return;
    }
    e = smtp_cmd_path(c->arg, c->arglen, "TO:", conf->Proto_level_check == 1, p);
    if (e == SMTP_PATH_OK && (p->null || p->paramslen > 0))
        e = SMTP_PATH_SYNTAX;
    if (e != SMTP_PATH_OK) {
        smtp_path_error(s, e, p);
        return;
    }
    if (p->addr.domain[0] == '\0' && strcasecmp(p->addr.local, "postmaster") == 0) {
        struct addr pm;
        const char *v = conf->Postmaster;
        if (addr_parse(v, strlen(v), &pm) == ADDR_OK)
            p->addr = pm;
    }
    if (smtp_complete_addr(s, &p->addr) == NULL) {
        smtp_reply(s, conf->Msg_invalid_domain, "1.3", NULL, p->addr.local);
        return;
    }
    addr_format(&p->addr, addr, sizeof(addr));
    addr_lower(addr);
    if (accounts_resolve(&s->w->node->mods, conf, addr, &req, smtp_lookup_done, s) ==
        ACCOUNTS_WAIT) {
        s->lookup = req;
        smtp_set_state(s, SMTP_S_WAIT);
        return;
    }
    addr_format(&p->addr, addr, sizeof(addr));
    smtp_rcpt_decide(s, accounts_result(req), addr);
    accounts_free(req);
}

static void smtp_received(struct smtp_session *s, struct buf *h)
{
    const struct config *conf = s->conf;
    char date[64];
    const char *proto = s->esmtp ? (s->auth[0] ? "ESMTPA" : "ESMTP") : "SMTP";

    log_format_rfc5322(date, sizeof(date), (long)time(NULL));
    buf_printf(h, "Received: from %s (%s [%s])\n", s->helo,
               s->rdns[0] ? s->rdns : "unknown", s->ip);
    if (conf->Hshow_user && s->auth[0])
        buf_printf(h, "\t(authenticated user %s)\n", s->auth);
    buf_printf(h, "\tby %s (Selor) with %s id %s", conf->Server_name, proto,
               s->txn.qid);
    if (s->txn.nrcpt == 1)
        buf_printf(h, "\n\tfor <%s>", s->txn.rcpt[0].orcpt);
    buf_printf(h, "; %s\n", date);
}

static void smtp_spool_drained(void *arg)
{
    struct smtp_session *s = arg;

    smtp_process(s);
}

static void smtp_cmd_data(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    struct buf hdr = BUF_INIT(0);

    if (!s->txn.active) {
        smtp_reply(s, conf->Msg_sequence_error, "5.1", NULL, NULL);
        return;
    }
    if (s->txn.nrcpt == 0) {
        smtp_reply(s, conf->Msg_transaction_falied, "5.1", NULL, NULL);
        return;
    }
    queue_id_next(&s->w->idgen, s->txn.qid);
    s->txn.msg = spool_msg_new(&s->w->spool, s->txn.qid);
    smtp_received(s, &hdr);
    spool_msg_write(s->txn.msg, hdr.data, hdr.len);
    buf_free(&hdr);
    smtp_data_init(&s->txn.data, (size_t)conf->Max_mail_size,
                   (size_t)conf->Max_header_size);
    log_central(s->txn.qid, "%s %s * from=<%s> nrcpt=%zu", s->cid, s->ip,
                s->txn.from, s->txn.nrcpt);
    smtp_reply(s, conf->Msg_send_body, NULL, NULL, NULL);
    smtp_set_state(s, SMTP_S_DATA);
}

static void smtp_cmd_error(struct smtp_session *s, const char *msg, const char *detail)
{
    smtp_reply(s, msg, detail, NULL, NULL);
    if (++s->errors >= SMTP_MAX_ERRORS) {
        smtp_refused(s, "too many errors", s->conf->Msg_perm_deny);
        smtp_hangup(s, s->conf->Msg_perm_deny, "7.0");
    }
}

static void smtp_command(struct smtp_session *s, const char *line, size_t n)
{
    const struct config *conf = s->conf;
    struct smtp_cmd c;

    smtp_log(s, '<', line, n);
    smtp_cmd_parse(line, n, &c);
    switch (c.verb) {
    case SMTP_HELO:
    case SMTP_EHLO: smtp_cmd_helo(s, &c); break;
    case SMTP_MAIL: smtp_cmd_mail(s, &c); break;
    case SMTP_RCPT: smtp_cmd_rcpt(s, &c); break;
    case SMTP_DATA: smtp_cmd_data(s); break;
    case SMTP_RSET:
        smtp_txn_reset(s);
        smtp_reply(s, conf->Msg_ok, "0.0", NULL, NULL);
        break;
    case SMTP_NOOP: smtp_reply(s, conf->Msg_ok, "0.0", NULL, NULL); break;
    case SMTP_QUIT: smtp_hangup(s, conf->Msg_goodbye, "0.0"); break;
    case SMTP_VRFY:
        smtp_reply_raw(s, "252 %sCannot VRFY user, but will accept message\r\n",
                       s->esmtp ? "2.5.0 " : "");
        break;
    case SMTP_HELP:
        smtp_reply_raw(s, "214 %sCommands: HELO EHLO MAIL RCPT DATA RSET NOOP "
                       "QUIT VRFY HELP\r\n", s->esmtp ? "2.0.0 " : "");
        break;
    case SMTP_EXPN:
        smtp_cmd_error(s, conf->Msg_refused, "7.0");
        break;
    default:
        smtp_cmd_error(s, conf->Msg_invalid_cmd, "5.2");
        break;
    }
}

/* ---- DATA ---- */

/*
 * Tells the queue about a new message, as Immed_delivery asks: 2 at once,
 * 1 when the client leaves, 0 at the next queue run.
 */
static void smtp_announce(struct smtp_session *s, const char *id)
{
    const char *queue = s->txn.qlimit ? "qlimit" : "main";
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

static void smtp_commit_done(void *arg, int err, const char *id)
{
    struct smtp_session *s = arg;
    const struct config *conf = s->conf;

    s->txn.msg = NULL;  /* the spool freed it */
    if (err) {
        log_warn("%s: cannot queue %s: %s", s->cid, id, strerror(err));
        smtp_reply(s, spool_err_is_nodisk(err) ? conf->Msg_nodisk_space
                                               : conf->Msg_internal_error,
                   "3.0", NULL, NULL);
    } else {
        for (size_t i = 0; i < s->txn.nrcpt; i++)
            log_summary(id, "accepted from=<%s> to=<%s> size=%zu bytes=%zu client=%s",
                        s->txn.from, s->txn.rcpt[i].addr, s->txn.data.size,
                        s->txn.data.wire, s->ip);
        s->msgs++;
        smtp_announce(s, id);
        smtp_reply(s, conf->Msg_mail_accepted, "0.0", id, NULL);
    }
    smtp_txn_reset(s);
    smtp_set_state(s, SMTP_S_COMMAND);
    smtp_process(s);
}

static void smtp_commit(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    struct queue_file qf;
    struct buf l = BUF_INIT(0);

    qf_init(&qf);
    qf.id = t->qid;
    qf.sid = s->conf->Sid;
    qf.created = (long)time(NULL);
    qf.size = (long)spool_msg_size(t->msg);
    qf.from = t->from;
    qf.client_ip = s->ip;
    qf.client_name = s->rdns;
    qf.helo = s->helo;
    qf.auth = s->auth;
    qf.body = t->body;
    if (t->qlimit) {
        qf.flags |= QF_F_QLIMIT;
        spool_msg_set_qlimit(t->msg);
    }
    for (size_t i = 0; i < t->nrcpt; i++)
        qf_add_rcpt(&qf, t->rcpt[i].addr, t->rcpt[i].orcpt);
    qf_format(&qf, &l);
    qf_free(&qf);
    smtp_set_state(s, SMTP_S_COMMIT);
    spool_msg_commit(t->msg, l.data, l.len, smtp_commit_done, s);
    buf_free(&l);
}

/* The end of data: refuse what broke a limit, commit the rest. */
static void smtp_data_end(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    unsigned f = s->txn.data.flags;
    const char *msg = NULL, *detail = "6.0";

    if (f & SMTP_DATA_TOOBIG)
        msg = conf->Msg_mail_toobig, detail = "3.4";
    else if (f & SMTP_DATA_HEADER_TOOBIG)
        msg = conf->Msg_header_toobig;
    else if (f & SMTP_DATA_LINE_TOOLONG)
        msg = conf->Msg_transaction_falied;
    if (f & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR))
        log_central(s->txn.qid, "%s %s * bare %s in content (normalised)", s->cid,
                    s->ip, f & SMTP_DATA_BARE_LF ? "LF" : "CR");
    if (msg) {
        smtp_reply(s, msg, detail, NULL, NULL);
        smtp_refused(s, "content", msg);
        smtp_txn_reset(s);
        smtp_set_state(s, SMTP_S_COMMAND);
        return;
    }
    smtp_commit(s);
}

/* Feeds buffered input to the DATA parser; 0 when it needs more input. */
static int smtp_data_input(struct smtp_session *s)
{
    int done = 0;
    size_t used;

    if (s->txn.msg && spool_msg_backlogged(s->txn.msg)) {
        spool_msg_on_drain(s->txn.msg, smtp_spool_drained, s);
        return 0;
    }
    used = smtp_data_feed(&s->txn.data, s->in.data, s->in.len, &s->chunk, &done);
    buf_consume(&s->in, used);
    if (s->chunk.len) {
        spool_msg_write(s->txn.msg, s->chunk.data, s->chunk.len);
        buf_reset(&s->chunk);
    }
    if (done)
        smtp_data_end(s);
    return done;
}

/* ---- the input loop ---- */

/* Handles one complete command line from `in`; 0 if there is none. */
static int smtp_command_input(struct smtp_session *s)
{
    char *nl = memchr(s->in.data, '\n', s->in.len);
    size_t n, used;

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
    if (s->skip_line || used > SMTP_CMD_LINE_MAX) {
        s->skip_line = 0;
        smtp_log(s, '<', "(line too long)", 15);
        smtp_cmd_error(s, s->conf->Msg_invalid_cmd, "5.2");
    } else {
        smtp_command(s, s->in.data, n);
    }
    buf_consume(&s->in, used);
    return 1;
}

static void smtp_process(struct smtp_session *s)
{
    while (!s->closing_handles && s->in.len > 0 &&
           s->out_pending < SMTP_OUT_LIMIT) {
        if (s->state == SMTP_S_COMMAND) {
            if (!smtp_command_input(s))
                break;
        } else if (s->state == SMTP_S_DATA) {
            if (!smtp_data_input(s))
                break;
        } else {
            break;
        }
    }
    if (s->in.len == 0)
        buf_shrink(&s->in, 4096);
    if (s->shutdown && s->state == SMTP_S_COMMAND && !s->txn.active)
        smtp_hangup(s, s->conf->Msg_perm_deny, "3.2");
    if (s->closing_handles)
        return;
    smtp_flush(s);
    smtp_read_control(s);
}

/* ---- timers, connect, close ---- */

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

    log_central(s->txn.qid, "%s %s * timeout in state %s", s->cid, s->ip,
                smtp_state_names[s->state]);
    smtp_txn_reset(s);
    smtp_hangup(s, s->conf->Msg_perm_deny, "4.2");
}

static void smtp_timer_reset(struct smtp_session *s)
{
    if (s->state == SMTP_S_WAIT || s->closing_handles)
        return;
    uv_timer_start(&s->timer, smtp_timeout, (uint64_t)s->conf->Timeout * 1000, 0);
}

static void smtp_handle_closed(uv_handle_t *h)
{
    struct smtp_session *s = h->data;

    struct smtp_worker *w = s->w;

    if (--s->handles_open > 0)
        return;
    smtp_session_unlink(w, s);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->chunk);
    buf_free(&s->announce);
    mem_free(s);
    smtp_worker_session_gone(w);
}

static void smtp_close(struct smtp_session *s)
{
    if (s->closing_handles)
        return;
    s->closing_handles = 1;
    log_central(s->txn.qid, "%s %s * disconnect msgs=%u", s->cid, s->ip, s->msgs);
    smtp_announce_held(s);
    if (s->lookup)
        accounts_free(s->lookup);
    s->lookup = NULL;
    if (s->dnsq)
        dns_cancel(s->dnsq);
    s->dnsq = NULL;
    smtp_txn_reset(s);
    arena_clear(&s->txn.mem);
    uv_close((uv_handle_t *)&s->timer, smtp_handle_closed);
    uv_close((uv_handle_t *)&s->tcp, smtp_handle_closed);
}

static void smtp_greet(struct smtp_session *s)
{
    const char *msg = s->conf->Msg_welcome, *text = msg + 3;
    size_t start = s->out.len;

    while (*text == ' ')
        text++;
    buf_printf(&s->out, "%.3s %s %s\r\n", msg, s->conf->Server_name,
               text[0] ? text : "ESMTP Selor");
    smtp_log(s, '>', s->out.data + start, s->out.len - start - 2);
    smtp_set_state(s, msg[0] == '2' ? SMTP_S_COMMAND : SMTP_S_CLOSING);
    smtp_process(s);
}

/* The name of the client is the one whose addresses include the client's. */
static void smtp_rdns_confirmed(void *arg, int status, const struct sockaddr_storage *a,
                                size_t n)
{
    struct smtp_session *s = arg;
    char ip[64];
    int ok = 0;

    s->dns_pending = 0;
    s->dnsq = NULL;
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

static void smtp_rdns_done(void *arg, int status, const char *name)
{
    struct smtp_session *s = arg;
    struct dns_query *q;

    s->dns_pending = 0;
    s->dnsq = NULL;
    if (status != DNS_OK || name == NULL || strlen(name) >= sizeof(s->rdns)) {
        log_central(NULL, "%s %s * no reverse name (%s)", s->cid, s->ip,
                    dns_strstatus(status));
        smtp_greet(s);
        return;
    }
    snprintf(s->rdns, sizeof(s->rdns), "%s", name);
    s->dns_pending = 1;
    q = dns_addrs(s->w->dns, s->rdns, smtp_rdns_confirmed, s);
    if (s->dns_pending)
        s->dnsq = q;
}

static void smtp_conn_checked(void *arg, int verdict)
{
    struct smtp_session *s = arg;

    if (verdict == COORD_LIMIT) {
        log_central(NULL, "%s %s * connection limit (Limit_cnx) reached", s->cid,
                    s->ip);
        smtp_refused(s, "connection limit", s->conf->Msg_perm_deny);
        smtp_hangup(s, s->conf->Msg_perm_deny, "7.0");
        return;
    }
    if (s->conf->Resolve_all) {
        struct dns_query *q;
        s->dns_pending = 1;
        q = dns_ptr(s->w->dns, s->ip, smtp_rdns_done, s);
        if (s->dns_pending)
            s->dnsq = q;
        return;
    }
    smtp_greet(s);
}

int smtp_session_accept(struct smtp_worker *w, uv_stream_t *listener)
{
    struct smtp_session *s = mem_zalloc(sizeof(*s));
    struct sockaddr_storage ss;
    int len = sizeof(ss), port;

    s->w = w;
    s->conf = selor_conf;
    s->state = SMTP_S_CONNECT;
    buf_init(&s->in, 0);
    buf_init(&s->out, 0);
    buf_init(&s->chunk, 0);
    buf_init(&s->announce, 0);
    arena_init(&s->txn.mem, 1024);
    uv_tcp_init(&w->loop, &s->tcp);
    uv_timer_init(&w->loop, &s->timer);
    s->tcp.data = s->timer.data = s;
    s->handles_open = 2;
    smtp_session_link(w, s);
    if (uv_accept(listener, (uv_stream_t *)&s->tcp) < 0) {
        s->closing_handles = 1;
        uv_close((uv_handle_t *)&s->timer, smtp_handle_closed);
        uv_close((uv_handle_t *)&s->tcp, smtp_handle_closed);
        return -1;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len);
    net_ntop((struct sockaddr *)&ss, s->ip, sizeof(s->ip), &port);
    snprintf(s->cid, sizeof(s->cid), "c%d.%lu", w->index, ++w->next_cid);
    log_central(NULL, "%s %s * connect port=%d", s->cid, s->ip, port);
    smtp_timer_reset(s);
    smtp_read_control(s);
    coord_conn_check(w->node->coord, s->ip, smtp_conn_checked, s);
    return 0;
}

static void smtp_session_shutdown(struct smtp_session *s)
{
    s->shutdown = 1;
    if (s->state == SMTP_S_COMMAND && !s->txn.active && !s->closing_handles)
        smtp_hangup(s, s->conf->Msg_perm_deny, "3.2");
}

void smtp_server_shutdown_all(struct smtp_worker *w)
{
    for (struct smtp_session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        smtp_session_shutdown(s);
    }
}

void smtp_server_kill_all(struct smtp_worker *w)
{
    for (struct smtp_session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        smtp_close(s);
    }
}
