/*
 * smtp_auth.c - SMTP AUTH (RFC 4954): the PLAIN and LOGIN mechanisms (see
 * smtp_session.h, docs/smtp.md "AUTH").
 *
 * Owns: the AUTH command and its exchange (the 334 prompts and the
 * client's continuation lines, which are not commands), the check of the
 * credentials (first the cluster-wide lockout, coord_auth_check, then the
 * account modules in Modseq_auth order, accounts_auth), what a failure
 * costs (Incorrect_pass_delay, Auth_tolerance, one more failure for the
 * lockout counts) and s->auth once a login succeeded.  Every request it
 * starts belongs to the session (s->own) and waits through
 * smtp_session_wait / smtp_session_resume, as RCPT's lookups do.
 * Must not: log or keep a password or a response line (the password is
 * wiped as soon as the modules have their copy; the log gets only what
 * smtp_auth_loggable lets through), touch the socket or the timers, or
 * decide the relay (smtp_policy.c does, from s->auth).
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "accounts.h"
#include "config.h"
#include "coord.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "node.h"
#include "smtp_session.h"
#include "smtp_worker.h"

#define SMTP_AUTH_USER_PROMPT "334 VXNlcm5hbWU6\r\n"   /* "Username:" */
#define SMTP_AUTH_PASS_PROMPT "334 UGFzc3dvcmQ6\r\n"   /* "Password:" */

/* Fixed replies (no Msg_* option; docs/smtp.md lists them). */
#define SMTP_AUTH_NOT_ENABLED "503 Authentication not enabled"
#define SMTP_AUTH_ALREADY "503 Already authenticated"
#define SMTP_AUTH_IN_TXN "503 Not allowed during a mail transaction"
#define SMTP_AUTH_SYNTAX "501 Syntax: AUTH mechanism [initial-response]"
#define SMTP_AUTH_UNKNOWN_MECH "504 Unrecognized authentication type"
#define SMTP_AUTH_UNDECODABLE "501 Cannot decode the response"
#define SMTP_AUTH_CANCELLED "501 Authentication cancelled"
#define SMTP_AUTH_TOO_LONG "501 Authentication exchange line is too long"
#define SMTP_AUTH_TEMPFAIL "454 Temporary authentication failure"

int smtp_auth_offered(const struct smtp_session *s)
{
    return s->tls || s->conf->Auth_plaintext;
}

int smtp_auth_expects_line(const struct smtp_session *s)
{
    return s->authx.step == SMTP_AUTH_PLAIN || s->authx.step == SMTP_AUTH_USER ||
           s->authx.step == SMTP_AUTH_PASS;
}

