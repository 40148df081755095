/*
 * log.h - Selor's four logs and the one logging API.
 *
 * Owns: the log files named by Central_log, Sumary_log, Warning_log and
 * Refused_log, the line format (docs/logs.md) and the meaning of each call:
 *   log_central  one line of an SMTP dialogue or session event
 *   log_summary  one line of mail flow (accepted, delivered, bounced)
 *   log_refused  a refused host, sender or recipient (when Refused_log set)
 *   log_warn     something an operator should look at; Selor goes on
 *   log_info     a normal but notable event (start, stop, module loaded)
 *   log_fatal    Selor cannot go on: logged, then exit(1)
 *   log_panic    a bug (a broken invariant): logged, then abort()
 * Every line is written with one write(2), so processes of one node can
 * share a file.  Must not: buffer lines across calls, or write elsewhere
 * than these files and (before they are open, or in the foreground)
 * standard error.
 */
#ifndef SELOR_LOG_H
#define SELOR_LOG_H

#include <stdarg.h>
#include <sys/types.h>

enum log_stream {
    LOG_CENTRAL,
    LOG_SUMMARY,
    LOG_WARNING,
    LOG_REFUSED,
    LOG_NSTREAMS
};

#define LOG_BUF_SIZE 16384

struct log_sinks {
    int fd[LOG_NSTREAMS];  /* -1 = not open */
    int to_stderr;         /* copy warnings and info to stderr (foreground) */
    char role[24];         /* "master", "smtp", "queue", "selorctl" */
    long pid;              /* of this process, set with the role */
    int buffered;          /* lines wait for log_flush (event-loop processes) */
    char *buf[LOG_NSTREAMS];
    size_t buflen[LOG_NSTREAMS];
    long stamp_sec;        /* the second `stamp` was made for */
    char stamp[40];
};

struct config;
struct buf;

/* Opens every configured log (never through a symlink; as root, for
 * uid:gid, see priv.h); -1 with the reason in err. */
int log_open(const struct config *c, uid_t uid, gid_t gid, struct buf *err);
/* Closes this process's logs (after a flush). */
void log_close(void);
/* Closes and opens them again from selor_conf (a rotation, a reload); a
 * failure is a warning that starts with why. */
void log_reopen(const char *why);
/* Copy warnings and info to standard error (a node in the foreground). */
void log_set_stderr(int on);
void log_set_role(const char *role);
/*
 * A process with an event loop buffers Central_log and Sumary_log lines and
 * writes them with log_flush once per loop turn: whole lines, fewer
 * system calls.  Warnings are never buffered.
 */
void log_set_buffered(int on);
void log_flush(void);

void log_central(const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_summary(const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_refused(const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* "2026-11-25T12:14:33-0300" in the configured Timezone; out >= 32 bytes. */
void log_format_time(char *out, unsigned long size, long when);
/* RFC 5322 date for headers: "Wed, 25 Nov 2026 12:14:33 -0300". */
void log_format_rfc5322(char *out, unsigned long size, long when);

#endif
