/*
 * smtp_milter.c - the milters as an SMTP session uses them (Milters,
 * Milter_timeout, Milter_default_action; docs/milter.md).
 *
 * Owns: which milters a transaction calls (the session's view at MAIL, so
 * a Def! chooses them), when each protocol step is sent (connect and helo
 * replayed when a connection opens at MAIL, then mail, rcpt, data, and the
 * header, body and end of message after the final dot), the macros, what
 * each reply means for the command that waits, the default action when a
 * milter fails, and the changes milters make at the end of a message:
 * header fields, sender, recipients and body, applied before the commit
 * so the c and l files are the filtered ones.  Milters are asked in
 * order, one at a time; each sees the message as those before changed it.
 *
 * Must not: write replies or change the session's state (the command that
 * asked does, from smtp_milter_outcome), or touch the spool other than
 * through spool.h.  Every wait is a request of the session (milter.c, the
 * thread-pool read of the body): a session that goes cancels them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "milter.h"
#include "milter_head.h"
#include "net.h"
#include "smtp_milter_pkt.h"
#include "smtp_session.h"
#include "smtp_worker.h"
#include "spool.h"

#define MI_BODY_RAW 32000        /* content bytes per chunk: twice that with CR LF fits */
#define MI_CAPTURE_EXTRA 65536   /* header capture past Max_header_size (ours) */

enum mi_step { MI_MAIL, MI_RCPT, MI_DATA, MI_EOM };
/* Where one milter is within a step, in the order they come. */
enum mi_sub { MI_OPEN, MI_CONNECT, MI_HELO, MI_CMD, MI_HEADERS, MI_EOH, MI_BODY, MI_END,
              MI_DONE };

#define MI_T(x) (1u << (x))
/* Where each part may lead (mi_set_sub checks): on through the step;
 * done with this milter from anywhere (accept, a failure, the steps it
 * did not want); from done to where the next milter starts. */
static const unsigned mi_next[] = {
    [MI_OPEN] = MI_T(MI_CONNECT) | MI_T(MI_DONE),
    [MI_CONNECT] = MI_T(MI_HELO) | MI_T(MI_DONE),
    [MI_HELO] = MI_T(MI_CMD) | MI_T(MI_DONE),
    [MI_CMD] = MI_T(MI_DONE),
    [MI_HEADERS] = MI_T(MI_HEADERS) | MI_T(MI_EOH) | MI_T(MI_DONE),
    [MI_EOH] = MI_T(MI_BODY) | MI_T(MI_DONE),
    [MI_BODY] = MI_T(MI_END) | MI_T(MI_DONE),
    [MI_END] = MI_T(MI_DONE),
    [MI_DONE] = MI_T(MI_OPEN) | MI_T(MI_CMD) | MI_T(MI_HEADERS) | MI_T(MI_DONE),
};
static const char *const mi_sub_names[] = {
    "open", "connect", "helo", "command", "header", "end of header", "body",
    "end of message", "done",
};

struct smtp_milters {
    struct smtp_session *s;
    char list[1024];                        /* the Milters value they are for */
    struct milter *m[SMTP_MILTERS_MAX];     /* NULL: not open (or failed) */
    unsigned char skip[SMTP_MILTERS_MAX];   /* 1: this message, 2: the session */
    size_t n;
    int in_msg;                             /* mail sent, end not reached: abort due */
    int txn;                                /* this transaction has milters (MAIL) */
    int discard;                            /* a milter said discard: the rest skips */
    char refuse[512];                       /* said at connect or helo: every MAIL */
    struct smtp_milter_outcome out;
    /* the step under way */
    enum mi_step step;
    enum mi_sub sub;
    size_t cur, hdr;
    void (*next)(struct smtp_session *s);
    const char *rcpt;
    struct buf pkt;
    /* the message */
    struct buf cap;                         /* the content's start: the header section,
                                               and a small message whole */
    int cap_done;
    int body_mem;                           /* the body is all in cap */
    struct milter_head head;
    size_t body_off, body_len, body_at;
    char file[4200];
    struct buf body;                        /* a replaced body (LF), for those after */
    int body_replaced;
    struct buf newbody;                     /* the current milter's replacement */
    int replacing;
    struct buf raw;                         /* a chunk read from the file */
    int read_err;
};

static void mi_go(struct smtp_milters *mi);

