/*
 * metrics.h - the node's counters, in shared memory the master maps before
 * it forks (see metrics.c).
 *
 * Owns: the names and kinds of every metric, one slot of counters per
 * process (a restarted child takes its predecessor's slot, so nothing is
 * lost), and the Prometheus text rendering.  Must not: serve HTTP (the ops
 * process does) or take a lock on a hot path (a slot has one writer).
 *
 * A hook is one line where the event is decided:
 *     metrics_inc(METRIC_MESSAGES_ACCEPTED);
 *     metrics_inc2(METRIC_DELIVERIES, METRICS_VIA_LOCAL, METRICS_ST_DELIVERED);
 * A process that never called metrics_use_slot (selorctl, tests, tools)
 * counts into a private slot of its own: hooks never fail.
 */
#ifndef SELOR_METRICS_H
#define SELOR_METRICS_H

#include <stdint.h>

#include "buf.h"

/*
 * Label sets: X(constant, "value").  Each set is an enum from 0, the
 * order of its values in the output.  A family takes one or two sets
 * (NONE: no label).  EVENT and VERDICT follow enum rules_event and enum
 * rules_verdict (rules_eval.c checks the counts at build time).
 */
#define METRICS_L_NONE(X) X(NONE_, "")
#define METRICS_L_REASON(X) \
    X(REASON_LIMIT, "limit") X(REASON_RULES, "rules") X(REASON_TLS, "tls") \
    X(REASON_AUTH, "auth") X(REASON_PROXY, "proxy")
#define METRICS_L_TRANSPORT(X) \
    X(VIA_LOCAL, "local") X(VIA_REMOTE, "remote") X(VIA_NONE, "none")
#define METRICS_L_STATUS(X) \
    X(ST_DELIVERED, "delivered") X(ST_DEFERRED, "deferred") X(ST_BOUNCED, "bounced")
#define METRICS_L_DIRECTION(X) X(DIR_IN, "in") X(DIR_OUT, "out")
#define METRICS_L_EVENT(X) \
    X(EV_LIMIT, "limit") X(EV_CONNECTION, "connection") X(EV_HELO, "helo") \
    X(EV_AUTH, "auth") X(EV_FROM, "from") X(EV_RCPT, "rcpt") \
    X(EV_LRCPT_REFUSED, "lrcpt_refused") X(EV_DATA_CMD, "data_cmd") X(EV_DATA, "data") \
    X(EV_QSTART, "qstart_process") X(EV_QEND, "qend_process") \
    X(EV_ERROR_REPORT, "error_report") X(EV_DL_RCPT, "dl_rcpt")
#define METRICS_L_VERDICT(X) \
    X(VD_NONE, "none") X(VD_ACCEPT, "accept") X(VD_DENY, "deny") X(VD_DEFER, "defer") \
    X(VD_CLOSE, "close")
#define METRICS_L_MILTER(X) \
    X(MI_ACCEPT, "accept") X(MI_REJECT, "reject") X(MI_TEMPFAIL, "tempfail") \
    X(MI_REPLY, "reply") X(MI_DISCARD, "discard") X(MI_QUARANTINE, "quarantine") \
    X(MI_FAILED, "failed")
/* The queues of spool_queues.h, by their index there (main, qlimit, the
 * alternates); the names are looked up when rendering. */
#define METRICS_QUEUES_MAX 32
#define METRICS_L_QUEUE(X)

/* Histogram buckets: upper bounds, in the unit of the metric's name. */
#define METRICS_B_NOHIST(X)
#define METRICS_B_DELAY(X) \
    X(1) X(5) X(15) X(60) X(300) X(900) X(3600) X(14400) X(86400) X(432000)
#define METRICS_B_SIZE(X) \
    X(1024) X(4096) X(16384) X(65536) X(262144) X(1048576) X(4194304) \
    X(16777216) X(67108864)

/*
 * The families: X(id, type, name, help, key1, SET1, key2, SET2, BUCKETS).
 * Counters are per event, summed over every process; gauges are set by the
 * one process that knows the value.
 */
