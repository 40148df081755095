/*
 * spool.c - NFS-safe spool operations (see spool.h, docs/spool.md): the
 * synchronous primitives, the spool of a process, and a message being
 * received (buffered, flushed to Temp_path/c<ID> in the background,
 * rewritten for milters and Header!).  The commit itself, which many
 * messages share, is spool_commit.c's.
 * The queue (main, qlimit or an alternate one) and what the rules left for
 * delivery (settings, hits) are chosen before the commit; an unusable
 * queue fails the commit before anything is written into a queue.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "async.h"
#include "log.h"
#include "mem.h"
#include "queue_file.h"
#include "queue_id.h"
#include "spool.h"
#include "spool_int.h"
#include "spool_queues.h"

#define SPOOL_FLUSH_AT (256 * 1024)      /* start a background write */
#define SPOOL_BACKLOG_AT (1024 * 1024)   /* ask the sender to pause */


int spool_err_is_nodisk(int err)
{
    return err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS ||
           err == EFBIG;
}

/* ---- synchronous primitives ---- */

int spool_write_fd(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

struct spool_dir *spool_msg_qdir(const struct spool_msg *m)
{
    return &m->sp->dirs[m->qlimit ? 1 : m->dir];
}

const char *spool_msg_dir(const struct spool_msg *m)
{
    return spool_msg_qdir(m)->path;
}

void spool_path(char *out, size_t size, const char *dir, char kind, const char *id)
{
    snprintf(out, size, "%s/%c%s", dir, kind, id);
}

/*
 * rename, and when it reports an error, a look at whether it happened
 * anyway: on NFS a retransmitted rename can fail after the first one
 * worked.  src is the source's identity, taken before (st_ino 0: unknown).
 */
int spool_rename_known(const char *from, const char *to, const struct stat *src)
{
    struct stat dst;
    int e;

    if (rename(from, to) == 0)
        return 0;
    e = errno;
    if (src->st_ino && stat(to, &dst) == 0 && dst.st_ino == src->st_ino &&
        dst.st_dev == src->st_dev && access(from, F_OK) < 0 && errno == ENOENT)
        return 0;
    return e;
}

int spool_rename_sync(const char *from, const char *to)
{
    struct stat src;

    if (stat(from, &src) < 0)
        src.st_ino = 0;
    return spool_rename_known(from, to, &src);
}

int spool_unlink_sync(const char *path)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    return errno;
}

static int spool_fsync_dir_once(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;

    if (fd < 0)
        return errno;
    if (fsync(fd) < 0 && errno != EINVAL)
        e = errno;
    close(fd);
    return e;
}

/*
 * Directory flushes shared between the threads of a process: a caller's
 * change (an unlink, a rename) is covered by any fsync of the directory
 * that starts after it, so a caller that finds one running waits for the
 * next, which one of the waiters makes for all of them.  The queue
 * process's delivery runs remove files from many threads at once.  The
 * directory stays open: queue directories live as long as the node.
 */
#define SPOOL_DSYNC_DIRS 16

struct spool_dsync {
    char *path;
    int fd;
    int running, err;
    unsigned long requested, synced;
};

static pthread_mutex_t spool_dsync_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spool_dsync_cond = PTHREAD_COND_INITIALIZER;
static struct spool_dsync spool_dsyncs[SPOOL_DSYNC_DIRS];
static size_t spool_ndsyncs;

/* Under the lock: the entry of dir, opened the first time; NULL if the
 * table is full or dir cannot be opened (the caller flushes alone). */
static struct spool_dsync *spool_dsync_entry(const char *dir)
{
    struct spool_dsync *e;
    int fd;