/* The one place a milter's part of a step changes: checked, logged. */
static void mi_set_sub(struct smtp_milters *mi, enum mi_sub to)
{
    struct smtp_session *s = mi->s;

    if (!(mi_next[mi->sub] & MI_T(to)))
        log_panic("%s: milter step %s -> %s is not allowed", s->cid,
                  mi_sub_names[mi->sub], mi_sub_names[to]);
    if (s->conf->Log_lvl == 0 && to != mi->sub)
        log_central(s->txn.qid[0] ? s->txn.qid : NULL, "%s %s * milter %zu: %s -> %s",
                    s->cid, s->ip, mi->cur + 1, mi_sub_names[mi->sub], mi_sub_names[to]);
    mi->sub = to;
}

/* ---- the session's milters ---- */

static const char *mi_action(const struct config *c)
{
    return strcasecmp(c->Milter_default_action, "accept") == 0 ? "accept"
         : strcasecmp(c->Milter_default_action, "reject") == 0 ? "reject" : "tempfail";
}

static void mi_close_all(struct smtp_milters *mi)
{
    for (size_t i = 0; i < mi->n; i++) {
        if (mi->m[i])
            milter_release(mi->m[i]);
        mi->m[i] = NULL;
        mi->skip[i] = 0;
    }
    mi->n = 0;
    mi->in_msg = 0;
    mi->refuse[0] = '\0';
    mi->list[0] = '\0';   /* the next MAIL opens them again */
}

int smtp_milter_active(const struct smtp_session *s)
{
    return s->conf->Milters[strspn(s->conf->Milters, " \t,")] != '\0';
}

int smtp_milter_on(const struct smtp_session *s)
{
    return s->milters && s->milters->txn && s->milters->n;
}

/* The transaction's list: the connections are for it, or are made anew. */
static struct smtp_milters *mi_for(struct smtp_session *s)
{
    struct smtp_milters *mi = s->milters;
    char word[256];

    if (mi == NULL) {
        mi = s->milters = mem_zalloc(sizeof(*mi));
        mi->s = s;
        buf_init(&mi->pkt, 0);
        buf_init(&mi->cap, 0);
        buf_init(&mi->body, 0);
        buf_init(&mi->newbody, 0);
        buf_init(&mi->raw, 0);
        milter_head_init(&mi->head);
    }
    if (strcmp(mi->list, s->conf->Milters) != 0) {
        mi_close_all(mi);
        snprintf(mi->list, sizeof(mi->list), "%s", s->conf->Milters);
        while (mi->n < SMTP_MILTERS_MAX && net_word(mi->list, (int)mi->n, word,
                                                    sizeof(word)) == 0)
            mi->n++;
    }
    return mi;
}

/* ---- outcomes ---- */

static void mi_verdict(struct smtp_milters *mi, int v, const char *reply)
{
    mi->out.verdict = v;
    snprintf(mi->out.reply, sizeof(mi->out.reply), "%s", reply);
}

/* A milter's own reply ('y'): one line, 4xx or 5xx, else its class's
 * default.  Continuation lines are joined: the session answers in one. */
static void mi_replycode(struct smtp_milters *mi, const char *text)
{
    char line[512];
    size_t o = 0;

    for (const char *p = text; *p && o < sizeof(line) - 1; p++) {
        if (*p == '\r' || *p == '\n') {
            p += strspn(p, "\r\n");
            if (strspn(p, "0123456789") == 3 && (p[3] == '-' || p[3] == ' '))
                p += 4;
            line[o++] = ' ';
            p--;
            continue;
        }
        if ((unsigned char)*p >= 32)
            line[o++] = *p;
    }
    while (o && line[o - 1] == ' ')
        o--;
    line[o] = '\0';
    if ((line[0] != '4' && line[0] != '5') || strspn(line, "0123456789") != 3 ||
        (line[3] != ' ' && line[3] != '\0'))
        mi_verdict(mi, SMTP_MILTER_REFUSE, line[0] == '4' ? SMTP_MILTER_TEMPFAIL
                                                           : SMTP_MILTER_REJECT);
    else
        mi_verdict(mi, SMTP_MILTER_REFUSE, line);
}

static const char *mi_step_name(const struct smtp_milters *mi)
{
    static const char *const subs[] = {"connect", "connect", "helo", NULL, "header",
                                       "end of header", "body", "end of message", ""};
    static const char *const steps[] = {"mail", "rcpt", "data", "end of message"};

    return subs[mi->sub] ? subs[mi->sub] : steps[mi->step];
}

