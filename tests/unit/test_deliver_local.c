/*
 * test_deliver_local.c - the MDA runner (src/queue/deliver_local.c), with real
 * processes.
 *
 * The MDAs are /bin/sh scripts written into a mkdtemp directory, and
 * Debian's maildrop delivering into a Maildir.  Every delivery runs on its
 * own libuv loop, which must close cleanly afterwards (uv_loop_close == 0):
 * a handle left open, or freed twice, shows up here or under ASan.
 *
 * maildrop, as root, without a system user: manual mode, where the filter
 * file is the first argument and the rest are $1, $2... inside it:
 *     Dlocal "/usr/bin/maildrop %C/mailfilter %C/Maildir/ <"
 *     %C/mailfilter, mode 0600, owned by the user maildrop runs as:
 *         to "$1"
 *     %C/Maildir/{cur,new,tmp}, %C not group/world-writable.
 * maildrop refuses (exit 75) a filter file that is world-writable or owned
 * by someone else.  It does not take HOME from the environment (it uses the
 * passwd entry of its uid, /root here), so the Maildir is passed as $1.
 * With "-d user" it needs that user in the passwd database (or courier
 * authlib) and reads ~user/.mailfilter, which a test cannot set up without
 * touching /etc/passwd.
 *
 * The process is this test's: it ignores SIGPIPE as every Selor process
 * does (master.c), and is a child subreaper, so the grandchildren of a
 * killed MDA come back here and the test can see how they died.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "buf.h"
#include "async.h"
#include "deliver_local.h"
#include "mem.h"

/* Every MDA of these tests belongs to this owner (zeroed: a valid, empty owner). */
static struct async_owner owner;


static char dir[64];

/* ---- files ---- */

static const char *path(const char *name)
{
    static char p[4][512];
    static int i;

    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void write_file(const char *name, const char *data, size_t len, mode_t mode)
{
    FILE *f = fopen(path(name), "w");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path(name), mode), 0);
}

/* A /bin/sh script; "@D" in body becomes the test directory. */
static void write_script(const char *name, const char *body)
{
    struct buf b = BUF_INIT(0);

    buf_puts(&b, "#!/bin/sh\n");
    for (const char *p = body; *p; p++) {
        if (p[0] == '@' && p[1] == 'D') {
            buf_puts(&b, dir);
            p++;
        } else {
            buf_putc(&b, *p);
        }
    }
    write_file(name, b.data, b.len, 0700);
    buf_free(&b);
}

/* The whole file (NUL-terminated, mem_free it), or NULL if it is not there. */
static char *read_file(const char *p, size_t *len)
{
    struct buf b = BUF_INIT(0);
    char chunk[65536];
    size_t n;
    FILE *f = fopen(p, "r");

    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    return buf_steal(&b, len);
}

/* Open descriptors of this process: a delivery must leave none behind. */
static int count_fds(void)
{
    DIR *dp = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(dp);
    while (readdir(dp) != NULL)
        n++;
    closedir(dp);
    return n;
}

