/*
 * smtp_policy.c - what each SMTP command does and answers (see
 * smtp_session.h, docs/smtp.md).
 *
 * Owns: HELO/EHLO, MAIL, RCPT and the small commands (AUTH is
 * smtp_auth.c's, and so is a line sent during its exchange; the message,
 * from DATA on, is smtp_message.c's); the relay decision; what the rules'
 * verdicts mean for these commands; refusals and what they cost a client
 * (every refused command counts: past SMTP_SOFT_ERRORS each refusal is
 * answered a second late, at SMTP_MAX_ERRORS the session ends; a refused
 * recipient leaves nothing behind in the transaction).  Waiting for an
 * answer (DNS, an account lookup, the rules) goes through
 * smtp_session_wait / smtp_session_resume, and every such request belongs
 * to the session (s->own).  Must not: touch the socket,
 * timers or the session's state except through smtp_session_*.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "accounts.h"
#include "addr.h"
#include "config.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "node.h"
#include "smtp_session.h"
#include "sysload.h"
#include "smtp_worker.h"
#include "spool.h"

/* ---- the transaction ---- */

void smtp_policy_txn_reset(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;

    smtp_milter_txn_end(s);
    if (t->msg)
        spool_msg_abort(t->msg);
    t->msg = NULL;
    mem_free(t->rcpt);
    strset_free(&t->rcpt_set);
    arena_clear(&t->mem);
    memset(t, 0, sizeof(*t));
    arena_init(&t->mem, 1024);
    smtp_rules_txn_end(s);
}

void smtp_policy_txn_free(struct smtp_session *s)
{
    smtp_policy_txn_reset(s);
    arena_clear(&s->txn.mem);
}

/* Adds an accepted final recipient (duplicates are dropped); -1 when full. */
static int smtp_txn_add_rcpt(struct smtp_txn *t, const char *addr, const char *orcpt,
                             const char *via)
{
    if (strset_has(&t->rcpt_set, addr))
        return 0;
    if (t->nrcpt >= SMTP_MAX_TARGETS)
        return -1;
    if (t->nrcpt == t->rcpt_alloc) {
        t->rcpt_alloc = t->rcpt_alloc ? t->rcpt_alloc * 2 : 8;
        t->rcpt = mem_realloc(t->rcpt, t->rcpt_alloc * sizeof(*t->rcpt));
    }
    t->rcpt[t->nrcpt].addr = arena_strdup(&t->mem, addr);
    t->rcpt[t->nrcpt].orcpt = arena_strdup(&t->mem, orcpt);
    t->rcpt[t->nrcpt].via = arena_strdup(&t->mem, via);
    strset_add(&t->rcpt_set, t->rcpt[t->nrcpt].addr);
    t->nrcpt++;
    return 0;
}

int smtp_policy_add_rcpt(struct smtp_session *s, const char *addr, const char *via)
{
    char low[ADDR_PATH_MAX + 2];

    snprintf(low, sizeof(low), "%s", addr);
    addr_lower(low);
    return smtp_txn_add_rcpt(&s->txn, low, addr, via);
}

/* Keeps the recipients that keep(i) says; the set of addresses follows. */
static void smtp_txn_keep_rcpts(struct smtp_txn *t, int (*keep)(const struct smtp_rcpt *r,
                                                                 const void *arg),
                                const void *arg)
{
    size_t n = 0;

    strset_free(&t->rcpt_set);
    for (size_t i = 0; i < t->nrcpt; i++) {
        if (!keep(&t->rcpt[i], arg))
            continue;
        t->rcpt[n++] = t->rcpt[i];
        strset_add(&t->rcpt_set, t->rcpt[i].addr);
    }
    t->nrcpt = n;
}

static int smtp_rcpt_not_named(const struct smtp_rcpt *r, const void *arg)
{
    return strcasecmp(r->addr, arg) != 0 && strcasecmp(r->orcpt, arg) != 0;
}

void smtp_policy_del_rcpt(struct smtp_session *s, const char *addr)
{
    smtp_txn_keep_rcpts(&s->txn, smtp_rcpt_not_named, addr);
}