/* The milter is gone (cannot connect, silent, closed, spoke nonsense):
 * Milter_default_action decides for the command that waits. */
static void mi_failed(struct smtp_milters *mi, const char *why)
{
    struct smtp_session *s = mi->s;
    size_t i = mi->cur;
    const char *act = mi_action(s->conf);

    metrics_inc2(METRIC_MILTER_VERDICTS, METRICS_MI_FAILED, 0);
    log_warn("%s: milter %s failed at %s: %s; Milter_default_action %s", s->cid,
             mi->m[i] ? milter_name(mi->m[i]) : "?", mi_step_name(mi), why, act);
    if (mi->m[i])
        milter_release(mi->m[i]);
    mi->m[i] = NULL;
    if (strcmp(act, "accept") == 0)
        mi->skip[i] = 2;
    else
        mi_verdict(mi, SMTP_MILTER_REFUSE, act[0] == 'r' ? SMTP_MILTER_REJECT
                                                         : SMTP_MILTER_TEMPFAIL);
}

/* ---- replies ---- */

static void mi_advance(struct smtp_milters *mi);

static char *mi_strip_path(char *a)
{
    size_t n;

    if (a[0] == '<')
        a++;
    n = strcspn(a, ">");
    a[n] = '\0';
    return a;
}

/* An address a milter gives: a path that fits and has no space or
 * control character; NULL otherwise. */
static const char *mi_addr(struct smtp_milters *mi, const struct milter_pkt *p, char *out)
{
    const char *a = milter_proto_arg(p, 0, 0);

    (void)mi;
    if (a == NULL || strlen(a) > ADDR_PATH_MAX)
        return NULL;
    snprintf(out, ADDR_PATH_MAX + 2, "%s", a);
    a = mi_strip_path(out);
    for (const char *c = a; *c; c++)
        if ((unsigned char)*c <= 32 || *c == 127)
            return NULL;
    return a;
}

static int mi_envelope(struct smtp_milters *mi, const struct milter_pkt *p)
{
    struct smtp_session *s = mi->s;
    char buf[ADDR_PATH_MAX + 2];
    const char *a = mi_addr(mi, p, buf);

    if (a == NULL)
        return -1;
    if (p->cmd == MILTER_R_CHGFROM) {
        s->txn.from = arena_strdup(&s->txn.mem, a);
        log_central(s->txn.qid, "%s %s * milter %s: sender changed to <%s>", s->cid, s->ip,
                    milter_name(mi->m[mi->cur]), a);
    } else if (p->cmd == MILTER_R_DELRCPT) {
        smtp_policy_del_rcpt(s, a);
        log_central(s->txn.qid, "%s %s * milter %s: recipient <%s> removed", s->cid, s->ip,
                    milter_name(mi->m[mi->cur]), a);
    } else {
        if (smtp_policy_add_rcpt(s, a, "milter") < 0)
            return -1;
        log_central(s->txn.qid, "%s %s * milter %s: recipient <%s> added", s->cid, s->ip,
                    milter_name(mi->m[mi->cur]), a);
    }
    return 0;
}

static int mi_header_change(struct smtp_milters *mi, const struct milter_pkt *p)
{
    const char *name, *value;
    uint32_t idx = 0;
    size_t skip = 0;

    if (p->cmd != MILTER_R_ADDHEADER) {
        idx = milter_proto_get_u32(p);
        skip = 4;
    }
    name = milter_proto_arg(p, skip, 0);
    value = milter_proto_arg(p, skip, 1);
    if (name == NULL || value == NULL)
        return -1;
    if (p->cmd == MILTER_R_ADDHEADER)
        return milter_head_add(&mi->head, name, value);
    if (p->cmd == MILTER_R_INSHEADER)
        return milter_head_insert(&mi->head, idx, name, value);
    return milter_head_change(&mi->head, name, idx, value);
}

/* A replacement body chunk: kept in the spool's form (LF). */
static int mi_body_chunk(struct smtp_milters *mi, const struct milter_pkt *p)
{
    if (!mi->replacing) {
        buf_reset(&mi->newbody);
        mi->newbody.limit = (size_t)mi->s->conf->Max_mail_size;
        mi->replacing = 1;
    }
    for (size_t i = 0; i < p->len; i++) {
        if (p->data[i] == '\r' && i + 1 < p->len && p->data[i + 1] == '\n')
            continue;
        if (buf_putc(&mi->newbody, p->data[i]) < 0)
            return -1;
    }
    return 0;
}

