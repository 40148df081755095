/*
 * test_smtp_client.c - the outgoing SMTP session (src/queue/smtp_client.c)
 * against real servers: tests/system/sink.py started as a process, and a
 * scripted server on the test's own loop for replies no sane server sends
 * (malformed codes, over-long lines, a connection dropped mid-session).
 *
 * Every test runs its own uv loop until nothing is left on it and then
 * requires uv_loop_close to succeed: the client must close all its
 * handles.  LeakSanitizer checks that it freed everything.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "mem.h"
#include "async.h"
#include "smtp_client.h"

/* Every session of these tests belongs to this owner (zeroed: valid, empty). */
static struct async_owner owner;


#define MAX_RCPT 8
#define MAX_SINKS 4

/* ---- the sink process ---- */

struct sink {
    pid_t pid;
    int port;
    char dir[64];
};

static struct sink sinks[MAX_SINKS];
static size_t nsinks;
static char root[4096];

/* The repository: $SELOR_ROOT, or the first parent of the current
 * directory holding tests/system/sink.py. */
static const char *repo_root(void)
{
    const char *env = getenv("SELOR_ROOT");
    char path[4200];

    if (root[0])
        return root;
    if (env && env[0]) {
        snprintf(root, sizeof(root), "%s", env);
        return root;
    }
    assert_non_null(getcwd(root, sizeof(root)));
    for (;;) {
        char *slash;

        snprintf(path, sizeof(path), "%s/tests/system/sink.py", root);
        if (access(path, R_OK) == 0)
            return root;
        slash = strrchr(root, '/');
        if (slash == NULL || slash == root)
            fail_msg("tests/system/sink.py not found above the current directory; "
                     "set SELOR_ROOT");
        *slash = '\0';
    }
}

/* Reads the child's stdout until "READY <port>" (10 s at most). */
static int sink_wait_ready(int fd)
{
    char line[256];
    size_t n = 0;
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        char *nl;
        ssize_t r;

        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10)
            fail_msg("sink.py did not say READY");
        if (poll(&p, 1, 200) <= 0)
            continue;
        r = read(fd, line + n, sizeof(line) - 1 - n);
        if (r <= 0)
            fail_msg("sink.py exited before READY");
        n += (size_t)r;
        line[n] = '\0';
        if ((nl = strchr(line, '\n')) != NULL) {
            int port = 0;

            *nl = '\0';
            if (sscanf(line, "READY %d", &port) != 1 || port <= 0)
                fail_msg("sink.py said: %s", line);
            return port;
        }
    }
}

/* Starts sink.py on a free port of host (port 0: it picks and says). */
static struct sink *sink_start(const char *host, ...)
{
    struct sink *s;
    const char *argv[32];
    char script[4200];
    size_t argc = 0;
    int fds[2];
    va_list ap;
    const char *a;

    assert_true(nsinks < MAX_SINKS);
    s = &sinks[nsinks++];
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/selor-sc-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(script, sizeof(script), "%s/tests/system/sink.py", repo_root());
    argv[argc++] = "/usr/bin/python3";
    argv[argc++] = script;
    argv[argc++] = "--host";
    argv[argc++] = host;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    argv[argc++] = "--dir";
    argv[argc++] = s->dir;
    va_start(ap, host);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fds[1], 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    s->port = sink_wait_ready(fds[0]);
    close(fds[0]);
    return s;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

/* SIGTERM must end it cleanly (exit 0) within 5 s. */
static int sink_stop(struct sink *s)
{
    int status = 0, clean = 0;

    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 500; i++) {
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                s->pid = 0;
                break;
            }
            usleep(10000);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            s->pid = 0;
        }
    }
    if (s->dir[0])
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
    return clean;
}

/* Teardown: a sink that did not exit cleanly on SIGTERM fails the test. */
static int stop_sinks(void **state)
{
    int ok = 1;

    while (nsinks)
        if (!sink_stop(&sinks[--nsinks])) {
            fprintf(stderr, "sink.py did not exit cleanly on SIGTERM\n");
            ok = 0;
        }
    return ok ? 0 : -1;
}

/* ---- files the sink wrote ---- */

static char *read_file(const char *dir, const char *name, size_t *len)
{
    char path[256];
    FILE *f;
    char *p;
    long n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((f = fopen(path, "rb")) == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

static int file_exists(const struct sink *s, const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    return access(path, F_OK) == 0;
}

/* The sink's log.jsonl once it holds n lines (it may trail the client). */
static char *sink_log(const struct sink *s, int n)
{
    for (int i = 0; i < 300; i++) {
        char *p = read_file(s->dir, "log.jsonl", NULL);
        int lines = 0;

        for (const char *q = p; q && (q = strchr(q, '\n')) != NULL; q++)
            lines++;
        if (lines >= n)
            return p;
        free(p);
        usleep(10000);
    }
    fail_msg("sink log did not get %d lines", n);
    return NULL;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("\"%s\" not found in:\n%s", needle, hay ? hay : "(nothing)");
}

static void assert_message(const struct sink *s, int seq, const char *want, size_t n)
{
    char name[64];
    size_t len = 0;
    char *p;

    snprintf(name, sizeof(name), "messages/%06d.eml", seq);
    p = read_file(s->dir, name, &len);
    if (p == NULL)
        fail_msg("the sink stored no %s", name);
    assert_int_equal(len, n);
    assert_memory_equal(p, want, n);
    free(p);
}

/* ---- running the client ---- */

struct outcome {
    int called;
    enum smtp_client_stage stage;
    int ok, code;
    char answer[SMTP_CLIENT_ANSWER_MAX];
    size_t nrcpt;
    int rcpt_code[MAX_RCPT];
    char rcpt_answer[MAX_RCPT][SMTP_CLIENT_ANSWER_MAX];
    int esmtp, pipelining, eightbit;
    long long size_limit;
    int reused, reusable, lost;
};

static int in_start;  /* done must never run inside smtp_client_start */

static void on_done(void *arg, const struct smtp_client_result *r)
{
    struct outcome *o = arg;

    assert_false(in_start);
    o->called++;
    o->stage = r->stage;
    o->ok = r->ok;
    o->code = r->code;
    memcpy(o->answer, r->answer, sizeof(o->answer));
    o->nrcpt = r->nrcpt;
    for (size_t i = 0; i < r->nrcpt && i < MAX_RCPT; i++) {
        o->rcpt_code[i] = r->rcpt_code[i];
        memcpy(o->rcpt_answer[i], r->rcpt_answer[i], SMTP_CLIENT_ANSWER_MAX);
    }
    o->esmtp = r->esmtp;
    o->pipelining = r->pipelining;
    o->eightbit = r->eightbit;
    o->size_limit = r->size_limit;
    o->reused = r->reused;
    o->reusable = r->reusable;
    o->lost = r->lost;
}

static const char *const rcpts3[] = { "a@x.test", "b@x.test", "c@x.test" };

static struct smtp_client_msg make_msg(const char *const *rcpts, size_t n,
                                       const char *content)
{
    struct smtp_client_msg m;

    memset(&m, 0, sizeof(m));
    m.helo_name = "client.test";
    m.from = "sender@example.com";
    m.rcpts = rcpts;
    m.nrcpt = n;
    m.content = content;
    m.len = strlen(content);
    m.connect_timeout_ms = 5000;
    m.timeout_ms = 5000;
    return m;
}

static struct sockaddr_storage addr_of(const char *ip, int port)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, ip, &a6->sin6_addr), 1);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, ip, &a4->sin_addr), 1);
    }
    return ss;
}

