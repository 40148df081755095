/*
 * coord_tool.c - coord_rate of the Redis backend from the command line, for
 * the system tests (tests/system/test_rate.py): two of these running at
 * once are two nodes sharing one count.
 *
 *   coord_tool REDIS KEY LIMIT WINDOW COUNT [GAP_MS]
 *   coord_tool REDIS KEY LIMIT WINDOW cancel
 *
 * The first form counts COUNT events, GAP_MS apart (default 0), each after
 * the answer to the one before, and prints each verdict on its own line:
 * OK, LIMIT or DOWN.  It waits up to 5 s for Redis to be ready before the
 * first (answers DOWN until then are neither counted nor printed).  The
 * second form counts one event whose owner cancels at once, then a second
 * one: it prints DROPPED if the first answer was dropped (LATE if it came
 * anyway), then the second's verdict.  Exit status 0 when no answer was
 * DOWN, 1 otherwise, 2 on bad usage.
 * Must not: be installed or linked into selor or selorctl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "async.h"
#include "config.h"
#include "coord.h"

#define TOOL_WAIT_MS 5000    /* for Redis to be ready */
#define TOOL_RETRY_MS 50
#define TOOL_COUNT_MAX 100000

struct tool {
    struct coord *co;
    struct async_owner owner;
    uv_timer_t timer;
    const char *key;
    long limit, window, left, gap_ms;
    int cancel_mode, up, down, first_answered;
    uint64_t started_ms;
};

static const char *const names[] = {
    [COORD_OK] = "OK", [COORD_LIMIT] = "LIMIT", [COORD_DOWN] = "DOWN",
};

static void ask(struct tool *t);

static void finish(struct tool *t)
{
    uv_close((uv_handle_t *)&t->timer, NULL);
    coord_detach(t->co);   /* the loop ends once Redis is let go */
}

static void on_timer(uv_timer_t *h)
{
    ask(h->data);
}

static void on_rate(void *arg, int status)
{
    struct tool *t = arg;

    if (status == COORD_DOWN && !t->up &&
        coord_mono_ms() - t->started_ms < TOOL_WAIT_MS) {
        uv_timer_start(&t->timer, on_timer, TOOL_RETRY_MS, 0);   /* not ready yet */
        return;
    }
    t->up = 1;
    t->down |= status == COORD_DOWN;
    printf("%s\n", status >= 0 && status <= COORD_DOWN && names[status] ? names[status]
                                                                      : "?");
    fflush(stdout);
    if (--t->left <= 0)
        finish(t);
    else if (t->gap_ms > 0)
        uv_timer_start(&t->timer, on_timer, (uint64_t)t->gap_ms, 0);
    else
        ask(t);
}

/* The answer of the cancelled call: it must not come. */
static void on_cancelled(void *arg, int status)
{
    ((struct tool *)arg)->first_answered = 1;
}

static void on_second(void *arg, int status)
{
    struct tool *t = arg;

    /* Redis answers in order: the first call's reply has been seen. */
    printf("%s\n", t->first_answered ? "LATE" : "DROPPED");
    t->cancel_mode = 0;
    t->left = 1;
    on_rate(t, status);
}

static void on_probe(void *arg, int status)
{
    struct tool *t = arg;

    if (status == COORD_DOWN && coord_mono_ms() - t->started_ms < TOOL_WAIT_MS) {
        uv_timer_start(&t->timer, on_timer, TOOL_RETRY_MS, 0);
        return;
    }
    t->up = 1;
    coord_rate(t->co, &t->owner, t->key, t->limit, t->window, on_cancelled, t);
    async_owner_cancel(&t->owner);
    coord_rate(t->co, &t->owner, t->key, t->limit, t->window, on_second, t);
}

static void ask(struct tool *t)
{
    if (t->cancel_mode && !t->up) {
        /* readiness is probed on another key, so only the two calls count */
        coord_rate(t->co, NULL, "coord_tool probe", 1000000, 1, on_probe, t);
        return;
    }
    coord_rate(t->co, &t->owner, t->key, t->limit, t->window, on_rate, t);
}

static long number(const char *s, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    return v;
}

static int usage(void)
{
    fprintf(stderr, "usage: coord_tool REDIS KEY LIMIT WINDOW COUNT [GAP_MS]\n"
                    "       coord_tool REDIS KEY LIMIT WINDOW cancel\n");
    return 2;
}

static int parse(struct tool *t, int argc, char **argv)
{
    if (argc < 6 || argc > 7)
        return -1;
    t->key = argv[2];
    t->limit = number(argv[3], 1000000000L);
    t->window = number(argv[4], 86400L * 365);
    t->cancel_mode = strcmp(argv[5], "cancel") == 0;
    t->left = t->cancel_mode ? 1 : number(argv[5], TOOL_COUNT_MAX);
    t->gap_ms = argc == 7 ? number(argv[6], 3600000L) : 0;
    return t->limit < 0 || t->window < 0 || t->left <= 0 || t->gap_ms < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct config *conf = config_defaults();
    struct buf err = BUF_INIT(0);
    struct tool t;
    uv_loop_t loop;

    memset(&t, 0, sizeof(t));
    if (parse(&t, argc, argv) < 0)
        return usage();
    conf->Redis_server = argv[1];
    conf->Sid = "coord_tool";
    t.co = coord_redis_create(conf, &err);
    if (t.co == NULL) {
        fprintf(stderr, "coord_tool: %s\n", err.data ? err.data : "?");
        return 2;
    }
    uv_loop_init(&loop);
    async_owner_init(&t.owner);
    uv_timer_init(&loop, &t.timer);
    t.timer.data = &t;
    coord_attach(t.co, &loop);
    t.started_ms = coord_mono_ms();
    ask(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    coord_destroy(t.co);
    config_free(conf);
    buf_free(&err);
    return t.down ? 1 : 0;
}