/* The changes a milter may make at the end of a message, if it said it
 * would (the negotiation): 1 when p was one, -1 when it broke a rule. */
static int mi_modification(struct smtp_milters *mi, const struct milter_pkt *p)
{
    static const struct { int cmd; uint32_t action; } need[] = {
        {MILTER_R_ADDHEADER, MILTER_A_ADDHDRS}, {MILTER_R_INSHEADER, MILTER_A_ADDHDRS},
        {MILTER_R_CHGHEADER, MILTER_A_CHGHDRS}, {MILTER_R_CHGFROM, MILTER_A_CHGFROM},
        {MILTER_R_ADDRCPT, MILTER_A_ADDRCPT}, {MILTER_R_ADDRCPT_PAR, MILTER_A_ADDRCPT_PAR},
        {MILTER_R_DELRCPT, MILTER_A_DELRCPT}, {MILTER_R_REPLBODY, MILTER_A_CHGBODY},
        {MILTER_R_QUARANTINE, MILTER_A_QUARANTINE},
    };
    uint32_t actions = milter_neg(mi->m[mi->cur])->actions;
    const char *q;

    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (need[i].cmd != p->cmd)
            continue;
        if (mi->sub != MI_END || !(actions & need[i].action))
            return -1;
        switch (p->cmd) {
        case MILTER_R_REPLBODY:
            return mi_body_chunk(mi, p) < 0 ? -1 : 1;
        case MILTER_R_QUARANTINE:
            q = milter_proto_arg(p, 0, 0);
            mi->out.hold = 1;
            metrics_inc2(METRIC_MILTER_VERDICTS, METRICS_MI_QUARANTINE, 0);
            snprintf(mi->out.hold_reason, sizeof(mi->out.hold_reason), "%s by %s",
                     q && q[0] ? q : "quarantined", milter_name(mi->m[mi->cur]));
            return 1;
        case MILTER_R_ADDHEADER: case MILTER_R_INSHEADER: case MILTER_R_CHGHEADER:
            return mi_header_change(mi, p) < 0 ? -1 : 1;
        default:
            return mi_envelope(mi, p) < 0 ? -1 : 1;
        }
    }
    return 0;
}

static void mi_log_verdict(struct smtp_milters *mi, const char *what)
{
    struct smtp_session *s = mi->s;

    log_central(s->txn.qid[0] ? s->txn.qid : NULL, "%s %s * milter %s: %s at %s%s%s",
                s->cid, s->ip, milter_name(mi->m[mi->cur]), what, mi_step_name(mi),
                mi->out.reply[0] ? ": " : "", mi->out.reply);
}

/* A final reply to the step's command: 0 go on, 1 stop the milters. */
static int mi_final(struct smtp_milters *mi, const struct milter_pkt *p)
{
    int early = mi->sub <= MI_HELO;

    switch (p->cmd) {
    case MILTER_R_CONTINUE:
        mi_advance(mi);
        return 0;
    case MILTER_R_ACCEPT:
        metrics_inc2(METRIC_MILTER_VERDICTS, METRICS_MI_ACCEPT, 0);
        mi->skip[mi->cur] = early ? 2 : 1;
        if (mi->sub == MI_END)
            mi_advance(mi);   /* its changes stand: a new body too */
        else
            mi_set_sub(mi, MI_DONE);
        return 0;
    case MILTER_R_SKIP:
        if (mi->sub != MI_BODY)
            return -1;
        mi_set_sub(mi, MI_END);
        return 0;
    case MILTER_R_DISCARD:
        if (early)
            return -1;
        mi->out.discard = mi->discard = 1;
        metrics_inc2(METRIC_MILTER_VERDICTS, METRICS_MI_DISCARD, 0);
        mi_log_verdict(mi, "discard");
        return 1;
    case MILTER_R_REJECT:
        mi_verdict(mi, SMTP_MILTER_REFUSE, SMTP_MILTER_REJECT);
        break;
    case MILTER_R_TEMPFAIL: case MILTER_R_SHUTDOWN: case MILTER_R_CONN_FAIL:
        mi_verdict(mi, SMTP_MILTER_REFUSE, SMTP_MILTER_TEMPFAIL);
        break;
    case MILTER_R_REPLYCODE:
        mi_replycode(mi, milter_proto_arg(p, 0, 0) ? milter_proto_arg(p, 0, 0) : "");
        break;
    default:
        return -1;
    }
    metrics_inc2(METRIC_MILTER_VERDICTS, p->cmd == MILTER_R_REJECT ? METRICS_MI_REJECT
                                         : p->cmd == MILTER_R_REPLYCODE ? METRICS_MI_REPLY
                                                                        : METRICS_MI_TEMPFAIL, 0);
    mi_log_verdict(mi, p->cmd == MILTER_R_REJECT ? "reject" : p->cmd == MILTER_R_REPLYCODE
                                                                ? "reply" : "tempfail");
    if (early)
        snprintf(mi->refuse, sizeof(mi->refuse), "%s", mi->out.reply);
    return 1;
}