static struct smtp_client *start(uv_loop_t *loop, const char *ip, int port,
                                 const struct smtp_client_msg *m, struct outcome *o)
{
    struct sockaddr_storage ss = addr_of(ip, port);
    struct smtp_client *c;

    in_start = 1;
    c = smtp_client_start(loop, &owner, (struct sockaddr *)&ss, m, on_done, o);
    in_start = 0;
    assert_non_null(c);
    assert_int_equal(o->called, 0);
    return c;
}

/* Runs the loop until the client (and anything else on it) is gone. */
static void finish_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void deliver(const char *ip, int port, const struct smtp_client_msg *m,
                    struct outcome *o)
{
    uv_loop_t loop;

    memset(o, 0, sizeof(*o));
    uv_loop_init(&loop);
    start(&loop, ip, port, m, o);
    finish_loop(&loop);
    assert_int_equal(o->called, 1);
    assert_int_equal(o->nrcpt, m->nrcpt);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A port on 127.0.0.1 that nobody listens on. */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- against sink.py ---- */

static const char content_mixed[] =
    "Subject: test\n"
    "\n"
    ".leading dot\n"
    "crlf line\r\n"
    "bare\rcr\n"
    "..two dots\n"
    "no final newline";
static const char content_mixed_sent[] =
    "Subject: test\r\n"
    "\r\n"
    ".leading dot\r\n"
    "crlf line\r\n"
    "bare\r\ncr\r\n"
    "..two dots\r\n"
    "no final newline\r\n";

static void test_pipelined_three(void **state)
{
    struct sink *s = sink_start("127.0.0.1", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 3, content_mixed);
    struct outcome o;
    char *log, want[128];

    m.body_8bit = 1;
    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.ok);
    assert_int_equal(o.code, 250);
    assert_contains(o.answer, "queued as 000001.eml");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.rcpt_code[i], 250);
        assert_string_equal(o.rcpt_answer[i], o.answer);
    }
    assert_true(o.esmtp);
    assert_true(o.pipelining);
    assert_true(o.eightbit);
    assert_int_equal(o.size_limit, 0);
    assert_message(s, 1, content_mixed_sent, sizeof(content_mixed_sent) - 1);
    log = sink_log(s, 1);
    assert_contains(log, "\"mail_from\": \"sender@example.com\"");
    assert_contains(log, "\"rcpts\": [\"a@x.test\", \"b@x.test\", \"c@x.test\"]");
    assert_contains(log, "\"refused\": []");
    assert_contains(log, "\"helo\": \"client.test\"");
    /* SIZE= only when offered (it is not here); BODY=8BITMIME is */
    assert_contains(log, "\"mail_params\": [\"BODY=8BITMIME\"]");
    snprintf(want, sizeof(want), "\"data_size\": %zu", sizeof(content_mixed_sent) - 1);
    assert_contains(log, want);
    free(log);
}

static void test_no_pipelining(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--no-pipelining", "--size", "100000", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 3, "Subject: x\n\nbody\n");
    struct outcome o;
    char *log;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.ok);
    assert_false(o.pipelining);
    assert_true(o.esmtp);
    assert_int_equal(o.size_limit, 100000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o.rcpt_code[i], 250);
    assert_message(s, 1, "Subject: x\r\n\r\nbody\r\n", 20);
    log = sink_log(s, 1);
    /* SIZE offered: the encoded size is declared; no BODY without body_8bit */
    assert_contains(log, "\"mail_params\": [\"SIZE=20\"]");
    free(log);
}

static void test_helo_fallback(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--no-esmtp", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hello\n");
    struct outcome o;
    char *log;

    m.body_8bit = 1;
    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.ok);
    assert_false(o.esmtp);
    assert_false(o.pipelining);
    assert_false(o.eightbit);
    assert_message(s, 1, "hello\r\n", 7);
    log = sink_log(s, 1);
    assert_contains(log, "\"mail_params\": []");
    free(log);
}

