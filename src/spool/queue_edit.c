/*
 * queue_edit.c - operator changes to a queued message (see queue_edit.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "queue_edit.h"
#include "queue_file.h"
#include "spool.h"
#include "spool_queues.h"

int queue_edit_op_parse(const char *word)
{
    static const char *const names[] = {"flush", "hold", "release", "delete"};

    for (int i = 0; i < 4; i++)
        if (strcmp(word, names[i]) == 0)
            return i;
    return -1;
}

const char *queue_edit_find(const char *qid)
{
    char dir[2048];

    return spool_queues_find(NULL, qid, dir, sizeof(dir));
}

static int queue_edit_delete(const char *dir, const char *qid, int (*still_ours)(void *),
                             void *arg)
{
    char path[4096];
    int e;

    if (still_ours && !still_ours(arg))
        return ECANCELED;
    snprintf(path, sizeof(path), "%s/l%s", dir, qid);
    e = spool_unlink_sync(path);
    snprintf(path, sizeof(path), "%s/c%s", dir, qid);
    if (e == 0)
        e = spool_unlink_sync(path);
    if (e == 0)
        e = spool_fsync_dir_sync(dir);
    return e;
}

static void queue_edit_change(struct queue_file *qf, enum queue_edit_op op)
{
    if (op == QUEUE_EDIT_HOLD) {
        qf->flags |= QF_F_HOLD;
        return;
    }
    if (op == QUEUE_EDIT_RELEASE)
        qf->flags &= ~(unsigned)QF_F_HOLD;  /* a flush leaves held mail held */
    qf->next = 0;
    for (size_t i = 0; i < qf->nrcpt; i++)
        if (qf->rcpt[i].state == QF_PENDING)
            qf->rcpt[i].next = 0;
}

/* A newer holder wrote the file after our claim: it is theirs. */
static int queue_edit_newer(const struct queue_file *qf, unsigned long long token,
                            char *why, size_t whylen)
{
    if (token == 0 || qf->token <= token)
        return 0;
    snprintf(why, whylen, "changed meanwhile by a newer holder; try again");
    return 1;
}

int queue_edit_apply(const char *queue, const char *qid, enum queue_edit_op op,
                     unsigned long long token, int (*still_ours)(void *), void *arg,
                     char *why, size_t whylen)
{
    char dir[2048], path[4096], name[80];
    struct buf text = BUF_INIT(0), out = BUF_INIT(0);
    struct queue_file qf;
    int e;

    if (spool_queues_dir(queue, dir, sizeof(dir)) < 0) {
        snprintf(why, whylen, "no queue %s", queue);
        return ENOENT;
    }
    snprintf(path, sizeof(path), "%s/l%s", dir, qid);
    e = spool_read_sync(path, &text, 64 << 20);
    if (e == 0 && qf_parse(&qf, text.data, text.len, why, whylen) < 0)
        e = EINVAL;
    buf_free(&text);
    if (e)
        return e;
    if (queue_edit_newer(&qf, token, why, whylen)) {
        qf_free(&qf);
        return ESTALE;
    }
    if (op == QUEUE_EDIT_DELETE) {
        qf_free(&qf);
        return queue_edit_delete(dir, qid, still_ours, arg);
    }
    queue_edit_change(&qf, op);
    if (token)
        qf.token = token;
    qf_format(&qf, &out);
    qf_free(&qf);
    snprintf(name, sizeof(name), "l%s", qid);
    e = spool_write_sync_checked(dir, selor_conf->Temp_path, name, out.data, out.len,
                                 still_ours, arg);
    if (e == ECANCELED)
        snprintf(why, whylen, "the lock lapsed before the change was written; try again");
    if (e == 0)
        e = spool_fsync_dir_sync(dir);
    buf_free(&out);
    return e;
}