static int mi_reply(void *arg, const struct milter_pkt *p, int failed)
{
    struct smtp_milters *mi = arg;
    int r;

    if (failed) {
        mi_failed(mi, milter_error(mi->m[mi->cur]));
    } else if (p == NULL) {
        mi_advance(mi);                          /* written; no reply asked */
    } else if (mi->sub == MI_OPEN) {
        mi_set_sub(mi, MI_CONNECT);              /* negotiated */
    } else if ((r = mi_modification(mi, p)) != 0) {
        if (r > 0)
            return 1;
        mi_failed(mi, "a change it had not asked to make, or a bad one");
    } else if (mi_final(mi, p) < 0) {
        mi_failed(mi, "a reply that makes no sense here");
    }
    mi_go(mi);
    return 0;
}

/* ---- the steps ---- */

/* Where the next milter starts in this step. */
static enum mi_sub mi_first(const struct smtp_milters *mi)
{
    switch (mi->step) {
    case MI_MAIL: return mi->m[mi->cur] ? MI_CMD : MI_OPEN;
    case MI_EOM: return MI_HEADERS;
    default: return MI_CMD;
    }
}

/* The milter's part of the step is done, or the next part of it. */
static void mi_advance(struct smtp_milters *mi)
{
    switch (mi->sub) {
    case MI_CONNECT: mi_set_sub(mi, MI_HELO); break;
    case MI_HELO: mi_set_sub(mi, MI_CMD); break;
    case MI_HEADERS:
        if (++mi->hdr >= mi->head.n)
            mi_set_sub(mi, MI_EOH);
        break;
    case MI_EOH: mi_set_sub(mi, MI_BODY); break;
    case MI_BODY: break;            /* body_at moved when the chunk was sent */
    case MI_END:
        if (mi->replacing) {
            buf_swap(&mi->body, &mi->newbody);
            mi->body_replaced = 1;
            mi->body_len = mi->body.len;
            mi->replacing = 0;
        }
        mi_set_sub(mi, MI_DONE);
        break;
    default: mi_set_sub(mi, MI_DONE); break;
    }
}

static void mi_send(struct smtp_milters *mi, int no_reply_flag)
{
    struct milter *m = mi->m[mi->cur];

    milter_send(m, &mi->pkt, !(milter_neg(m)->proto & (uint32_t)no_reply_flag), mi_reply, mi);
}

static void mi_opened(struct smtp_milters *mi)
{
    struct smtp_session *s = mi->s;
    char word[256], why[200];

    net_word(mi->list, (int)mi->cur, word, sizeof(word));
    mi->m[mi->cur] = milter_open(&s->w->loop, word, s->conf->Milter_timeout, &s->own,
                                 mi_reply, mi, why, sizeof(why));
    if (mi->m[mi->cur] == NULL) {
        mi_failed(mi, why);
        mi_go(mi);
    }
}

static void mi_body_read_work(void *arg)
{
    struct smtp_milters *mi = arg;
    size_t want = mi->body_len - mi->body_at;
    int fd = open(mi->file, O_RDONLY | O_CLOEXEC);
    ssize_t r = -1;

    if (want > MI_BODY_RAW)
        want = MI_BODY_RAW;
    mi->read_err = 0;
    buf_reset(&mi->raw);
    if (fd >= 0) {
        char tmp[MI_BODY_RAW];
        r = pread(fd, tmp, want, (off_t)(mi->body_off + mi->body_at));
        if (r > 0)
            buf_append(&mi->raw, tmp, (size_t)r);
    }
    if (r <= 0)
        mi->read_err = r == 0 ? EIO : errno;
    if (fd >= 0)
        close(fd);
}