static int smtp_rcpt_before_mark(const struct smtp_rcpt *r, const void *arg)
{
    const struct smtp_txn *t = arg;

    return (size_t)(r - t->rcpt) < t->rcpt_mark;
}

/* Cp!: a copy of the message for each address the event's rules named. */
void smtp_policy_add_copies(struct smtp_session *s)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);

    for (size_t i = 0; i < o->ncp; i++) {
        char low[ADDR_PATH_MAX + 2];
        snprintf(low, sizeof(low), "%s", o->cp[i]);
        addr_lower(low);
        if (smtp_txn_add_rcpt(&s->txn, low, low, "cp") == 0)
            log_central(NULL, "%s %s * Cp! %s (rules)", s->cid, s->ip, low);
    }
}

/* ---- refusals ---- */

/*
 * A refused command: its reply, and one more error.  Past SMTP_SOFT_ERRORS
 * the reply is held back a second (at least `delay`); at SMTP_MAX_ERRORS
 * the session ends.  Called at once by a command, or by the answer that a
 * command waited for (then the session resumes here).
 */
static void smtp_refuse(struct smtp_session *s, const char *msg, const char *detail,
                        const char *suffix, long delay)
{
    const struct config *conf = s->conf;
    size_t start = s->out.len;

    smtp_session_reply(s, msg, detail, NULL, suffix);
    if (++s->errors >= SMTP_MAX_ERRORS) {
        smtp_session_refused(s, "too many errors", conf->Msg_perm_deny);
        smtp_session_hangup(s, conf->Msg_perm_deny, "7.0", "too many errors");
        return;
    }
    if (s->errors > SMTP_SOFT_ERRORS && delay < SMTP_ERROR_DELAY)
        delay = SMTP_ERROR_DELAY;
    smtp_session_resume(s, start, delay);
}

/* Accepted: the reply, and the session goes on (resumes if it waited),
 * after the event's Delay! if it set one (MAIL and RCPT: a tarpit). */
static void smtp_accept_reply(struct smtp_session *s, const char *msg, const char *detail)
{
    size_t start = s->out.len;

    smtp_session_reply(s, msg, detail, NULL, NULL);
    smtp_session_resume(s, start, smtp_rules_outcome(s)->delay);
}

/*
 * A rules verdict against the command (Deny!, Defer!, Close!): 1 when it
 * answered, 0 when the command goes on.  Deny! answers Reply! or
 * deny_msg; a Reply! with a 4xx code, or Defer!, is temporary.
 */
int smtp_policy_verdict(struct smtp_session *s, const char *deny_msg, const char *what)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);
    const char *msg;

    switch (o->verdict) {
    case RULES_CLOSE:
        smtp_session_refused(s, what, "Close! (rules)");
        smtp_session_hangup(s, s->conf->Msg_perm_deny, "7.0", "rules: Close!");
        return 1;
    case RULES_DENY:
        msg = smtp_rules_reply(s, deny_msg);
        break;
    case RULES_DEFER:
        msg = smtp_rules_reply(s, "451 Try again later");
        break;
    default:
        return 0;
    }
    smtp_session_refused(s, what, msg);
    smtp_refuse(s, msg, msg[0] == '4' ? "7.1" : "7.1", NULL, o->delay);
    return 1;
}

void smtp_policy_refuse(struct smtp_session *s, const char *msg, const char *detail,
                        long delay)
{
    smtp_refuse(s, msg, detail, NULL, delay);
}

void smtp_policy_line_too_long(struct smtp_session *s)
{
    if (smtp_auth_expects_line(s)) {
        smtp_auth_line_too_long(s);
        return;
    }
    smtp_refuse(s, s->conf->Msg_invalid_cmd, "5.2", NULL, 0);
}

/* ---- HELO, EHLO ---- */

static int smtp_starttls_offered(const struct smtp_session *s)
{
    return s->conf->Tls_enable && !s->tls && smtp_session_tls_available(s);
}

/* A name for the Received header: printable ASCII, no blank. */
static int smtp_helo_ok(const char *p, size_t n, size_t max)
{
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return 0;
    return 1;
}

