/*
 * deliver_local.h - delivery to a local mailbox through the MDA (Dlocal).
 *
 * Owns: building the MDA command from Dlocal and its variables, starting it
 * with uv_spawn, feeding the message on its standard input, a time limit,
 * and reading its exit status and standard error into a result.
 *   Dlocal_type 0: the command is split on blanks into an argument vector
 *                  (no shell); each word gets its variables substituted.
 *   Dlocal_type 1: the command runs through /bin/sh -c, and every
 *                  substituted value is shell-quoted first.
 * Either way, no address, however crafted, can run a command.
 * Variables: %l mailbox user, %d queue ID, %r recipient, %f sender,
 * %c recipient domain, %o sender domain, %m sender local part,
 * %p recipient local part, %C recipient home, %% a percent sign.
 * Must not: decide whether the mailbox may use its own Dlocal
 * (Adlocal_allowed is checked by the caller) or retry.
 */
#ifndef SELOR_DELIVER_LOCAL_H
#define SELOR_DELIVER_LOCAL_H

#include <stddef.h>
#include <uv.h>

#include "buf.h"

#define DELIVER_LOCAL_ANSWER_MAX 1024

struct deliver_local_vars {
    const char *user;       /* %l */
    const char *id;         /* %d */
    const char *rcpt;       /* %r */
    const char *sender;     /* %f ("" for the null sender) */
    const char *home;       /* %C */
};

struct deliver_local_req {
    const char *command;    /* Dlocal, or the mailbox's own */
    int type;               /* Dlocal_type: 0 argv, 1 /bin/sh -c */
    struct deliver_local_vars vars;
    const char *content;    /* the c file (LF line ends) */
    size_t len;
    long timeout_ms;        /* the MDA is killed after this */
    long uid, gid;          /* run as this user/group when >= 0 and root */
};

enum deliver_local_status {
    DELIVER_LOCAL_OK,        /* exit 0 */
    DELIVER_LOCAL_TEMPFAIL,  /* exit 75 (EX_TEMPFAIL), a signal, timeout, spawn error */
    DELIVER_LOCAL_PERMFAIL,  /* any other exit status */
    DELIVER_LOCAL_QUOTA,     /* over quota: exit 77 with "quota" in stderr, or
                                stderr mentions a quota (Msg_full_mailbox) */
};

struct deliver_local_result {
    enum deliver_local_status status;
    int exit_code;          /* -1 when killed by a signal or not started */
    int term_signal;
    /* The MDA's standard error (first lines, control chars removed), or a
     * local reason ("timeout after 300 s", "cannot start: ..."). */
    char answer[DELIVER_LOCAL_ANSWER_MAX];
};

struct async_owner;
struct deliver_local;
typedef void deliver_local_done_fn(void *arg, const struct deliver_local_result *r);

/* The MDA runs for owner o (async.h).  req and what it points to must stay
 * valid until done or the owner's cancel; done never runs before this
 * returns.  NULL only when nothing could be started (done is then not
 * called and r holds the reason). */
struct deliver_local *deliver_local_start(uv_loop_t *loop, struct async_owner *o,
                                          const struct deliver_local_req *req,
                                          deliver_local_done_fn *done, void *arg,
                                          struct deliver_local_result *r);
/* Kills the MDA; done will not be called. */
void deliver_local_cancel(struct deliver_local *d);

/* ---- exposed for tests ---- */

/* Appends value to out quoted for /bin/sh (single quotes). */
void deliver_local_shell_quote(const char *value, struct buf *out);
/*
 * Expands the command into an argument vector (type 0) or a shell command
 * line (type 1: argv = {"/bin/sh", "-c", line}).  Returns the number of
 * arguments, or -1 with why set (empty command, unknown variable, too long).
 * The strings live in mem until it is freed.
 */
struct arena;
int deliver_local_argv(const char *command, int type,
                       const struct deliver_local_vars *v, struct arena *mem,
                       char ***argv, const char **why);

#endif
