/*
 * deliver_local.c - running the MDA for one local recipient (see
 * deliver_local.h).
 *
 * Owns: turning Dlocal into an argument vector, the MDA's process and its
 * three pipes (stdin, stderr, and the process handle), its timer, and the
 * mapping of what the MDA did onto a deliver_local_result.  Must not: decide
 * which command a mailbox may use, retry, log (the caller logs the result),
 * or touch the process's signal dispositions (Selor ignores SIGPIPE in every
 * process, see master.c; a write to an MDA that has gone away comes back
 * here as EPIPE).
 *
 * Command expansion.
 *   Type 0: the command is split on blanks BEFORE substitution and each word
 *   then gets its variables, so a value with blanks or shell syntax stays one
 *   argument and no shell ever sees it.
 *   Type 1: argv is {"/bin/sh", "-c", line}.  Every value is single-quoted
 *   (' becomes '\'') at the place of its variable.  A quoted value is only
 *   inert where the shell parses it once, so the command is scanned for the
 *   quote it is in: inside '...' or "..." the quote is closed around the
 *   value and reopened.  Where that cannot be known, a variable is refused
 *   rather than guessed at: right after \ or $, anywhere after `...`,
 *   $(...), ${...}, $'...', ((...)) or a comment's #, and in an
 *   unterminated quote (write $HOME, not ${HOME}).
 *   Quoting protects a value from the shell that runs the line; a program
 *   that hands an argument to a shell again (eval, sh -c, ssh) is beyond it.
 *   In both types a word that is only "<" is dropped: the reference's
 *   examples end in "<" ("maildrop -d %l <"), but Selor always gives the
 *   message on standard input, so there is nothing to redirect.
 *
 * Running.  The MDA starts in its own session (UV_PROCESS_DETACHED), so the
 * timeout and cancel kill its whole process group, including a shell's
 * children.  Its environment is fixed (PATH, HOME, SENDER, RECIPIENT, USER,
 * LOGNAME); Selor's own is not passed on.  Standard output goes to
 * /dev/null; the first 4 KB of standard error are kept for the answer.
 * The result is known when the MDA has exited and its stderr is at end of
 * file; a grandchild that keeps stderr open is waited for only briefly.
 *
 * Decisions.
 *   - The exit status decides, not whether the MDA read the whole message:
 *     an MDA that exits 0 without reading (broken pipe) has taken the
 *     message, as with Postfix's pipe(8).  Another write error with exit 0
 *     is a TEMPFAIL.
 *   - A program that cannot be started because it does not exist or may not
 *     be run (ENOENT, EACCES, ENOTDIR, ELOOP, ENAMETOOLONG) or a command that
 *     does not expand is a PERMFAIL: it will not change by retrying this
 *     message.  Every other spawn error (EAGAIN, ENOMEM, EMFILE, ENFILE,
 *     EPERM from setuid, ...) is a TEMPFAIL: the system is short of
 *     something now.
 *   - A timeout_ms <= 0 means DL_DEFAULT_TIMEOUT_MS, never "no limit".
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "arena.h"
#include "async.h"
#include "buf.h"
#include "deliver_local.h"
#include "mem.h"

#define DL_MAX_ARGS 64               /* arguments of the MDA, argv[0] included */
#define DL_MAX_BYTES 8192            /* all arguments with their NULs */
#define DL_STDERR_KEEP 4096          /* stderr kept for the answer */
#define DL_CHUNK (64 * 1024)         /* one uv_write to the MDA's stdin */
#define DL_EXIT_GRACE_MS 1000        /* wait for stderr EOF after the exit */
#define DL_DEFAULT_TIMEOUT_MS 300000
#define DL_EX_TEMPFAIL 75

