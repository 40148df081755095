/*
 * rules.h - Selor's rules language: the 13 events, their rules files, and
 * running the rules of one event for a session or a delivery run.
 *
 * Owns: the language (docs/rules.md): parsing a rules file or an inline
 * rule into conditions and actions, with FILE:LINE:COLUMN errors; which
 * condition and action is allowed in which event; the variables; the set
 * of loaded files (a generation, reference-counted, so a session finishes
 * on the rules it started with) and its reload; evaluating one event into
 * an outcome (a verdict, a reply, Def! changes, copies, ...).  Must not:
 * speak SMTP or touch the spool: what an outcome means for a session or a
 * delivery run is decided by their own files (smtp_rules.c,
 * delivery_rules.c), which give the evaluator what a rule may look at
 * through struct rules_ctx.
 */
#ifndef SELOR_RULES_H
#define SELOR_RULES_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "arena.h"
#include "async.h"
#include "buf.h"

struct config;
struct coord;
struct dns;
struct rules_exec_pool;

enum rules_event {
    RULES_EV_LIMIT,
    RULES_EV_CONNECTION,
    RULES_EV_HELO,
    RULES_EV_AUTH,
    RULES_EV_FROM,
    RULES_EV_RCPT,
    RULES_EV_LRCPT_REFUSED,
    RULES_EV_DATA_CMD,
    RULES_EV_DATA,
    RULES_EV_QSTART,
    RULES_EV_QEND,
    RULES_EV_ERROR_REPORT,
    RULES_EV_DL_RCPT,
    RULES_NEVENTS
};

enum rules_verdict {
    RULES_NONE = 0,   /* no verdict: Selor's normal checks decide */
    RULES_ACCEPT,
    RULES_DENY,
    RULES_DEFER,
    RULES_CLOSE,
};

#define RULES_REPLY_MAX 512
#define RULES_MAX_FILES 256        /* rules files one configuration can name */
#define RULES_MAX_RULES 100000     /* rules in one file */
#define RULES_MAX_ITEMS 64         /* conditions and actions in one rule */
#define RULES_MAX_CP 32            /* Cp! copies one event can add */
#define RULES_MAX_HEADERS 32       /* Header! fields one transaction can add */
#define RULES_LINE_MAX 8192

/* One loaded rules file (or inline rule): immutable once loaded. */
struct rules_file;
/* Every rules file a configuration can reach: a generation. */
struct rules_set;

/* The option name of an event ("Event.rcpt") and its config index. */
const char *rules_event_name(enum rules_event ev);
int rules_event_option(enum rules_event ev);

/*
 * Loads every rules file the configuration names, including those a Def!
 * of an Event.* option names, each checked for the events that use it.
 * NULL with "FILE:LINE:COLUMN: message" in err.  Each Def! of Queue_path
 * found is given to queue_path(path, arg) (may be NULL).
 */
struct rules_set *rules_load(const struct config *c, struct buf *err,
                             void (*queue_path)(const char *path, void *arg), void *arg);
/* Checks the files again; a changed one is read again.  A new set when
 * something changed and loaded (the old one stays with its users), else
 * NULL; a file that fails keeps its previous version and its error is
 * logged once, with FILE:LINE:COLUMN. */
struct rules_set *rules_reload(struct rules_set *old, const struct config *c);
struct rules_set *rules_ref(struct rules_set *set);
void rules_unref(struct rules_set *set);
/*
 * Every Def! of the set, for the checks only the caller can make (the
 * modules a Modseq_* names): check returns 0, or -1 with the reason in
 * why; the first failure is "FILE:LINE:COLUMN: Def!: why" in err.
 */
int rules_check_defs(const struct rules_set *set,
                     int (*check)(int idx, const char *value, struct buf *why, void *arg),
                     void *arg, struct buf *err);
/* The same check for every reload (a reloaded Def! is held to the rules of
 * the start: set before fork, every process has it). */
void rules_set_def_check(int (*check)(int idx, const char *value, struct buf *why, void *arg),
                         void *arg);
/* A hash of every file's content, for selorctl nodes ("-" with no rules). */
const char *rules_hash(const struct rules_set *set);
/* The rules of an event as an option value names them (NULL: none). */
const struct rules_file *rules_for(const struct rules_set *set, const char *spec);
size_t rules_count(const struct rules_file *f);

