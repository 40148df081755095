/*
 * log.c - the four logs (see log.h for what each call means).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "priv.h"

#define LOG_LINE_MAX 8192

/* This process's sinks: process state, not configuration (a Def! overlay
 * copies option values, never descriptors). */
static struct log_sinks log_state = {.fd = {-1, -1, -1, -1}};

/* Seconds east of UTC at `when`, from Timezone or the system zone. */
static long log_tz_offset(time_t when, struct tm *tm)
{
    const struct config *c = selor_conf;

    if (c && c->tz_set) {
        time_t t = when + c->tz_offset;
        gmtime_r(&t, tm);
        return c->tz_offset;
    }
    localtime_r(&when, tm);
    return tm->tm_gmtoff;
}

static void log_zone(char *out, size_t size, long off)
{
    char sign = off < 0 ? '-' : '+';
    int h, m;

    if (off < 0)
        off = -off;
    h = (int)(off / 3600 % 100);
    m = (int)(off / 60 % 60);
    snprintf(out, size, "%c%02d%02d", sign, h, m);
}

void log_format_time(char *out, unsigned long size, long when)
{
    struct tm tm;
    char zone[8];
    long off = log_tz_offset((time_t)when, &tm);

    log_zone(zone, sizeof(zone), off);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             zone);
}

void log_format_rfc5322(char *out, unsigned long size, long when)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    char zone[8];
    long off = log_tz_offset((time_t)when, &tm);

    log_zone(zone, sizeof(zone), off);
    snprintf(out, size, "%.3s, %d %.3s %04d %02d:%02d:%02d %s",
             days + 3 * tm.tm_wday, tm.tm_mday, months + 3 * tm.tm_mon,
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
}

static int log_fd(enum log_stream s)
{
    return log_state.fd[s];
}

static int log_echo(void)
{
    return selor_conf == NULL || log_state.to_stderr;
}

static const char *log_role(void)
{
    if (log_state.role[0])
        return log_state.role;
    return "selor";
}

/* Writes one whole line; a short write to a log is retried, never split. */
static void log_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Control characters from clients must not forge log lines. */
static void log_sanitize(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
            p[i] = '?';
}

/* The time stamp of this second, made once a second at most. */
static const char *log_stamp(char *tmp, size_t size)
{
    struct log_sinks *l = selor_conf ? &log_state : NULL;
    long now = (long)time(NULL);

    if (l == NULL) {
        log_format_time(tmp, size, now);
        return tmp;
    }
    if (l->stamp_sec != now) {
        log_format_time(l->stamp, sizeof(l->stamp), now);
        l->stamp_sec = now;
    }
    return l->stamp;
}

static void log_flush_stream(struct log_sinks *l, enum log_stream s)
{
    if (l->buflen[s] && l->fd[s] >= 0)
        log_write_all(l->fd[s], l->buf[s], l->buflen[s]);
    l->buflen[s] = 0;
}

void log_flush(void)
{
    for (int s = 0; s < LOG_NSTREAMS; s++)
        log_flush_stream(&log_state, s);
}

void log_set_buffered(int on)
{
    struct log_sinks *l;

    l = &log_state;
    log_flush();
    l->buffered = on;
    for (int s = 0; s < LOG_NSTREAMS; s++)
        if (s != LOG_WARNING)
        if (on && l->buf[s] == NULL)
            l->buf[s] = malloc(LOG_BUF_SIZE);
    if (on && (l->buf[LOG_CENTRAL] == NULL || l->buf[LOG_SUMMARY] == NULL ||
               l->buf[LOG_REFUSED] == NULL))
        l->buffered = 0;   /* no memory: write through */
}

/* A whole line, written now or appended to the stream's buffer. */
static void log_put(enum log_stream s, int fd, const char *line, size_t n)
{
    struct log_sinks *l = selor_conf ? &log_state : NULL;

    if (l == NULL || !l->buffered || l->buf[s] == NULL || n > LOG_BUF_SIZE) {
        log_write_all(fd, line, n);
        return;
    }
    if (l->buflen[s] + n > LOG_BUF_SIZE)
        log_flush_stream(l, s);
    memcpy(l->buf[s] + l->buflen[s], line, n);
    l->buflen[s] += n;
}