static void smtp_helo_judged(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    size_t start = s->out.len;

    if (smtp_policy_verdict(s, conf->Msg_refused, "HELO (rules)")) {
        s->helo[0] = '\0';
        return;
    }
    s->greeted = 1;
    smtp_milter_reset(s);   /* the next MAIL tells the milters the new name */
    if (!s->esmtp) {
        smtp_session_reply_raw(s, "250 %s\r\n", conf->Server_name);
    } else {
        smtp_session_reply_raw(s, "250-%s\r\n", conf->Server_name);
        smtp_session_reply_raw(s, "250-PIPELINING\r\n");
        smtp_session_reply_raw(s, "250-SIZE %ld\r\n", conf->Max_mail_size);
        smtp_session_reply_raw(s, "250-8BITMIME\r\n");
        if (smtp_starttls_offered(s))
            smtp_session_reply_raw(s, "250-STARTTLS\r\n");
        if (smtp_auth_offered(s))
            smtp_session_reply_raw(s, "250-AUTH PLAIN LOGIN\r\n");
        smtp_session_reply_raw(s, "250 ENHANCEDSTATUSCODES\r\n");
    }
    smtp_session_resume(s, start, smtp_rules_outcome(s)->delay);
}

static void smtp_do_helo(struct smtp_session *s, const struct smtp_cmd *c)
{
    const struct config *conf = s->conf;

    if (!smtp_helo_ok(c->arg, c->arglen, sizeof(s->helo))) {
        smtp_refuse(s, conf->Msg_invalid_param, "5.4", NULL, 0);
        return;
    }
    smtp_policy_txn_reset(s);
    memcpy(s->helo, c->arg, c->arglen);
    s->helo[c->arglen] = '\0';
    s->esmtp = c->verb == SMTP_EHLO;
    smtp_rules_event(s, RULES_EV_HELO, smtp_helo_judged);
}

/* ---- STARTTLS ---- */

static void smtp_do_starttls(struct smtp_session *s, const struct smtp_cmd *c)
{
    if (!smtp_starttls_offered(s) && !s->tls) {
        smtp_refuse(s, s->conf->Msg_invalid_cmd, "5.1", NULL, 0);
        return;
    }
    if (s->tls) {
        smtp_session_reply_raw(s, "554 %sTLS is already active\r\n", s->esmtp ? "5.5.1 " : "");
        return;
    }
    if (c->arglen > 0) {
        smtp_refuse(s, s->conf->Msg_invalid_param, "5.4", NULL, 0);
        return;
    }
    smtp_session_reply_raw(s, "220 2.0.0 Ready to start TLS\r\n");
    smtp_session_starttls(s);
}

/* ---- MAIL ---- */

/* Errors of a MAIL or RCPT path, answered with the matching Msg_*. */
static void smtp_path_error(struct smtp_session *s, enum smtp_path_err e,
                            const struct smtp_path *p)
{
    switch (e) {
    case SMTP_PATH_DOMAIN:
        smtp_refuse(s, s->conf->Msg_invalid_domain, "1.2", p->addr.domain, 0);
        break;
    case SMTP_PATH_8BIT:
        smtp_refuse(s, s->conf->Msg_invalid_param, "6.7", NULL, 0);
        break;
    default:
        smtp_refuse(s, s->conf->Msg_invalid_param, "5.4", NULL, 0);
        break;
    }
}

/* A bare name gets Df_domain; -1 when there is none. */
static int smtp_complete_addr(struct smtp_session *s, struct addr *a)
{
    if (a->domain[0] == '\0') {
        if (s->conf->Df_domain[0] == '\0')
            return -1;
        snprintf(a->domain, sizeof(a->domain), "%s", s->conf->Df_domain);
        addr_lower(a->domain);
    }
    return 0;
}