    for (size_t i = 0; i < spool_ndsyncs; i++)
        if (strcmp(spool_dsyncs[i].path, dir) == 0)
            return &spool_dsyncs[i];
    if (spool_ndsyncs == SPOOL_DSYNC_DIRS ||
        (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return NULL;
    e = &spool_dsyncs[spool_ndsyncs++];
    memset(e, 0, sizeof(*e));
    e->path = mem_strdup(dir);
    e->fd = fd;
    return e;
}

int spool_fsync_dir_sync(const char *dir)
{
    struct spool_dsync *e;
    unsigned long mine, upto;
    int err;

    pthread_mutex_lock(&spool_dsync_lock);
    e = spool_dsync_entry(dir);
    if (e == NULL) {
        pthread_mutex_unlock(&spool_dsync_lock);
        return spool_fsync_dir_once(dir);
    }
    mine = ++e->requested;
    while (e->synced < mine) {
        if (e->running) {
            pthread_cond_wait(&spool_dsync_cond, &spool_dsync_lock);
            continue;
        }
        e->running = 1;
        upto = e->requested;
        pthread_mutex_unlock(&spool_dsync_lock);
        err = fsync(e->fd) < 0 && errno != EINVAL ? errno : 0;
        pthread_mutex_lock(&spool_dsync_lock);
        e->running = 0;
        e->synced = upto;
        e->err = err;
        pthread_cond_broadcast(&spool_dsync_cond);
    }
    err = e->err;   /* of an fsync that started after our change */
    pthread_mutex_unlock(&spool_dsync_lock);
    return err;
}

/* Creates path exclusively, writes data, fdatasyncs unless nosync (the
 * caller flushes the filesystem); 0 or errno.  st (may be NULL) receives
 * the file's identity for the rename check. */
int spool_create_file(const char *path, const void *data, size_t len, struct stat *st,
                      int nosync)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), e;

    if (fd < 0 && errno == EEXIST) {
        unlink(path);  /* a leftover of a crash, with our unique name */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return errno;
    e = spool_write_fd(fd, data, len);
    if (e == 0 && !nosync && fdatasync(fd) < 0)
        e = errno;
    if (st && (e || fstat(fd, st) < 0))
        st->st_ino = 0;
    if (close(fd) < 0 && e == 0)
        e = errno;
    if (e)
        unlink(path);
    return e;
}

int spool_write_sync_checked(const char *dir, const char *tmpdir, const char *name,
                             const void *data, size_t len, int (*still_ours)(void *),
                             void *arg)
{
    char tmp[4096], dst[4096];
    struct stat st;
    int e;

    snprintf(tmp, sizeof(tmp), "%s/%s.%ld", tmpdir, name, (long)getpid());
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    e = spool_create_file(tmp, data, len, &st, 0);
    if (e == 0 && still_ours && !still_ours(arg))
        e = ECANCELED;
    if (e == 0)
        e = spool_rename_known(tmp, dst, &st);
    if (e)
        unlink(tmp);
    return e;
}

int spool_write_sync(const char *dir, const char *tmpdir, const char *name,
                     const void *data, size_t len)
{
    return spool_write_sync_checked(dir, tmpdir, name, data, len, NULL, NULL);
}

int spool_read_sync(const char *path, struct buf *out, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), e = 0;
    char chunk[16384];
    ssize_t n;

    if (fd < 0)
        return errno;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = errno;
            break;
        }
        if (out->len + (size_t)n > max || buf_append(out, chunk, (size_t)n) < 0) {
            e = EFBIG;
            break;
        }
    }
    close(fd);
    return e;
}

int spool_is_queue_name(const char *name)
{
    return (name[0] == 'c' || name[0] == 'l') && queue_id_valid(name + 1);
}

int spool_scan_sync(const char *dir, spool_scan_fn *fn, void *arg)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int r = 0;

    if (d == NULL)
        return errno;
    while (r == 0 && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, ".nfs", 4) == 0 || !spool_is_queue_name(de->d_name))
            continue;
        r = fn(de->d_name, arg);
    }
    closedir(d);
    return r < 0 ? 0 : r;
}

int spool_mkdirs(const char *path, mode_t mode)
{
    char tmp[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return EINVAL;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, c ? 0755 : mode) < 0 && errno != EEXIST)
            return errno;
        *p = c;
        if (c == '\0' || p[1] == '\0')
            break;
    }
    return 0;
}

/* ---- the spool of one process ---- */

static void spool_dir_add(struct spool *sp, const char *name, const char *path, size_t n)
{
    struct spool_dir *d;

    sp->dirs = mem_realloc(sp->dirs, (sp->ndirs + 1) * sizeof(*sp->dirs));
    d = &sp->dirs[sp->ndirs++];
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->path = mem_strndup(path, n);
    d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    d->dsync = 0;
}