static void log_emit(enum log_stream s, const char *qid, const char *level,
                     const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX], tmp[40];
    const char *sid = selor_conf && selor_conf->Sid[0] ? selor_conf->Sid : "-";
    int fd = log_fd(s), echo = (s == LOG_WARNING) && log_echo();
    long pid = log_state.pid ? log_state.pid : (long)getpid();
    size_t n;
    int k, m;

    if (fd < 0 && !echo)
        return;
    k = snprintf(line, sizeof(line), "%s %s %s %s[%ld] %s", log_stamp(tmp, sizeof(tmp)),
                 sid, qid && qid[0] ? qid : "-", log_role(), pid, level ? level : "");
    if (k < 0 || (size_t)k >= sizeof(line))
        return;
    m = vsnprintf(line + k, sizeof(line) - (size_t)k - 1, fmt, ap);
    n = (size_t)k + (m < 0 ? 0 : (size_t)m);
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    log_sanitize(line + k, n - (size_t)k);
    line[n++] = '\n';
    if (fd >= 0)
        log_put(s, fd, line, n);
    if (echo)
        log_write_all(STDERR_FILENO, line, n);
}

#define LOG_DEFINE(fn, stream, level)                                     \
    void fn(const char *qid, const char *fmt, ...)                        \
    {                                                                     \
        va_list ap;                                                       \
        va_start(ap, fmt);                                                \
        log_emit(stream, qid, level, fmt, ap);                            \
        va_end(ap);                                                       \
    }

LOG_DEFINE(log_central, LOG_CENTRAL, NULL)
LOG_DEFINE(log_summary, LOG_SUMMARY, NULL)
LOG_DEFINE(log_refused, LOG_REFUSED, NULL)

void log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_emit(LOG_WARNING, NULL, "warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_emit(LOG_WARNING, NULL, "info: ", fmt, ap);
    va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;

    log_flush();
    va_start(ap, fmt);
    log_emit(LOG_WARNING, NULL, "fatal: ", fmt, ap);
    va_end(ap);
    if (!log_echo()) {
        va_start(ap, fmt);
        fputs("selor: fatal: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    exit(1);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;

    log_flush();
    va_start(ap, fmt);
    log_emit(LOG_WARNING, NULL, "panic: ", fmt, ap);
    va_end(ap);
    abort();
}

static int log_open_one(const char *path, int *fd, uid_t uid, gid_t gid,
                        struct buf *err)
{
    *fd = -1;
    if (path == NULL || path[0] == '\0')
        return 0;
    *fd = priv_open(path, O_WRONLY | O_APPEND | O_CREAT, 0640, uid, gid);
    if (*fd < 0) {
        buf_printf(err, "cannot open log %s: %s%s", path, strerror(-*fd),
                   *fd == -ELOOP ? " (a symlink: logs are never opened through one)" :
                   *fd == -EPERM ? " (not a plain file of its own: hard link?)" : "");
        *fd = -1;
        return -1;
    }
    return 0;
}

int log_open(const struct config *c, uid_t uid, gid_t gid, struct buf *err)
{
    const char *paths[LOG_NSTREAMS];

    paths[LOG_CENTRAL] = c->Central_log;
    paths[LOG_SUMMARY] = c->Sumary_log;
    paths[LOG_WARNING] = c->Warning_log;
    paths[LOG_REFUSED] = c->Refused_log;
    for (int s = 0; s < LOG_NSTREAMS; s++)
        if (log_open_one(paths[s], &log_state.fd[s], uid, gid, err) < 0)
            return -1;
    return 0;
}

void log_close(void)
{
    struct log_sinks *l = &log_state;

    log_flush();
    for (int s = 0; s < LOG_NSTREAMS; s++) {
        free(l->buf[s]);
        l->buf[s] = NULL;
        l->buflen[s] = 0;
        if (l->fd[s] >= 0)
            close(l->fd[s]);
        l->fd[s] = -1;
    }
}

void log_reopen(const char *why)
{
    struct buf err = BUF_INIT(0);

    log_close();
    if (log_open(selor_conf, getuid(), getgid(), &err) < 0)
        log_warn("%s: reopening logs: %s", why, buf_cstr(&err));
    buf_free(&err);
}

void log_set_stderr(int on)
{
    log_state.to_stderr = on;
}

void log_set_role(const char *role)
{
    snprintf(log_state.role, sizeof(log_state.role), "%s", role);
    log_state.pid = (long)getpid();
}