struct deliver_local {
    struct async_req req;        /* for the owner: done reaches it */
    uv_process_t proc;
    uv_pipe_t in;                /* the MDA's stdin */
    uv_pipe_t err;               /* the MDA's stderr */
    uv_timer_t timer;            /* timeout, then the grace after the exit */
    uv_write_t wreq;
    deliver_local_done_fn *done;
    void *arg;
    const char *content;
    size_t len, off;             /* off: bytes handed to uv_write */
    long timeout_ms;
    int handles;                 /* open handles; freed when 0 */
    int in_closed, exited, err_eof, timed_out, finished;
    int write_error;             /* first write error other than EPIPE */
    int64_t exit_status;
    int term_signal;
    size_t errlen;
    char errbuf[DL_STDERR_KEEP];
    char discard[4096];          /* stderr past errbuf is read and dropped */
    struct deliver_local_result res;
};

/* ---- command expansion ---- */

/* A value, not necessarily NUL-terminated (local parts point into %r/%f). */
struct dl_val {
    const char *p;
    size_t n;
};

static struct dl_val dl_str(const char *s)
{
    struct dl_val v = { s ? s : "", s ? strlen(s) : 0 };
    return v;
}

/* The part of an address after its last '@' ("" without one). */
static struct dl_val dl_domain(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;

    return at ? dl_str(at + 1) : dl_str("");
}

/* The part before the last '@' (the whole address without one). */
static struct dl_val dl_local(const char *addr)
{
    struct dl_val v = dl_str(addr);
    const char *at = addr ? strrchr(addr, '@') : NULL;

    if (at)
        v.n = (size_t)(at - addr);
    return v;
}

/* The value of %c; 0 if c names no variable. */
static int dl_lookup(char c, const struct deliver_local_vars *v, struct dl_val *out)
{
    switch (c) {
    case 'l': *out = dl_str(v->user); return 1;
    case 'd': *out = dl_str(v->id); return 1;
    case 'r': *out = dl_str(v->rcpt); return 1;
    case 'f': *out = dl_str(v->sender); return 1;
    case 'c': *out = dl_domain(v->rcpt); return 1;
    case 'o': *out = dl_domain(v->sender); return 1;
    case 'm': *out = dl_local(v->sender); return 1;
    case 'p': *out = dl_local(v->rcpt); return 1;
    case 'C': *out = dl_str(v->home); return 1;
    case '%': *out = dl_str("%"); return 1;
    default: return 0;
    }
}

static const char *dl_unknown(struct arena *mem, char c)
{
    char *why = arena_alloc(mem, 48);

    if (c == '\0')
        snprintf(why, 48, "%% at the end of the command");
    else
        snprintf(why, 48, "unknown variable %%%c", c);
    return why;
}

static int dl_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A word that is only "<" starts at s. */
static int dl_lone_lt(const char *s)
{
    return s[0] == '<' && (s[1] == '\0' || dl_blank(s[1]));
}

void deliver_local_shell_quote(const char *value, struct buf *out)
{
    size_t n = strlen(value), need = n + 2;

    for (const char *p = value; *p; p++)
        if (*p == '\'')
            need += 3;
    /* All or nothing, like buf_append: a half-quoted value would be unsafe. */
    if (out->limit && (need > out->limit || out->len > out->limit - need))
        return;
    buf_putc(out, '\'');
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            buf_puts(out, "'\\''");
        else
            buf_putc(out, *p);
    }
    buf_putc(out, '\'');
}

/* Quotes v into out; -1 if the limit is reached. */
static int dl_quote_val(struct dl_val v, struct buf *out, struct arena *mem)
{
    size_t before = out->len;

    deliver_local_shell_quote(arena_strndup(mem, v.p, v.n), out);
    return out->len == before ? -1 : 0;
}

static const char *const dl_too_long = "command longer than 8192 bytes";
static const char *const dl_too_many = "more than 64 arguments";

/* Type 0: one word of the command (n bytes at w), substituted into out. */
static int dl_word(const char *w, size_t n, const struct deliver_local_vars *v,
                   struct arena *mem, struct buf *out, const char **why)
{
    struct dl_val val;