static int exists(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void rm_rf(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The NUL-separated arguments recorded by rec.sh must be exactly want. */
static void assert_args(const char *const *want, int n)
{
    size_t len, off = 0;
    char *got = read_file(path("args"), &len);
    int i;

    assert_non_null(got);
    for (i = 0; off < len; i++) {
        size_t k = strlen(got + off);
        if (i >= n)
            fail_msg("extra argument %d \"%s\"", i, got + off);
        if (strcmp(got + off, want[i]) != 0)
            fail_msg("argument %d:\n  got  \"%s\"\n  want \"%s\"", i, got + off,
                     want[i]);
        off += k + 1;
    }
    assert_int_equal(i, n);
    mem_free(got);
}

/* ---- deliveries ---- */

struct run {
    int started;   /* deliver_local_start has returned */
    int calls;     /* done callbacks */
    struct deliver_local_result r;
    double secs;   /* from start to the loop's end */
};

static void on_done(void *arg, const struct deliver_local_result *r)
{
    struct run *x = arg;

    assert_true(x->started);  /* never from inside deliver_local_start */
    x->calls++;
    x->r = *r;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct deliver_local_req make_req(const char *command, int type)
{
    static const char msg[] = "From: Alice <alice@src.example>\n"
                              "Subject: test\n\nline 1\n.\nline 3\n";
    struct deliver_local_req q;

    memset(&q, 0, sizeof(q));
    q.command = command;
    q.type = type;
    q.vars.user = "joe";
    q.vars.id = "1A2B3C4D";
    q.vars.rcpt = "joe@dest.example";
    q.vars.sender = "alice@src.example";
    q.vars.home = dir;
    q.content = msg;
    q.len = sizeof(msg) - 1;
    q.timeout_ms = 20000;
    q.uid = q.gid = -1;
    return q;
}

/* Runs one delivery to its end; done must come exactly once. */
static void run_req(const struct deliver_local_req *q, struct run *x)
{
    uv_loop_t loop;
    struct deliver_local_result r0;
    double t0 = now();
    int fds = count_fds();

    memset(x, 0, sizeof(*x));
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&r0, 0x55, sizeof(r0));
    if (deliver_local_start(&loop, &owner, q, on_done, x, &r0) == NULL)
        fail_msg("cannot start \"%s\": %s", q->command, r0.answer);
    x->started = 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(x->calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(count_fds(), fds);
    x->secs = now() - t0;
}

static void run_cmd(const char *command, int type, struct run *x)
{
    struct deliver_local_req q = make_req(command, type);

    run_req(&q, x);
}

static void assert_result(const struct run *x, enum deliver_local_status st,
                          int code, const char *answer)
{
    if (x->r.status != st)
        fail_msg("status %d, want %d (answer \"%s\")", x->r.status, st, x->r.answer);
    assert_int_equal(x->r.exit_code, code);
    if (answer)
        assert_string_equal(x->r.answer, answer);
}

/* A start that must fail at once: NULL, no callback, the loop closes. */
static void assert_no_start(const struct deliver_local_req *q,
                            enum deliver_local_status st, const char *answer_prefix)
{
    uv_loop_t loop;
    struct deliver_local_result r;
    struct run x;
    int fds = count_fds();

    memset(&x, 0, sizeof(x));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_null(deliver_local_start(&loop, &owner, q, on_done, &x, &r));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(r.status, st);
    assert_int_equal(r.exit_code, -1);
    if (strncmp(r.answer, answer_prefix, strlen(answer_prefix)) != 0)
        fail_msg("answer \"%s\" does not start with \"%s\"", r.answer, answer_prefix);
}

/* pid is gone; if it was this process's child (a subreaped grandchild),
 * it must have died of SIGKILL.  Waits up to 3 s. */
static void assert_killed(pid_t pid)
{
    int st;

    for (int i = 0; i < 300; i++) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            assert_true(WIFSIGNALED(st));
            assert_int_equal(WTERMSIG(st), SIGKILL);
            return;
        }
        if (w < 0 && kill(pid, 0) < 0 && errno == ESRCH)
            return;  /* reaped by libuv (the MDA itself) */
        usleep(10000);
    }
    kill(pid, SIGKILL);
    fail_msg("process %d still runs", (int)pid);
}

static pid_t read_pid(const char *name)
{
    char *s = read_file(path(name), NULL);
    pid_t pid;

    assert_non_null(s);
    pid = (pid_t)atoi(s);
    mem_free(s);
    assert_true(pid > 1);
    return pid;
}

/* ---- argument vectors ---- */

static const struct deliver_local_vars vars = {
    "joe", "1A2B3C4D", "Joe.R@Dest.example", "alice+x@src.example", "/home/joe",
};

/* deliver_local_argv must give exactly want[0..n-1]. */
static void check_argv(const char *command, int type,
                       const struct deliver_local_vars *v,
                       const char *const *want, int n)
{
    struct arena mem;
    char **argv = NULL;
    const char *why = NULL;
    int argc;

    arena_init(&mem, 256);
    argc = deliver_local_argv(command, type, v, &mem, &argv, &why);
    if (argc < 0)
        fail_msg("\"%s\": %s", command, why);
    assert_int_equal(argc, n);
    for (int i = 0; i < n; i++)
        if (strcmp(argv[i], want[i]) != 0)
            fail_msg("\"%s\" argument %d:\n  got  \"%s\"\n  want \"%s\"", command, i,
                     argv[i], want[i]);
    assert_null(argv[n]);
    arena_clear(&mem);
}

/* deliver_local_argv must refuse, with why containing want_why. */
static void check_argv_error(const char *command, int type,
                             const struct deliver_local_vars *v, const char *want_why)
{
    struct arena mem;
    char **argv = NULL;
    const char *why = NULL;

    arena_init(&mem, 256);
    if (deliver_local_argv(command, type, v, &mem, &argv, &why) >= 0)
        fail_msg("\"%s\" accepted", command);
    assert_non_null(why);
    if (strstr(why, want_why) == NULL)
        fail_msg("\"%s\": why \"%s\", want \"%s\"", command, why, want_why);
    arena_clear(&mem);
}

static void test_argv_every_variable(void **state)
{
    static const char *const want[] = {
        "/usr/bin/mda", "joe", "1A2B3C4D", "Joe.R@Dest.example",
        "alice+x@src.example", "Dest.example", "src.example", "alice+x", "Joe.R",
        "/home/joe", "%", "-u=joe/Joe.R@Dest.example%",
    };

    (void)state;
    check_argv("/usr/bin/mda %l %d %r %f %c %o %m %p %C %% -u=%l/%p@%c%%", 0, &vars,
               want, 12);
}

static void test_argv_address_parts(void **state)
{
    struct deliver_local_vars v = vars;
    static const char *const last_at[] = { "p", "\"a@b\"", "c.example" };
    static const char *const no_at[] = { "p", "postmaster", "" };
    static const char *const null_sender[] = { "p", "-f", "", "-o", "", "-m", "",
                                               "end" };
    static const char *const no_home[] = { "p", "", "x" };

    (void)state;
    v.rcpt = "\"a@b\"@c.example";  /* the last @ splits */
    check_argv("p %p %c", 0, &v, last_at, 3);
    v.rcpt = "postmaster";
    check_argv("p %p %c", 0, &v, no_at, 3);
    v = vars;
    v.sender = "";  /* the null sender: empty, but still arguments */
    check_argv("p -f %f -o %o -m %m end", 0, &v, null_sender, 8);
    v.home = NULL;
    check_argv("p %C x", 0, &v, no_home, 3);
}

static void test_argv_blanks_and_redirect(void **state)
{
    static const char *const maildrop[] = { "/usr/bin/maildrop", "-d", "joe" };
    static const char *const middle[] = { "a", "b" };
    static const char *const glued[] = { "a", "<b", "c<" };
    static const char *const shell_md[] = { "/bin/sh", "-c",
                                            "/usr/bin/maildrop -d 'joe' " };

    (void)state;
    check_argv("/usr/bin/maildrop -d %l <", 0, &vars, maildrop, 3);
    check_argv("  /usr/bin/maildrop\t-d  %l\t<\t", 0, &vars, maildrop, 3);
    check_argv("a < b", 0, &vars, middle, 2);
    check_argv("a <b c<", 0, &vars, glued, 3);
    check_argv("/usr/bin/maildrop -d %l <", 1, &vars, shell_md, 3);
}

static void test_argv_errors(void **state)
{
    (void)state;
    check_argv_error("prog %x", 0, &vars, "unknown variable %x");
    check_argv_error("prog %x", 1, &vars, "unknown variable %x");
    check_argv_error("prog %", 0, &vars, "% at the end");
    check_argv_error("prog %", 1, &vars, "% at the end");
    check_argv_error("", 0, &vars, "empty command");
    check_argv_error(" \t < ", 0, &vars, "empty command");
    check_argv_error(" < ", 1, &vars, "empty command");
}

static void test_argv_limits(void **state)
{
    struct buf cmd = BUF_INIT(0), val = BUF_INIT(0);
    struct deliver_local_vars v = vars;
    struct arena mem;
    char **argv;
    const char *why;

    (void)state;
    arena_init(&mem, 256);
    for (int i = 0; i < 64; i++)
        buf_puts(&cmd, "a ");
    assert_int_equal(deliver_local_argv(buf_cstr(&cmd), 0, &v, &mem, &argv, &why), 64);
    buf_puts(&cmd, "a");
    check_argv_error(buf_cstr(&cmd), 0, &v, "more than 64 arguments");
    buf_puts(&cmd, " <");  /* dropped words do not count */
    check_argv_error(buf_cstr(&cmd), 0, &v, "more than 64 arguments");

    /* "p\0" and the value with its NUL: exactly 8192 bytes, then one more. */
    for (int i = 0; i < 8189; i++)
        buf_putc(&val, 'x');
    v.rcpt = buf_cstr(&val);
    assert_int_equal(deliver_local_argv("p %r", 0, &v, &mem, &argv, &why), 2);
    assert_int_equal(strlen(argv[1]), 8189);
    buf_putc(&val, 'x');
    v.rcpt = buf_cstr(&val);
    check_argv_error("p %r", 0, &v, "longer than 8192");
    check_argv_error("p %r", 1, &v, "longer than 8192");
    arena_clear(&mem);
    buf_free(&cmd);
    buf_free(&val);
}

static void test_argv_type0_hostile_value_is_one_argument(void **state)
{
    struct deliver_local_vars v = vars;
    static const char *const want[] = {
        "/usr/bin/mda", "-r", "a b\t;|&$(id)`id`'\"<>*?\n@x y", "-l", "a b\t;|&$(id)`id`'\"<>*?\n",
    };

    (void)state;
    v.rcpt = "a b\t;|&$(id)`id`'\"<>*?\n@x y";
    check_argv("/usr/bin/mda -r %r -l %p", 0, &v, want, 5);
}

static void test_shell_quote(void **state)
{
    static const struct { const char *in, *out; } cases[] = {
        { "", "''" },
        { "abc", "'abc'" },
        { "a'b", "'a'\\''b'" },
        { "'", "''\\'''" },
        { "$(id) `id` \\ \" ; \n", "'$(id) `id` \\ \" ; \n'" },
    };
    struct buf out = BUF_INIT(0), small = BUF_INIT(5);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&out);
        deliver_local_shell_quote(cases[i].in, &out);
        assert_string_equal(buf_cstr(&out), cases[i].out);
    }
    deliver_local_shell_quote("abcd", &small);  /* 6 bytes: all or nothing */
    assert_int_equal(small.len, 0);
    deliver_local_shell_quote("abc", &small);
    assert_string_equal(buf_cstr(&small), "'abc'");
    buf_free(&out);
    buf_free(&small);
}

