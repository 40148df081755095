/*
 * spool_int.h - what spool.c and spool_commit.c share inside the spool:
 * the message being received and the synchronous primitives.  Nothing
 * outside src/spool/ includes it.
 */
#ifndef SELOR_SPOOL_INT_H
#define SELOR_SPOOL_INT_H

#include <sys/stat.h>

#include "async.h"
#include "queue_id.h"
#include "spool.h"

struct queue_file;

struct spool_msg {
    struct async_req req;   /* for its owner: done and drain reach it */
    struct spool *sp;
    char id[QUEUE_ID_MAX];
    struct buf mem;      /* content not yet given to a job */
    struct buf io;       /* content the running job writes */
    struct buf ltext;
    int cfd;             /* temp c file; -1 until first written */
    int qlimit;          /* committed into the qlimit queue */
    size_t dir;          /* else into sp->dirs[dir] (spool_msg_set_queue) */
    char bad_queue[16];  /* a queue this spool does not have: the commit fails */
    struct queue_file *rules;  /* settings and hits for the l file (NULL: none) */
    int busy;            /* a job is running */
    int committing, aborted;
    int err;             /* first errno; 0 = fine */
    size_t size;
    spool_done_fn *done;
    void *done_arg;
    spool_drain_fn *drain;
    void *drain_arg;
    spool_drain_fn *written;   /* spool_msg_write_out: all content on disk */
    void *written_arg;
    struct buf body;     /* spool_msg_rewrite: the new body (io: the new head) */
    size_t body_off;
    int body_given;
    uv_work_t work;
    struct stat cst, lst;  /* the temp files' identities, for the rename check */
    int renamed;         /* the group commit moved both into the queue */
    struct spool_msg *next;   /* in its group, or waiting for one */
};

/* Synchronous, for thread-pool jobs (0 or errno where an int). */
int spool_write_fd(int fd, const char *p, size_t n);
int spool_create_file(const char *path, const void *data, size_t len, struct stat *st,
                      int nosync);
int spool_rename_known(const char *from, const char *to, const struct stat *src);
void spool_path(char *out, size_t size, const char *dir, char kind, const char *id);
struct spool_dir *spool_msg_qdir(const struct spool_msg *m);
const char *spool_msg_dir(const struct spool_msg *m);
/* Thread pool: io appended to Temp_path/c<ID> (opened the first time). */
void spool_msg_flush_io(struct spool_msg *m);
/* Thread pool: everything the message has in Temp_path removed. */
void spool_msg_cleanup(struct spool_msg *m);
void spool_msg_free(struct spool_msg *m);

/* On the loop, io holding the rest of the content: the message joins the
 * next group commit (spool_commit.c); done is called from there. */
void spool_commit_enqueue(struct spool_msg *m);

#endif