static void test_one_refused(void **state)
{
    static const char *const rcpts[] = { "good@x.test", "bad@x.test", "also@x.test" };
    struct sink *s = sink_start("127.0.0.1", "--rcpt-rule", "bad@*=550", NULL);
    struct smtp_client_msg m = make_msg(rcpts, 3, "hi\n");
    struct outcome o;
    char *log;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.ok);
    assert_int_equal(o.rcpt_code[0], 250);
    assert_int_equal(o.rcpt_code[1], 550);
    assert_contains(o.rcpt_answer[1], "5.1.1 mailbox unavailable <bad@x.test>");
    assert_int_equal(o.rcpt_code[2], 250);
    assert_message(s, 1, "hi\r\n", 4);
    log = sink_log(s, 1);
    assert_contains(log, "\"rcpts\": [\"good@x.test\", \"also@x.test\"]");
    assert_contains(log, "\"refused\": [{\"code\": 550, \"rcpt\": \"bad@x.test\"}]");
    free(log);
}

static void check_all_refused(int pipelining)
{
    struct sink *s = pipelining
        ? sink_start("127.0.0.1", "--rcpt-rule", "*=550", NULL)
        : sink_start("127.0.0.1", "--rcpt-rule", "*=550", "--no-pipelining", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 3, "never sent\n");
    struct outcome o;
    char *log;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_RCPT);
    assert_false(o.ok);
    assert_int_equal(o.code, 550);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o.rcpt_code[i], 550);
    assert_contains(o.rcpt_answer[2], "<c@x.test>");
    log = sink_log(s, 1);
    assert_contains(log, "\"rcpts\": []");
    assert_contains(log, "\"data_code\": null");
    assert_contains(log, "\"message\": null");
    free(log);
    assert_false(file_exists(s, "messages/000001.eml"));
}

static void test_all_refused(void **state)
{
    check_all_refused(1);
}

static void test_all_refused_no_pipelining(void **state)
{
    check_all_refused(0);
}

/* 450x1: refused the first time, accepted when tried again. */
static void test_rcpt_450(void **state)
{
    static const char *const rcpts[] = { "ok@x.test", "later@x.test" };
    struct sink *s = sink_start("127.0.0.1", "--rcpt-rule", "later@x.test=450x1",
                                "--no-pipelining", NULL);
    struct smtp_client_msg m = make_msg(rcpts, 2, "one\n");
    struct smtp_client_msg m2 = make_msg(rcpts + 1, 1, "two\n");
    struct outcome o;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.ok);
    assert_int_equal(o.rcpt_code[0], 250);
    assert_int_equal(o.rcpt_code[1], 450);
    assert_contains(o.rcpt_answer[1], "4.2.0");
    assert_message(s, 1, "one\r\n", 5);

    deliver("127.0.0.1", s->port, &m2, &o);
    assert_true(o.ok);
    assert_int_equal(o.rcpt_code[0], 250);
    assert_message(s, 2, "two\r\n", 5);
}

static void test_greeting_554(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--greeting", "554", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 2, "x\n");
    struct outcome o;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_GREETING);
    assert_false(o.ok);
    assert_int_equal(o.code, 554);
    assert_string_equal(o.answer, "sink.test service not available");
    assert_int_equal(o.rcpt_code[0], 554);
    assert_int_equal(o.rcpt_code[1], 554);
    assert_false(file_exists(s, "log.jsonl"));
}

static void test_connect_refused(void **state)
{
    int port = closed_port();
    struct smtp_client_msg m = make_msg(rcpts3, 2, "x\n");
    struct outcome o;
    char want[64];

    deliver("127.0.0.1", port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_CONNECT);
    assert_false(o.ok);
    assert_int_equal(o.code, 0);
    snprintf(want, sizeof(want), "connect to 127.0.0.1:%d: connection refused", port);
    assert_string_equal(o.answer, want);
    assert_int_equal(o.rcpt_code[0], 0);
    assert_string_equal(o.rcpt_answer[1], want);
}

/* A failure uv_tcp_connect reports at once is still reported later. */
static void test_connect_fails_at_once(void **state)
{
    struct smtp_client_msg m = make_msg(rcpts3, 1, "x\n");
    struct outcome o, o0;
    uv_loop_t loop;
    struct sockaddr_storage a;

    memset(&o, 0, sizeof(o));
    memset(&o0, 0, sizeof(o0));
    memset(&a, 0, sizeof(a));
    a.ss_family = AF_UNIX;  /* uv_tcp_connect refuses it at once */
    uv_loop_init(&loop);
    in_start = 1;
    smtp_client_start(&loop, &owner, (struct sockaddr *)&a, &m, on_done, &o);
    in_start = 0;
    assert_int_equal(o.called, 0);
    m.nrcpt = 0;  /* nothing to deliver: also reported from the loop */
    start(&loop, "127.0.0.1", 25, &m, &o0);
    finish_loop(&loop);
    assert_int_equal(o.called, 1);
    assert_int_equal(o.stage, SMTP_CLIENT_CONNECT);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.answer, "connect to ?:0: invalid argument");
    assert_int_equal(o.rcpt_code[0], 0);
    assert_int_equal(o0.called, 1);
    assert_int_equal(o0.stage, SMTP_CLIENT_CONNECT);
    assert_string_equal(o0.answer, "no recipients");
}

static void test_size_exceeded(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--size", "100", NULL);
    char content[600], want[128];
    struct smtp_client_msg m;
    struct outcome o;
    struct buf enc = BUF_INIT(0);

    memset(content, 'a', sizeof(content) - 1);
    for (size_t i = 59; i < sizeof(content) - 1; i += 60)
        content[i] = '\n';
    content[sizeof(content) - 1] = '\0';
    m = make_msg(rcpts3, 3, content);
    smtp_client_encode(content, strlen(content), &enc);
    assert_int_equal(enc.len, 599 + 9 + 2);  /* 9 LF -> CR LF, CR LF added */
    buf_free(&enc);
    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_MAIL);
    assert_false(o.ok);
    assert_int_equal(o.code, 552);
    snprintf(want, sizeof(want), "message size %d exceeds the server's limit 100", 610);
    assert_string_equal(o.answer, want);
    assert_int_equal(o.size_limit, 100);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.rcpt_code[i], 552);
        assert_string_equal(o.rcpt_answer[i], want);
    }
    assert_false(file_exists(s, "log.jsonl"));  /* MAIL never sent */
}