static void mi_body_read_after(void *arg, int status)
{
    struct smtp_milters *mi = arg;

    if (mi->m[mi->cur] == NULL || !milter_usable(mi->m[mi->cur])) {
        mi_failed(mi, mi->m[mi->cur] ? milter_error(mi->m[mi->cur]) : "gone");
        mi_go(mi);
        return;
    }
    if (status || mi->read_err) {
        log_warn("%s: milter: cannot read the message's file %s: %s", mi->s->cid, mi->file,
                 strerror(mi->read_err ? mi->read_err : EIO));
        mi_verdict(mi, SMTP_MILTER_REFUSE, SMTP_MILTER_TEMPFAIL);
        mi_go(mi);
        return;
    }
    smtp_milter_pkt_body(&mi->pkt, mi->raw.data, mi->raw.len);
    mi->body_at += mi->raw.len;
    mi_send(mi, MILTER_P_NR_BODY);
}

/* The next body chunk, from the replaced body or the message's file. */
static void mi_body_next(struct smtp_milters *mi)
{
    size_t n = mi->body_len - mi->body_at;

    if (n > MI_BODY_RAW)
        n = MI_BODY_RAW;
    if (mi->body_replaced || mi->body_mem) {
        smtp_milter_pkt_body(&mi->pkt, (mi->body_replaced ? mi->body.data
                                           : mi->cap.data + mi->body_off) + mi->body_at, n);
        mi->body_at += n;
        mi_send(mi, MILTER_P_NR_BODY);
        return;
    }
    if (async_work(&mi->s->own, &mi->s->w->loop, mi_body_read_work, mi_body_read_after,
                   mi) != 0) {
        mi_verdict(mi, SMTP_MILTER_REFUSE, SMTP_MILTER_TEMPFAIL);
        mi_go(mi);
    }
}

/* Headers: one by one when the milter answers each, else all at once. */
static void mi_headers(struct smtp_milters *mi, int leadspc, int noreply)
{
    if (!noreply) {
        smtp_milter_pkt_header(&mi->pkt, &mi->head.f[mi->hdr], leadspc);
        mi_send(mi, 0);
        return;
    }
    while (mi->hdr < mi->head.n)
        smtp_milter_pkt_header(&mi->pkt, &mi->head.f[mi->hdr++], leadspc);
    mi->hdr = mi->head.n - 1;   /* the write's completion advances past the last */
    milter_send(mi->m[mi->cur], &mi->pkt, 0, mi_reply, mi);
}

/*
 * One action for the current milter: 1 when it sent something (its
 * answer calls mi_go again), 0 when the part was skipped.
 */
static int mi_act(struct smtp_milters *mi)
{
    struct smtp_session *s = mi->s;
    const struct milter_neg *neg = milter_neg(mi->m[mi->cur]);
    uint32_t pf = neg->proto;

    switch (mi->sub) {
    case MI_CONNECT:
        if (pf & MILTER_P_NOCONNECT)
            break;
        smtp_milter_pkt_connect(&mi->pkt, s);
        mi_send(mi, MILTER_P_NR_CONN);
        return 1;
    case MI_HELO:
        if (pf & MILTER_P_NOHELO)
            break;
        smtp_milter_pkt_macros(&mi->pkt, s, MILTER_C_HELO, NULL);
        milter_proto_put(&mi->pkt, MILTER_C_HELO, s->helo, strlen(s->helo) + 1);
        mi_send(mi, MILTER_P_NR_HELO);
        return 1;
    case MI_CMD:
        if (mi->step == MI_MAIL && !(pf & MILTER_P_NOMAIL)) {
            smtp_milter_pkt_addr(&mi->pkt, s, MILTER_C_MAIL, s->txn.from,
                                 strcmp(s->txn.body, "8BITMIME") == 0 ? "BODY=8BITMIME"
                                                                      : NULL);
            mi_send(mi, MILTER_P_NR_MAIL);
            return 1;
        }
        if (mi->step == MI_RCPT && !(pf & MILTER_P_NORCPT)) {
            smtp_milter_pkt_addr(&mi->pkt, s, MILTER_C_RCPT, mi->rcpt, NULL);
            mi_send(mi, MILTER_P_NR_RCPT);
            return 1;
        }
        if (mi->step == MI_DATA && neg->version >= 4 && !(pf & MILTER_P_NODATA)) {
            smtp_milter_pkt_macros(&mi->pkt, s, MILTER_C_DATA, NULL);
            milter_proto_put(&mi->pkt, MILTER_C_DATA, NULL, 0);
            mi_send(mi, MILTER_P_NR_DATA);
            return 1;
        }
        break;
    case MI_HEADERS:
        if ((pf & MILTER_P_NOHDRS) || mi->hdr >= mi->head.n)
            break;
        mi_headers(mi, (pf & MILTER_P_HDR_LEADSPC) != 0, (pf & MILTER_P_NR_HDR) != 0);
        return 1;
    case MI_EOH:
        if (pf & MILTER_P_NOEOH)
            break;
        smtp_milter_pkt_macros(&mi->pkt, s, MILTER_C_EOH, NULL);
        milter_proto_put(&mi->pkt, MILTER_C_EOH, NULL, 0);
        mi_send(mi, MILTER_P_NR_EOH);
        return 1;
    case MI_BODY:
        if ((pf & MILTER_P_NOBODY) || mi->body_at >= mi->body_len) {
            mi_set_sub(mi, MI_END);
            return 0;
        }
        mi_body_next(mi);
        return 1;
    case MI_END:
        smtp_milter_pkt_macros(&mi->pkt, s, MILTER_C_EOB, NULL);
        milter_proto_put(&mi->pkt, MILTER_C_EOB, NULL, 0);
        mi_send(mi, 0);
        return 1;
    default:
        break;
    }
    mi_advance(mi);
    return 0;
}