    for (size_t i = 0; i < n; i++) {
        if (w[i] != '%') {
            if (buf_putc(out, w[i]) < 0)
                goto too_long;
            continue;
        }
        if (i + 1 >= n || !dl_lookup(w[i + 1], v, &val)) {
            *why = dl_unknown(mem, i + 1 < n ? w[i + 1] : '\0');
            return -1;
        }
        if (buf_append(out, val.p, val.n) < 0)
            goto too_long;
        i++;
    }
    return 0;
too_long:
    *why = dl_too_long;
    return -1;
}

static int dl_argv_words(const char *command, const struct deliver_local_vars *v,
                         struct arena *mem, char **args, const char **why)
{
    struct buf w = BUF_INIT(DL_MAX_BYTES);
    size_t total = 0;
    int argc = 0;
    const char *p = command;

    for (;;) {
        const char *start;

        while (dl_blank(*p))
            p++;
        if (*p == '\0')
            break;
        start = p;
        while (*p && !dl_blank(*p))
            p++;
        if (dl_lone_lt(start))
            continue;
        if (argc == DL_MAX_ARGS) {
            *why = dl_too_many;
            goto fail;
        }
        buf_reset(&w);
        if (dl_word(start, (size_t)(p - start), v, mem, &w, why) < 0)
            goto fail;
        total += w.len + 1;
        if (total > DL_MAX_BYTES) {
            *why = dl_too_long;
            goto fail;
        }
        args[argc++] = arena_strndup(mem, w.data ? w.data : "", w.len);
    }
    buf_free(&w);
    return argc;
fail:
    buf_free(&w);
    return -1;
}

/* Where the type-1 scan is in the shell's grammar. */
enum dl_sh { DL_SH_OUT, DL_SH_SQ, DL_SH_DQ };

/*
 * Places one value in the line: closes the quote the command is in, adds
 * the value single-quoted, reopens the quote.  prev is the command's
 * character before the '%' (after a backslash it is that backslash).
 */
static int dl_sh_value(struct dl_val val, enum dl_sh st, int opaque, char prev,
                       struct buf *line, struct arena *mem, const char **why)
{
    static const char *const reopen[] = { "", "'", "\"" };

    if (opaque) {
        *why = "variable after `...`, $(...), ${...}, $'...', ((...)) or #";
        return -1;
    }
    if ((prev == '\\' && st != DL_SH_SQ) || (st == DL_SH_OUT && prev == '$')) {
        *why = "variable right after \\ or $";
        return -1;
    }
    if (buf_puts(line, reopen[st]) < 0 || dl_quote_val(val, line, mem) < 0 ||
        buf_puts(line, reopen[st]) < 0) {
        *why = dl_too_long;
        return -1;
    }
    return 0;
}

/* Does a construct we do not follow (substitution, comment) start at p? */
static int dl_sh_opaque(const char *command, const char *p, enum dl_sh st)
{
    if (p[0] == '`' || (p[0] == '$' && (p[1] == '(' || p[1] == '{')))
        return 1;
    if (st != DL_SH_OUT)
        return 0;
    /* bash's $'...' gives \' a meaning that '...' does not have. */
    if ((p[0] == '(' && p[1] == '(') || (p[0] == '$' && p[1] == '\''))
        return 1;
    /* # starts a comment where a new word may start, as in "a;#". */
    return p[0] == '#' && (p == command || strchr(" \t\n;&|()<>", p[-1]));
}

static int dl_sh_line(const char *command, const struct deliver_local_vars *v,
                      struct arena *mem, struct buf *line, const char **why)
{
    enum dl_sh st = DL_SH_OUT;
    int opaque = 0;
    char prev = '\0';  /* the previous character of the command, if live */
    struct dl_val val;