const char *smtp_auth_loggable(const struct smtp_session *s, const char *line, size_t *n)
{
    size_t i = 4;

    if (smtp_auth_expects_line(s)) {
        *n = strlen("(AUTH response)");
        return "(AUTH response)";
    }
    /* Any blank after the verb: a line the parser refuses ("AUTH\tPLAIN
     * ...") must not carry a response into the log either. */
    if (*n < 4 || strncasecmp(line, "AUTH", 4) != 0 ||
        (*n > 4 && line[4] != ' ' && line[4] != '\t'))
        return line;
    while (i < *n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    while (i < *n && line[i] != ' ' && line[i] != '\t')
        i++;
    *n = i;   /* "AUTH MECHANISM", never the initial response */
    return line;
}

/* ---- the end of an exchange ---- */

static void smtp_auth_wipe(struct smtp_session *s)
{
    explicit_bzero(s->authx.password, sizeof(s->authx.password));
}

/* The session went while its password waited for the lockout's answer. */
static void smtp_auth_holding_cancelled(struct async_req *r)
{
    struct smtp_session *s = (struct smtp_session *)((char *)r -
        offsetof(struct smtp_session, authx.holding));

    smtp_auth_wipe(s);
}

/* A malformed or cancelled exchange: a 501 (an error, not a failed login). */
static void smtp_auth_abort(struct smtp_session *s, const char *msg, const char *detail)
{
    smtp_auth_wipe(s);
    s->authx.step = SMTP_AUTH_NONE;
    smtp_policy_refuse(s, msg, detail, 0);
}

/*
 * The last failure Auth_tolerance allows: its reply is held
 * Incorrect_pass_delay seconds like the others, then the session ends.
 * smtp_session_resume's delay goes back to reading commands, so this
 * wait is a timer of its own, a request of the session: a session that
 * goes first cancels it (the hook closes the timer).
 */
struct smtp_auth_last {
    uv_timer_t timer;
    struct async_req req;
    struct smtp_session *s;
};

static void smtp_auth_last_closed(uv_handle_t *h)
{
    mem_free(h->data);
}

static void smtp_auth_last_fire(uv_timer_t *t)
{
    struct smtp_auth_last *l = t->data;

    uv_close((uv_handle_t *)&l->timer, smtp_auth_last_closed);
    if (async_req_end(&l->req))
        smtp_session_hangup(l->s, l->s->conf->Msg_auth_falied, "7.8", "Auth_tolerance");
}

static void smtp_auth_last_cancelled(struct async_req *r)
{
    struct smtp_auth_last *l = (struct smtp_auth_last *)((char *)r -
        offsetof(struct smtp_auth_last, req));

    uv_close((uv_handle_t *)&l->timer, smtp_auth_last_closed);
}

static void smtp_auth_last_failure(struct smtp_session *s, long delay)
{
    struct smtp_auth_last *l;

    if (delay <= 0) {
        smtp_session_hangup(s, s->conf->Msg_auth_falied, "7.8", "Auth_tolerance");
        return;
    }
    l = mem_zalloc(sizeof(*l));
    l->s = s;
    uv_timer_init(&s->w->loop, &l->timer);
    l->timer.data = l;
    async_req_start(&l->req, &s->own, smtp_auth_last_cancelled, 0);
    smtp_session_wait(s, "Incorrect_pass_delay, then Auth_tolerance");
    uv_timer_start(&l->timer, smtp_auth_last_fire, (uint64_t)delay * 1000, 0);
}

/*
 * A failed login: counted for the lockout (unless it was refused by the
 * lockout itself: a locked-out client cannot keep itself locked out),
 * answered Incorrect_pass_delay seconds late, and at Auth_tolerance the
 * session ends after that reply.
 */
static void smtp_auth_fail(struct smtp_session *s, int count, const char *why)
{
    const struct config *conf = s->conf;

    s->authx.step = SMTP_AUTH_NONE;
    log_central(NULL, "%s %s * AUTH failed for %s (%s)", s->cid, s->ip, s->authx.login,
                why);
    metrics_inc(METRIC_SMTPD_AUTH_FAILURES);
    smtp_session_refused(s, "auth", s->authx.login);
    if (count && conf->Auth_fail_limit > 0)
        coord_auth_failed(s->w->node->coord, s->ip, s->authx.login, conf->Auth_fail_time);
    if (++s->authx.fails >= (unsigned long)conf->Auth_tolerance) {
        metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_AUTH);
        smtp_session_refused(s, "auth tolerance", conf->Msg_auth_falied);
        smtp_auth_last_failure(s, conf->Incorrect_pass_delay);
        return;
    }
    smtp_policy_refuse(s, conf->Msg_auth_falied, "7.8", conf->Incorrect_pass_delay);
}

static void smtp_auth_ok(struct smtp_session *s)
{
    size_t start = s->out.len;

    s->authx.step = SMTP_AUTH_NONE;
    snprintf(s->auth, sizeof(s->auth), "%s", s->authx.login);
    log_central(NULL, "%s %s * AUTH as %s", s->cid, s->ip, s->auth);
    smtp_session_reply(s, s->conf->Msg_auth_ok, "7.0", NULL, NULL);
    smtp_session_resume(s, start, 0);
}

/*
 * After Event.auth (Auth? tells the outcome): Deny! or Defer! turn a good
 * login into a refused one, Close! hangs up; nothing turns a wrong
 * password into a login.
 */
static void smtp_auth_judged(struct smtp_session *s)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);

    if (s->auth_status == ACCOUNTS_AUTH_OK)
        s->auth[0] = '\0';        /* set for the rules only, until now */
    if (o->verdict == RULES_CLOSE) {
        s->authx.step = SMTP_AUTH_NONE;
        smtp_session_hangup(s, s->conf->Msg_perm_deny, "7.0", "rules: Close!");
        return;
    }
    if (s->auth_status == ACCOUNTS_AUTH_OK &&
        (o->verdict == RULES_DENY || o->verdict == RULES_DEFER)) {
        s->authx.step = SMTP_AUTH_NONE;
        log_central(NULL, "%s %s * AUTH as %s refused by Event.auth", s->cid, s->ip,
                    s->authx.login);
        smtp_policy_refuse(s, smtp_rules_reply(s, s->conf->Msg_auth_falied), "7.1", o->delay);
        return;
    }
    switch (s->auth_status) {
    case ACCOUNTS_AUTH_OK:
        smtp_auth_ok(s);
        break;
    case ACCOUNTS_AUTH_FAIL:
        smtp_auth_fail(s, 1, "unknown login or wrong password");
        break;
    default:
        s->authx.step = SMTP_AUTH_NONE;
        smtp_policy_refuse(s, SMTP_AUTH_TEMPFAIL, "7.0", 0);
        break;
    }
}