int spool_open(struct spool *sp, uv_loop_t *loop, const char *queue_path,
               const char *temp_path, struct buf *err)
{
    size_t n = strlen(queue_path);
    char dir[4096];

    memset(sp, 0, sizeof(*sp));
    sp->loop = loop;
    while (n > 1 && queue_path[n - 1] == '/')
        n--;
    sp->temp_path = mem_strdup(temp_path);
    sp->group_tail = &sp->group_wait;
    sp->tmp_fd = open(temp_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->tmp_fd < 0) {
        buf_printf(err, "cannot open %s: %s", temp_path, strerror(errno));
        mem_free(sp->temp_path);
        sp->temp_path = NULL;
        return -1;
    }
    spool_set_flush(sp, "auto");
    spool_dir_add(sp, "main", queue_path, n);
    snprintf(dir, sizeof(dir), "%.*s/qlimit", (int)n, queue_path);
    spool_dir_add(sp, "qlimit", dir, strlen(dir));
    for (size_t i = 0; i < 2; i++)
        if (sp->dirs[i].fd < 0) {
            buf_printf(err, "cannot open %s: %s", sp->dirs[i].path, strerror(errno));
            spool_close(sp);
            return -1;
        }
    for (size_t i = 2; i < spool_queues_count(); i++) {
        const char *name = spool_queues_name(i);
        if (spool_queues_dir(name, dir, sizeof(dir)) < 0)
            continue;
        spool_dir_add(sp, name, dir, strlen(dir));
        if (sp->dirs[sp->ndirs - 1].fd < 0)
            log_warn("cannot open the directory %s of queue %s: %s; mail for it is "
                     "refused with a temporary error", dir, name, strerror(errno));
    }
    return 0;
}

void spool_close(struct spool *sp)
{
    for (size_t i = 0; i < sp->ndirs; i++) {
        if (sp->dirs[i].fd >= 0)
            close(sp->dirs[i].fd);
        mem_free(sp->dirs[i].path);
    }
    mem_free(sp->dirs);
    mem_free(sp->temp_path);
    if (sp->tmp_fd >= 0)
        close(sp->tmp_fd);
    sp->tmp_fd = -1;
    sp->dirs = NULL;
    sp->ndirs = 0;
    sp->temp_path = NULL;
}

static void spool_msg_cancel(struct async_req *r);

struct spool_msg *spool_msg_new(struct spool *sp, struct async_owner *o, const char *id)
{
    struct spool_msg *m = mem_zalloc(sizeof(*m));

    async_req_start(&m->req, o, spool_msg_cancel, 0);
    m->sp = sp;
    snprintf(m->id, sizeof(m->id), "%s", id);
    buf_init(&m->mem, 0);
    buf_init(&m->io, 0);
    buf_init(&m->ltext, 0);
    m->cfd = -1;
    m->work.data = m;
    return m;
}

void spool_msg_free(struct spool_msg *m)
{
    if (m->rules) {
        qf_free(m->rules);
        mem_free(m->rules);
    }
    buf_free(&m->mem);
    buf_free(&m->io);
    buf_free(&m->ltext);
    buf_free(&m->body);
    mem_free(m);
}

size_t spool_msg_size(const struct spool_msg *m)
{
    return m->size;
}

/* A message that failed takes no more content: nothing is behind then. */
int spool_msg_backlogged(const struct spool_msg *m)
{
    return m->err == 0 && m->mem.len >= SPOOL_BACKLOG_AT;
}

void spool_msg_on_drain(struct spool_msg *m, spool_drain_fn *fn, void *arg)
{
    m->drain = fn;
    m->drain_arg = arg;
}

/* Thread pool: append io to the temp c file. */
void spool_msg_flush_io(struct spool_msg *m)
{
    char path[4096];

    if (m->err)
        return;
    if (m->cfd < 0) {
        spool_path(path, sizeof(path), m->sp->temp_path, 'c', m->id);
        m->cfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (m->cfd < 0) {
            m->err = errno;
            return;
        }
    }
    m->err = spool_write_fd(m->cfd, m->io.data, m->io.len);
}

static void spool_flush_work(uv_work_t *w)
{
    spool_msg_flush_io(w->data);
}

/* Thread pool: remove whatever the message left in Temp_path. */
void spool_msg_cleanup(struct spool_msg *m)
{
    char path[4096];

    if (m->cfd >= 0)
        close(m->cfd);
    m->cfd = -1;
    spool_path(path, sizeof(path), m->sp->temp_path, 'c', m->id);
    unlink(path);
    spool_path(path, sizeof(path), m->sp->temp_path, 'l', m->id);
    unlink(path);
    spool_path(path, sizeof(path), m->sp->temp_path, 'n', m->id);
    unlink(path);
}

static void spool_cleanup_work(uv_work_t *w)
{
    spool_msg_cleanup(w->data);
}

