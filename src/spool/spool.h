/*
 * spool.h - every filesystem operation on the spool, made safe for NFS.
 *
 * Owns: creating queue files under Temp_path, fsync, rename into a queue
 * directory (Queue_path, its qlimit, or an alternate queue's)
 * (with the check that a rename which reported failure did not in fact
 * succeed), directory fsync shared by many commits, replacing a file by
 * write-new-and-rename, listing a spool directory (skipping .nfs* and any
 * name that is not a queue file), and turning errno into "no disk space".
 * Nothing else in Selor calls rename, unlink or fsync on the spool.
 * Must not: rely on flock/fcntl locks, O_APPEND from several writers,
 * inotify or fine mtimes; block the event loop (the asynchronous calls run
 * their I/O on libuv's thread pool; the *_sync calls are for thread-pool
 * jobs and command-line tools).
 */
#ifndef SELOR_SPOOL_H
#define SELOR_SPOOL_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "buf.h"

struct async_owner;
struct spool_msg;

/* A queue directory commits are renamed into (spool_queues.h names them). */
struct spool_dir {
    char name[16];       /* "main", "qlimit" or an alternate queue */
    char *path;          /* no trailing slash */
    int fd;              /* for directory fsync; -1: cannot be used */
    int dsync;           /* the group under way renamed into it */
};

struct spool {
    uv_loop_t *loop;
    char *temp_path;
    struct spool_dir *dirs;   /* [0] main (Queue_path), [1] qlimit, then alternates */
    size_t ndirs;
    int tmp_fd;               /* Temp_path, for syncfs */
    int flush_fs;             /* 1: one syncfs per group; 0: fdatasync per file */
    struct spool_msg *group_wait, **group_tail;  /* for the next group, in order */
    struct spool_msg *group;  /* the group being committed */
    int group_busy;
    uv_work_t group_work;
};

/* Result of a commit: 0, or the errno that stopped it. */
typedef void spool_done_fn(void *arg, int err, const char *id);
typedef void spool_drain_fn(void *arg);

/* Opens Queue_path (queue_path), its qlimit and every alternate queue of
 * spool_queues.h; -1 with err when main or qlimit cannot be opened (an
 * alternate queue that cannot is warned about, and its commits fail). */
int spool_open(struct spool *sp, uv_loop_t *loop, const char *queue_path,
               const char *temp_path, struct buf *err);
void spool_close(struct spool *sp);
/*
 * How a group of commits reaches the disk (Spool_flush): "syncfs" (one
 * syncfs(2) of Temp_path's filesystem for the files of the whole group,
 * one for its renames), "fsync" (fdatasync of each file, one fsync of each
 * directory renamed into), or "auto": syncfs on local filesystems known to
 * flush everything with it, fsync elsewhere (NFS, FUSE, unknown).  Returns
 * the mode chosen, "syncfs" or "fsync".
 */
const char *spool_set_flush(struct spool *sp, const char *mode);

/* A message being received for owner o: content is buffered, flushed in
 * the background.  The owner cancelling it is spool_msg_abort. */
struct spool_msg *spool_msg_new(struct spool *sp, struct async_owner *o, const char *id);
/* Appends content; 0, or -1 once the message has failed (err kept). */
int spool_msg_write(struct spool_msg *m, const void *p, size_t n);
/* 1 when so much content waits for the disk that input should pause. */
int spool_msg_backlogged(const struct spool_msg *m);
/* Called once the backlog drains (at most once per registration). */
void spool_msg_on_drain(struct spool_msg *m, spool_drain_fn *fn, void *arg);
size_t spool_msg_size(const struct spool_msg *m);
/*
 * The content so far, whole in its temp file (path), for programs that
 * read the message before the commit (Event.data): 1 it is already, 0
 * fn(arg) when it is (check spool's error at the commit as always), -1
 * the message has failed.  Not fsynced: the commit does that.
 */
int spool_msg_write_out(struct spool_msg *m, char *path, size_t size, spool_drain_fn *fn,
                        void *arg);
/*
 * The content changed before the commit (milters): the file becomes head,
 * then body when given, else the old content from byte body_off on.  Call
 * once the content is whole in its file (spool_msg_write_out); head and
 * body are taken (emptied).  fn(arg) when done, on the loop, unless the
 * owner went; an error shows at the commit.
 */
void spool_msg_rewrite(struct spool_msg *m, struct buf *head, size_t body_off,
                       struct buf *body, spool_drain_fn *fn, void *arg);
/*
 * Makes the message durable: the c file, then the l file (ltext, with the
 * settings and hits given above), flushed to disk, renamed into the
 * queue's directory, and the renames flushed, together with the other
 * messages committing at the same time (spool_commit.c).  done is called
 * once, on the loop, after all of it; the message is freed after it.
 */
void spool_msg_commit(struct spool_msg *m, const char *ltext, size_t llen,
                      spool_done_fn *done, void *arg);
/* Commit into the qlimit queue instead of the main one (before any
 * queue set by spool_msg_set_queue: throttled mail stays throttled). */
void spool_msg_set_qlimit(struct spool_msg *m);
/*
 * Commit into queue name (spool_queues.h; NULL or "main": the main one).
 * A queue this spool cannot use makes the commit fail (a 4xx for the
 * client, with a warning), never land elsewhere.
 */
void spool_msg_set_queue(struct spool_msg *m, const char *name);
/* What the rules decided for the connection, for delivery: recorded in the
 * l file given to spool_msg_commit (its "set" and "hits" records). */
void spool_msg_add_setting(struct spool_msg *m, const char *name, const char *value);
void spool_msg_set_hits(struct spool_msg *m, long hits);
/*
 * The owner no longer wants the message.  Before a commit: everything
 * written is removed.  During a commit: it completes (the message stays
 * queued) but done is not called.
 */
void spool_msg_abort(struct spool_msg *m);

/* 1 for errors that mean "the spool cannot be written" (Msg_nodisk_space). */
int spool_err_is_nodisk(int err);

/* ---- synchronous calls (thread-pool jobs, selorctl, start-up) ---- */

/* Writes dir/name atomically (temp file, fsync, rename); 0 or errno. */
int spool_write_sync(const char *dir, const char *tmpdir, const char *name,
                     const void *data, size_t len);
/* The same, asking still_ours(arg) right before the rename (the commit
 * point) and giving up with ECANCELED when it says 0: a write under a
 * lock whose lease ran out while the data went to disk. */
int spool_write_sync_checked(const char *dir, const char *tmpdir, const char *name,
                             const void *data, size_t len, int (*still_ours)(void *),
                             void *arg);
/* Reads a whole file of at most max bytes; 0, or errno (ENOENT: gone). */
int spool_read_sync(const char *path, struct buf *out, size_t max);
/* rename with the NFS check; 0 or errno. */
int spool_rename_sync(const char *from, const char *to);
/* unlink; a file already gone is success. */
int spool_unlink_sync(const char *path);
int spool_fsync_dir_sync(const char *dir);
/* Calls fn for each queue file name ("c<ID>" or "l<ID>") in dir. */
typedef int spool_scan_fn(const char *name, void *arg);
int spool_scan_sync(const char *dir, spool_scan_fn *fn, void *arg);
/* 1 if name is "c<ID>" or "l<ID>". */
int spool_is_queue_name(const char *name);
/* mkdir -p (unprivileged: the master creates its directories through
 * priv.c); 0 or errno. */
int spool_mkdirs(const char *path, mode_t mode);

#endif