static void smtp_auth_decide(struct smtp_session *s, const struct accounts_result *r)
{
    s->auth_status = r->status;
    if (r->status != ACCOUNTS_AUTH_OK && r->status != ACCOUNTS_AUTH_FAIL)
        log_warn("%s: AUTH lookup of %s failed: %s", s->cid, s->authx.login,
                 r->error ? r->error : "temporary failure");
    if (r->status == ACCOUNTS_AUTH_OK)   /* %U and Auth? see who logged in */
        snprintf(s->auth, sizeof(s->auth), "%s", s->authx.login);
    smtp_rules_event(s, RULES_EV_AUTH, smtp_auth_judged);
}

/* ---- asking: the lockout, then the modules ---- */

static void smtp_auth_answered(void *arg, struct accounts_req *req)
{
    smtp_auth_decide(arg, accounts_result(req));
}

static void smtp_auth_checked(void *arg, int verdict)
{
    struct smtp_session *s = arg;
    struct accounts_req *req;
    enum accounts_wait w;

    async_req_end(&s->authx.holding);
    if (verdict == COORD_LIMIT) {
        smtp_auth_wipe(s);
        smtp_auth_fail(s, 0, "locked out: Auth_fail_limit");
        return;
    }
    w = accounts_auth(&s->w->node->mods, s->conf, &s->own, s->authx.login,
                      s->authx.password, &req, smtp_auth_answered, s);
    smtp_auth_wipe(s);   /* the request has its own copy */
    if (w == ACCOUNTS_WAIT)
        return;
    smtp_auth_decide(s, accounts_result(req));
    accounts_free(req);
}