#define METRICS_FAMILIES(X) \
    X(SMTPD_CONNECTIONS, COUNTER, "selor_smtpd_connections_total", \
      "SMTP connections accepted (TCP) by the SMTP workers.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(SMTPD_REFUSED, COUNTER, "selor_smtpd_connections_refused_total", \
      "SMTP connections refused or ended by Selor, by reason.", \
      "reason", REASON, NULL, NONE, NOHIST) \
    X(SMTPD_AUTH_FAILURES, COUNTER, "selor_smtpd_auth_failures_total", \
      "Failed SMTP AUTH logins.", NULL, NONE, NULL, NONE, NOHIST) \
    X(MESSAGES_ACCEPTED, COUNTER, "selor_messages_accepted_total", \
      "Messages committed to the queue and answered with 250.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(RECIPIENTS_ACCEPTED, COUNTER, "selor_recipients_accepted_total", \
      "Recipients of the messages committed to the queue.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(DELIVERIES, COUNTER, "selor_deliveries_total", \
      "Delivery results, one per recipient and attempt.", \
      "transport", TRANSPORT, "status", STATUS, NOHIST) \
    X(TLS_HANDSHAKES, COUNTER, "selor_tls_handshakes_total", \
      "TLS handshakes that ended, successful or not.", \
      "direction", DIRECTION, NULL, NONE, NOHIST) \
    X(TLS_FAILURES, COUNTER, "selor_tls_handshake_failures_total", \
      "TLS handshakes that failed or could not start.", \
      "direction", DIRECTION, NULL, NONE, NOHIST) \
    X(RULES_VERDICTS, COUNTER, "selor_rules_verdicts_total", \
      "Rules runs that ended, by event and verdict.", \
      "event", EVENT, "verdict", VERDICT, NOHIST) \
    X(MILTER_VERDICTS, COUNTER, "selor_milter_verdicts_total", \
      "Milter answers other than continue, and milters that failed.", \
      "verdict", MILTER, NULL, NONE, NOHIST) \
    X(REDIS_COMMANDS, COUNTER, "selor_redis_commands_total", \
      "Redis round trips of coordination scripts (answered or failed).", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(REDIS_ERRORS, COUNTER, "selor_redis_errors_total", \
      "Redis round trips that brought an error or no answer.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(FENCING_ABORTS, COUNTER, "selor_fencing_aborts_total", \
      "Delivery runs that left their queue file unwritten: the lock was lost or fenced.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(LOCK_TAKEOVERS, COUNTER, "selor_lock_takeovers_total", \
      "Queue files claimed after another node's lock lapsed without a release.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(LEASE_RENEWALS_MISSED, COUNTER, "selor_lease_renewals_missed_total", \
      "Times a held queue-file lock was not renewed in time.", \
      NULL, NONE, NULL, NONE, NOHIST) \
    X(QUEUE_MESSAGES, GAUGE, "selor_queue_messages", \
      "Messages in each queue at the last directory scan.", \
      "queue", QUEUE, NULL, NONE, NOHIST) \
    X(DELIVERY_RUNS, GAUGE, "selor_delivery_runs_active", \
      "Delivery runs under way in the queue process.", NULL, NONE, NULL, NONE, NOHIST) \
    X(DELIVERY_DELAY, HISTOGRAM, "selor_delivery_delay_seconds", \
      "Time from a message's arrival to the delivery of a recipient.", \
      NULL, NONE, NULL, NONE, DELAY) \
    X(MESSAGE_SIZE, HISTOGRAM, "selor_message_size_bytes", \
      "Size of the messages committed to the queue.", NULL, NONE, NULL, NONE, SIZE)

#define METRICS_ENUM_(c, s) METRICS_##c,
enum { METRICS_L_NONE(METRICS_ENUM_) };
enum { METRICS_L_REASON(METRICS_ENUM_) };
enum { METRICS_L_TRANSPORT(METRICS_ENUM_) };
enum { METRICS_L_STATUS(METRICS_ENUM_) };
enum { METRICS_L_DIRECTION(METRICS_ENUM_) };
enum { METRICS_L_EVENT(METRICS_ENUM_) };
enum { METRICS_L_VERDICT(METRICS_ENUM_) };
enum { METRICS_L_MILTER(METRICS_ENUM_) };

#define METRICS_FAMILY_ENUM_(id, t, n, h, k1, s1, k2, s2, b) METRIC_##id,
enum metric { METRICS_FAMILIES(METRICS_FAMILY_ENUM_) METRICS_NFAMILIES };

/* The master, before any fork: room for nslots processes.  0 or -1.  The
 * master itself writes the last slot. */
int metrics_init(int nslots);
/* A child after fork: the slot it writes (its index in the master's table). */
void metrics_use_slot(int slot);
/* Prometheus text exposition format (version 0.0.4) of every slot summed. */
void metrics_render(struct buf *out);
/* A label value as the text format wants it: \\, \" and \n escaped. */
void metrics_escape(struct buf *out, const char *value);

/* Adds n to the counter of labels (i, j); out of range: nothing. */
void metrics_count(enum metric m, unsigned i, unsigned j, uint64_t n);
/* A gauge of this process's slot (label i) becomes v. */
void metrics_set(enum metric m, unsigned i, int64_t v);
/* One observation of a histogram (no labels), in its unit; below 0 (a
 * clock set back) counts as 0. */
void metrics_observe(enum metric m, int64_t v);

#define metrics_inc(m) metrics_count((m), 0, 0, 1)
#define metrics_add(m, n) metrics_count((m), 0, 0, (n))
#define metrics_inc1(m, i) metrics_count((m), (i), 0, 1)
#define metrics_inc2(m, i, j) metrics_count((m), (i), (j), 1)

#endif