static int smtp_mail_params(struct smtp_session *s, const struct smtp_path *p)
{
    const struct config *conf = s->conf;
    const char *q = p->params, *end = p->params + p->paramslen;
    struct smtp_param prm;
    int r;

    while ((r = smtp_cmd_next_param(&q, end, &prm)) > 0) {
        if (strcmp(prm.key, "SIZE") == 0) {
            char *e;
            unsigned long long v = strtoull(prm.value, &e, 10);
            if (prm.value[0] == '\0' || *e) {
                smtp_refuse(s, conf->Msg_invalid_param, "5.4", NULL, 0);
                return -1;
            }
            s->rules.size = v > LONG_MAX ? LONG_MAX : (long)v;
            if (v > (unsigned long long)conf->Max_mail_size) {
                smtp_session_refused(s, "size", conf->Msg_mail_toobig);
                smtp_refuse(s, conf->Msg_mail_toobig, "3.4", NULL, 0);
                return -1;
            }
        } else if (strcmp(prm.key, "BODY") == 0 &&
                   (strcasecmp(prm.value, "7BIT") == 0 ||
                    strcasecmp(prm.value, "8BITMIME") == 0)) {
            s->txn.body = prm.value[0] == '8' ? "8BITMIME" : "7BIT";
        } else if (strcmp(prm.key, "AUTH") == 0) {
            /* RFC 4954 section 5: accepted, and ignored (Selor does not
             * pass an identity on from one relay to the next). */
        } else {
            smtp_refuse(s, conf->Msg_invalid_param, "5.4", NULL, 0);
            return -1;
        }
    }
    if (r < 0) {
        smtp_refuse(s, conf->Msg_invalid_param, "5.4", NULL, 0);
        return -1;
    }
    return 0;
}

/* Lavg_negative: refuse new mail while the load is above it. */
static int smtp_load_too_high(const struct config *conf)
{
    return conf->Lavg_negative > 0 && sysload_avg1() > (double)conf->Lavg_negative;
}

/* The qlimit queue: Qlimit! of the rules, or (deprecated) Qlimit_senders. */
static void smtp_policy_set_qlimit(struct smtp_session *s)
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

/* After the milters' mail step: refused, or the sender is taken. */
static void smtp_mail_filtered(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    const struct smtp_milter_outcome *o = smtp_milter_outcome(s);

    char reply[sizeof(o->reply)];

    if (o->verdict) {   /* the reply outlives the transaction's end */
        snprintf(reply, sizeof(reply), "%s", o->reply);
        smtp_session_refused(s, "sender (milter)", reply);
        smtp_policy_txn_reset(s);
        smtp_refuse(s, reply, "7.1", NULL, 0);
        return;
    }
    s->txn.active = 1;
    smtp_policy_add_copies(s);
    if (conf->Qlimit_senders[0] && smtp_sender_listed(conf->Qlimit_senders, s->txn.from))
        smtp_policy_set_qlimit(s);
    smtp_accept_reply(s, conf->Msg_allowed_sender, "1.0");
}

static void smtp_mail_accept(struct smtp_session *s)
{
    s->txn.active = 1;
    if (smtp_milter_active(s))
        smtp_milter_mail(s, smtp_mail_filtered);
    else
        smtp_mail_filtered(s);
}

/*
 * A sender in one of our domains must exist (From_level_check 0 to 2) when
 * the client has not logged in: from outside, mail from a local address
 * nobody has is forged.  A logged-in user may send as any address (the
 * rules decide that).  From_level_check -1 turns the check off.
 */
static void smtp_sender_known(struct smtp_session *s, const struct accounts_result *r)
{
    const struct config *conf = s->conf;

    if (r->status == ACCOUNTS_NOMAILBOX) {
        smtp_session_refused(s, "unknown local sender", s->txn.from);
        smtp_policy_txn_reset(s);
        smtp_refuse(s, conf->Msg_no_mailbox, "1.8", NULL, 0);
        return;
    }
    /* A module that cannot answer lets the sender pass: the recipients'
     * lookups need it too and give the temporary error then. */
    smtp_mail_accept(s);
}

static void smtp_sender_lookup_done(void *arg, struct accounts_req *req)
{
    smtp_sender_known(arg, accounts_result(req));
}

static void smtp_sender_check(struct smtp_session *s)
{
    struct accounts_req *req;

    if (s->conf->From_level_check < 0 || s->auth[0] || s->txn.from[0] == '\0') {
        smtp_mail_accept(s);
        return;
    }
    if (accounts_resolve(&s->w->node->mods, s->conf, &s->own, s->txn.from, &req,
                         smtp_sender_lookup_done, s) == ACCOUNTS_WAIT) {
        smtp_session_wait(s, "sender lookup");
        return;
    }
    smtp_sender_known(s, accounts_result(req));
    accounts_free(req);
}

