/*
 * rules_exec.c - the programs of the rules (see rules_exec.h).
 *
 * Owns: splitting command lines, the pool of one process (programs
 * running, and a FIFO of those waiting for a place), and each program's
 * handles: the process, a pipe for its standard output, one timer (first
 * the time limit, then the grace for output after the exit, or an
 * immediate answer when the program could not be started).  A program runs
 * in its own process group, so a time limit or a cancel kills whatever it
 * started too.  A job's memory goes when its last handle has closed; the
 * pool's when its last job's has.
 * Must not: block (no waitpid, no blocking read), call back before
 * rules_exec_start returns, or touch an owner's memory after a cancel.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "async.h"
#include "mem.h"
#include "rules_exec.h"

#define RX_GRACE_MS 200      /* output still open after the exit: a grandchild */
#define RX_READ_CHUNK 4096   /* output read at a time; the rest is discarded */

/* A split command line: argv points into text. */
struct rx_argv {
    int argc;
    char *argv[RULES_EXEC_ARGS_MAX + 2];   /* + extra_arg + NULL */
    char *text;
};

struct rx_job {
    struct async_req req;        /* first: the cancel hook finds the job from it */
    struct rules_exec_pool *pool;
    struct rx_job *prev, *next;  /* in the pool's queue, then its running list */
    int owned;                   /* req is tied to an owner */
    int running;                 /* started (handles exist), not yet finished */
    int finished;                /* answered or dropped; handles closing */
    int dropped;                 /* nobody gets the answer */
    int error, timed_out, exited, out_eof;
    int handles;                 /* handles still to close */
    int exit_code;
    long timeout_ms;
    rules_exec_fn *fn;
    void *arg;
    struct rx_argv av;
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
    size_t linelen;
    int line_done;               /* the first line is complete (or full) */
    char line[RULES_EXEC_LINE_MAX + 1];
    char chunk[RX_READ_CHUNK];
};

struct rules_exec_pool {
    uv_loop_t *loop;
    int max_running, max_queued;
    int nrunning, nqueued;
    unsigned jobs;               /* started jobs whose handles are not all closed */
    int freeing;
    struct rx_job *qhead, *qtail;
    struct rx_job *runs;         /* running jobs (for rules_exec_pool_free) */
};

static void rx_run(struct rx_job *j);
static void rx_cancel(struct async_req *r);

/* ---- command lines ---- */

static int rx_fail(char *why, size_t whylen, const char *reason)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", reason);
    return -1;
}

/* Splits in place: words are written back into s, never longer than it. */
static int rx_split_text(char *s, struct rx_argv *av, char *why, size_t whylen)
{
    char *in = s, *out = s;

    av->argc = 0;
    while (*in) {
        int have = 0;
        char *word = out;

        while (*in == ' ' || *in == '\t')
            in++;
        while (*in && *in != ' ' && *in != '\t') {
            if (*in != '\'') {
                *out++ = *in++;
                have = 1;
                continue;
            }
            char *end = strchr(in + 1, '\'');
            if (end == NULL)
                return rx_fail(why, whylen, "a quote (') is not closed");
            memmove(out, in + 1, (size_t)(end - in - 1));
            out += end - in - 1;
            in = end + 1;
            have = 1;
        }
        if (!have)
            continue;
        if (av->argc == RULES_EXEC_ARGS_MAX)
            return rx_fail(why, whylen, "too many words (at most 64)");
        /* out never passes in: the NUL lands on input already read */
        if (*in)
            in++;
        *out++ = '\0';
        av->argv[av->argc++] = word;
    }
    av->argv[av->argc] = NULL;
    return 0;
}

/* extra (may be NULL) becomes one more word, copied after the others so a
 * job that waits in the queue does not depend on the caller's memory. */