static void mi_finish(struct smtp_milters *mi);

/* A command waits for the milters (at the end of data the session is in
 * COMMIT, which waits by itself). */
static void mi_wait(struct smtp_milters *mi)
{
    if (mi->s->state == SMTP_S_COMMAND)
        smtp_session_wait(mi->s, "milters");
}

/* Runs the step through the milters in order until one answers for good,
 * or all did; returns while a milter is asked. */
static void mi_go(struct smtp_milters *mi)
{
    for (;;) {
        if (mi->out.verdict || mi->out.discard || mi->cur >= mi->n) {
            mi_finish(mi);
            return;
        }
        if (mi->sub == MI_DONE || mi->skip[mi->cur]) {
            mi_set_sub(mi, MI_DONE);
            if (++mi->cur < mi->n) {
                mi_set_sub(mi, mi_first(mi));
                mi->hdr = 0;
                mi->body_at = 0;
            }
            continue;
        }
        if (mi->sub == MI_OPEN) {
            mi_wait(mi);
            mi_opened(mi);
            return;
        }
        if (mi->m[mi->cur] == NULL || !milter_usable(mi->m[mi->cur])) {
            mi_failed(mi, mi->m[mi->cur] ? milter_error(mi->m[mi->cur])
                                         : "failed earlier in this transaction");
            continue;
        }
        if (mi_act(mi)) {
            mi_wait(mi);
            return;
        }
    }
}

static void mi_start(struct smtp_session *s, enum mi_step step,
                     void (*next)(struct smtp_session *s))
{
    struct smtp_milters *mi = s->milters;

    memset(&mi->out, 0, sizeof(mi->out));
    mi->out.discard = mi->discard;
    if (step == MI_MAIL)
        mi->in_msg = mi->txn = 1;
    mi->step = step;
    mi->next = next;
    mi->cur = 0;
    mi->hdr = 0;
    mi->body_at = 0;
    mi->sub = mi->n ? mi_first(mi) : MI_DONE;   /* a step starts: no transition */
    mi_go(mi);
}

/* ---- the session's calls ---- */

void smtp_milter_mail(struct smtp_session *s, void (*next)(struct smtp_session *s))
{
    struct smtp_milters *mi = mi_for(s);

    buf_reset(&mi->cap);
    mi->cap_done = 0;
    if (mi->refuse[0]) {
        memset(&mi->out, 0, sizeof(mi->out));
        mi_verdict(mi, SMTP_MILTER_REFUSE, mi->refuse);
        next(s);
        return;
    }
    mi_start(s, MI_MAIL, next);
}

void smtp_milter_rcpt(struct smtp_session *s, const char *rcpt,
                      void (*next)(struct smtp_session *s))
{
    s->milters->rcpt = rcpt;
    mi_start(s, MI_RCPT, next);
}

