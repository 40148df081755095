/*
 * delivery_report.h - the report a delivery run sends about its failed
 * recipients.
 *
 * Owns: the content and envelope of the report, and queueing it as a new
 * message in the main queue: an RFC 3464 report to the original sender
 * (bounce.c builds the text, Report_file shapes it), or, when the failed
 * message is itself a report, a notice to Postmaster, with a copy of the
 * failed report kept in Cp_errors_path when Cp_errors asks.  Runs on the
 * thread pool (it reads Report_file and writes files).  Must not: change
 * the original's queue file or decide whom to report on (delivery.c does).
 */
#ifndef SELOR_DELIVERY_REPORT_H
#define SELOR_DELIVERY_REPORT_H

#include <stddef.h>

#include "buf.h"
#include "queue_file.h"
#include "queue_id.h"

struct config;

struct delivery_report {
    const struct config *conf;      /* the run's view of the configuration */
    char id[QUEUE_ID_MAX];          /* the report's own queue ID (the caller's) */
    const struct queue_file *qf;    /* the original: its F recipients are reported */
    const char *qid;                /* the original's queue ID */
    const char *content;            /* the original's content */
    size_t len;
    long now;
    struct buf text, envelope;      /* what is queued */
};

/* Thread pool: builds the report (or the Postmaster notice) and queues
 * it, durable when this returns 0; an errno otherwise. */
int delivery_report_make(struct delivery_report *r);
/* The address the report goes to. */
const char *delivery_report_to(const struct delivery_report *r);
void delivery_report_free(struct delivery_report *r);

#endif