static int rx_split(const char *cmdline, const char *extra, struct rx_argv *av, char *why,
                    size_t whylen)
{
    size_t n = strlen(cmdline), m = extra ? strlen(extra) : 0;

    av->text = NULL;
    if (n > RULES_EXEC_CMD_MAX || m > RULES_EXEC_CMD_MAX)
        return rx_fail(why, whylen, "the command line is too long (at most 4096 bytes)");
    av->text = mem_alloc(n + m + 2);
    memcpy(av->text, cmdline, n + 1);
    if (rx_split_text(av->text, av, why, whylen) < 0)
        return -1;
    if (av->argc == 0)
        return rx_fail(why, whylen, "no program");
    if (av->argv[0][0] != '/')
        return rx_fail(why, whylen, "the program must be an absolute path");
    if (extra) {
        av->argv[av->argc] = av->text + n + 1;
        memcpy(av->argv[av->argc++], extra, m + 1);
        av->argv[av->argc] = NULL;
    }
    return 0;
}

int rules_exec_check(const char *cmdline, char *why, size_t whylen)
{
    struct rx_argv av;
    int rc = rx_split(cmdline, NULL, &av, why, whylen);

    mem_free(av.text);
    return rc;
}

/* ---- jobs ---- */

static void rx_job_free(struct rx_job *j)
{
    mem_free(j->av.text);
    mem_free(j);
}

static void rx_unlink(struct rx_job **head, struct rx_job **tail, struct rx_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        *head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else if (tail)
        *tail = j->prev;
    j->prev = j->next = NULL;
}

static void rx_closed(uv_handle_t *h)
{
    struct rx_job *j = h->data;
    struct rules_exec_pool *p = j->pool;

    if (--j->handles > 0)
        return;
    rx_job_free(j);
    if (--p->jobs == 0 && p->freeing)
        mem_free(p);
}

static void rx_close(struct rx_job *j)
{
    j->handles = 3;
    uv_close((uv_handle_t *)&j->proc, rx_closed);
    uv_close((uv_handle_t *)&j->out, rx_closed);
    uv_close((uv_handle_t *)&j->timer, rx_closed);
}

/* The first waiting job takes the place a finished one left. */
static void rx_next(struct rules_exec_pool *p)
{
    struct rx_job *j;

    while (!p->freeing && p->qhead && p->nrunning < p->max_running) {
        j = p->qhead;
        rx_unlink(&p->qhead, &p->qtail, j);
        p->nqueued--;
        rx_run(j);
    }
}

/* The answer is complete (or nobody wants it): deliver it, then let go of
 * the handles and the place in the pool. */
static void rx_finish(struct rx_job *j)
{
    struct rules_exec_pool *p = j->pool;
    int deliver, status;

    if (j->finished)
        return;
    j->finished = 1;
    j->running = 0;
    uv_read_stop((uv_stream_t *)&j->out);
    uv_timer_stop(&j->timer);
    rx_unlink(&p->runs, NULL, j);
    p->nrunning--;
    deliver = j->owned ? async_req_end(&j->req) : !j->dropped;
    status = j->error ? RULES_EXEC_ERROR : j->timed_out ? RULES_EXEC_TIMEOUT
                                                         : RULES_EXEC_EXITED;
    j->line[j->linelen] = '\0';
    rx_next(p);
    if (deliver && !j->dropped && j->fn)
        j->fn(j->arg, status, status == RULES_EXEC_EXITED ? j->exit_code : -1,
              j->error ? "" : j->line);
    rx_close(j);
}

/* Its whole process group: what the program started goes with it.  Only
 * before the exit is reaped, while the group's ID cannot be reused. */
static void rx_kill(struct rx_job *j)
{
    if (!j->exited && j->proc.pid > 0)
        (void)kill(-j->proc.pid, SIGKILL);
}

/* ---- a running program ---- */

/* The time limit, the grace for output after the exit, or the answer of a
 * program that could not start. */
static void rx_on_timer(uv_timer_t *t)
{
    struct rx_job *j = t->data;

    if (j->error) {
        rx_finish(j);
    } else if (!j->exited) {
        j->timed_out = 1;
        rx_kill(j);        /* the exit follows */
    } else {
        j->out_eof = 1;    /* a grandchild holds the output: stop waiting */
        rx_finish(j);
    }
}