    for (const char *p = command; *p; p++) {
        int word_start = p == command || dl_blank(p[-1]);

        if (*p == '%') {
            if (!dl_lookup(p[1], v, &val)) {
                *why = dl_unknown(mem, p[1]);
                return -1;
            }
            if (p[1] == '%') {
                if (buf_putc(line, '%') < 0)
                    goto too_long;
            } else if (dl_sh_value(val, st, opaque, prev, line, mem, why) < 0) {
                return -1;
            }
            p++;
            prev = '\0';
            continue;
        }
        if (!opaque && st == DL_SH_OUT && word_start && dl_lone_lt(p)) {
            prev = '\0';
            continue;
        }
        if (st != DL_SH_SQ && dl_sh_opaque(command, p, st))
            opaque = 1;
        if (buf_putc(line, *p) < 0)
            goto too_long;
        /* An escaped character is copied with its backslash, unparsed. */
        if (*p == '\\' && st != DL_SH_SQ) {
            prev = '\\';
            if (p[1] == '%' || p[1] == '\0')
                continue;
            if (buf_putc(line, *++p) < 0)
                goto too_long;
            prev = '\0';
            continue;
        }
        if (*p == '\'' && st != DL_SH_DQ)
            st = st == DL_SH_SQ ? DL_SH_OUT : DL_SH_SQ;
        else if (*p == '"' && st != DL_SH_SQ)
            st = st == DL_SH_DQ ? DL_SH_OUT : DL_SH_DQ;
        prev = *p;
    }
    if (st != DL_SH_OUT) {
        *why = "unterminated quote in the command";
        return -1;
    }
    return 0;
too_long:
    *why = dl_too_long;
    return -1;
}

int deliver_local_argv(const char *command, int type,
                       const struct deliver_local_vars *v, struct arena *mem,
                       char ***argv, const char **why)
{
    char **args = arena_alloc(mem, (DL_MAX_ARGS + 1) * sizeof(*args));
    struct buf line = BUF_INIT(DL_MAX_BYTES - sizeof("/bin/sh") - sizeof("-c") - 1);
    int argc;

    *argv = NULL;
    if (type == 0) {
        argc = dl_argv_words(command, v, mem, args, why);
        if (argc == 0)
            *why = "empty command";
        if (argc <= 0)
            return -1;
    } else {
        if (dl_sh_line(command, v, mem, &line, why) < 0) {
            buf_free(&line);
            return -1;
        }
        if (strspn(buf_cstr(&line), " \t") == line.len) {
            *why = "empty command";
            buf_free(&line);
            return -1;
        }
        args[0] = arena_strdup(mem, "/bin/sh");
        args[1] = arena_strdup(mem, "-c");
        args[2] = arena_strndup(mem, line.data, line.len);
        argc = 3;
        buf_free(&line);
    }
    args[argc] = NULL;
    *argv = args;
    return argc;
}

/* ---- the result ---- */

/* "quota" anywhere in the n bytes at p, in any case. */
static int dl_mentions_quota(const char *p, size_t n)
{
    static const char word[] = "quota";

    for (size_t i = 0; i + sizeof(word) - 1 <= n; i++) {
        size_t k = 0;
        while (k < sizeof(word) - 1 && (p[i + k] | 0x20) == word[k])
            k++;
        if (k == sizeof(word) - 1)
            return 1;
    }
    return 0;
}

/*
 * The answer from stderr: its non-empty lines, trimmed, joined with "; ".
 * A tab becomes a space and anything else but printable ASCII a '?': the
 * answer ends up in logs, bounces and SMTP replies.
 */
