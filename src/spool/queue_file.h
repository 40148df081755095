/*
 * queue_file.h - the envelope of a queued message: the l file.
 *
 * Owns: the l file's text format, version 3, and reading versions 1 and 2
 * (docs/spool.md): what it holds (the envelope, the recipients' states, and
 * what a connection's rules left for delivery: settings and hits) and the
 * rule that a reader refuses any file it does not fully understand (wrong
 * magic, unknown version or record, missing end record, count mismatch).  Must not: read or write files (spool.c does), or decide what
 * happens to a recipient (queue.c does).
 */
#ifndef SELOR_QUEUE_FILE_H
#define SELOR_QUEUE_FILE_H

#include <stddef.h>

#include "arena.h"
#include "buf.h"

#define QF_MAGIC "SELOR-L"
#define QF_VERSION 3
#define QF_HITS_MAX 1000000000L   /* |hits| a file may hold (larger is clamped) */
#define QF_MAX_SETTINGS 1000

/* Per-recipient state (one letter in the file). */
enum qf_state {
    QF_PENDING = 'P',    /* not yet delivered; try at next */
    QF_DELIVERED = 'D',  /* delivered; never sent again */
    QF_FAILED = 'F',     /* failed for good; a report is due */
    QF_REPORTED = 'R',   /* failed, and the sender has been told */
};

struct qf_rcpt {
    char state;          /* enum qf_state */
    int attempts;
    long next;           /* unix time of the next try; 0 = now */
    const char *addr;    /* "user@domain" */
    const char *orcpt;   /* original recipient ("" if none) */
    const char *answer;  /* last answer (remote reply or MDA result) */
    /* How the address came to be a recipient: "how:module", "mailbox:pgsql",
     * "alias:passwd", "broadcast:passwd", "srs" ("" given by the client or
     * unknown).  Version 2. */
    const char *via;
};

/* One option a rule changed for the connection (Def!), for delivery.  The
 * name is an option name as selor.conf spells it; the value its text. */
struct qf_setting {
    const char *name;
    const char *value;
};

struct queue_file {
    const char *id;
    const char *sid;        /* Sid of the accepting node ("" if none) */
    long created;           /* unix time accepted */
    long size;              /* bytes in the c file */
    const char *from;       /* "" for the null sender */
    const char *client_ip;
    const char *client_name;
    const char *helo;
    const char *auth;       /* authenticated user ("" if none) */
    const char *body;       /* "7BIT" or "8BITMIME" */
    unsigned long long token; /* fencing token of the last writer */
    unsigned flags;         /* QF_F_* */
    int attempts;           /* delivery runs so far */
    long next;              /* earliest next run; 0 = now */
    long hits;              /* the connection's rule score (version 3; else 0) */
    size_t nsettings, settings_alloc;
    struct qf_setting *settings;   /* in the order set (version 3) */
    size_t nrcpt, rcpt_alloc;
    struct qf_rcpt *rcpt;
    struct arena mem;       /* owns every string above */
};

enum qf_flag {
    QF_F_HOLD = 1,    /* held by the operator: not delivered */
    QF_F_BOUNCE = 2,  /* this message is a delivery report */
    QF_F_QLIMIT = 4,  /* belongs to the qlimit queue */
    QF_F_NOTICE = 8,  /* a notice to Postmaster: never reported on */
};

void qf_init(struct queue_file *qf);
void qf_free(struct queue_file *qf);
/* Adds a pending recipient (strings copied into qf->mem). */
struct qf_rcpt *qf_add_rcpt(struct queue_file *qf, const char *addr,
                            const char *orcpt);
/* Records a setting (copied into qf->mem); a name set before gets the new
 * value in its old place, as a later Def! wins. */
void qf_add_setting(struct queue_file *qf, const char *name, const char *value);
/* 1 if name can be a setting's name in the file (letters, digits, _ and .). */
int qf_setting_name_ok(const char *name);
/* Copies a string into qf->mem (for fields set by hand). */
const char *qf_str(struct queue_file *qf, const char *s);

/* Appends the file's text to out. */
void qf_format(const struct queue_file *qf, struct buf *out);
/*
 * Parses a whole l file.  Returns 0, or -1 with the reason in err when the
 * file is incomplete, corrupt or of a version this reader does not know.
 */
int qf_parse(struct queue_file *qf, const char *text, size_t len, char *err,
             size_t errlen);

#endif