static void test_argv_type1_quoting_by_context(void **state)
{
    struct deliver_local_vars v = vars;
    static const char *const plain[] = { "/bin/sh", "-c",
                                         "/bin/echo 'it'\\''s@x' 100%" };
    static const char *const quoted[] = {
        "/bin/sh", "-c",
        "cmd '''joe''' \"\"'joe'\"\" a'joe'b \"x\\\"\"'joe'\"\" '$(x)' $HOME/'joe'",
    };

    (void)state;
    v.rcpt = "it's@x";
    check_argv("/bin/echo %r 100%%", 1, &v, plain, 3);
    check_argv("cmd '%l' \"%l\" a%lb \"x\\\"%l\" '$(x)' $HOME/%l", 1, &vars, quoted, 3);
}

static void test_argv_type1_refuses_unsafe_places(void **state)
{
    static const char *const unsafe[] = {
        "echo `echo %l`", "echo $(echo %l)", "echo \"$(echo %l)\"", "echo ${%l}",
        "echo ${HOME} %l", "echo \\%l", "echo \"\\%l\"", "echo $%l",
        "echo x # %l", "echo x;#%l", "(( %l ))", "echo $((1)) %l",
        "echo $'\\' %l'",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++)
        check_argv_error(unsafe[i], 1, &vars, "variable");
    check_argv_error("echo '%l", 1, &vars, "unterminated quote");
    check_argv_error("echo \"%l", 1, &vars, "unterminated quote");
}