static void test_data_451(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--data-rule", "451", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 3, "x\n");
    struct outcome o;
    char *log;

    deliver("127.0.0.1", s->port, &m, &o);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_false(o.ok);  /* completed, but not accepted */
    assert_int_equal(o.code, 451);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.rcpt_code[i], 451);
        assert_string_equal(o.rcpt_answer[i], "4.3.0 local error in processing");
    }
    log = sink_log(s, 1);
    assert_contains(log, "\"data_code\": 451");
    assert_contains(log, "\"message\": null");
    free(log);
    assert_false(file_exists(s, "messages/000001.eml"));
}

static void test_timeout(void **state)
{
    static const char *const rcpts[] = { "a@x.test", "bad@x.test" };
    struct sink *s = sink_start("127.0.0.1", "--delay-data", "3", "--rcpt-rule",
                                "bad@*=550", NULL);
    struct smtp_client_msg m = make_msg(rcpts, 2, "x\n");
    struct outcome o;
    double t0 = now_s();

    m.timeout_ms = 400;
    deliver("127.0.0.1", s->port, &m, &o);
    assert_true(now_s() - t0 < 2.5);
    assert_int_equal(o.stage, SMTP_CLIENT_DATA);
    assert_false(o.ok);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.answer, "timeout waiting for reply to end of data");
    assert_int_equal(o.rcpt_code[0], 0);
    assert_string_equal(o.rcpt_answer[0], o.answer);
    assert_int_equal(o.rcpt_code[1], 550);  /* decided before the timeout */
}

struct canceller {
    uv_timer_t timer;
    struct smtp_client *c;
};

static void cancel_now(uv_timer_t *t)
{
    struct canceller *k = t->data;

    smtp_client_cancel(k->c);
    uv_close((uv_handle_t *)t, NULL);
}

/* Cancelled while waiting for the final reply: no callback, no leak. */
static void test_cancel_in_the_middle(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--delay-data", "3", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 3, "x\n");
    struct outcome o;
    struct canceller k;
    uv_loop_t loop;
    double t0 = now_s();
    char *stats;

    memset(&o, 0, sizeof(o));
    uv_loop_init(&loop);
    k.c = start(&loop, "127.0.0.1", s->port, &m, &o);
    uv_timer_init(&loop, &k.timer);
    k.timer.data = &k;
    uv_timer_start(&k.timer, cancel_now, 500, 0);
    finish_loop(&loop);
    assert_int_equal(o.called, 0);
    assert_true(now_s() - t0 < 2.5);
    stats = read_file(s->dir, "stats.json", NULL);
    assert_contains(stats, "\"max_in_data\": 1");  /* it got that far */
    free(stats);
}

/* Cancelled before anything happened, and before a deferred failure. */
static void test_cancel_at_once(void **state)
{
    struct sink *s = sink_start("127.0.0.1", NULL);
    struct smtp_client_msg m = make_msg(rcpts3, 1, "x\n");
    struct outcome o1, o2, o3;
    uv_loop_t loop;

    memset(&o1, 0, sizeof(o1));
    memset(&o2, 0, sizeof(o2));
    memset(&o3, 0, sizeof(o3));
    uv_loop_init(&loop);
    smtp_client_cancel(start(&loop, "127.0.0.1", s->port, &m, &o1));
    smtp_client_cancel(start(&loop, "127.0.0.1", closed_port(), &m, &o2));
    m.nrcpt = 0;  /* fails at once (deferred) */
    smtp_client_cancel(start(&loop, "127.0.0.1", s->port, &m, &o3));
    finish_loop(&loop);
    assert_int_equal(o1.called + o2.called + o3.called, 0);
}

static void test_concurrent(void **state)
{
    static const char *const rcpts[5][1] = {
        { "r0@x.test" }, { "r1@x.test" }, { "r2@x.test" }, { "r3@x.test" }, { "r4@x.test" },
    };
    struct sink *s = sink_start("127.0.0.1", "--delay-data", "0.5", NULL);
    struct smtp_client_msg m[5];
    struct outcome o[5];
    uv_loop_t loop;
    char *stats, *log;
    double t0 = now_s();

    uv_loop_init(&loop);
    for (int i = 0; i < 5; i++) {
        memset(&o[i], 0, sizeof(o[i]));
        m[i] = make_msg(rcpts[i], 1, "concurrent\n");
        start(&loop, "127.0.0.1", s->port, &m[i], &o[i]);
    }
    finish_loop(&loop);
    assert_true(now_s() - t0 < 2.4);  /* not one after the other */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(o[i].called, 1);
        assert_true(o[i].ok);
        assert_int_equal(o[i].rcpt_code[0], 250);
    }
    stats = read_file(s->dir, "stats.json", NULL);
    assert_contains(stats, "\"max_connections\": 5");
    assert_contains(stats, "\"max_in_data\": 5");
    assert_contains(stats, "\"messages\": 5");
    free(stats);
    log = sink_log(s, 5);
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"rcpts\": [\"r%d@x.test\"]", i);
        assert_contains(log, want);
    }
    free(log);
}

static void test_ipv6(void **state)
{
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    struct sink *s;
    struct smtp_client_msg m = make_msg(rcpts3, 1, "six\n");
    struct outcome o;
    char *log;

    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        skip();
    s = sink_start("::1", NULL);
    deliver("::1", s->port, &m, &o);
    assert_true(o.ok);
    assert_message(s, 1, "six\r\n", 5);
    log = sink_log(s, 1);
    assert_contains(log, "\"peer\": \"::1:");
    free(log);
}

/* ---- against a scripted server on the test's loop ---- */

/*
 * Step 0 is sent on connect; step i answers the i-th line the client sends
 * ("" answers nothing, "<close>" drops the connection).  Everything the
 * client sent is kept for checks.
 */
struct scripted {
    uv_tcp_t listener, conn;
    int port, conn_open;
    const char *const *steps;
    size_t nsteps, next;
    struct buf got;      /* every byte received */
    size_t scanned;      /* of got, lines already answered */
};