/*
 * The answer about the sender's domain (From_level_check).  The reply comes
 * last: it resumes the session, which may go on with pipelined commands.
 */
static void smtp_sender_domain_known(struct smtp_session *s, int status)
{
    const struct config *conf = s->conf;
    char domain[ADDR_DOMAIN_MAX + 1];

    if (status == DNS_OK) {
        smtp_sender_check(s);
        return;
    }
    snprintf(domain, sizeof(domain), "%s", strrchr(s->txn.from, '@') + 1);
    smtp_policy_txn_reset(s);
    if (status == DNS_TEMPFAIL) {
        smtp_refuse(s, conf->Msg_internal_error, "4.3", NULL, 0);
        return;
    }
    smtp_session_refused(s, "sender domain", domain);
    smtp_refuse(s, conf->Msg_invalid_domain, "1.8", domain, 0);
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

    if (status == DNS_NODATA && s->conf->From_level_check == 1) {
        dns_addrs(s->w->dns, &s->own, strrchr(s->txn.from, '@') + 1, smtp_sender_addrs, s);
        return;
    }
    smtp_sender_domain_known(s, status);
}

/* After Event.from: Accept! takes the sender without the domain and
 * account checks (an unknown domain), a refusal ends the transaction. */
static void smtp_mail_judged(struct smtp_session *s)
{
    const struct config *conf = s->conf;

    if (smtp_rules_outcome(s)->verdict == RULES_ACCEPT) {
        smtp_mail_accept(s);
        return;
    }
    if (smtp_policy_verdict(s, conf->Msg_refused, "sender (rules)")) {
        smtp_policy_txn_reset(s);
        return;
    }
    s->txn.active = 0;
    if (s->txn.from[0] && conf->From_level_check > 0) {
        smtp_session_wait(s, "sender domain DNS");
        dns_mx(s->w->dns, &s->own, strrchr(s->txn.from, '@') + 1, smtp_sender_mx, s);
        return;
    }
    smtp_sender_check(s);
}

static void smtp_do_mail(struct smtp_session *s, const struct smtp_cmd *c)
{
    const struct config *conf = s->conf;
    struct smtp_path p;
    enum smtp_path_err e;
    char from[ADDR_PATH_MAX + 2];

    if (!s->greeted || s->txn.active) {
        smtp_refuse(s, conf->Msg_sequence_error, "5.1", NULL, 0);
        return;
    }
    if (smtp_load_too_high(conf)) {
        smtp_session_refused(s, "load average", conf->Msg_lavg);
        smtp_refuse(s, conf->Msg_lavg, "3.2", NULL, 0);
        return;
    }
    if (s->msgs >= (unsigned long)conf->Max_msgs_per_cnx) {
        smtp_session_refused(s, "messages per connection", conf->Msg_perm_deny);
        smtp_session_hangup(s, conf->Msg_perm_deny, "7.0", "Max_msgs_per_cnx");
        return;
    }
    e = smtp_cmd_path(c->arg, c->arglen, "FROM:", conf->Proto_level_check == 1, &p);
    if (e != SMTP_PATH_OK) {
        smtp_path_error(s, e, &p);
        return;
    }
    if (!p.null && smtp_complete_addr(s, &p.addr) < 0) {
        smtp_refuse(s, conf->Msg_invalid_domain, "1.7", p.addr.local, 0);
        return;
    }
    smtp_policy_txn_reset(s);
    smtp_rules_txn_begin(s);
    s->txn.body = "7BIT";
    s->rules.size = 0;
    if (smtp_mail_params(s, &p) < 0)
        return;
    addr_format(&p.addr, from, sizeof(from));
    s->txn.from = p.null ? "" : arena_strdup(&s->txn.mem, from);
    s->txn.active = 1;   /* for the rules; a refusal resets the transaction */
    smtp_rules_event(s, RULES_EV_FROM, smtp_mail_judged);
}

/* ---- RCPT ---- */

/* After the milters' rcpt step: the recipient is refused (what this RCPT
 * added goes again), or taken. */