/* ---- real deliveries: arguments, quoting, environment ---- */

#define REC_SH "printf '%s\\0' \"$@\" > @D/args\nenv -0 > @D/env\ncat > @D/stdin\n"

static const char *const markers[] = {
    "PWNED1", "PWNED2", "PWNED3", "PWNED4", "PWNED5", "PWNED6", "PWNED7", "PWNED8",
};

static void hostile_vars(struct deliver_local_req *q, struct buf *rcpt, struct buf *sender)
{
    /* Markers, not "rm -rf /": a test that fails must not destroy anything. */
    buf_printf(rcpt, "x'$(touch %s/PWNED1)`touch %s/PWNED2`;touch %s/PWNED3;"
               "\"$(touch %s/PWNED4)\"|touch %s/PWNED8 &@example.com", dir, dir,
               dir, dir, dir);
    buf_printf(sender, "s\ntouch %s/PWNED5\n`touch %s/PWNED6`'\\' ; touch %s/PWNED7 "
               "#@src.example", dir, dir, dir);
    q->vars.rcpt = buf_cstr(rcpt);
    q->vars.sender = buf_cstr(sender);
}

static void assert_no_markers(void)
{
    for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++)
        if (exists(path(markers[i])))
            fail_msg("%s was created: an address ran a command", markers[i]);
}

static void test_hostile_addresses_type0(void **state)
{
    struct buf rcpt = BUF_INIT(0), sender = BUF_INIT(0), cmd = BUF_INIT(0);
    struct deliver_local_req q;
    struct run x;
    char local[512];

    (void)state;
    write_script("rec.sh", REC_SH);
    buf_printf(&cmd, "%s/rec.sh %%r %%f %%l %%p %%c %%o <", dir);
    q = make_req(buf_cstr(&cmd), 0);
    hostile_vars(&q, &rcpt, &sender);
    run_req(&q, &x);
    assert_no_markers();
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    snprintf(local, sizeof(local), "%.*s",
             (int)(strrchr(rcpt.data, '@') - rcpt.data), rcpt.data);
    {
        const char *want[] = { buf_cstr(&rcpt), buf_cstr(&sender), "joe", local,
                               "example.com", "src.example" };
        assert_args(want, 6);
    }
    buf_free(&rcpt);
    buf_free(&sender);
    buf_free(&cmd);
}

static void test_hostile_addresses_type1(void **state)
{
    struct buf rcpt = BUF_INIT(0), sender = BUF_INIT(0), cmd = BUF_INIT(0);
    struct deliver_local_req q;
    struct run x;
    char local[512], wrapped[1024];

    (void)state;
    write_script("rec.sh", REC_SH);
    /* Every quoting context: plain, '...', "...", glued to other text. */
    buf_printf(&cmd, "%s/rec.sh %%r '%%f' \"%%r\" =%%p= '-%%m-' \"[%%o]\" %%c <", dir);
    q = make_req(buf_cstr(&cmd), 1);
    hostile_vars(&q, &rcpt, &sender);
    run_req(&q, &x);
    assert_no_markers();
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    snprintf(local, sizeof(local), "=%.*s=",
             (int)(strrchr(rcpt.data, '@') - rcpt.data), rcpt.data);
    snprintf(wrapped, sizeof(wrapped), "-%.*s-",
             (int)(strrchr(sender.data, '@') - sender.data), sender.data);
    {
        const char *want[] = { buf_cstr(&rcpt), buf_cstr(&sender), buf_cstr(&rcpt),
                               local, wrapped, "[src.example]", "example.com" };
        assert_args(want, 7);
    }
    buf_free(&rcpt);
    buf_free(&sender);
    buf_free(&cmd);
}

