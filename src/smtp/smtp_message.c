/*
 * smtp_message.c - the message of a transaction: the DATA command, the
 * Received header (with the rules' Header! fields and Received-SPF), the
 * content through the DATA parser into the spool, the content checks of
 * Event.data (its programs get the whole message in its file) and the
 * commit whose 250 means the message is on disk.
 *
 * Owns: everything from DATA to the reply after the final dot.  Must not:
 * decide about senders or recipients (smtp_policy.c) or touch the socket
 * (smtp_server.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "queue_file.h"
#include "queue_id.h"
#include "smtp_session.h"
#include "smtp_worker.h"
#include "spf.h"
#include "spool.h"
#include "spool_queues.h"


/* Header! fields, and Received-SPF when a rule had SPF checked for this
 * sender (RFC 7208 section 9.1). */
static void smtp_rules_headers(struct smtp_session *s, struct buf *h)
{
    const struct rules_cache *c = &s->rules.cache;

    if (c->spf >= 0 && strcmp(c->spf_for, s->txn.from) == 0) {
        struct buf spf = BUF_INIT(0);
        spf_received_header(&spf, c->spf, s->ip, s->helo, s->txn.from,
                            s->conf->Server_name);
        for (size_t i = 0; i < spf.len; i++)   /* the spool's lines end in LF */
            if (spf.data[i] != '\r')
                buf_putc(h, spf.data[i]);
        buf_free(&spf);
    }
    for (size_t i = 0; i < s->txn.nheaders; i++)
        buf_printf(h, "%s\n", s->txn.headers[i]);
}

static void smtp_received(struct smtp_session *s, struct buf *h)
{
    const struct config *conf = s->conf;
    char date[64];
    /* RFC 3848: S for TLS, A for AUTH */
    const char *proto = !s->esmtp ? "SMTP" : s->tls ? (s->auth[0] ? "ESMTPSA" : "ESMTPS")
                                                    : (s->auth[0] ? "ESMTPA" : "ESMTP");

    log_format_rfc5322(date, sizeof(date), (long)time(NULL));
    buf_printf(h, "Received: from %s (%s [%s])\n", s->helo,
               s->rdns[0] ? s->rdns : "unknown", s->ip);
    if (s->tls)
        buf_printf(h, "\t(using %s with cipher %s (%d bits))\n",
                   stream_tls_version(&s->io), stream_tls_cipher(&s->io),
                   stream_tls_bits(&s->io));
    if (conf->Hshow_user && s->auth[0])
        buf_printf(h, "\t(authenticated user %s)\n", s->auth);
    buf_printf(h, "\tby %s (Selor) with %s id %s", conf->Server_name, proto,
               s->txn.qid);
    if (s->txn.nrcpt == 1)
        buf_printf(h, "\n\tfor <%s>", s->txn.rcpt[0].orcpt);
    buf_printf(h, "; %s\n", date);
    smtp_rules_headers(s, h);
}

static void smtp_content_rules(struct smtp_session *s);

static void smtp_spool_drained(void *arg)
{
    smtp_session_process(arg);
}

/* After the milters' data step: the message begins (354), unless refused. */
static void smtp_data_filtered(struct smtp_session *s)
{
    const struct config *conf = s->conf;
    const struct smtp_milter_outcome *o = smtp_milter_outcome(s);
    struct buf hdr = BUF_INIT(0);
    int waited = s->state == SMTP_S_WAIT;

    char reply[sizeof(o->reply)];

    if (o->verdict) {   /* the reply outlives the transaction's end */
        snprintf(reply, sizeof(reply), "%s", o->reply);
        smtp_session_refused(s, "DATA (milter)", reply);
        smtp_policy_txn_reset(s);
        smtp_policy_refuse(s, reply, "7.1", 0);
        return;
    }
    s->txn.msg = spool_msg_new(&s->w->spool, &s->own, s->txn.qid);
    smtp_received(s, &hdr);
    s->txn.nheaders_written = s->txn.nheaders;
    spool_msg_write(s->txn.msg, hdr.data, hdr.len);
    if (smtp_milter_on(s))
        smtp_milter_capture(s, hdr.data, hdr.len);
    buf_free(&hdr);
    smtp_data_init(&s->txn.data, (size_t)conf->Max_mail_size,
                   (size_t)conf->Max_header_size);
    log_central(s->txn.qid, "%s %s * from=<%s> nrcpt=%zu", s->cid, s->ip,
                s->txn.from, s->txn.nrcpt);
    smtp_session_reply(s, conf->Msg_send_body, NULL, NULL, NULL);
    smtp_session_set_state(s, SMTP_S_DATA, NULL);
    if (waited)
        smtp_session_process(s);
}