static void script_write_done(uv_write_t *w, int status)
{
    free(w->data);
    free(w);
}

static void script_send(struct scripted *sv, const char *text)
{
    uv_write_t *w = malloc(sizeof(*w));
    char *copy = strdup(text);
    uv_buf_t b = uv_buf_init(copy, (unsigned)strlen(copy));

    w->data = copy;
    assert_int_equal(uv_write(w, (uv_stream_t *)&sv->conn, &b, 1, script_write_done), 0);
}

static void script_close_conn(struct scripted *sv)
{
    if (sv->conn_open) {
        sv->conn_open = 0;
        uv_close((uv_handle_t *)&sv->conn, NULL);
    }
}

static void script_step(struct scripted *sv)
{
    const char *s;

    if (sv->next >= sv->nsteps)
        return;
    s = sv->steps[sv->next++];
    if (strcmp(s, "<close>") == 0)
        script_close_conn(sv);
    else if (s[0])
        script_send(sv, s);
}

static void script_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char rbuf[65536];

    *b = uv_buf_init(rbuf, sizeof(rbuf));
}

static void script_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct scripted *sv = st->data;
    char *nl;

    if (n < 0) {
        script_close_conn(sv);
        return;
    }
    buf_append(&sv->got, b->base, (size_t)n);
    while (sv->conn_open &&
           (nl = memchr(sv->got.data + sv->scanned, '\n', sv->got.len - sv->scanned))) {
        sv->scanned = (size_t)(nl - sv->got.data) + 1;
        script_step(sv);
    }
}

static void script_accept(uv_stream_t *l, int status)
{
    struct scripted *sv = l->data;

    assert_int_equal(status, 0);
    uv_tcp_init(l->loop, &sv->conn);
    sv->conn.data = sv;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&sv->conn), 0);
    sv->conn_open = 1;
    uv_close((uv_handle_t *)&sv->listener, NULL);  /* one connection only */
    uv_read_start((uv_stream_t *)&sv->conn, script_alloc, script_read);
    script_step(sv);
}

static void script_listen(uv_loop_t *loop, struct scripted *sv, const char *const *steps,
                          size_t nsteps)
{
    struct sockaddr_storage ss = addr_of("127.0.0.1", 0);
    int len = sizeof(ss);

    memset(sv, 0, sizeof(*sv));
    buf_init(&sv->got, 0);
    sv->steps = steps;
    sv->nsteps = nsteps;
    uv_tcp_init(loop, &sv->listener);
    sv->listener.data = sv;
    assert_int_equal(uv_tcp_bind(&sv->listener, (struct sockaddr *)&ss, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&sv->listener, 4, script_accept), 0);
    uv_tcp_getsockname(&sv->listener, (struct sockaddr *)&ss, &len);
    sv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void run_script(const char *const *steps, size_t nsteps,
                       const struct smtp_client_msg *m, struct outcome *o,
                       struct buf *got)
{
    struct scripted sv;
    uv_loop_t loop;

    memset(o, 0, sizeof(*o));
    uv_loop_init(&loop);
    script_listen(&loop, &sv, steps, nsteps);
    start(&loop, "127.0.0.1", sv.port, m, o);
    finish_loop(&loop);
    assert_int_equal(o->called, 1);
    buf_cstr(&sv.got);
    *got = sv.got;
}

#define NSTEPS(a) (sizeof(a) / sizeof((a)[0]))

/* Multi-line greeting and EHLO reply, keywords in any case. */
static void test_script_extensions(void **state)
{
    static const char *const steps[] = {
        "220-mx.test first line\r\n220 mx.test second line\r\n",
        "250-mx.test hello\r\n250-pipelining\r\n250-Size 1000\r\n250-X-OTHER\r\n"
        "250 8bitmime\r\n",
        "250 sender ok\r\n", "250 rcpt ok\r\n", "354 go\r\n",  /* MAIL RCPT DATA */
        "", "250-queued\r\n250 as 42\r\n",                     /* content, "." */
        "221 bye\r\n",
    };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    m.body_8bit = 1;
    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_true(o.ok);
    assert_int_equal(o.stage, SMTP_CLIENT_DONE);
    assert_true(o.esmtp);
    assert_true(o.pipelining);
    assert_true(o.eightbit);
    assert_int_equal(o.size_limit, 1000);
    assert_int_equal(o.code, 250);
    assert_string_equal(o.answer, "queued as 42");
    assert_string_equal(got.data,
                        "EHLO client.test\r\n"
                        "MAIL FROM:<sender@example.com> SIZE=4 BODY=8BITMIME\r\n"
                        "RCPT TO:<a@x.test>\r\n"
                        "DATA\r\n"
                        "hi\r\n.\r\n"
                        "QUIT\r\n");
    buf_free(&got);
}

/* EHLO refused: HELO; RCPT refused without pipelining: no DATA. */
static void test_script_helo_no_data(void **state)
{
    static const char *const steps[] = {
        "220 hi\r\n", "500 what\r\n", "250 hello\r\n",
        "250 ok\r\n", "550 no such user\r\n", "221 bye\r\n",
    };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    m.from = "";
    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_RCPT);
    assert_int_equal(o.code, 550);
    assert_string_equal(o.answer, "no such user");
    assert_false(o.esmtp);
    assert_string_equal(got.data,
                        "EHLO client.test\r\n"
                        "HELO client.test\r\n"
                        "MAIL FROM:<>\r\n"
                        "RCPT TO:<a@x.test>\r\n"
                        "QUIT\r\n");
    buf_free(&got);
}