static void smtp_rcpt_filtered(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    const struct smtp_milter_outcome *o = smtp_milter_outcome(s);

    if (o->verdict) {
        smtp_txn_keep_rcpts(&s->txn, smtp_rcpt_before_mark, &s->txn);
        smtp_session_refused(s, "recipient (milter)", o->reply);
        smtp_refuse(s, o->reply, "7.1", NULL, 0);
        return;
    }
    s->txn.rcpt_cmds++;
    smtp_policy_add_copies(s);   /* Cp! of Event.rcpt: with an accepted recipient only */
    smtp_accept_reply(s, conf->Msg_allowed_rcpt, "1.5");
}

static void smtp_rcpt_accepted(struct smtp_session *s, int ok)
{
    char addr[ADDR_PATH_MAX + 2];

    if (!ok) {
        smtp_refuse(s, s->conf->Msg_toomany_rcpts, "5.3", NULL, 0);
        return;
    }
    if (!smtp_milter_on(s)) {
        smtp_rcpt_filtered(s);
        return;
    }
    addr_format(&s->pending_path.addr, addr, sizeof(addr));
    smtp_milter_rcpt(s, arena_strdup(&s->txn.mem, addr), smtp_rcpt_filtered);
}

/* Rcpt_level_check 1: the domain of a relayed recipient must exist. */
static void smtp_rcpt_domain_known(struct smtp_session *s, int status)
{
    char addr[ADDR_PATH_MAX + 2];

    addr_format(&s->pending_path.addr, addr, sizeof(addr));
    if (status == DNS_TEMPFAIL) {
        smtp_refuse(s, s->conf->Msg_internal_error, "4.3", NULL, 0);
        return;
    }
    if (status != DNS_OK) {
        smtp_session_refused(s, "recipient domain", s->pending_path.addr.domain);
        smtp_refuse(s, s->conf->Msg_invalid_domain, "1.2", s->pending_path.addr.domain, 0);
        return;
    }
    smtp_rcpt_accepted(s, smtp_txn_add_rcpt(&s->txn, addr, addr, "") == 0);
}

static void smtp_rcpt_addrs(void *arg, int status, const struct sockaddr_storage *a,
                            size_t n)
{
    smtp_rcpt_domain_known(arg, status);
}

static void smtp_rcpt_mx(void *arg, int status, const struct dns_mx *mx, size_t n)
{
    struct smtp_session *s = arg;

    if (status == DNS_NODATA) {
        dns_addrs(s->w->dns, &s->own, s->pending_path.addr.domain, smtp_rcpt_addrs, s);
        return;
    }
    smtp_rcpt_domain_known(s, status);
}

/* Event.lrcpt_refused: a local recipient is refused; its rules may
 * change the answer (Reply!, Defer! makes it temporary) or hang up. */
static void smtp_lrcpt_judged(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    const struct rules_outcome *o = smtp_rules_outcome(s);
    const char *msg = smtp_rules_reply(s, conf->Msg_no_mailbox);

    if (o->verdict == RULES_CLOSE) {
        smtp_policy_verdict(s, msg, "no mailbox (rules)");
        return;
    }
    if (o->verdict == RULES_DEFER && msg[0] == '5')
        msg = "450 Mailbox unavailable, try again later";
    smtp_session_refused(s, "no mailbox", s->kept_addr);
    smtp_refuse(s, msg, msg[0] == '4' ? "2.1" : "1.1", NULL,
                o->delay ? o->delay : conf->No_mailbox_delay);
}

/* The relay decision for one recipient, once the accounts and the rules
 * have answered (accept: Accept! of Event.rcpt, no domain check). */