/* After Event.data_cmd: the milters are told, unless refused. */
static void smtp_data_judged(struct smtp_session *s)
{
    if (smtp_policy_verdict(s, s->conf->Msg_refused, "DATA (rules)"))
        return;
    smtp_policy_add_copies(s);
    queue_id_next(&s->w->idgen, s->txn.qid);
    if (smtp_milter_on(s))
        smtp_milter_data(s, smtp_data_filtered);
    else
        smtp_data_filtered(s);
}

void smtp_message_data(struct smtp_session *s)
{
    const struct config *conf = s->conf;

    if (!s->txn.active) {
        smtp_policy_refuse(s, conf->Msg_sequence_error, "5.1", 0);
        return;
    }
    if (s->txn.nrcpt == 0) {
        smtp_policy_refuse(s, conf->Msg_transaction_falied, "5.1", 0);
        return;
    }
    smtp_rules_event(s, RULES_EV_DATA_CMD, smtp_data_judged);
}

static void smtp_commit_done(void *arg, int err, const char *id)
{
    struct smtp_session *s = arg;
    const struct config *conf = s->conf;

    s->txn.msg = NULL;  /* the spool freed it */
    if (err) {
        log_warn("%s: cannot queue %s: %s", s->cid, id, strerror(err));
        smtp_session_reply(s, spool_err_is_nodisk(err) ? conf->Msg_nodisk_space
                                                       : conf->Msg_internal_error,
                           "3.0", NULL, NULL);
    } else {
        for (size_t i = 0; i < s->txn.nrcpt; i++)
            log_summary(id, "accepted from=<%s> to=<%s> size=%zu bytes=%zu client=%s "
                        "tls=%s%s%s", s->txn.from, s->txn.rcpt[i].addr, s->txn.data.size,
                        s->txn.data.wire, s->ip, s->tls ? stream_tls_version(&s->io) : "no",
                        s->tls ? "/" : "", s->tls ? stream_tls_cipher(&s->io) : "");
        metrics_inc(METRIC_MESSAGES_ACCEPTED);
        metrics_add(METRIC_RECIPIENTS_ACCEPTED, s->txn.nrcpt);
        metrics_observe(METRIC_MESSAGE_SIZE, s->txn.data.size);
        s->msgs++;
        s->errors = 0;   /* the count is of errors without delivering mail */
        smtp_session_announce(s, id);
        if (s->rules.hits)
            log_summary(id, "hits=%ld client=%s", s->rules.hits, s->ip);
        smtp_session_reply(s, s->txn.data_reply ? s->txn.data_reply : conf->Msg_mail_accepted,
                           "0.0", id, NULL);
    }
    smtp_policy_txn_reset(s);
    smtp_session_set_state(s, SMTP_S_COMMAND, err ? "not queued" : "queued");
    smtp_session_process(s);
}

/*
 * What the rules decided goes with the message: every option a Def!
 * changed (delivery reads them from the l file), the hits, and the queue
 * a Def! of Queue_path chose (one the node does not serve is refused by
 * the commit, never put elsewhere).
 */