/* The process's current rules (each process loads its own copy). */
extern struct rules_set *rules_current;
/* Every process with a loop: re-checks the files every 2 s and on
 * rules_watch_now (SIGHUP), swapping rules_current; changed(arg) runs
 * after a swap (and once at start).  A Def! of Queue_path in a changed
 * file is given to queue_path (which can only warn: the queues are set
 * up at start). */
void rules_watch_start(uv_loop_t *loop, const struct config *c,
                       void (*changed)(void *arg), void *arg,
                       void (*queue_path)(const char *path, void *arg));
void rules_watch_now(void);
void rules_watch_stop(void);

/* What a rule can look at and change: filled by the caller for an event. */
struct rules_ctx {
    const char *ip, *rdns, *helo, *from, *rcpt, *auth, *qid;
    const char *answer;          /* %T: the remote answer (dl_rcpt), or "" */
    const char *const *rcpts;    /* every recipient so far (To? outside rcpt) */
    size_t nrcpts;
    const char *msgfile;         /* the message, for programs (data, q*) */
    int tls, local, auth_ok;
    long size;                   /* SIZE declared, or the message's size */
    long *hits;
    struct config *conf;         /* the overlay Def! writes (NULL: none) */
    struct arena *mem;           /* where Def! values and copies live */
    /* What answers later, and whom it belongs to. */
    uv_loop_t *loop;
    struct async_owner *own;
    struct dns *dns;
    struct coord *coord;
    struct rules_exec_pool *exec;
    const char *receiver;        /* our name, for SPF */
    struct rules_cache *cache;   /* per connection: SPF, DNSBL, names */
    struct buf *trace;           /* selorctl rules test: the rules that ran */
    const char *cid;             /* for log lines */
};

/* A connection's lookups, done once each: DNSBL zones and SPF. */
#define RULES_CACHE_RBL 16
struct rules_cache {
    int rev;                     /* -1 not looked up, 0 named, 1 failed */
    char rdns[256];              /* the confirmed name ("" none) */
    int spf;                     /* enum spf_result, or -1 not checked */
    char spf_for[320];           /* the sender it was checked for */
    char exec_line[1024];        /* %X: the last Exec? output line */
    size_t nrbl;
    struct { char zone[128]; int listed; } rbl[RULES_CACHE_RBL];
};
void rules_cache_init(struct rules_cache *c);

struct rules_outcome {
    enum rules_verdict verdict;
    char reply[RULES_REPLY_MAX];        /* Reply!, expanded ("" none) */
    char data_reply[RULES_REPLY_MAX];   /* Data_reply! */
    int qlimit, resolve;
    long delay;                         /* Delay! seconds */
    const char *cp[RULES_MAX_CP];
    size_t ncp;
    const char *headers[RULES_MAX_HEADERS];
    size_t nheaders;
    int def_changed;                    /* a Def! ran */
    unsigned rules_run;                 /* rules whose actions ran */
};

/* One evaluation of an event: give it a ctx and wait for done. */
typedef void rules_done_fn(void *arg);
struct rules_run {
    const struct rules_file *file;
    enum rules_event ev;
    struct rules_ctx *ctx;
    struct rules_outcome out;
    size_t rule, item;
    int pending, answered, answer;      /* an asynchronous condition */
    int in_loop, rule_acted, stop, waiting_spf;
    char rdns[256];                     /* Rev_fail?: the name being confirmed */
    rules_done_fn *done;
    void *arg;
};

/*
 * Runs the rules of file for ev.  Returns 1 when finished at once (the
 * outcome is in run->out; done is not called), 0 when a condition waits for
 * an answer (DNS, a program, the rate counter): done(arg) runs later, unless
 * ctx->own cancels first.  file NULL: nothing to run (returns 1).
 */
int rules_run(struct rules_run *run, const struct rules_file *file, enum rules_event ev,
              struct rules_ctx *ctx, rules_done_fn *done, void *arg);

/* Expands %X variables of text into out (used by the evaluator, and for
 * Reply! texts the callers print). */
void rules_expand(const struct rules_ctx *ctx, const char *text, struct buf *out);

#endif