/* A login that may go into logs, Received: and the queue file. */
static int smtp_auth_login_ok(const char *p, size_t n)
{
    if (n == 0 || n >= SMTP_AUTH_FIELD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return 0;
    return 1;
}

/* Login and password are in authx (the password not yet checked for
 * length or NUL: bad ones fail like a wrong password). */
static void smtp_auth_check(struct smtp_session *s, const unsigned char *pw, size_t pwlen)
{
    const struct config *conf = s->conf;

    if (pwlen == 0 || pwlen >= SMTP_AUTH_FIELD_MAX || memchr(pw, '\0', pwlen)) {
        smtp_auth_fail(s, 1, "unusable password");
        return;
    }
    memcpy(s->authx.password, pw, pwlen);
    s->authx.password[pwlen] = '\0';
    s->authx.step = SMTP_AUTH_CHECK;
    async_req_start(&s->authx.holding, &s->own, smtp_auth_holding_cancelled, 0);
    smtp_session_wait(s, "AUTH check");
    coord_auth_check(s->w->node->coord, &s->own, s->ip, s->authx.login,
                     conf->Auth_fail_limit, smtp_auth_checked, s);
}

/* Takes the login; 0, or -1 when it is not usable (a failed login). */
static int smtp_auth_set_login(struct smtp_session *s, const void *p, size_t n)
{
    size_t k = n < SMTP_AUTH_FIELD_MAX - 1 ? n : SMTP_AUTH_FIELD_MAX - 1;

    /* Kept even when unusable, so the failure is counted for something:
     * only printable bytes of it (it is logged). */
    for (size_t i = 0; i < k; i++) {
        unsigned char c = ((const unsigned char *)p)[i];
        s->authx.login[i] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    s->authx.login[k] = '\0';
    return smtp_auth_login_ok(p, n) ? 0 : -1;
}

/* ---- the responses ---- */

static void smtp_auth_plain(struct smtp_session *s, const unsigned char *msg, size_t n)
{
    struct smtp_plain p;

    if (smtp_cmd_plain_split(msg, n, &p) < 0) {
        smtp_auth_abort(s, SMTP_AUTH_UNDECODABLE, "5.2");
        return;
    }
    if (smtp_auth_set_login(s, p.authcid, p.authcid_len) < 0) {
        smtp_auth_fail(s, 1, "unusable login");
        return;
    }
    /* Acting for someone else (an authorization identity) is not offered. */
    if (p.authzid_len && (p.authzid_len != p.authcid_len ||
                          memcmp(p.authzid, p.authcid, p.authcid_len) != 0)) {
        smtp_auth_fail(s, 1, "authorization identity refused");
        return;
    }
    smtp_auth_check(s, p.password, p.password_len);
}

/* One decoded response, for the step the exchange is at. */
static void smtp_auth_response(struct smtp_session *s, const unsigned char *d, size_t n)
{
    switch (s->authx.step) {
    case SMTP_AUTH_PLAIN:
        smtp_auth_plain(s, d, n);
        break;
    case SMTP_AUTH_USER:
        if (smtp_auth_set_login(s, d, n) < 0) {
            smtp_auth_fail(s, 1, "unusable login");
            break;
        }
        s->authx.step = SMTP_AUTH_PASS;
        smtp_session_reply_raw(s, SMTP_AUTH_PASS_PROMPT);
        break;
    case SMTP_AUTH_PASS:
        smtp_auth_check(s, d, n);
        break;
    default:
        break;
    }
}

/* A response as the client sent it: "*" cancels, "=" is empty (RFC 4954
 * section 4, for an initial response), anything else is base64. */
static void smtp_auth_text(struct smtp_session *s, const char *text, size_t n, int initial)
{
    unsigned char d[SMTP_CMD_LINE_MAX];
    size_t dn = 0;

    if (n == 1 && text[0] == '*' && !initial) {
        smtp_auth_abort(s, SMTP_AUTH_CANCELLED, "7.0");
        return;
    }
    if (!(initial && n == 1 && text[0] == '=') &&
        smtp_cmd_b64_decode(text, n, d, sizeof(d), &dn) < 0) {
        smtp_auth_abort(s, SMTP_AUTH_UNDECODABLE, "5.2");
        return;
    }
    smtp_auth_response(s, d, dn);
    explicit_bzero(d, sizeof(d));
}

void smtp_auth_line(struct smtp_session *s, const char *line, size_t n)
{
    smtp_auth_text(s, line, n, 0);
}

void smtp_auth_line_too_long(struct smtp_session *s)
{
    smtp_auth_abort(s, SMTP_AUTH_TOO_LONG, "5.6");
}

/* ---- the command ---- */

/* The refusals before any exchange starts; 1 when AUTH may go on. */
static int smtp_auth_allowed(struct smtp_session *s)
{
    const struct config *conf = s->conf;

    if (!s->greeted)
        smtp_policy_refuse(s, conf->Msg_sequence_error, "5.1", 0);
    else if (!s->esmtp || !smtp_auth_offered(s))
        smtp_policy_refuse(s, SMTP_AUTH_NOT_ENABLED, "5.1", 0);
    else if (s->auth[0])
        smtp_policy_refuse(s, SMTP_AUTH_ALREADY, "5.1", 0);
    else if (s->txn.active)
        smtp_policy_refuse(s, SMTP_AUTH_IN_TXN, "5.1", 0);
    else
        return 1;
    return 0;
}

void smtp_auth_command(struct smtp_session *s, const struct smtp_cmd *c)
{
    const char *arg = c->arg, *end = c->arg + c->arglen, *ir;
    size_t mlen = 0;

    if (!smtp_auth_allowed(s))
        return;
    while (mlen < c->arglen && arg[mlen] != ' ')   /* the line has no NUL */
        mlen++;
    if (mlen == 0) {
        smtp_policy_refuse(s, SMTP_AUTH_SYNTAX, "5.4", 0);
        return;
    }
    ir = arg + mlen;
    while (ir < end && *ir == ' ')
        ir++;
    s->authx.login[0] = '\0';
    if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
        s->authx.step = SMTP_AUTH_PLAIN;
        s->authx.mech = "PLAIN";
    } else if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
        s->authx.step = SMTP_AUTH_USER;
        s->authx.mech = "LOGIN";
    } else {
        smtp_policy_refuse(s, SMTP_AUTH_UNKNOWN_MECH, "5.4", 0);
        return;
    }
    if (ir < end) {
        smtp_auth_text(s, ir, (size_t)(end - ir), 1);
        return;
    }
    if (s->authx.step == SMTP_AUTH_PLAIN)
        smtp_session_reply_raw(s, "334 \r\n");
    else
        smtp_session_reply_raw(s, SMTP_AUTH_USER_PROMPT);
}