static void spool_start(struct spool_msg *m, uv_work_cb work, uv_after_work_cb after)
{
    buf_reset(&m->io);
    buf_swap(&m->io, &m->mem);
    m->busy = 1;
    uv_queue_work(m->sp->loop, &m->work, work, after);
}

static void spool_flush_after(uv_work_t *w, int status);

static void spool_cleanup_after(uv_work_t *w, int status)
{
    spool_msg_free(w->data);
}

/* What to do once no job runs: the next step of the message's life. */
static void spool_next(struct spool_msg *m)
{
    if (m->aborted && !m->committing) {
        m->busy = 1;
        uv_queue_work(m->sp->loop, &m->work, spool_cleanup_work, spool_cleanup_after);
    } else if (m->committing) {
        buf_reset(&m->io);
        buf_swap(&m->io, &m->mem);
        spool_commit_enqueue(m);
    } else if ((m->mem.len >= SPOOL_FLUSH_AT || (m->written && m->mem.len)) &&
               m->err == 0) {
        spool_start(m, spool_flush_work, spool_flush_after);
    }
}

static void spool_flush_after(uv_work_t *w, int status)
{
    struct spool_msg *m = w->data;
    spool_drain_fn *drain = m->drain;

    m->busy = 0;
    if (status && m->err == 0)
        m->err = EIO;
    if (m->err)
        buf_free(&m->mem);   /* never to be written: the commit will fail */
    spool_next(m);
    if (drain && async_req_live(&m->req) && !spool_msg_backlogged(m)) {
        m->drain = NULL;
        drain(m->drain_arg);
    }
    if (m->written && !m->busy && (m->mem.len == 0 || m->err) && async_req_live(&m->req)) {
        spool_drain_fn *fn = m->written;
        m->written = NULL;
        fn(m->written_arg);
    }
}