/* Every byte value a value may carry reaches the MDA unchanged through sh. */
static void test_type1_round_trip_all_bytes(void **state)
{
    char all[256], cmd[512];
    struct deliver_local_req q;
    struct run x;

    (void)state;
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    write_script("rec.sh", REC_SH);
    snprintf(cmd, sizeof(cmd), "%s/rec.sh %%l", dir);
    q = make_req(cmd, 1);
    q.vars.user = all;
    run_req(&q, &x);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    {
        const char *want[] = { all };
        assert_args(want, 1);
    }
}

static void test_environment_is_fixed(void **state)
{
    char cmd[512], *env, home[600];
    size_t len;
    struct run x;
    static const char *const need[] = {
        "PATH=/usr/bin:/bin", "SENDER=alice@src.example",
        "RECIPIENT=joe@dest.example", "USER=joe", "LOGNAME=joe",
    };

    (void)state;
    setenv("SELOR_TEST_LEAK", "secret", 1);
    write_script("rec.sh", REC_SH);
    snprintf(cmd, sizeof(cmd), "%s/rec.sh", dir);
    run_cmd(cmd, 0, &x);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    env = read_file(path("env"), &len);
    assert_non_null(env);
    snprintf(home, sizeof(home), "HOME=%s", dir);
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        int found = 0;
        for (size_t off = 0; off < len; off += strlen(env + off) + 1)
            found |= strcmp(env + off, need[i]) == 0;
        if (!found)
            fail_msg("%s missing from the MDA's environment", need[i]);
    }
    assert_non_null(memmem(env, len, home, strlen(home) + 1));
    assert_null(memmem(env, len, "SELOR_TEST_LEAK", 15));
    mem_free(env);
    unsetenv("SELOR_TEST_LEAK");
}

/* ---- real deliveries: content and exit status ---- */

static void test_exit_0_content_byte_exact(void **state)
{
    struct buf content = BUF_INIT(0);
    struct deliver_local_req q;
    struct run x;
    char cmd[512], *got;
    size_t len;

    (void)state;
    /* Several chunks, every byte value, no trailing newline. */
    for (int i = 0; i < 300000; i++)
        buf_putc(&content, (char)(i * 7 + i / 256));
    write_script("rec.sh", REC_SH);
    snprintf(cmd, sizeof(cmd), "%s/rec.sh", dir);
    q = make_req(cmd, 0);
    q.content = content.data;
    q.len = content.len;
    run_req(&q, &x);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    assert_int_equal(x.r.term_signal, 0);
    got = read_file(path("stdin"), &len);
    assert_non_null(got);
    assert_int_equal(len, content.len);
    assert_memory_equal(got, content.data, len);
    mem_free(got);
    buf_free(&content);
}

static void test_empty_content(void **state)
{
    struct deliver_local_req q;
    struct run x;
    char cmd[512], *got;
    size_t len;

    (void)state;
    write_script("rec.sh", REC_SH);
    snprintf(cmd, sizeof(cmd), "%s/rec.sh", dir);
    q = make_req(cmd, 0);
    q.len = 0;
    run_req(&q, &x);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    got = read_file(path("stdin"), &len);
    assert_non_null(got);
    assert_int_equal(len, 0);
    mem_free(got);
}

/* Runs script body as the MDA (type 0, and type 1 when both is set). */
static void run_script(const char *body, int type, struct run *x)
{
    char cmd[512];

    write_script("mda.sh", body);
    snprintf(cmd, sizeof(cmd), "%s/mda.sh %%l", dir);
    run_cmd(cmd, type, x);
}