void smtp_milter_data(struct smtp_session *s, void (*next)(struct smtp_session *s))
{
    mi_start(s, MI_DATA, next);
}

void smtp_milter_capture(struct smtp_session *s, const char *p, size_t n)
{
    struct smtp_milters *mi = s->milters;
    size_t max = (size_t)s->conf->Max_header_size + MI_CAPTURE_EXTRA, take;

    if (mi == NULL || mi->cap_done)
        return;
    /* What fits is kept: the header section (a bigger one is refused by
     * the DATA parser), and most messages whole, whose body then needs no
     * reading from the file. */
    take = max > mi->cap.len ? max - mi->cap.len : 0;
    if (take > n)
        take = n;
    buf_append(&mi->cap, p, take);
    if (take < n)
        mi->cap_done = 1;
}

void smtp_milter_eom(struct smtp_session *s, const char *file,
                     void (*next)(struct smtp_session *s))
{
    struct smtp_milters *mi = s->milters;
    size_t size = spool_msg_size(s->txn.msg);

    snprintf(mi->file, sizeof(mi->file), "%s", file);
    milter_head_free(&mi->head);
    milter_head_init(&mi->head);
    mi->body_off = milter_head_parse(&mi->head, mi->cap.data, mi->cap.len);
    mi->body_len = size > mi->body_off ? size - mi->body_off : 0;
    mi->body_mem = !mi->cap_done && mi->cap.len == size;
    mi->body_replaced = 0;
    mi->replacing = 0;
    buf_free(&mi->body);
    mi_start(s, MI_EOM, next);
}

static void mi_rewritten(void *arg)
{
    struct smtp_session *s = arg;

    s->milters->next(s);
}

/* The step is over: the command goes on; at the end of a message, with
 * its content rewritten first when a milter changed it. */
static void mi_finish(struct smtp_milters *mi)
{
    struct smtp_session *s = mi->s;
    struct buf head = BUF_INIT(0);

    if (mi->step != MI_EOM || mi->out.verdict || mi->out.discard ||
        (!mi->head.changed && !mi->body_replaced)) {
        if (mi->step == MI_EOM && !mi->out.verdict)
            mi->in_msg = 0;
        mi->next(s);
        return;
    }
    mi->in_msg = 0;
    milter_head_format(&mi->head, &head);
    log_central(s->txn.qid, "%s %s * milters changed the %s%s%s", s->cid, s->ip,
                mi->head.changed ? "header" : "", mi->head.changed && mi->body_replaced
                                                  ? " and the " : "",
                mi->body_replaced ? "body" : "");
    spool_msg_rewrite(s->txn.msg, &head, mi->body_off,
                      mi->body_replaced ? &mi->body : NULL, mi_rewritten, s);
    buf_free(&head);
}

const struct smtp_milter_outcome *smtp_milter_outcome(const struct smtp_session *s)
{
    static const struct smtp_milter_outcome none;

    return s->milters ? &s->milters->out : &none;
}

void smtp_milter_txn_end(struct smtp_session *s)
{
    struct smtp_milters *mi = s->milters;
    struct buf abort = BUF_INIT(0);

    if (mi == NULL)
        return;
    for (size_t i = 0; i < mi->n; i++) {
        if (mi->in_msg && mi->m[i] && milter_usable(mi->m[i])) {
            milter_proto_put(&abort, MILTER_C_ABORT, NULL, 0);
            milter_post(mi->m[i], &abort);
        }
        if (mi->skip[i] == 1)
            mi->skip[i] = 0;
    }
    buf_free(&abort);
    mi->in_msg = mi->txn = mi->discard = 0;
    memset(&mi->out, 0, sizeof(mi->out));
    buf_reset(&mi->cap);
    mi->cap_done = 0;
}

void smtp_milter_reset(struct smtp_session *s)
{
    if (s->milters)
        mi_close_all(s->milters);
}

void smtp_milter_close(struct smtp_session *s)
{
    if (s->milters)
        mi_close_all(s->milters);
}

void smtp_milter_free(struct smtp_session *s)
{
    struct smtp_milters *mi = s->milters;

    if (mi == NULL)
        return;
    mi_close_all(mi);
    buf_free(&mi->pkt);
    buf_free(&mi->cap);
    buf_free(&mi->body);
    buf_free(&mi->newbody);
    buf_free(&mi->raw);
    milter_head_free(&mi->head);
    mem_free(mi);
    s->milters = NULL;
}