static void smtp_commit_rules(struct smtp_session *s)
{
    struct spool_msg *m = s->txn.msg;
    char tmp[32];

    if (s->rules.hits)
        spool_msg_set_hits(m, s->rules.hits);
    if (s->conf == s->gen)
        return;
    for (int i = 0; i < CONF_COUNT; i++)
        if ((config_option(i)->flags & CONF_F_DEF) && i != CONF_IDX_Queue_path &&
            config_differs(s->conf, i))
            spool_msg_add_setting(m, config_option(i)->name,
                                  config_value_text(s->conf, i, tmp, sizeof(tmp)));
    if (!s->txn.qlimit && config_differs(s->conf, CONF_IDX_Queue_path)) {
        const char *q = spool_queues_for_path(s->conf->Queue_path);
        if (q == NULL)
            log_warn("%s: Def! Queue_path '%s' is not a queue this node set up at start",
                     s->txn.qid, s->conf->Queue_path);
        spool_msg_set_queue(m, q ? q : "(unknown)");
    }
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
    if (t->hold) {
        qf.flags |= QF_F_HOLD;
        log_warn("%s: queued held: %s (selorctl release %s delivers it)", t->qid, t->hold,
                 t->qid);
    }
    for (size_t i = 0; i < t->nrcpt; i++)
        qf_add_rcpt(&qf, t->rcpt[i].addr, t->rcpt[i].orcpt)->via = t->rcpt[i].via;
    smtp_commit_rules(s);
    qf_format(&qf, &l);
    qf_free(&qf);
    spool_msg_commit(t->msg, l.data, l.len, smtp_commit_done, s);
    buf_free(&l);
}

static void smtp_content_headed(void *arg)
{
    smtp_commit(arg);
}

/*
 * Header! of Event.data: the content is written by then, so it is
 * rewritten with the fields on top (above Received:, as a filter's fields
 * would be), before the commit.
 */
static void smtp_commit_with_headers(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    struct buf h = BUF_INIT(0);

    if (t->nheaders == t->nheaders_written) {
        smtp_commit(s);
        return;
    }
    for (size_t i = t->nheaders_written; i < t->nheaders; i++)
        buf_printf(&h, "%s\n", t->headers[i]);
    t->nheaders_written = t->nheaders;
    spool_msg_rewrite(t->msg, &h, 0, NULL, smtp_content_headed, s);
    buf_free(&h);
}

/* After Event.data: refused (Deny!, Defer!, a 4xx/5xx Data_reply!), the
 * connection dropped (Close!), or committed. */
static void smtp_content_judged(struct smtp_session *s)
{
    const struct rules_outcome *o = smtp_rules_outcome(s);
    const char *msg = NULL;

    smtp_policy_add_copies(s);
    if (o->verdict == RULES_CLOSE) {
        smtp_session_refused(s, "content (rules)", "Close!");
        smtp_session_hangup(s, s->conf->Msg_perm_deny, "7.0", "rules: Close!");
        return;
    }
    if (o->verdict == RULES_DENY || o->verdict == RULES_DEFER)
        msg = smtp_rules_reply(s, o->verdict == RULES_DENY ? s->conf->Msg_refused
                                                           : "451 Try again later");
    else if (s->txn.data_reply && s->txn.data_reply[0] != '2')
        msg = s->txn.data_reply;
    if (msg == NULL) {
        smtp_commit_with_headers(s);
        return;
    }
    smtp_session_refused(s, "content (rules)", msg);
    smtp_session_reply(s, msg, "7.1", NULL, NULL);
    smtp_policy_txn_reset(s);
    smtp_session_set_state(s, SMTP_S_COMMAND, "content refused by rules");
    smtp_session_process(s);
}

static void smtp_content_written(void *arg)
{
    struct smtp_session *s = arg;

    smtp_rules_event(s, RULES_EV_DATA, smtp_content_judged);
}

static void smtp_content_judged_none(struct smtp_session *s)
{
    memset(&s->rules.run.out, 0, sizeof(s->rules.run.out));
    smtp_content_judged(s);
}