static void test_exit_75_tempfail(void **state)
{
    struct run x;

    (void)state;
    run_script("cat >/dev/null\nexit 75\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_TEMPFAIL, 75, "exit status 75");
    run_script("cat >/dev/null\necho 'mailbox locked, try later' >&2\nexit 75\n", 1, &x);
    assert_result(&x, DELIVER_LOCAL_TEMPFAIL, 75, "mailbox locked, try later");
}

static void test_exit_67_permfail_with_answer(void **state)
{
    struct run x;

    (void)state;
    run_script("cat >/dev/null\necho 'user unknown' >&2\nexit 67\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 67, "user unknown");
    run_script("cat >/dev/null\nexit 1\n", 1, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 1, "exit status 1");
    /* Exit 0 with something on stderr is still a success. */
    run_script("cat >/dev/null\necho 'note: quota at 90%' >&2\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "note: quota at 90%");
}

static void test_answer_lines_and_control_chars(void **state)
{
    struct run x;

    (void)state;
    run_script("printf '\\n  \\r\\nfirst\\001line\\t end \\r\\n\\n\\303\\251second\\n' >&2\n"
               "exit 67\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 67, "first?line  end; ??second");
}

static void test_answer_is_bounded(void **state)
{
    struct run x;

    (void)state;
    /* 400 KB on stderr: far past the pipe's buffer, so the MDA must be
     * read to the end or it would block until the timeout. */
    run_script("cat >/dev/null\n"
               "i=0; while [ $i -lt 4000 ]; do\n"
               "  echo 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' >&2\n"
               "  i=$((i+1))\ndone\nexit 1\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 1, NULL);
    assert_int_equal(strlen(x.r.answer), DELIVER_LOCAL_ANSWER_MAX - 1);
    assert_true(x.secs < 15);
}

static void test_quota(void **state)
{
    struct run x;

    (void)state;
    run_script("cat >/dev/null\necho 'Quota exceeded' >&2\nexit 77\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_QUOTA, 77, "Quota exceeded");
    /* maildrop's way: EX_TEMPFAIL with the word in the text. */
    run_script("cat >/dev/null\necho 'maildrop: maildir over QUOTA.' >&2\nexit 75\n",
               0, &x);
    assert_result(&x, DELIVER_LOCAL_QUOTA, 75, "maildrop: maildir over QUOTA.");
    run_script("cat >/dev/null\necho 'permission denied' >&2\nexit 77\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 77, "permission denied");
}

static void test_killed_by_signal(void **state)
{
    struct run x;

    (void)state;
    run_script("cat >/dev/null\nkill -TERM $$\nsleep 5\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_TEMPFAIL, -1, "killed by signal 15");
    assert_int_equal(x.r.term_signal, SIGTERM);
    run_script("cat >/dev/null\necho 'segfault in mda' >&2\nkill -SEGV $$\n", 0, &x);
    assert_result(&x, DELIVER_LOCAL_TEMPFAIL, -1, "segfault in mda");
    assert_int_equal(x.r.term_signal, SIGSEGV);
}

#define SLOW_SH "echo $$ > @D/mda.pid\nsleep 30 &\necho $! > @D/sleep.pid\nwait\n"

static void test_timeout_kills_the_group(void **state)
{
    char cmd[512];
    struct deliver_local_req q;
    struct run x;

    (void)state;
    for (int type = 0; type <= 1; type++) {
        unlink(path("mda.pid"));
        unlink(path("sleep.pid"));
        write_script("slow.sh", SLOW_SH);
        snprintf(cmd, sizeof(cmd), "%s/slow.sh", dir);
        q = make_req(cmd, type);
        q.timeout_ms = 400;
        run_req(&q, &x);
        assert_result(&x, DELIVER_LOCAL_TEMPFAIL, -1, "timeout after 0.4 s");
        assert_int_equal(x.r.term_signal, SIGKILL);
        assert_true(x.secs >= 0.35 && x.secs < 5);
        assert_killed(read_pid("mda.pid"));
        assert_killed(read_pid("sleep.pid"));  /* the shell's child too */
    }
}

static void test_big_message_not_read(void **state)
{
    struct buf content = BUF_INIT(0);
    char cmd[512];
    struct deliver_local_req q;
    struct run x;
    static const struct {
        const char *body;
        enum deliver_local_status st;
        int code;
        const char *answer;
    } cases[] = {
        { "echo 'not now' >&2\nexit 75\n", DELIVER_LOCAL_TEMPFAIL, 75, "not now" },
        { "exit 67\n", DELIVER_LOCAL_PERMFAIL, 67, "exit status 67" },
        /* The MDA took the message (see deliver_local.c, "Decisions"). */
        { "exit 0\n", DELIVER_LOCAL_OK, 0, "" },
        { "head -c 10 >/dev/null\nexit 0\n", DELIVER_LOCAL_OK, 0, "" },
    };

    (void)state;
    for (int i = 0; i < 2 * 1024 * 1024; i++)
        buf_putc(&content, i % 64 == 63 ? '\n' : 'a');
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_script("mda.sh", cases[i].body);
        snprintf(cmd, sizeof(cmd), "%s/mda.sh", dir);
        q = make_req(cmd, 0);
        q.content = content.data;
        q.len = content.len;
        run_req(&q, &x);
        assert_result(&x, cases[i].st, cases[i].code, cases[i].answer);
        assert_true(x.secs < 10);
    }
    buf_free(&content);
}

static void test_cannot_start(void **state)
{
    char cmd[512], want[600];
    struct deliver_local_req q;
    struct run x;

    (void)state;
    snprintf(cmd, sizeof(cmd), "%s/no-such-mda -d %%l", dir);
    q = make_req(cmd, 0);
    snprintf(want, sizeof(want), "cannot start %s/no-such-mda: no such file", dir);
    assert_no_start(&q, DELIVER_LOCAL_PERMFAIL, want);

    write_file("not-exec.sh", "#!/bin/sh\nexit 0\n", 17, 0600);
    snprintf(cmd, sizeof(cmd), "%s/not-exec.sh", dir);
    q = make_req(cmd, 0);
    assert_no_start(&q, DELIVER_LOCAL_PERMFAIL, "cannot start");

    q = make_req("prog %Z", 0);
    assert_no_start(&q, DELIVER_LOCAL_PERMFAIL, "bad command: unknown variable %Z");

    /* Through the shell the program is the shell's to find: exit 127. */
    snprintf(cmd, sizeof(cmd), "%s/no-such-mda -d %%l", dir);
    run_cmd(cmd, 1, &x);
    assert_result(&x, DELIVER_LOCAL_PERMFAIL, 127, NULL);
    assert_non_null(strstr(x.r.answer, "not found"));
}

/* ---- cancel ---- */

struct cancel_at {
    struct deliver_local *d;
    uv_timer_t t;
};

static void on_cancel_timer(uv_timer_t *t)
{
    struct cancel_at *c = t->data;

    deliver_local_cancel(c->d);
    deliver_local_cancel(c->d);  /* twice is harmless */
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
    char cmd[512];
    struct deliver_local_req q;
    struct deliver_local_result r;
    struct cancel_at c;
    struct run x;
    uv_loop_t loop;
    double t0;

    (void)state;
    unlink(path("mda.pid"));
    unlink(path("sleep.pid"));
    write_script("slow.sh", SLOW_SH);
    snprintf(cmd, sizeof(cmd), "%s/slow.sh", dir);
    q = make_req(cmd, 1);

    /* While it runs. */
    memset(&x, 0, sizeof(x));
    assert_int_equal(uv_loop_init(&loop), 0);
    t0 = now();
    c.d = deliver_local_start(&loop, &owner, &q, on_done, &x, &r);
    assert_non_null(c.d);
    x.started = 1;
    uv_timer_init(&loop, &c.t);
    c.t.data = &c;
    uv_timer_start(&c.t, on_cancel_timer, 300, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(now() - t0 < 5);
    assert_killed(read_pid("mda.pid"));
    assert_killed(read_pid("sleep.pid"));

    /* At once, before the loop has run. */
    memset(&x, 0, sizeof(x));
    assert_int_equal(uv_loop_init(&loop), 0);
    c.d = deliver_local_start(&loop, &owner, &q, on_done, &x, &r);
    assert_non_null(c.d);
    deliver_local_cancel(c.d);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* By its owner going away (async.h): killed, never answered. */
    unlink(path("mda.pid"));
    memset(&x, 0, sizeof(x));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_non_null(deliver_local_start(&loop, &owner, &q, on_done, &x, &r));
    assert_int_equal(async_owner_pending(&owner), 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 500 && access(path("mda.pid"), F_OK) != 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    async_owner_cancel(&owner);
    assert_int_equal(async_owner_pending(&owner), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_killed(read_pid("mda.pid"));
}

/* ---- another user ---- */

static void test_runs_as_uid_gid(void **state)
{
    char cmd[512], *s;
    struct deliver_local_req q;
    struct run x;

    (void)state;
    if (geteuid() != 0)
        skip();
    /* nobody must reach the script: the test directory opens for search. */
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(mkdir(path("nobody"), 0755), 0);
    assert_int_equal(chown(path("nobody"), 65534, 65534), 0);
    write_script("nobody/id.sh", "cat >/dev/null\nid -u > @D/nobody/uid\n"
                 "id -G > @D/nobody/groups\n");
    assert_int_equal(chmod(path("nobody/id.sh"), 0755), 0);
    snprintf(cmd, sizeof(cmd), "%s/nobody/id.sh", dir);
    q = make_req(cmd, 0);
    q.uid = q.gid = 65534;
    run_req(&q, &x);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_result(&x, DELIVER_LOCAL_OK, 0, "");
    s = read_file(path("nobody/uid"), NULL);
    assert_non_null(s);
    assert_string_equal(s, "65534\n");
    mem_free(s);
    s = read_file(path("nobody/groups"), NULL);
    assert_non_null(s);
    assert_string_equal(s, "65534\n");  /* root's groups are gone */
    mem_free(s);
}

/* ---- maildrop into a Maildir ---- */

#define MAILDROP "/usr/bin/maildrop"

/* A home for maildrop (see the file comment); returns its path. */
static const char *maildrop_home(const char *filter)
{
    static char home[512];
    static const char *const sub[] = { "", "/Maildir", "/Maildir/cur",
                                       "/Maildir/new", "/Maildir/tmp" };
    char p[600];

    snprintf(home, sizeof(home), "%s/md", dir);
    rm_rf(home);
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", home, sub[i]);
        assert_int_equal(mkdir(p, 0700), 0);
    }
    write_file("md/mailfilter", filter, strlen(filter), 0600);
    return home;
}

/* The one file in Maildir/new (mem_free it), or a failure. */
static char *maildir_message(const char *home, size_t *len)
{
    char p[700], file[1000];
    int n = 0;
    struct dirent *e;
    DIR *dp;

    snprintf(p, sizeof(p), "%s/Maildir/new", home);
    dp = opendir(p);
    assert_non_null(dp);
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(file, sizeof(file), "%s/%s", p, e->d_name);
        n++;
    }
    closedir(dp);
    assert_int_equal(n, 1);
    return read_file(file, len);
}

static void test_maildrop_into_maildir(void **state)
{
    static const char msg[] = "Return-Path: <alice@src.example>\n"
                              "From: Alice <alice@src.example>\n"
                              "To: joe@dest.example\n"
                              "Subject: maildrop test\n"
                              "\n"
                              "line 1\n"
                              "From the start of a line\n"
                              ".\n"
                              "last line\n";
    struct deliver_local_req q;
    struct run x;
    const char *home;
    char *got;
    size_t len;

    (void)state;
    if (access(MAILDROP, X_OK) != 0)
        skip();
    for (int type = 0; type <= 1; type++) {
        home = maildrop_home("to \"$1\"\n");
        q = make_req(MAILDROP " %C/mailfilter %C/Maildir/ <", type);
        q.vars.home = home;
        q.content = msg;
        q.len = sizeof(msg) - 1;
        run_req(&q, &x);
        assert_result(&x, DELIVER_LOCAL_OK, 0, "");
        got = maildir_message(home, &len);
        assert_non_null(got);
        assert_int_equal(len, sizeof(msg) - 1);
        assert_memory_equal(got, msg, len);
        mem_free(got);
    }
}

static void test_maildrop_over_quota(void **state)
{
    struct deliver_local_req q;
    struct run x;
    const char *home;

    (void)state;
    if (access(MAILDROP, X_OK) != 0)
        skip();
    home = maildrop_home("MAILDIRQUOTA=\"10S\"\nto \"$1\"\n");
    q = make_req(MAILDROP " %C/mailfilter %C/Maildir/", 0);
    q.vars.home = home;
    run_req(&q, &x);
    assert_result(&x, DELIVER_LOCAL_QUOTA, 75, NULL);
    assert_non_null(strstr(x.r.answer, "over quota"));
}

static void test_maildrop_bad_filter_permissions(void **state)
{
    struct deliver_local_req q;
    struct run x;
    const char *home;

    (void)state;
    if (access(MAILDROP, X_OK) != 0)
        skip();
    home = maildrop_home("to \"$1\"\n");
    assert_int_equal(chmod(path("md/mailfilter"), 0666), 0);
    q = make_req(MAILDROP " %C/mailfilter %C/Maildir/", 0);
    q.vars.home = home;
    run_req(&q, &x);
    assert_result(&x, DELIVER_LOCAL_TEMPFAIL, 75, NULL);
    assert_non_null(strstr(x.r.answer, "world-writable"));
}

/* ---- setup ---- */

static int setup(void **state)
{
    uv_loop_t loop;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/selor-dl-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    /* libuv opens its process-wide signal pipe once, with the first loop;
     * after that, descriptors can be counted around each delivery. */
    if (uv_loop_init(&loop) != 0 || uv_loop_close(&loop) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("KEEP_TEST_DIR") == NULL)
        rm_rf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_every_variable),
        cmocka_unit_test(test_argv_address_parts),
        cmocka_unit_test(test_argv_blanks_and_redirect),
        cmocka_unit_test(test_argv_errors),
        cmocka_unit_test(test_argv_limits),
        cmocka_unit_test(test_argv_type0_hostile_value_is_one_argument),
        cmocka_unit_test(test_shell_quote),
        cmocka_unit_test(test_argv_type1_quoting_by_context),
        cmocka_unit_test(test_argv_type1_refuses_unsafe_places),
        cmocka_unit_test(test_hostile_addresses_type0),
        cmocka_unit_test(test_hostile_addresses_type1),
        cmocka_unit_test(test_type1_round_trip_all_bytes),
        cmocka_unit_test(test_environment_is_fixed),
        cmocka_unit_test(test_exit_0_content_byte_exact),
        cmocka_unit_test(test_empty_content),
        cmocka_unit_test(test_exit_75_tempfail),
        cmocka_unit_test(test_exit_67_permfail_with_answer),
        cmocka_unit_test(test_answer_lines_and_control_chars),
        cmocka_unit_test(test_answer_is_bounded),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_big_message_not_read),
        cmocka_unit_test(test_cannot_start),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_runs_as_uid_gid),
        cmocka_unit_test(test_maildrop_into_maildir),
        cmocka_unit_test(test_maildrop_over_quota),
        cmocka_unit_test(test_maildrop_bad_filter_permissions),
    };

    signal(SIGPIPE, SIG_IGN);  /* as master.c does for every Selor process */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    return cmocka_run_group_tests(tests, setup, teardown);
}