/* MAIL refused in a pipelined batch: the owed replies are read, then QUIT. */
static void test_script_mail_refused_pipelined(void **state)
{
    static const char *const steps[] = {
        "220 hi\r\n", "250-hello\r\n250 PIPELINING\r\n",
        "451 try later\r\n", "503 a\r\n", "503 b\r\n", "503 no mail\r\n",
        "221 bye\r\n",
    };
    struct smtp_client_msg m = make_msg(rcpts3, 2, "hi\n");
    struct outcome o;
    struct buf got;

    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_MAIL);
    assert_int_equal(o.code, 451);
    assert_int_equal(o.rcpt_code[0], 451);
    assert_int_equal(o.rcpt_code[1], 451);
    assert_string_equal(o.rcpt_answer[1], "try later");
    assert_string_equal(got.data,
                        "EHLO client.test\r\n"
                        "MAIL FROM:<sender@example.com>\r\n"
                        "RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
                        "QUIT\r\n");
    buf_free(&got);
}

/* DATA refused: the accepted recipients get that reply. */
static void test_script_data_refused(void **state)
{
    static const char *const steps[] = {
        "220 hi\r\n", "250 hello\r\n", "250 ok\r\n", "250 ok\r\n", "550 nope\r\n",
        "554 no DATA today\r\n", "221 bye\r\n",
    };
    static const char *const rcpts[] = { "a@x.test", "b@x.test" };
    struct smtp_client_msg m = make_msg(rcpts, 2, "hi\n");
    struct outcome o;
    struct buf got;

    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_DATA);
    assert_false(o.ok);
    assert_int_equal(o.code, 554);
    assert_int_equal(o.rcpt_code[0], 554);
    assert_string_equal(o.rcpt_answer[0], "no DATA today");
    assert_int_equal(o.rcpt_code[1], 550);
    assert_string_equal(o.rcpt_answer[1], "nope");
    buf_free(&got);
}

static void test_script_malformed(void **state)
{
    static const char *const bad_code[] = { "220 hi\r\n", "25O ok\r\n" };
    static const char *const bad_sep[] = { "220 hi\r\n", "250_ok\r\n" };
    static const char *const code_1xx[] = { "120 wait\r\n" };
    static const char *const mixed[] = { "220 hi\r\n", "250-a\r\n251 b\r\n" };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    run_script(bad_code, 2, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_HELO);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.answer, "malformed reply to EHLO: 25O ok");
    assert_int_equal(o.rcpt_code[0], 0);
    buf_free(&got);

    run_script(bad_sep, 2, &m, &o, &got);
    assert_string_equal(o.answer, "malformed reply to EHLO: 250_ok");
    buf_free(&got);

    run_script(code_1xx, 1, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_GREETING);
    assert_string_equal(o.answer, "malformed reply to greeting: 120 wait");
    buf_free(&got);

    run_script(mixed, 2, &m, &o, &got);
    assert_string_equal(o.answer, "malformed reply to EHLO: 251 b");
    buf_free(&got);
}

static void test_script_too_long(void **state)
{
    char *line = malloc(5000), *many = malloc(70 * 1024);
    const char *long_line[] = { line };
    const char *long_reply[] = { "220 hi\r\n", many };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;
    size_t n = 0;

    /* one 4.9 KB line: past the 4 KB tolerated */
    memcpy(line, "220 ", 4);
    memset(line + 4, 'a', 4990);
    strcpy(line + 4994, "\r\n");
    run_script(long_line, 1, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_GREETING);
    assert_string_equal(o.answer, "reply to greeting too long");
    buf_free(&got);

    /* 69 lines of 1 KB: each fine, the reply past 64 KB */
    for (int i = 0; i < 69; i++) {
        memcpy(many + n, "250-", 4);
        memset(many + n + 4, 'b', 1018);
        memcpy(many + n + 1022, "\r\n", 2);
        n += 1024;
    }
    strcpy(many + n, "250 end\r\n");
    run_script(long_reply, 2, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_HELO);
    assert_string_equal(o.answer, "reply to EHLO too long");
    buf_free(&got);
    free(line);
    free(many);
}

static void test_script_lost(void **state)
{
    static const char *const after_data[] = {
        "220 hi\r\n", "250 hello\r\n", "250 ok\r\n", "250 ok\r\n", "<close>",
    };
    static const char *const before_greeting[] = { "<close>" };
    static const char *const pipelined_rcpt[] = {
        "220 hi\r\n", "250-hello\r\n250 PIPELINING\r\n", "250 ok\r\n", "250 ok\r\n",
        "<close>",
    };
    static const char *const rcpts[] = { "a@x.test", "b@x.test" };
    struct smtp_client_msg m = make_msg(rcpts, 1, "hi\n");
    struct outcome o;
    struct buf got;

    run_script(after_data, NSTEPS(after_data), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_DATA);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.answer, "connection lost after DATA");
    assert_int_equal(o.rcpt_code[0], 0);
    assert_string_equal(o.rcpt_answer[0], "connection lost after DATA");
    buf_free(&got);

    run_script(before_greeting, 1, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_GREETING);
    assert_string_equal(o.answer, "connection lost before greeting");
    buf_free(&got);

    m.nrcpt = 2;
    run_script(pipelined_rcpt, NSTEPS(pipelined_rcpt), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_RCPT);
    assert_string_equal(o.answer, "connection lost after RCPT");
    assert_int_equal(o.rcpt_code[0], 0);  /* accepted, then the break */
    assert_int_equal(o.rcpt_code[1], 0);  /* never answered */
    buf_free(&got);
}

/* A broken server takes a pipelined DATA with nobody accepted: we close
 * without "." (and without a QUIT that would be content). */
static void test_script_354_without_rcpt(void **state)
{
    static const char *const steps[] = {
        "220 hi\r\n", "250-hello\r\n250 PIPELINING\r\n",
        "250 ok\r\n", "550 no\r\n", "354 go ahead anyway\r\n",
    };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_RCPT);
    assert_int_equal(o.code, 550);
    assert_string_equal(got.data,
                        "EHLO client.test\r\n"
                        "MAIL FROM:<sender@example.com>\r\n"
                        "RCPT TO:<a@x.test>\r\nDATA\r\n");
    buf_free(&got);
}

/*
 * The server answers while content is still coming (the first content
 * line gets the reply): the rest must not reach its command parser, so
 * the client closes instead of finishing and sending QUIT.
 */