static void dl_answer(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0, i = 0;

    while (i < n && o + 1 < size) {
        size_t s = i, e;

        while (i < n && p[i] != '\n')
            i++;
        e = i++;
        while (s < e && (dl_blank(p[s]) || p[s] == '\r'))
            s++;
        while (e > s && (dl_blank(p[e - 1]) || p[e - 1] == '\r'))
            e--;
        if (s == e)
            continue;
        if (o > 0)
            for (const char *sep = "; "; *sep && o + 1 < size; sep++)
                out[o++] = *sep;
        for (; s < e && o + 1 < size; s++) {
            unsigned char c = (unsigned char)p[s];
            out[o++] = c == '\t' ? ' ' : (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
        }
    }
    out[o] = '\0';
}

static void dl_result(struct deliver_local *d)
{
    struct deliver_local_result *r = &d->res;
    int failed;

    r->exit_code = d->term_signal ? -1 : (int)d->exit_status;
    r->term_signal = d->term_signal;
    dl_answer(d->errbuf, d->errlen, r->answer, sizeof(r->answer));
    /* Not if the MDA ended on its own just as the time ran out. */
    if (d->timed_out && d->term_signal != 0) {
        r->status = DELIVER_LOCAL_TEMPFAIL;
        snprintf(r->answer, sizeof(r->answer), "timeout after %g s",
                 (double)d->timeout_ms / 1000.0);
        return;
    }
    failed = d->term_signal != 0 || d->exit_status != 0;
    if (!failed && d->write_error) {
        r->status = DELIVER_LOCAL_TEMPFAIL;
        snprintf(r->answer, sizeof(r->answer), "error writing to the MDA: %s",
                 uv_strerror(d->write_error));
        return;
    }
    if (!failed)
        r->status = DELIVER_LOCAL_OK;
    else if (dl_mentions_quota(d->errbuf, d->errlen))
        r->status = DELIVER_LOCAL_QUOTA;
    else if (d->term_signal || d->exit_status == DL_EX_TEMPFAIL)
        r->status = DELIVER_LOCAL_TEMPFAIL;
    else
        r->status = DELIVER_LOCAL_PERMFAIL;
    if (failed && r->answer[0] == '\0') {
        if (d->term_signal)
            snprintf(r->answer, sizeof(r->answer), "killed by signal %d",
                     d->term_signal);
        else
            snprintf(r->answer, sizeof(r->answer), "exit status %d", r->exit_code);
    }
}

/* ---- the process and its handles ---- */

static void dl_on_close(uv_handle_t *h)
{
    struct deliver_local *d = h->data;

    if (--d->handles == 0)
        mem_free(d);
}

static void dl_close_stdin(struct deliver_local *d)
{
    if (d->in_closed)
        return;
    d->in_closed = 1;
    uv_close((uv_handle_t *)&d->in, dl_on_close);
}

/* Closes every handle; d is freed by the last close callback. */
static void dl_close_all(struct deliver_local *d)
{
    dl_close_stdin(d);
    uv_close((uv_handle_t *)&d->err, dl_on_close);
    uv_close((uv_handle_t *)&d->timer, dl_on_close);
    uv_close((uv_handle_t *)&d->proc, dl_on_close);
}

/* Once: reports (unless the owner cancelled) and closes.  done runs while
 * the handles are closing, so d is still there if done calls cancel. */
static void dl_finish(struct deliver_local *d)
{
    if (d->finished)
        return;
    d->finished = 1;
    dl_result(d);
    dl_close_all(d);
    if (async_req_end(&d->req))
        d->done(d->arg, &d->res);
}

static void dl_maybe_finish(struct deliver_local *d)
{
    if (d->exited && d->err_eof)
        dl_finish(d);
}

/* The whole process group: a shell's children die with it. */
static void dl_kill(struct deliver_local *d)
{
    if (d->exited)
        return;  /* its pid may belong to someone else by now */
    if (kill(-d->proc.pid, SIGKILL) < 0)
        uv_process_kill(&d->proc, SIGKILL);
}

static void dl_write_next(struct deliver_local *d);

static void dl_on_write(uv_write_t *req, int status)
{
    struct deliver_local *d = req->data;

    if (status == UV_ECANCELED || d->in_closed)
        return;  /* closing: d lives until the close callbacks */
    if (status < 0) {
        /* EPIPE: the MDA stopped reading; its exit status will tell. */
        if (status != UV_EPIPE && d->write_error == 0)
            d->write_error = status;
        dl_close_stdin(d);
        return;
    }
    dl_write_next(d);
}

/* One chunk at a time, so a large message is never copied or queued whole. */
static void dl_write_next(struct deliver_local *d)
{
    size_t n = d->len - d->off;
    uv_buf_t b;
    int rc;

    if (n == 0) {
        dl_close_stdin(d);  /* end of file for the MDA */
        return;
    }
    if (n > DL_CHUNK)
        n = DL_CHUNK;
    b = uv_buf_init((char *)d->content + d->off, (unsigned)n);
    d->wreq.data = d;
    rc = uv_write(&d->wreq, (uv_stream_t *)&d->in, &b, 1, dl_on_write);
    if (rc < 0) {
        if (rc != UV_EPIPE && d->write_error == 0)
            d->write_error = rc;
        dl_close_stdin(d);
        return;
    }
    d->off += n;
}

static void dl_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct deliver_local *d = h->data;

    (void)suggested;
    if (d->errlen < sizeof(d->errbuf))
        *b = uv_buf_init(d->errbuf + d->errlen,
                         (unsigned)(sizeof(d->errbuf) - d->errlen));
    else
        *b = uv_buf_init(d->discard, sizeof(d->discard));
}

