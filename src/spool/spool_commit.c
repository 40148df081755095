/*
 * spool_commit.c - the group commit: many messages of one process made
 * durable by one thread-pool job and a couple of disk flushes.
 *
 * Owns: the messages waiting for a commit and the group under way.  A
 * message that finishes while a group is being committed waits for the
 * next one, so the group is whatever finished during the last flush: one
 * message when the spool is quiet (no delay is added to wait for others),
 * many under load.  One job per group does, in this order:
 *   1. each message: the rest of its content into Temp_path/c<ID>, its
 *      envelope into Temp_path/l<ID> (with Spool_flush "fsync", each file
 *      fdatasynced);
 *   2. with "syncfs", one syncfs(2) of Temp_path's filesystem;
 *   3. each message: c renamed into its queue's directory, then l (the
 *      commit point);
 *   4. the renames flushed: one syncfs, or one fsync of each directory
 *      renamed into;
 * and only then are the owners told (the SMTP server's 250).  A message
 * whose step fails is taken back alone (its temp files removed); a failed
 * flush of step 2 or 4 fails the whole group: every message renamed is
 * withdrawn (l first, so it is gone at once) and every owner gets the
 * error, so a client's retry after its 4xx is never a second copy.
 * Must not: decide queues or content (spool.c), block the loop, or tell
 * an owner before step 4 finished.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"
#include "spool_int.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

/* Local filesystems whose syncfs writes every dirty file and commits its
 * journal.  NFS, FUSE and anything unknown get fdatasync per file: there
 * a syncfs may not reach the server's stable storage for each file. */
static int spool_commit_fs_flushes(int fd)
{
    struct statfs st;

    if (fstatfs(fd, &st) < 0)
        return 0;
    switch ((unsigned long)st.f_type) {
    case EXT4_SUPER_MAGIC:   /* ext2, ext3 and ext4 share it */
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
        return 1;
    default:
        return 0;
    }
}

const char *spool_set_flush(struct spool *sp, const char *mode)
{
    if (strcmp(mode, "syncfs") == 0)
        sp->flush_fs = 1;
    else if (strcmp(mode, "fsync") == 0)
        sp->flush_fs = 0;
    else
        sp->flush_fs = spool_commit_fs_flushes(sp->tmp_fd);
    return sp->flush_fs ? "syncfs" : "fsync";
}

/* Step 1 for one message; 0 or its errno (its temp files are removed). */
static int spool_commit_write(struct spool_msg *m, int nosync)
{
    char tmp[4096];

    spool_msg_flush_io(m);
    if (m->err == 0 && !nosync && fdatasync(m->cfd) < 0)
        m->err = errno;
    if (m->err || fstat(m->cfd, &m->cst) < 0)
        m->cst.st_ino = 0;
    if (m->cfd >= 0 && close(m->cfd) < 0 && m->err == 0)
        m->err = errno;
    m->cfd = -1;
    if (m->err == 0) {
        spool_path(tmp, sizeof(tmp), m->sp->temp_path, 'l', m->id);
        m->err = spool_create_file(tmp, m->ltext.data, m->ltext.len, &m->lst, nosync);
    }
    if (m->err)
        spool_msg_cleanup(m);
    return m->err;
}

/* Step 3 for one message; 0 or its errno (nothing of it left anywhere). */
static int spool_commit_rename(struct spool_msg *m)
{
    char tmp[4096], dst[4096];
    int e;

    spool_path(tmp, sizeof(tmp), m->sp->temp_path, 'c', m->id);
    spool_path(dst, sizeof(dst), spool_msg_dir(m), 'c', m->id);
    e = spool_rename_known(tmp, dst, &m->cst);
    if (e == 0) {
        spool_path(tmp, sizeof(tmp), m->sp->temp_path, 'l', m->id);
        spool_path(dst, sizeof(dst), spool_msg_dir(m), 'l', m->id);
        e = spool_rename_known(tmp, dst, &m->lst);
        if (e) {
            spool_path(dst, sizeof(dst), spool_msg_dir(m), 'c', m->id);
            unlink(dst);
        }
    }
    if (e) {
        m->err = e;
        spool_msg_cleanup(m);
        return e;
    }
    m->renamed = 1;
    spool_msg_qdir(m)->dsync = 1;
    return 0;
}