static void smtp_rcpt_decide(struct smtp_session *s, const struct accounts_result *r,
                             const char *addr, int accept)
{
    const struct config *conf = s->conf;
    int ok = 1;

    switch (r->status) {
    case ACCOUNTS_LOCAL:
        if (!accounts_broadcast_allowed(r, s->txn.from, s->auth)) {
            smtp_session_refused(s, "broadcast from outside", addr);
            smtp_refuse(s, conf->Msg_broadcast_denied, "7.1", NULL, 0);
            return;
        }
        for (size_t i = 0; i < r->ntargets && ok; i++)
            ok = smtp_txn_add_rcpt(&s->txn, r->targets[i], addr, r->via[i]) == 0;
        break;
    case ACCOUNTS_REMOTE:
        /* could log in, here or after STARTTLS, and did not */
        if (!s->auth[0] && (smtp_auth_offered(s) || smtp_starttls_offered(s))) {
            smtp_session_refused(s, "relay without AUTH", addr);
            smtp_refuse(s, conf->Msg_auth_required, "7.0", NULL, 0);
            return;
        }
        if (!(s->auth[0] && conf->Auth_relay)) {
            smtp_session_refused(s, "relay", addr);
            smtp_refuse(s, conf->Msg_relay_denied, "7.1", NULL, 0);
            return;
        }
        if (conf->Rcpt_level_check == 1 && !accept) {
            smtp_session_wait(s, "recipient domain DNS");
            dns_mx(s->w->dns, &s->own, s->pending_path.addr.domain, smtp_rcpt_mx, s);
            return;
        }
        ok = smtp_txn_add_rcpt(&s->txn, addr, addr, "") == 0;
        break;
    case ACCOUNTS_SRS_INVALID:
        smtp_session_refused(s, "invalid SRS address", addr);
        smtp_refuse(s, conf->Msg_invalid_srs, "7.1", NULL, 0);
        return;
    case ACCOUNTS_NOMAILBOX:
        if (conf->Rcpt_level_check == -1) {   /* checked again at delivery */
            ok = smtp_txn_add_rcpt(&s->txn, addr, addr, "") == 0;
            break;
        }
        s->kept_addr = arena_strdup(&s->txn.mem, addr);
        s->rules.rcpt = s->kept_addr;
        s->rules.local = 1;
        smtp_rules_event(s, RULES_EV_LRCPT_REFUSED, smtp_lrcpt_judged);
        return;
    default:
        log_warn("%s: lookup of %s failed: %s", s->cid, addr,
                 r->error ? r->error : "temporary failure");
        smtp_refuse(s, conf->Msg_internal_error, "3.0", NULL, 0);
        return;
    }
    smtp_rcpt_accepted(s, ok);
}

/* The lookup's answer, in the transaction's memory while Event.rcpt runs. */
static struct accounts_result *smtp_rcpt_keep(struct smtp_session *s,
                                              const struct accounts_result *r)
{
    struct arena *m = &s->txn.mem;
    struct accounts_result *k = arena_alloc(m, sizeof(*k));

    *k = *r;
    k->targets = arena_alloc(m, (r->ntargets + 1) * sizeof(char *));
    k->via = arena_alloc(m, (r->ntargets + 1) * sizeof(char *));
    for (size_t i = 0; i < r->ntargets; i++) {
        k->targets[i] = arena_strdup(m, r->targets[i]);
        k->via[i] = arena_strdup(m, r->via[i] ? r->via[i] : "");
    }
    for (size_t i = 0; i < r->nbroadcast; i++)
        k->broadcast[i] = arena_strdup(m, r->broadcast[i]);
    k->error = r->error ? arena_strdup(m, r->error) : NULL;
    return k;
}

static void smtp_rcpt_judged(struct smtp_session *s)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);

    if (smtp_policy_verdict(s, s->conf->Msg_refused, "recipient (rules)"))
        return;
    smtp_rcpt_decide(s, s->kept, s->kept_addr, o->verdict == RULES_ACCEPT);
}

/* Event.rcpt sees the recipient as given and whether it is ours. */
static void smtp_rcpt_rules(struct smtp_session *s, const struct accounts_result *r,
                            const char *addr)
{
    if (rules_for(s->rules.set, s->conf->Event_rcpt) == NULL) {
        memset(&s->rules.run.out, 0, sizeof(s->rules.run.out));
        smtp_rcpt_decide(s, r, addr, 0);
        return;
    }
    s->kept = smtp_rcpt_keep(s, r);
    s->kept_addr = arena_strdup(&s->txn.mem, addr);
    s->rules.rcpt = s->kept_addr;
    s->rules.local = r->status == ACCOUNTS_LOCAL || r->status == ACCOUNTS_NOMAILBOX ||
                     r->status == ACCOUNTS_SRS_INVALID;
    smtp_rules_event(s, RULES_EV_RCPT, smtp_rcpt_judged);
}

