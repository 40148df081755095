/*
 * spf_tool.c - src/core/spf.h from the command line, for the system tests
 * (tests/system/test_spf.py) that hold it against records served by
 * dnsmasq.
 *
 *   spf_tool --dns IP:PORT --ip ADDR --helo NAME --sender ADDR
 *            [--receiver NAME] [--header] [--cancel-after MS]
 *   spf_tool --result TEXT
 *
 * Prints "<result> <explanation>" on one line, then with --header the
 * Received-SPF field.  --cancel-after cancels the check's owner after MS
 * milliseconds if it has not answered: prints "cancelled" (an answer after
 * that is a bug: the tool aborts).  --result prints what spf_result_parse
 * makes of TEXT and, for a result, its name: "3 fail", "-1".  Exit
 * status 0 when a check ran, 2 on bad usage or resolver error.  Must not:
 * be installed or linked into selor or selorctl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "async.h"
#include "buf.h"
#include "dns.h"
#include "spf.h"

struct tool {
    const char *dns, *ip, *helo, *sender, *receiver;
    int header;
    long cancel_ms;
    int done, cancelled;
    uv_loop_t *loop;
    struct async_owner owner;
    uv_timer_t timer;
};

static int usage(void)
{
    fprintf(stderr, "usage: spf_tool --dns IP:PORT --ip ADDR --helo NAME --sender ADDR\n"
                    "                [--receiver NAME] [--header] [--cancel-after MS]\n"
                    "       spf_tool --result TEXT\n");
    return 2;
}

static void on_done(void *arg, int result, const char *expl)
{
    struct tool *t = arg;

    if (t->cancelled || t->done)
        abort();   /* the owner cancelled: no answer may come */
    t->done = 1;
    printf("%s %s\n", spf_result_name(result), expl);
    if (t->header) {
        struct buf b = BUF_INIT(0);
        spf_received_header(&b, result, t->ip, t->helo, t->sender, t->receiver);
        fwrite(b.data, 1, b.len, stdout);
        buf_free(&b);
    }
    uv_stop(t->loop);
}

static void on_timer(uv_timer_t *h)
{
    struct tool *t = h->data;

    t->cancelled = 1;
    async_owner_cancel(&t->owner);
    printf("cancelled\n");
    uv_stop(t->loop);
}

static int parse_args(struct tool *t, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--header") == 0) {
            t->header = 1;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        if (strcmp(argv[i], "--dns") == 0) slot = &t->dns;
        else if (strcmp(argv[i], "--ip") == 0) slot = &t->ip;
        else if (strcmp(argv[i], "--helo") == 0) slot = &t->helo;
        else if (strcmp(argv[i], "--sender") == 0) slot = &t->sender;
        else if (strcmp(argv[i], "--receiver") == 0) slot = &t->receiver;
        else if (strcmp(argv[i], "--cancel-after") == 0)
            t->cancel_ms = atol(argv[i + 1]);
        else
            return -1;
        if (slot)
            *slot = argv[i + 1];
        i++;
    }
    return t->dns && t->ip && t->helo && t->sender ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct tool t;
    struct dns *d;
    char err[256];

    memset(&t, 0, sizeof(t));
    t.receiver = "";
    if (argc == 3 && strcmp(argv[1], "--result") == 0) {
        int r = spf_result_parse(argv[2]);
        printf("%d%s%s\n", r, r < 0 ? "" : " ", r < 0 ? "" : spf_result_name(r));
        return 0;
    }
    if (parse_args(&t, argc, argv) < 0)
        return usage();
    t.loop = uv_default_loop();
    if ((d = dns_new(t.loop, t.dns, err, sizeof(err))) == NULL) {
        fprintf(stderr, "spf_tool: %s\n", err);
        return 2;
    }
    async_owner_init(&t.owner);
    uv_timer_init(t.loop, &t.timer);
    t.timer.data = &t;
    if (t.cancel_ms > 0)
        uv_timer_start(&t.timer, on_timer, (uint64_t)t.cancel_ms, 0);
    spf_check(d, &t.owner, t.ip, t.helo, t.sender, t.receiver, on_done, &t);
    if (!t.done)
        uv_run(t.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t.timer, NULL);
    dns_free(d);
    uv_run(t.loop, UV_RUN_DEFAULT);
    uv_loop_close(t.loop);
    fflush(stdout);
    return t.done || t.cancelled ? 0 : 2;
}