/* Copies from fd at off to the end into out; 0 or errno. */
static int spool_copy_rest(int fd, off_t off, int out)
{
    char b[65536];
    ssize_t r;
    int e;

    while ((r = pread(fd, b, sizeof(b), off)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if ((e = spool_write_fd(out, b, (size_t)r)) != 0)
            return e;
        off += r;
    }
    return 0;
}

/* Thread pool: Temp_path/n<ID> gets the new content, then replaces c<ID>. */
static void spool_rewrite_work(uv_work_t *w)
{
    struct spool_msg *m = w->data;
    char cpath[4096], npath[4096];
    int old, nfd;
    struct stat st;

    if (m->err)
        return;
    spool_path(cpath, sizeof(cpath), m->sp->temp_path, 'c', m->id);
    spool_path(npath, sizeof(npath), m->sp->temp_path, 'n', m->id);
    old = open(cpath, O_RDONLY | O_CLOEXEC);
    nfd = open(npath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (old < 0 || nfd < 0)
        m->err = errno;
    if (m->err == 0)
        m->err = spool_write_fd(nfd, m->io.data, m->io.len);
    if (m->err == 0)
        m->err = m->body_given ? spool_write_fd(nfd, m->body.data, m->body.len)
                               : spool_copy_rest(old, (off_t)m->body_off, nfd);
    if (m->err == 0 && fstat(nfd, &st) < 0)
        m->err = errno;
    if (m->err == 0 && rename(npath, cpath) < 0)
        m->err = errno;
    if (old >= 0)
        close(old);
    if (m->err) {
        if (nfd >= 0)
            close(nfd);
        unlink(npath);
        return;
    }
    close(m->cfd);
    m->cfd = nfd;
    m->size = (size_t)st.st_size;
}

static void spool_rewrite_after(uv_work_t *w, int status)
{
    struct spool_msg *m = w->data;
    spool_drain_fn *fn = m->written;

    m->busy = 0;
    m->written = NULL;
    buf_free(&m->body);
    if (status && m->err == 0)
        m->err = EIO;
    spool_next(m);
    if (fn && async_req_live(&m->req))
        fn(m->written_arg);
}

void spool_msg_rewrite(struct spool_msg *m, struct buf *head, size_t body_off,
                       struct buf *body, spool_drain_fn *fn, void *arg)
{
    buf_reset(&m->io);
    buf_swap(&m->io, head);
    buf_reset(head);
    buf_free(&m->body);
    m->body_given = body != NULL;
    if (body) {
        buf_swap(&m->body, body);
        buf_reset(body);
    }
    m->body_off = body_off;
    m->written = fn;
    m->written_arg = arg;
    m->busy = 1;
    uv_queue_work(m->sp->loop, &m->work, spool_rewrite_work, spool_rewrite_after);
}

int spool_msg_write_out(struct spool_msg *m, char *path, size_t size, spool_drain_fn *fn,
                        void *arg)
{
    if (m->err)
        return -1;
    spool_path(path, size, m->sp->temp_path, 'c', m->id);
    if (!m->busy && m->mem.len == 0 && m->cfd >= 0)
        return 1;
    m->written = fn;
    m->written_arg = arg;
    if (!m->busy)
        spool_next(m);
    return 0;
}

int spool_msg_write(struct spool_msg *m, const void *p, size_t n)
{
    if (m->err)
        return -1;
    buf_append(&m->mem, p, n);
    m->size += n;
    if (!m->busy && m->mem.len >= SPOOL_FLUSH_AT)
        spool_next(m);
    return 0;
}

/* The queue chosen must be one this spool can write: else the commit
 * fails (the client retries later), rather than land anywhere else. */
static int spool_msg_check_queue(struct spool_msg *m)
{
    if (m->bad_queue[0]) {
        log_warn("%s: queue %s is not known to this process; the message is refused "
                 "with a temporary error", m->id, m->bad_queue);
        return ENOENT;
    }
    if (spool_msg_qdir(m)->fd < 0) {
        log_warn("%s: the directory %s of queue %s cannot be used; the message is "
                 "refused with a temporary error", m->id, spool_msg_dir(m),
                 spool_msg_qdir(m)->name);
        return ENOENT;
    }
    return 0;
}

/* The owner's l file with the rules' settings and hits added. */
static int spool_msg_merge_rules(struct spool_msg *m, const char *ltext, size_t llen)
{
    struct queue_file qf;
    char why[256];

    if (qf_parse(&qf, ltext, llen, why, sizeof(why)) < 0) {
        log_warn("%s: the envelope to commit is not valid (%s); refused", m->id, why);
        return EINVAL;
    }
    qf.hits = m->rules->hits;
    for (size_t i = 0; i < m->rules->nsettings; i++)
        qf_add_setting(&qf, m->rules->settings[i].name, m->rules->settings[i].value);
    qf_format(&qf, &m->ltext);
    qf_free(&qf);
    return 0;
}

void spool_msg_commit(struct spool_msg *m, const char *ltext, size_t llen,
                      spool_done_fn *done, void *arg)
{
    int e = spool_msg_check_queue(m);

    if (e == 0 && m->rules)
        e = spool_msg_merge_rules(m, ltext, llen);
    else if (e == 0)
        buf_append(&m->ltext, ltext, llen);
    if (e && m->err == 0)
        m->err = e;
    m->done = done;
    m->done_arg = arg;
    m->committing = 1;
    if (!m->busy)
        spool_next(m);
}

void spool_msg_set_qlimit(struct spool_msg *m)
{
    m->qlimit = 1;
}

void spool_msg_set_queue(struct spool_msg *m, const char *name)
{
    m->dir = 0;
    m->bad_queue[0] = '\0';
    if (name == NULL || strcmp(name, "main") == 0)
        return;
    for (size_t i = 1; i < m->sp->ndirs; i++)
        if (strcmp(m->sp->dirs[i].name, name) == 0) {
            m->dir = i;
            return;
        }
    snprintf(m->bad_queue, sizeof(m->bad_queue), "%s", name);
}

static struct queue_file *spool_msg_rules(struct spool_msg *m)
{
    if (m->rules == NULL) {
        m->rules = mem_alloc(sizeof(*m->rules));
        qf_init(m->rules);
    }
    return m->rules;
}

void spool_msg_add_setting(struct spool_msg *m, const char *name, const char *value)
{
    qf_add_setting(spool_msg_rules(m), name, value);
}

void spool_msg_set_hits(struct spool_msg *m, long hits)
{
    spool_msg_rules(m)->hits = hits;
}

/* The owner cancelled: nothing more reaches it; what was written goes,
 * unless the commit is under way (it completes, unannounced). */
static void spool_msg_cancel(struct async_req *r)
{
    struct spool_msg *m = (struct spool_msg *)r;

    m->aborted = 1;
    m->drain = NULL;
    if (!m->busy && !m->committing)
        spool_next(m);
}

void spool_msg_abort(struct spool_msg *m)
{
    async_req_cancel(&m->req);
}