/* stderr is read to its end even past what is kept, so the MDA never
 * blocks on a full pipe. */
static void dl_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct deliver_local *d = s->data;

    if (nread > 0 && b->base != d->discard)
        d->errlen += (size_t)nread;
    if (nread >= 0)
        return;
    d->err_eof = 1;
    uv_read_stop(s);
    dl_maybe_finish(d);
}

/* Before the exit: the time limit.  After it: the end of the grace for
 * stderr, which a grandchild may be holding open. */
static void dl_on_timer(uv_timer_t *t)
{
    struct deliver_local *d = t->data;

    if (!d->exited) {
        d->timed_out = 1;
        dl_kill(d);
        return;
    }
    d->err_eof = 1;
    uv_read_stop((uv_stream_t *)&d->err);
    dl_maybe_finish(d);
}

static void dl_on_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct deliver_local *d = p->data;

    d->exited = 1;
    d->exit_status = exit_status;
    d->term_signal = term_signal;
    if (!d->err_eof)
        uv_timer_start(&d->timer, dl_on_timer, DL_EXIT_GRACE_MS, 0);
    dl_maybe_finish(d);
}

/* "name=value" in mem. */
static char *dl_env_var(struct arena *mem, const char *name, const char *value)
{
    size_t n = strlen(name), m = strlen(value);
    char *s = arena_alloc(mem, n + m + 2);

    memcpy(s, name, n);
    s[n] = '=';
    memcpy(s + n + 1, value, m + 1);
    return s;
}

/* A fixed environment: nothing of Selor's own is passed on. */
static char **dl_env(const struct deliver_local_vars *v, struct arena *mem)
{
    char **env = arena_alloc(mem, 7 * sizeof(*env));
    int n = 0;

    env[n++] = dl_env_var(mem, "PATH", "/usr/bin:/bin");
    if (v->home && v->home[0])
        env[n++] = dl_env_var(mem, "HOME", v->home);
    env[n++] = dl_env_var(mem, "SENDER", v->sender ? v->sender : "");
    env[n++] = dl_env_var(mem, "RECIPIENT", v->rcpt ? v->rcpt : "");
    env[n++] = dl_env_var(mem, "USER", v->user ? v->user : "");
    env[n++] = dl_env_var(mem, "LOGNAME", v->user ? v->user : "");
    env[n] = NULL;
    return env;
}

/* See the file comment for why these are the permanent ones. */
static enum deliver_local_status dl_spawn_status(int err)
{
    switch (err) {
    case UV_ENOENT:
    case UV_EACCES:
    case UV_ENOTDIR:
    case UV_ELOOP:
    case UV_ENAMETOOLONG:
        return DELIVER_LOCAL_PERMFAIL;
    default:
        return DELIVER_LOCAL_TEMPFAIL;
    }
}

static void dl_fail(struct deliver_local_result *r, enum deliver_local_status st,
                    const char *what, const char *why)
{
    memset(r, 0, sizeof(*r));
    r->status = st;
    r->exit_code = -1;
    snprintf(r->answer, sizeof(r->answer), "%s: %s", what, why);
}