/* then(s) once the content is whole in its file (s->rules.msgfile), for
 * those who read it there; a spool that failed goes to the commit, which
 * reports it. */
static void smtp_content_whole(struct smtp_session *s, void (*then)(void *arg))
{
    switch (spool_msg_write_out(s->txn.msg, s->rules.msgfile, sizeof(s->rules.msgfile),
                                then, s)) {
    case 1: then(s); break;
    case 0: break;
    default: smtp_commit(s); break;
    }
}

/* After the milters' end of message: refused, discarded, or on to the
 * rules (the content file is the filtered one by now). */
static void smtp_content_filtered(struct smtp_session *s)
{
    const struct smtp_milter_outcome *o = smtp_milter_outcome(s);
    const struct config *conf = s->conf;

    if (o->verdict) {
        smtp_session_refused(s, "content (milter)", o->reply);
        smtp_session_reply(s, o->reply, "7.1", NULL, NULL);
        smtp_policy_txn_reset(s);
        smtp_session_set_state(s, SMTP_S_COMMAND, "content refused by a milter");
        smtp_session_process(s);
        return;
    }
    if (o->discard) {
        log_summary(s->txn.qid, "discarded by a milter from=<%s> nrcpt=%zu client=%s",
                    s->txn.from, s->txn.nrcpt, s->ip);
        s->msgs++;
        smtp_session_reply(s, conf->Msg_mail_accepted, "0.0", s->txn.qid, NULL);
        smtp_policy_txn_reset(s);
        smtp_session_set_state(s, SMTP_S_COMMAND, "discarded by a milter");
        smtp_session_process(s);
        return;
    }
    if (o->hold)
        s->txn.hold = arena_strdup(&s->txn.mem, o->hold_reason);
    if (s->txn.nrcpt == 0) {   /* a milter removed them all */
        smtp_session_refused(s, "content (milter)", "no recipient left");
        smtp_session_reply(s, SMTP_MILTER_REJECT, "7.1", NULL, NULL);
        smtp_policy_txn_reset(s);
        smtp_session_set_state(s, SMTP_S_COMMAND, "no recipient left");
        smtp_session_process(s);
        return;
    }
    smtp_content_rules(s);
}

static void smtp_content_to_milters(void *arg)
{
    struct smtp_session *s = arg;

    smtp_milter_eom(s, s->rules.msgfile, smtp_content_filtered);
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
        smtp_session_reply(s, msg, detail, NULL, NULL);
        smtp_session_refused(s, "content", msg);
        smtp_policy_txn_reset(s);
        smtp_session_set_state(s, SMTP_S_COMMAND, "content refused");
        return;
    }
    smtp_session_set_state(s, SMTP_S_COMMIT, NULL);
    s->rules.size = (long)s->txn.data.size;
    s->rules.msgfile[0] = '\0';
    if (!smtp_milter_on(s)) {
        smtp_content_rules(s);
        return;
    }
    smtp_content_whole(s, smtp_content_to_milters);   /* they read it from its file */
}

/* Event.data, with the content in its file for the rules' programs. */
static void smtp_content_rules(struct smtp_session *s)
{
    if (rules_for(s->rules.set, s->conf->Event_data) == NULL) {
        smtp_content_judged_none(s);
        return;
    }
    smtp_content_whole(s, smtp_content_written);   /* the programs get it in its file */
}

int smtp_message_input(struct smtp_session *s)
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
        if (smtp_milter_on(s))
            smtp_milter_capture(s, s->chunk.data, s->chunk.len);
        buf_reset(&s->chunk);
    }
    /* Reading stops while the spool is behind (smtp_server.c): whoever
     * made it so asks to be woken, with input left to handle or not. */
    if (!done && spool_msg_backlogged(s->txn.msg))
        spool_msg_on_drain(s->txn.msg, smtp_spool_drained, s);
    if (done)
        smtp_data_end(s);
    return done;
}