static void smtp_lookup_done(void *arg, struct accounts_req *req)
{
    struct smtp_session *s = arg;
    char addr[ADDR_PATH_MAX + 2];

    addr_format(&s->pending_path.addr, addr, sizeof(addr));
    smtp_rcpt_rules(s, accounts_result(req), addr);
}

static void smtp_do_rcpt(struct smtp_session *s, const struct smtp_cmd *c)
{
    const struct config *conf = s->conf;
    struct smtp_path *p = &s->pending_path;
    struct accounts_req *req;
    char addr[ADDR_PATH_MAX + 2];
    enum smtp_path_err e;

    if (!s->txn.active) {
        smtp_refuse(s, conf->Msg_sequence_error, "5.1", NULL, 0);
        return;
    }
    if (s->txn.rcpt_cmds >= (unsigned long)conf->Max_rcpts) {
        smtp_refuse(s, conf->Msg_toomany_rcpts, "5.3", NULL, 0);
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
    if (smtp_complete_addr(s, &p->addr) < 0) {
        smtp_refuse(s, conf->Msg_invalid_domain, "1.3", p->addr.local, 0);
        return;
    }
    s->txn.rcpt_mark = s->txn.nrcpt;
    addr_format(&p->addr, addr, sizeof(addr));
    addr_lower(addr);
    if (accounts_resolve(&s->w->node->mods, conf, &s->own, addr, &req, smtp_lookup_done,
                         s) == ACCOUNTS_WAIT) {
        smtp_session_wait(s, "account lookup");
        return;
    }
    addr_format(&p->addr, addr, sizeof(addr));
    smtp_rcpt_rules(s, accounts_result(req), addr);
    accounts_free(req);
}

/* ---- the commands ---- */

void smtp_policy_command(struct smtp_session *s, const char *line, size_t n)
{
    const struct config *conf = s->conf;
    struct smtp_cmd c;

    if (smtp_auth_expects_line(s)) {   /* no command: the AUTH exchange's */
        smtp_auth_line(s, line, n);
        return;
    }
    smtp_cmd_parse(line, n, &c);
    if (s->rules.denied && c.verb != SMTP_QUIT) {   /* RFC 5321 3.1: after a 554 greeting */
        smtp_refuse(s, "503 No service here, only QUIT", "5.1", NULL, 0);
        return;
    }
    switch (c.verb) {
    case SMTP_AUTH: smtp_auth_command(s, &c); break;
    case SMTP_HELO:
    case SMTP_EHLO: smtp_do_helo(s, &c); break;
    case SMTP_MAIL: smtp_do_mail(s, &c); break;
    case SMTP_RCPT: smtp_do_rcpt(s, &c); break;
    case SMTP_DATA: smtp_message_data(s); break;
    case SMTP_RSET:
        smtp_policy_txn_reset(s);
        smtp_session_reply(s, conf->Msg_ok, "0.0", NULL, NULL);
        break;
    case SMTP_NOOP: smtp_session_reply(s, conf->Msg_ok, "0.0", NULL, NULL); break;
    case SMTP_QUIT: smtp_session_hangup(s, conf->Msg_goodbye, "0.0", "QUIT"); break;
    case SMTP_VRFY:
        smtp_session_reply_raw(s, "252 %sCannot VRFY user, but will accept message\r\n",
                               s->esmtp ? "2.5.0 " : "");
        break;
    case SMTP_STARTTLS: smtp_do_starttls(s, &c); break;
    case SMTP_HELP:
        smtp_session_reply_raw(s, "214 %sCommands: HELO EHLO MAIL RCPT DATA RSET NOOP "
                               "QUIT VRFY HELP STARTTLS AUTH\r\n", s->esmtp ? "2.0.0 " : "");
        break;
    case SMTP_EXPN:
        smtp_refuse(s, conf->Msg_refused, "7.0", NULL, 0);
        break;
    default:
        smtp_refuse(s, conf->Msg_invalid_cmd, "5.2", NULL, 0);
        break;
    }
}
