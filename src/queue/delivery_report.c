/*
 * delivery_report.c - reports about failed recipients (see
 * delivery_report.h, docs/bounces.md).
 */
#include <stdio.h>
#include <string.h>

#include "bounce.h"
#include "config.h"
#include "delivery_report.h"
#include "log.h"
#include "mem.h"
#include "spool.h"
#include "spool_queues.h"

static int report_is_notice(const struct delivery_report *r)
{
    return (r->qf->flags & QF_F_BOUNCE) != 0;
}

const char *delivery_report_to(const struct delivery_report *r)
{
    return report_is_notice(r) ? r->conf->Postmaster : r->qf->from;
}

/* The l file of a report: null sender, one recipient. */
static void report_envelope(struct delivery_report *r, unsigned flags)
{
    struct queue_file qf;
    const char *to = delivery_report_to(r);

    qf_init(&qf);
    qf.id = r->id;
    qf.sid = r->conf->Sid;
    qf.created = r->now;
    qf.size = (long)r->text.len;
    qf.from = "";
    qf.client_ip = "127.0.0.1";
    qf.client_name = "localhost";
    qf.helo = r->conf->Server_name;
    qf.flags = flags;
    qf_add_rcpt(&qf, to, to);
    buf_reset(&r->envelope);
    qf_format(&qf, &r->envelope);
    qf_free(&qf);
}

static void report_read_template(const struct delivery_report *r, struct buf *out)
{
    const char *path = r->conf->Report_file;

    if (path[0] == '\0' || spool_read_sync(path, out, 64 * 1024) != 0)
        buf_reset(out);
}

/* A report to the sender about every failed recipient. */
static void report_build(struct delivery_report *r)
{
    const struct queue_file *q = r->qf;
    struct bounce_rcpt *br = mem_alloc((q->nrcpt ? q->nrcpt : 1) * sizeof(*br));
    struct bounce_info bi;
    struct buf tpl = BUF_INIT(0);
    char boundary[QUEUE_ID_MAX + 16];
    size_t n = 0;

    for (size_t i = 0; i < q->nrcpt; i++) {
        const struct qf_rcpt *rc = &q->rcpt[i];
        if (rc->state != QF_FAILED)
            continue;
        br[n].addr = rc->addr;
        br[n].orcpt = strcmp(rc->orcpt, rc->addr) ? rc->orcpt : "";
        br[n].answer = rc->answer;
        br[n].remote_mta = "";
        br[n++].status = "";
    }
    report_read_template(r, &tpl);
    snprintf(boundary, sizeof(boundary), "%s/report", r->id);
    memset(&bi, 0, sizeof(bi));
    bi.server_name = r->conf->Server_name;
    bi.report_from = r->conf->Report_from;
    bi.subject = r->conf->Subject_error_msg;
    bi.postmaster = r->conf->Postmaster;
    bi.sender = q->from;
    bi.queue_id = r->qid;
    bi.arrival = q->created;
    bi.now = r->now;
    bi.template_text = tpl.len ? buf_cstr(&tpl) : NULL;
    bi.headers = r->content;
    bi.headers_len = bounce_header_len(r->content, r->len);
    bi.rcpts = br;
    bi.nrcpt = n;
    bi.boundary = boundary;
    bounce_format(&bi, &r->text);
    buf_free(&tpl);
    mem_free(br);
    report_envelope(r, QF_F_BOUNCE);
}

/* A report that could not be delivered: a word to Postmaster. */
static void report_build_notice(struct delivery_report *r)
{
    const struct queue_file *q = r->qf;
    char date[64];

    log_format_rfc5322(date, sizeof(date), r->now);
    buf_printf(&r->text,
               "From: %s\nTo: <%s>\nSubject: %s undeliverable delivery report %s\n"
               "Date: %s\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=us-ascii\n\n"
               "A delivery report could not be delivered to its recipient.\n"
               "Queue ID: %s\n", r->conf->Report_from[0] == '<' ?
               r->conf->Report_from + 1 : r->conf->Report_from,
               r->conf->Postmaster, r->conf->Subject_error_msg, r->qid, date, r->qid);
    if (r->conf->Cp_errors)
        buf_printf(&r->text, "A copy of the report is kept in %s.\n",
                   r->conf->Cp_errors_path);
    for (size_t i = 0; i < q->nrcpt; i++)
        if (q->rcpt[i].state == QF_FAILED)
            buf_printf(&r->text, "Recipient <%s>: %s\n", q->rcpt[i].addr,
                       q->rcpt[i].answer);
    report_envelope(r, QF_F_BOUNCE | QF_F_NOTICE);
}

/* Cp_errors: the failed report's own files, kept in Cp_errors_path. */
static int report_keep_copy(const struct delivery_report *r)
{
    const char *dir = r->conf->Cp_errors_path, *tmp = r->conf->Temp_path;
    struct buf l = BUF_INIT(0);
    char name[QUEUE_ID_MAX + 2];
    int e;

    spool_mkdirs(dir, 0750);
    snprintf(name, sizeof(name), "c%s", r->qid);
    e = spool_write_sync(dir, tmp, name, r->content, r->len);
    if (e)
        return e;
    qf_format(r->qf, &l);
    snprintf(name, sizeof(name), "l%s", r->qid);
    e = spool_write_sync(dir, tmp, name, l.data, l.len);
    buf_free(&l);
    return e;
}

/* The report as a new message: content, then envelope (the commit). */
static int report_queue(const struct delivery_report *r)
{
    char qdir[4096], name[QUEUE_ID_MAX + 2];
    int e;

    /* always the main queue: r->conf may carry a connection's Queue_path,
     * and a report is Selor's own mail, not that client's */
    if (spool_queues_dir("main", qdir, sizeof(qdir)) < 0)
        return ENOENT;
    snprintf(name, sizeof(name), "c%s", r->id);
    e = spool_write_sync(qdir, r->conf->Temp_path, name, r->text.data, r->text.len);
    snprintf(name, sizeof(name), "l%s", r->id);
    if (e == 0)
        e = spool_write_sync(qdir, r->conf->Temp_path, name, r->envelope.data,
                             r->envelope.len);
    if (e == 0)
        e = spool_fsync_dir_sync(qdir);
    return e;
}

int delivery_report_make(struct delivery_report *r)
{
    int e;

    buf_reset(&r->text);
    if (report_is_notice(r)) {
        report_build_notice(r);
        if (r->conf->Cp_errors && (e = report_keep_copy(r)) != 0)
            return e;
    } else {
        report_build(r);
    }
    return report_queue(r);
}

void delivery_report_free(struct delivery_report *r)
{
    buf_free(&r->text);
    buf_free(&r->envelope);
}