static void dl_options(uv_process_options_t *o, uv_stdio_container_t *stdio,
                       struct deliver_local *d, const struct deliver_local_req *req,
                       char **argv, char **env)
{
    memset(o, 0, sizeof(*o));
    o->exit_cb = dl_on_exit;
    o->file = argv[0];
    o->args = argv;
    o->env = env;
    o->flags = UV_PROCESS_DETACHED;  /* its own process group, see dl_kill */
    if (geteuid() == 0 && req->uid >= 0) {
        o->flags |= UV_PROCESS_SETUID;
        o->uid = (uv_uid_t)req->uid;
    }
    if (geteuid() == 0 && req->gid >= 0) {
        o->flags |= UV_PROCESS_SETGID;
        o->gid = (uv_gid_t)req->gid;
    }
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&d->in;
    stdio[1].flags = UV_IGNORE;  /* libuv opens /dev/null */
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&d->err;
    o->stdio = stdio;
    o->stdio_count = 3;
}

static void dl_init_handles(uv_loop_t *loop, struct deliver_local *d)
{
    uv_pipe_init(loop, &d->in, 0);
    uv_pipe_init(loop, &d->err, 0);
    uv_timer_init(loop, &d->timer);
    d->in.data = d->err.data = d->timer.data = d;
    d->handles = 4;  /* the process handle counts from uv_spawn on */
}

static void dl_cancel(struct async_req *r);

struct deliver_local *deliver_local_start(uv_loop_t *loop, struct async_owner *owner,
                                          const struct deliver_local_req *req,
                                          deliver_local_done_fn *done, void *arg,
                                          struct deliver_local_result *r)
{
    struct deliver_local *d;
    struct arena mem;
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    char **argv;
    const char *why;
    int rc;

    arena_init(&mem, 1024);
    if (deliver_local_argv(req->command ? req->command : "", req->type, &req->vars,
                           &mem, &argv, &why) < 0) {
        dl_fail(r, DELIVER_LOCAL_PERMFAIL, "bad command", why);
        arena_clear(&mem);
        return NULL;
    }
    d = mem_zalloc(sizeof(*d));
    d->done = done;
    d->arg = arg;
    d->content = req->content;
    d->len = req->content ? req->len : 0;
    d->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : DL_DEFAULT_TIMEOUT_MS;
    dl_init_handles(loop, d);
    dl_options(&o, stdio, d, req, argv, dl_env(&req->vars, &mem));
    rc = uv_spawn(loop, &d->proc, &o);
    d->proc.data = d;  /* uv_spawn (re)initialises the handle */
    if (rc < 0) {
        char what[256];

        snprintf(what, sizeof(what), "cannot start %.200s", argv[0]);
        dl_fail(r, dl_spawn_status(rc), what, uv_strerror(rc));
        arena_clear(&mem);
        d->finished = 1;
        dl_close_all(d);  /* the process handle too: uv_spawn initialised it */
        return NULL;
    }
    arena_clear(&mem);  /* the child has its own copy of argv and env */
    async_req_start(&d->req, owner, dl_cancel, 0);
    if (uv_read_start((uv_stream_t *)&d->err, dl_on_alloc, dl_on_read) < 0)
        d->err_eof = 1;  /* no answer then, but the exit still counts */
    uv_timer_start(&d->timer, dl_on_timer, (uint64_t)d->timeout_ms, 0);
    dl_write_next(d);
    return d;
}

/* The owner no longer waits: stdin closes at once (the content it pointed
 * into is the owner's, and may go now), the MDA is killed, and the exit
 * callback finishes without done. */
static void dl_cancel(struct async_req *r)
{
    struct deliver_local *d = (struct deliver_local *)r;

    if (d->finished)
        return;
    dl_close_stdin(d);
    if (d->exited) {
        dl_finish(d);  /* only stderr was left to wait for */
        return;
    }
    dl_kill(d);
}

void deliver_local_cancel(struct deliver_local *d)
{
    if (d)
        async_req_cancel(&d->req);
}