static void rx_on_exit(uv_process_t *proc, int64_t status, int term_signal)
{
    struct rx_job *j = proc->data;

    j->exited = 1;
    j->exit_code = term_signal ? 128 + term_signal : (int)status;
    if (j->dropped || j->out_eof)
        rx_finish(j);
    else
        uv_timer_start(&j->timer, rx_on_timer, RX_GRACE_MS, 0);
}

static void rx_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct rx_job *j = h->data;

    *b = uv_buf_init(j->chunk, sizeof(j->chunk));
}

/* Keeps bytes up to the first end of line, within the line's bound. */
static void rx_take_line(struct rx_job *j, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !j->line_done; i++) {
        if (s[i] == '\n' || j->linelen == RULES_EXEC_LINE_MAX) {
            j->line_done = 1;
            break;
        }
        j->line[j->linelen++] = s[i];
    }
    if (j->line_done && j->linelen > 0 && j->line[j->linelen - 1] == '\r')
        j->linelen--;
}

static void rx_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct rx_job *j = s->data;

    if (nread > 0) {
        rx_take_line(j, b->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    j->out_eof = 1;   /* the end, or an error: either way nothing more comes */
    uv_read_stop(s);
    if (j->exited)
        rx_finish(j);
}

static void rx_options(struct rx_job *j, uv_process_options_t *o,
                       uv_stdio_container_t stdio[3], char **env)
{
    memset(o, 0, sizeof(*o));
    o->exit_cb = rx_on_exit;
    o->file = j->av.argv[0];
    o->args = j->av.argv;
    o->env = env;
    o->flags = UV_PROCESS_DETACHED;   /* its own process group: see rx_kill */
    stdio[0].flags = UV_IGNORE;       /* libuv opens /dev/null */
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&j->out;
    stdio[2].flags = UV_IGNORE;
    o->stdio = stdio;
    o->stdio_count = 3;
}

/* Starts the program now.  A failure is answered from the loop (timer at
 * 0), so the caller of rules_exec_start is never called back early. */
static void rx_run(struct rx_job *j)
{
    struct rules_exec_pool *p = j->pool;
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];

    uv_pipe_init(p->loop, &j->out, 0);
    uv_timer_init(p->loop, &j->timer);
    j->out.data = j->timer.data = j;
    j->running = 1;
    p->nrunning++;
    p->jobs++;
    j->next = p->runs;
    if (p->runs)
        p->runs->prev = j;
    p->runs = j;
    rx_options(j, &o, stdio, env);
    j->error = uv_spawn(p->loop, &j->proc, &o) < 0;
    j->proc.data = j;   /* uv_spawn initialises the handle, even when it fails */
    mem_free(j->av.text);   /* the child has its own copy */
    j->av.text = NULL;
    if (j->error) {
        j->exited = j->out_eof = 1;
        uv_timer_start(&j->timer, rx_on_timer, 0, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&j->out, rx_on_alloc, rx_on_read) < 0)
        j->out_eof = 1;
    uv_timer_start(&j->timer, rx_on_timer, (uint64_t)j->timeout_ms, 0);
}

/* The owner no longer waits.  Waiting: forgotten at once.  Running: killed,
 * and finished without an answer once the exit is reaped. */
static void rx_cancel(struct async_req *r)
{
    struct rx_job *j = (struct rx_job *)r;
    struct rules_exec_pool *p = j->pool;

    j->dropped = 1;
    if (!j->running) {
        rx_unlink(&p->qhead, &p->qtail, j);
        p->nqueued--;
        rx_job_free(j);
        return;
    }
    if (j->exited)
        rx_finish(j);   /* only output was awaited */
    else
        rx_kill(j);
}

/* ---- the pool ---- */

struct rules_exec_pool *rules_exec_pool_new(uv_loop_t *loop, int max_running,
                                            int max_queued)
{
    struct rules_exec_pool *p = mem_zalloc(sizeof(*p));

    p->loop = loop;
    p->max_running = max_running > 0 ? max_running : 1;
    p->max_queued = max_queued > 0 ? max_queued : 0;
    return p;
}