static void check_early_reply(const char *reply, int stage, int code, const char *answer)
{
    const char *steps[] = {
        "220 hi\r\n", "250 hello\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
        reply,
    };
    size_t n = 4 * 1024 * 1024;
    char *content = malloc(n + 1);
    struct smtp_client_msg m;
    struct outcome o;
    struct buf got;

    for (size_t i = 0; i < n; i++)
        content[i] = i % 100 == 99 ? '\n' : 'x';
    content[n] = '\0';
    m = make_msg(rcpts3, 1, content);
    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, stage);
    assert_false(o.ok);
    assert_int_equal(o.code, code);
    assert_string_equal(o.answer, answer);
    assert_int_equal(o.rcpt_code[0], code);
    assert_true(got.len < n);
    assert_null(strstr(got.data + got.len - 6, "QUIT"));
    buf_free(&got);
    free(content);
}

static void test_script_early_reply(void **state)
{
    check_early_reply("552 too big\r\n", SMTP_CLIENT_DONE, 552, "too big");
    check_early_reply("250 fine\r\n", SMTP_CLIENT_DATA, 0,
                      "reply before end of data: 250 fine");
}

/*
 * A listener whose accept queue is full: Linux drops further SYNs, so the
 * connect neither succeeds nor fails until the connect timeout.
 */
static void test_connect_timeout(void **state)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4], port;
    struct smtp_client_msg m = make_msg(rcpts3, 1, "x\n");
    struct outcome o;
    char want[64];
    double t0;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    for (int i = 0; i < 4; i++) {  /* fill the queue */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100000);
    m.connect_timeout_ms = 300;
    t0 = now_s();
    deliver("127.0.0.1", port, &m, &o);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
    assert_true(now_s() - t0 < 2.0);
    assert_int_equal(o.stage, SMTP_CLIENT_CONNECT);
    assert_int_equal(o.code, 0);
    snprintf(want, sizeof(want), "connect to 127.0.0.1:%d: timeout", port);
    assert_string_equal(o.answer, want);
}

/* Silence after connecting. */
static void test_script_greeting_timeout(void **state)
{
    static const char *const none[] = { "" };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    m.timeout_ms = 200;
    run_script(none, 1, &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_GREETING);
    assert_string_equal(o.answer, "timeout waiting for greeting");
    buf_free(&got);
}

static void test_large_message(void **state)
{
    struct sink *s = sink_start("127.0.0.1", NULL);
    size_t n = 3 * 1024 * 1024, i;
    char *content = malloc(n + 1);
    struct smtp_client_msg m;
    struct buf want = BUF_INIT(0);
    struct outcome o;

    for (i = 0; i < n; i++)
        content[i] = i % 77 == 76 ? '\n' : i % 77 == 0 ? '.' : (char)('a' + i % 26);
    content[n] = '\0';
    m = make_msg(rcpts3, 2, content);
    deliver("127.0.0.1", s->port, &m, &o);
    assert_true(o.ok);
    /* the sink stores what it got minus the stuffing: the input with CR LF */
    for (i = 0; i < n; i++) {
        if (content[i] == '\n')
            buf_putc(&want, '\r');
        buf_putc(&want, content[i]);
    }
    buf_append(&want, "\r\n", 2);
    assert_message(s, 1, want.data, want.len);
    buf_free(&want);
    free(content);
}

/* ---- smtp_client_encode ---- */

static void assert_encoded(const char *in, const char *want)
{
    struct buf b = BUF_INIT(0);
    size_t n = strlen(in);
    char *copy = malloc(n ? n : 1);  /* exact size: ASan sees over-reads */

    memcpy(copy, in, n);
    smtp_client_encode(copy, n, &b);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(buf_cstr(&b), want, b.len);
    buf_free(&b);
    free(copy);
}

static void test_encode(void **state)
{
    assert_encoded("a\nb\n", "a\r\nb\r\n");
    assert_encoded("a\r\nb\r\n", "a\r\nb\r\n");
    assert_encoded("a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n");
    assert_encoded(".x\n", "..x\r\n");
    assert_encoded("a\n.\n.x\n..\n", "a\r\n..\r\n..x\r\n...\r\n");
    assert_encoded("a. b\n x.\n", "a. b\r\n x.\r\n");
    assert_encoded("no newline", "no newline\r\n");
    assert_encoded(".", "..\r\n");
    assert_encoded("", "");
    assert_encoded("\n", "\r\n");
    assert_encoded("\n\n", "\r\n\r\n");
    /* A bare CR is a line end: CR goes out only in CR LF (no smuggling). */
    assert_encoded("bare\rcr\n", "bare\r\ncr\r\n");
    assert_encoded("end\r", "end\r\n");
    assert_encoded("cr\r\r\n", "cr\r\n\r\n");
    assert_encoded("a\r.\rb\n", "a\r\n..\r\nb\r\n");
    assert_encoded("x\r\r.\r\n", "x\r\n\r\n..\r\n");
}

static void test_encode_appends(void **state)
{
    struct buf b = BUF_INIT(0);

    buf_puts(&b, "X");
    smtp_client_encode("y\n", 2, &b);
    assert_string_equal(buf_cstr(&b), "Xy\r\n");
    buf_free(&b);
}

/* ---- reuse: park, reuse, idle end (smtp_client_park, _reuse) ---- */

/* The cache's part in these tests: one parked session at most. */
struct parking {
    struct async_owner own;
    struct smtp_client *c;
    struct outcome first, second;
    struct smtp_client_msg m2;
    long idle_ms, wait_ms;    /* parked for; park_next runs after */
    int gone, cancel;     /* cancel: the owner cancels instead of reusing */
    uv_timer_t t;
};

static void park_gone(void *arg)
{
    ((struct parking *)arg)->gone++;
}

static void park_next(uv_timer_t *t)
{
    struct parking *p = t->data;

    if (p->cancel)
        async_owner_cancel(&p->own);
    else if (p->gone == 0)
        smtp_client_reuse(p->c, &owner, &p->m2, on_done, &p->second);
    uv_close((uv_handle_t *)t, NULL);
}