/* Step 4 (and the flush after a withdrawal); 0 or errno. */
static int spool_commit_flush_dirs(struct spool *sp)
{
    int e = 0;

    if (sp->flush_fs)
        return syncfs(sp->tmp_fd) < 0 ? errno : 0;
    for (size_t i = 0; i < sp->ndirs; i++) {
        if (sp->dirs[i].dsync && fsync(sp->dirs[i].fd) < 0 && errno != EINVAL && e == 0)
            e = errno;
        sp->dirs[i].dsync = 0;
    }
    return e;
}

/* A flush of the group failed: no message of it stays. */
static void spool_commit_fail(struct spool *sp, int err)
{
    char path[4096];
    int withdrawn = 0;

    for (struct spool_msg *m = sp->group; m; m = m->next) {
        if (m->err)
            continue;
        m->err = err;
        if (!m->renamed) {
            spool_msg_cleanup(m);
            continue;
        }
        spool_path(path, sizeof(path), spool_msg_dir(m), 'l', m->id);
        spool_unlink_sync(path);
        spool_path(path, sizeof(path), spool_msg_dir(m), 'c', m->id);
        spool_unlink_sync(path);
        spool_msg_qdir(m)->dsync = 1;
        withdrawn = 1;
    }
    if (withdrawn)
        spool_commit_flush_dirs(sp);
}

/* Thread pool: the whole group (see the file comment). */
static void spool_commit_work(uv_work_t *w)
{
    struct spool *sp = w->data;
    struct spool_msg *m;
    int written = 0, renamed = 0, e;

    for (m = sp->group; m; m = m->next) {
        if (m->err)
            spool_msg_cleanup(m);   /* failed before: only its leftovers go */
        else
            written += spool_commit_write(m, sp->flush_fs) == 0;
    }
    if (written && sp->flush_fs && syncfs(sp->tmp_fd) < 0) {
        spool_commit_fail(sp, errno);
        return;
    }
    for (m = sp->group; m; m = m->next)
        if (m->err == 0)
            renamed += spool_commit_rename(m) == 0;
    if (renamed && (e = spool_commit_flush_dirs(sp)) != 0)
        spool_commit_fail(sp, e);
}

static void spool_commit_start(struct spool *sp);

static void spool_commit_after(uv_work_t *w, int status)
{
    struct spool *sp = w->data;
    struct spool_msg *m = sp->group, *next;

    sp->group = NULL;
    sp->group_busy = 0;
    for (; m; m = next) {
        next = m->next;
        m->busy = 0;
        if (status && m->err == 0)
            m->err = EIO;
        if (m->err == EXDEV)
            log_warn("%s: cannot commit: Temp_path %s and the queue directory %s are not "
                     "on the same filesystem (they must be); the client is told to try "
                     "later", m->id, sp->temp_path, spool_msg_dir(m));
        if (async_req_end(&m->req) && m->done)
            m->done(m->done_arg, m->err, m->id);
        spool_msg_free(m);
    }
    if (sp->group_wait)
        spool_commit_start(sp);
}

static void spool_commit_start(struct spool *sp)
{
    sp->group = sp->group_wait;
    sp->group_wait = NULL;
    sp->group_tail = &sp->group_wait;
    sp->group_busy = 1;
    sp->group_work.data = sp;
    uv_queue_work(sp->loop, &sp->group_work, spool_commit_work, spool_commit_after);
}

void spool_commit_enqueue(struct spool_msg *m)
{
    struct spool *sp = m->sp;

    m->busy = 1;
    m->next = NULL;
    *sp->group_tail = m;
    sp->group_tail = &m->next;
    if (!sp->group_busy)
        spool_commit_start(sp);
}
