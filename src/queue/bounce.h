/*
 * bounce.h - delivery status notifications (RFC 3464) for failed recipients.
 *
 * Owns: the text of a MAILER-DAEMON report: a multipart/report with
 * report-type=delivery-status whose first part is the human text built from
 * the Report_file template, whose second part is the machine-readable
 * status of each failed recipient, and whose third part is the original
 * message's header section.  Must not: queue the report (queue.c does) or
 * decide whom to report to.
 */
#ifndef SELOR_BOUNCE_H
#define SELOR_BOUNCE_H

#include <stddef.h>

#include "buf.h"

struct bounce_rcpt {
    const char *addr;        /* final recipient */
    const char *orcpt;       /* original recipient ("" = same) */
    const char *answer;      /* why it failed: the remote reply or the local reason */
    const char *remote_mta;  /* host that answered ("" = none, a local failure) */
    const char *status;      /* RFC 3463 code, e.g. "5.1.1"; "" = derived from answer */
};

struct bounce_info {
    const char *server_name;   /* Server_name: Reporting-MTA, Message-ID */
    const char *report_from;   /* Report_from (may carry a stray "<", as the default) */
    const char *subject;       /* Subject_error_msg */
    const char *postmaster;    /* Postmaster */
    const char *sender;        /* the original sender: the report goes to it */
    const char *queue_id;      /* the original message's ID */
    long arrival;              /* when the original was accepted (unix time) */
    long now;
    const char *template_text; /* Report_file's content, or NULL for the built-in */
    const char *headers;       /* the original header section (LF line ends) */
    size_t headers_len;
    const struct bounce_rcpt *rcpts;
    size_t nrcpt;
    const char *boundary;      /* MIME boundary (unique per report) */
};

/*
 * Appends the whole report message (header and body, LF line ends, lines
 * under 1000 bytes) to out.
 *
 * Template variables (Report_file), each replaced in the human part:
 *   %s original sender       %d original queue ID     %h Server_name
 *   %t arrival date          %p Postmaster            %n number of failed recipients
 *   %r the failed recipients, one per line: "<addr>: answer"
 *   %% a percent sign
 */
void bounce_format(const struct bounce_info *bi, struct buf *out);
/* The header section of a message (up to and without the empty line). */
size_t bounce_header_len(const char *content, size_t len);
/* "5.1.1" from an SMTP answer such as "550 5.1.1 No such user", else a
 * code by class ("5.0.0", "4.0.0"); out >= 16 bytes. */
void bounce_status_code(const char *answer, int permanent, char *out, size_t outlen);

#endif