int rules_exec_split(const char *cmdline, char *buf, size_t bufsize, char **argv, size_t max)
{
    struct rx_argv av;
    size_t n = strlen(cmdline);

    if (n >= bufsize)
        return -1;
    memcpy(buf, cmdline, n + 1);
    if (rx_split_text(buf, &av, NULL, 0) < 0 || (size_t)av.argc >= max)
        return -1;
    for (int i = 0; i <= av.argc; i++)
        argv[i] = av.argv[i];
    return av.argc;
}

/* A job with its words: run now, or queued; -1 when the queue is full. */
static int rx_enqueue(struct rules_exec_pool *p, struct rx_job *j, struct async_owner *o,
                      long timeout_ms, rules_exec_fn *fn, void *arg)
{
    j->pool = p;
    j->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    j->fn = fn;
    j->arg = arg;
    if (o) {
        async_req_start(&j->req, o, rx_cancel, 0);
        j->owned = 1;
    }
    if (p->nrunning < p->max_running) {
        rx_run(j);
        return 0;
    }
    j->prev = p->qtail;
    if (p->qtail)
        p->qtail->next = j;
    else
        p->qhead = j;
    p->qtail = j;
    p->nqueued++;
    return 0;
}

static int rx_full(const struct rules_exec_pool *p)
{
    return p == NULL || p->freeing ||
           (p->nrunning >= p->max_running && p->nqueued >= p->max_queued);
}

int rules_exec_start(struct rules_exec_pool *p, struct async_owner *o, const char *cmdline,
                     const char *extra_arg, long timeout_ms, rules_exec_fn *fn, void *arg)
{
    struct rx_job *j;

    if (rx_full(p))
        return -1;
    j = mem_zalloc(sizeof(*j));
    if (rx_split(cmdline, extra_arg, &j->av, NULL, 0) < 0) {
        rx_job_free(j);
        return -1;
    }
    return rx_enqueue(p, j, o, timeout_ms, fn, arg);
}

int rules_exec_startv(struct rules_exec_pool *p, struct async_owner *o,
                      const char *const *argv, const char *extra_arg, long timeout_ms,
                      rules_exec_fn *fn, void *arg)
{
    struct rx_job *j;
    size_t total = extra_arg ? strlen(extra_arg) + 1 : 0, off = 0;
    int n = 0;

    if (rx_full(p) || argv[0] == NULL || argv[0][0] != '/')
        return -1;
    for (n = 0; argv[n]; n++)
        total += strlen(argv[n]) + 1;
    if (n > RULES_EXEC_ARGS_MAX || total > 4 * RULES_EXEC_CMD_MAX)
        return -1;
    j = mem_zalloc(sizeof(*j));
    j->av.text = mem_alloc(total + 1);
    for (int i = 0; i <= n; i++) {
        const char *w = i < n ? argv[i] : extra_arg;
        if (w == NULL)
            break;
        j->av.argv[j->av.argc++] = j->av.text + off;
        memcpy(j->av.text + off, w, strlen(w) + 1);
        off += strlen(w) + 1;
    }
    j->av.argv[j->av.argc] = NULL;
    return rx_enqueue(p, j, o, timeout_ms, fn, arg);
}

/* A job nobody will hear from: its owner is untied now. */
static void rx_drop(struct rx_job *j)
{
    j->dropped = 1;
    if (j->owned)
        (void)async_req_end(&j->req);
}

void rules_exec_pool_free(struct rules_exec_pool *p)
{
    struct rx_job *j, *next;

    if (p == NULL)
        return;
    p->freeing = 1;
    while ((j = p->qhead) != NULL) {
        rx_unlink(&p->qhead, &p->qtail, j);
        rx_drop(j);
        rx_job_free(j);
    }
    p->nqueued = 0;
    for (j = p->runs; j; j = next) {
        next = j->next;
        rx_drop(j);
        if (j->exited)
            rx_finish(j);
        else
            rx_kill(j);
    }
    if (p->jobs == 0)
        mem_free(p);
}