static void park_done(void *arg, const struct smtp_client_result *r)
{
    struct parking *p = arg;

    on_done(&p->first, r);
    if (!r->reusable)
        return;
    smtp_client_park(p->c, &p->own, p->idle_ms, park_gone, p);
    uv_timer_start(&p->t, park_next, (uint64_t)p->wait_ms, 0);
}

/* One message parks the session; then park_next reuses, or lets it end. */
static void run_parked(struct sink *s, struct parking *p, const char *const *rcpt2)
{
    static const char *const r1[] = { "one@x.test" };
    struct smtp_client_msg m = make_msg(r1, 1, "first\n");
    struct sockaddr_storage ss = addr_of("127.0.0.1", s->port);
    uv_loop_t loop;

    m.keep = 1;
    p->m2 = make_msg(rcpt2, 1, "second\n");
    uv_loop_init(&loop);
    uv_timer_init(&loop, &p->t);
    p->t.data = p;
    p->c = smtp_client_start(&loop, &owner, (struct sockaddr *)&ss, &m, park_done, p);
    finish_loop(&loop);
}

static void test_park_and_reuse(void **state)
{
    static const char *const r2[] = { "two@x.test" };
    struct sink *s = sink_start("127.0.0.1", NULL);
    struct parking p = { .idle_ms = 5000, .wait_ms = 50 };
    char *stats;

    run_parked(s, &p, r2);
    assert_true(p.first.ok && p.first.reusable && !p.first.reused);
    assert_int_equal(p.second.called, 1);
    assert_true(p.second.ok && p.second.reused);
    assert_int_equal(p.gone, 0);
    stats = read_file(s->dir, "stats.json", NULL);
    assert_contains(stats, "\"total_connections\": 1");
    assert_contains(stats, "\"messages\": 2");
    assert_contains(stats, "\"quits\": 1");
    free(stats);
}

/* A refusal with pipelined replies owed: they are read, RSET comes first. */
static void test_park_after_refusal(void **state)
{
    static const char *const r2[] = { "two@x.test" };
    struct sink *s = sink_start("127.0.0.1", "--rcpt-rule", "one@x.test=550", NULL);
    struct parking p = { .idle_ms = 5000, .wait_ms = 50 };
    char *log;

    run_parked(s, &p, r2);
    assert_int_equal(p.first.code, 550);
    assert_true(p.first.reusable);
    assert_true(p.second.ok && p.second.reused);
    log = sink_log(s, 2);
    assert_contains(log, "\"rcpts\": [\"two@x.test\"]");
    free(log);
}

static void test_park_idle_time(void **state)
{
    struct sink *s = sink_start("127.0.0.1", NULL);
    struct parking p = { .idle_ms = 100, .wait_ms = 300 };
    char *stats;

    run_parked(s, &p, rcpts3);
    assert_int_equal(p.gone, 1);           /* the idle time ended it: QUIT */
    assert_int_equal(p.second.called, 0);
    stats = read_file(s->dir, "stats.json", NULL);
    assert_contains(stats, "\"quits\": 1");
    free(stats);
}

static void test_park_owner_cancels(void **state)
{
    struct sink *s = sink_start("127.0.0.1", NULL);
    struct parking p = { .idle_ms = 5000, .wait_ms = 50, .cancel = 1 };

    run_parked(s, &p, rcpts3);
    assert_int_equal(p.gone, 0);           /* cancelled: not told */
    assert_int_equal(p.second.called, 0);
}

/* Closed by the server while parked: gone, and nothing else. */
static void test_park_server_closes(void **state)
{
    struct sink *s = sink_start("127.0.0.1", "--idle-close", "0.1", NULL);
    struct parking p = { .idle_ms = 5000, .wait_ms = 600 };   /* after the close */

    run_parked(s, &p, rcpts3);
    assert_int_equal(p.gone, 1);
    assert_int_equal(p.second.called, 0);
}

/* keep: a 354 to the pipelined DATA while draining closes, not parked. */
static void test_script_354_while_draining(void **state)
{
    static const char *const steps[] = {
        "220 hi\r\n", "250-hello\r\n250 PIPELINING\r\n",
        "250 ok\r\n", "550 no\r\n", "354 go ahead anyway\r\n",
    };
    struct smtp_client_msg m = make_msg(rcpts3, 1, "hi\n");
    struct outcome o;
    struct buf got;

    m.keep = 1;
    run_script(steps, NSTEPS(steps), &m, &o, &got);
    assert_int_equal(o.stage, SMTP_CLIENT_RCPT);
    assert_int_equal(o.code, 550);
    assert_false(o.reusable);
    assert_null(strstr(got.data, "QUIT"));
    buf_free(&got);
}

#define T(f) cmocka_unit_test_teardown(f, stop_sinks)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_encode),
        T(test_encode_appends),
        T(test_pipelined_three),
        T(test_no_pipelining),
        T(test_helo_fallback),
        T(test_one_refused),
        T(test_all_refused),
        T(test_all_refused_no_pipelining),
        T(test_rcpt_450),
        T(test_greeting_554),
        T(test_connect_refused),
        T(test_connect_fails_at_once),
        T(test_size_exceeded),
        T(test_data_451),
        T(test_timeout),
        T(test_cancel_in_the_middle),
        T(test_cancel_at_once),
        T(test_concurrent),
        T(test_ipv6),
        T(test_large_message),
        T(test_script_extensions),
        T(test_script_helo_no_data),
        T(test_script_mail_refused_pipelined),
        T(test_script_data_refused),
        T(test_script_malformed),
        T(test_script_too_long),
        T(test_script_lost),
        T(test_script_greeting_timeout),
        T(test_script_354_without_rcpt),
        T(test_script_early_reply),
        T(test_connect_timeout),
        T(test_park_and_reuse),
        T(test_park_after_refusal),
        T(test_park_idle_time),
        T(test_park_owner_cancels),
        T(test_park_server_closes),
        T(test_script_354_while_draining),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
