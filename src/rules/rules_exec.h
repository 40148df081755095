/*
 * rules_exec.h - the programs of the rules: `Exec? "/prog args"` (a
 * condition, whose answer is awaited) and `Exec! "/prog args"` (an action,
 * fire and forget).
 *
 * Owns: starting a program without a shell, its time limit, the first line
 * of its standard output, its exit status, and how many run at once in one
 * process (a pool: the rest wait in order, up to a bound).  Requests follow
 * async.h: a request belongs to its owner; when the owner cancels, the
 * program is killed and the callback never runs.
 * Must not: block the loop, run a shell, pass on Selor's environment, or
 * change user (the daemon has dropped its privileges already).
 */
#ifndef SELOR_RULES_EXEC_H
#define SELOR_RULES_EXEC_H

#include <stddef.h>
#include <uv.h>

struct async_owner;

#define RULES_EXEC_CMD_MAX 4096    /* bytes of a command line */
#define RULES_EXEC_ARGS_MAX 64     /* words of a command line (extra_arg aside) */
#define RULES_EXEC_LINE_MAX 1023   /* bytes of the first line kept */

enum rules_exec_status {
    RULES_EXEC_EXITED,    /* exit_code: its status, or 128 + the signal that ended it */
    RULES_EXEC_TIMEOUT,   /* killed (its whole process group) at the time limit */
    RULES_EXEC_ERROR,     /* it could not be started */
};

/*
 * The answer.  exit_code: -1 unless RULES_EXEC_EXITED.  first_line: the
 * first line of standard output without its end of line, at most
 * RULES_EXEC_LINE_MAX bytes, "" if none (also what was read before a
 * timeout; "" on error).
 */
typedef void rules_exec_fn(void *arg, int status, int exit_code, const char *first_line);

/* One per process: how many programs run at once, how many may wait. */
struct rules_exec_pool;

struct rules_exec_pool *rules_exec_pool_new(uv_loop_t *loop, int max_running,
                                            int max_queued);
/*
 * Kills what runs and forgets what waits, without calling anyone back (the
 * owners are going too: this is for the end of the process).  The pool's
 * memory goes once the loop has closed the last program's handles.
 */
void rules_exec_pool_free(struct rules_exec_pool *p);

/*
 * Runs cmdline: split as rules_exec_check says, extra_arg (may be NULL)
 * appended as one more argument (the message file of a content check).
 * Standard input and error are /dev/null; standard output is read to its
 * end (the first line kept, the rest discarded); the environment is only
 * PATH=/usr/bin:/bin.  timeout_ms (> 0) counts from the start of the
 * program, not from its wait in the queue.
 * o: the owner of the answer, or NULL for fire and forget (fn may then be
 * NULL).  fn runs later from the loop, never before this returns, once the
 * program has exited and its output has ended (or a short grace after the
 * exit, for a grandchild that keeps it open); a program that cannot be
 * started (not found, not executable) answers RULES_EXEC_ERROR that way.
 * Returns 0, or -1 with fn never called: a bad command line, the queue
 * full (max_queued programs already wait), or the pool being freed.
 */
int rules_exec_start(struct rules_exec_pool *p, struct async_owner *o, const char *cmdline,
                     const char *extra_arg, long timeout_ms, rules_exec_fn *fn, void *arg);

/*
 * For load-time checks.  A command line is words split on blanks (space,
 * tab); '...' quotes group blanks into a word and may be empty ('' is an
 * empty argument); nothing else is special (no shell, no other escapes).
 * The first word is the program: an absolute path.  0, or -1 with the
 * reason in why.
 */
int rules_exec_check(const char *cmdline, char *why, size_t whylen);
/*
 * Splits a command line as rules_exec_start does, into at most max - 1
 * words (NULL-terminated) that point into buf (a copy of cmdline's size):
 * the number of words, or -1 (an open quote, too many words).  The rules
 * split first and then insert variables into each word, so what a client
 * sent is always one argument.
 */
int rules_exec_split(const char *cmdline, char *buf, size_t bufsize, char **argv, size_t max);
/* rules_exec_start with the words already split (argv NULL-terminated). */
int rules_exec_startv(struct rules_exec_pool *p, struct async_owner *o,
                      const char *const *argv, const char *extra_arg, long timeout_ms,
                      rules_exec_fn *fn, void *arg);

#endif
