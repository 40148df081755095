/*
 * selorctl.c - the operator's tool: look at and act on a node's queue.
 *
 *   selorctl [-c FILE] queue       list queued messages, like mailq
 *   selorctl [-c FILE] version
 *
 * Owns: presenting the spool to a person.  Reads queue files through
 * spool.c and queue_file.c only.  Must not: change a queue file without
 * the lock its holder would take (commands that change the queue arrive
 * with the delivery work).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "queue_file.h"
#include "spool.h"
#include "version.h"

#define CTL_DEFAULT_CONF "/usr/local/selor/selor.conf"

static void ctl_usage(void)
{
    fprintf(stderr, "usage: selorctl [-c FILE] queue | version\n");
    exit(2);
}

struct ctl_list {
    struct buf names;
    size_t n;
};

static int ctl_collect(const char *name, void *arg)
{
    struct ctl_list *l = arg;

    if (name[0] == 'l') {
        buf_puts(&l->names, name);
        buf_putc(&l->names, '\n');
        l->n++;
    }
    return 0;
}

static void ctl_show_one(const char *dir, const char *lname, time_t now)
{
    char path[4096], err[200];
    struct buf text = BUF_INIT(0);
    struct queue_file qf;

    snprintf(path, sizeof(path), "%s/%s", dir, lname);
    if (spool_read_sync(path, &text, 64 << 20) != 0) {
        buf_free(&text);
        return;  /* taken or delivered meanwhile */
    }
    if (qf_parse(&qf, text.data, text.len, err, sizeof(err)) < 0) {
        printf("%-34s (unreadable: %s)\n", lname + 1, err);
        buf_free(&text);
        return;
    }
    printf("%-34s %6lds %8ld  <%s>%s\n", qf.id, (long)(now - qf.created), qf.size,
           qf.from, qf.flags & QF_F_HOLD ? " (held)" : "");
    for (size_t i = 0; i < qf.nrcpt; i++)
        printf("%44s %c <%s>%s%s\n", "", qf.rcpt[i].state, qf.rcpt[i].addr,
               qf.rcpt[i].answer[0] ? " " : "", qf.rcpt[i].answer);
    qf_free(&qf);
    buf_free(&text);
}

static int ctl_queue(const struct config *c)
{
    struct ctl_list l = {BUF_INIT(0), 0};
    time_t now = time(NULL);
    int e = spool_scan_sync(c->Queue_path, ctl_collect, &l);
    char *line, *save = NULL;

    if (e) {
        fprintf(stderr, "selorctl: cannot read %s: %s\n", c->Queue_path, strerror(e));
        return 1;
    }
    printf("%-34s %7s %8s  %s\n", "ID", "AGE", "SIZE", "SENDER / RECIPIENTS");
    for (line = strtok_r(l.names.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        ctl_show_one(c->Queue_path, line, now);
    printf("-- %zu message(s)\n", l.n);
    buf_free(&l.names);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = CTL_DEFAULT_CONF;
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    int opt;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c')
            path = optarg;
        else
            ctl_usage();
    }
    if (optind >= argc)
        ctl_usage();
    if (strcmp(argv[optind], "version") == 0) {
        printf("selorctl %s\n", SELOR_VERSION);
        return 0;
    }
    selor_conf = config_load(path, &err, &warn);
    if (selor_conf == NULL) {
        fprintf(stderr, "selorctl: %s\n", buf_cstr(&err));
        return 1;
    }
    log_set_role("selorctl");
    if (strcmp(argv[optind], "queue") == 0)
        return ctl_queue(selor_conf);
    ctl_usage();
    return 2;
}
