/*
 * selorctl_summary.c - `selorctl queue --summary`: the shape of the queue
 * at a glance, the way Postfix's qshape shows it.
 *
 * Owns: counting every queue's messages by state (due, deferred, held by
 * the operator, being delivered by a node) and their pending recipients by
 * destination domain and age.  Reads the spool only; who holds a file is
 * asked of the caller (the lock is the coordination backend's business).
 * Must not: change anything, or print a byte a client chose unescaped (a
 * domain is shown only when it is made of host-name characters).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "queue_file.h"
#include "selorctl_summary.h"
#include "spool.h"
#include "spool_queues.h"

#define CTL_SUMMARY_BUCKETS 11     /* 0-5 min, ..., 1280 min and older */
#define CTL_SUMMARY_DOMAINS 20     /* rows shown; the rest are "(others)" */
#define CTL_SUMMARY_DOMAIN_MAX 255

static const int ctl_summary_minutes[CTL_SUMMARY_BUCKETS - 1] = {
    5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560};

struct ctl_summary_row {
    char domain[CTL_SUMMARY_DOMAIN_MAX + 1];
    long total, bucket[CTL_SUMMARY_BUCKETS];
};

struct ctl_summary {
    ctl_summary_holder_fn *holder;
    void *holder_arg;
    time_t now;
    long due, deferred, held, active, unreadable;
    struct ctl_summary_row all;
    struct ctl_summary_row *rows;
    size_t nrows;
    const char *dir;              /* the queue being read */
};

static int ctl_summary_bucket(long age)
{
    int i = 0;

    while (i < CTL_SUMMARY_BUCKETS - 1 && age >= (long)ctl_summary_minutes[i] * 60)
        i++;
    return i;
}

/* The domain of addr, lower case; "(unprintable)" for anything odd. */
static void ctl_summary_domain(const char *addr, char *out, size_t size)
{
    const char *at = strrchr(addr, '@');
    const char *d = at ? at + 1 : "(local)";
    size_t i;

    for (i = 0; d[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)d[i];
        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_' && ch != '[' &&
            ch != ']' && ch != ':' && ch != '(' && ch != ')') {
            snprintf(out, size, "(unprintable)");
            return;
        }
        out[i] = (char)tolower(ch);
    }
    out[i] = '\0';
    if (i == 0 || d[i])
        snprintf(out, size, "%s", i == 0 ? "(empty)" : "(too long)");
}

static struct ctl_summary_row *ctl_summary_row(struct ctl_summary *s, const char *domain)
{
    for (size_t i = 0; i < s->nrows; i++)
        if (strcmp(s->rows[i].domain, domain) == 0)
            return &s->rows[i];
    s->rows = mem_realloc(s->rows, (s->nrows + 1) * sizeof(*s->rows));
    memset(&s->rows[s->nrows], 0, sizeof(*s->rows));
    snprintf(s->rows[s->nrows].domain, sizeof(s->rows[0].domain), "%s", domain);
    return &s->rows[s->nrows++];
}

static void ctl_summary_count(struct ctl_summary_row *r, int b)
{
    r->total++;
    r->bucket[b]++;
}

static void ctl_summary_message(struct ctl_summary *s, const struct queue_file *qf)
{
    long next = -1;
    char domain[CTL_SUMMARY_DOMAIN_MAX + 1];
    int b = ctl_summary_bucket((long)(s->now - qf->created));

    for (size_t i = 0; i < qf->nrcpt; i++) {
        const struct qf_rcpt *r = &qf->rcpt[i];
        if (r->state != QF_PENDING)
            continue;
        if (next < 0 || r->next < next)
            next = r->next;
        ctl_summary_domain(r->addr, domain, sizeof(domain));
        ctl_summary_count(ctl_summary_row(s, domain), b);
        ctl_summary_count(&s->all, b);
    }
    if (s->holder && s->holder(qf->id, s->holder_arg))
        s->active++;
    else if (qf->flags & QF_F_HOLD)
        s->held++;
    else if (next > (long)s->now)
        s->deferred++;
    else
        s->due++;
}

static int ctl_summary_file(const char *name, void *arg)
{
    struct ctl_summary *s = arg;
    char path[4096], err[200];
    struct buf text = BUF_INIT(0);
    struct queue_file qf;

    if (name[0] != 'l')
        return 0;
    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    if (spool_read_sync(path, &text, 64 << 20) != 0) {
        buf_free(&text);
        return 0;   /* delivered meanwhile */
    }
    if (qf_parse(&qf, text.data, text.len, err, sizeof(err)) < 0) {
        s->unreadable++;
    } else {
        ctl_summary_message(s, &qf);
        qf_free(&qf);
    }
    buf_free(&text);
    return 0;
}

static int ctl_summary_by_total(const void *a, const void *b)
{
    const struct ctl_summary_row *x = a, *y = b;

    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return strcmp(x->domain, y->domain);
}

static void ctl_summary_print_row(const struct ctl_summary_row *r)
{
    printf("%32.32s %6ld", r->domain, r->total);
    for (int i = 0; i < CTL_SUMMARY_BUCKETS; i++)
        printf(" %5ld", r->bucket[i]);
    printf("\n");
}

static void ctl_summary_print(struct ctl_summary *s, const char *queue)
{
    struct ctl_summary_row others = {"(others)", 0, {0}};

    printf("queue %s: %ld message(s): %ld due, %ld deferred, %ld held, %ld being delivered",
           queue, s->due + s->deferred + s->held + s->active, s->due, s->deferred, s->held,
           s->active);
    if (s->unreadable)
        printf(", %ld unreadable", s->unreadable);
    printf("\n%32s %6s", "pending recipients by age (min)", "T");
    for (int i = 0; i < CTL_SUMMARY_BUCKETS - 1; i++)
        printf(" %5d", ctl_summary_minutes[i]);
    printf(" %5s\n", "more");
    snprintf(s->all.domain, sizeof(s->all.domain), "TOTAL");
    ctl_summary_print_row(&s->all);
    if (s->nrows)
        qsort(s->rows, s->nrows, sizeof(*s->rows), ctl_summary_by_total);
    for (size_t i = 0; i < s->nrows; i++) {
        if (i < CTL_SUMMARY_DOMAINS) {
            ctl_summary_print_row(&s->rows[i]);
            continue;
        }
        others.total += s->rows[i].total;
        for (int b = 0; b < CTL_SUMMARY_BUCKETS; b++)
            others.bucket[b] += s->rows[i].bucket[b];
    }
    if (others.total)
        ctl_summary_print_row(&others);
}

int ctl_summary(ctl_summary_holder_fn *holder, void *holder_arg)
{
    int rc = 0;

    for (size_t q = 0; q < spool_queues_count(); q++) {
        struct ctl_summary s = {.holder = holder, .holder_arg = holder_arg,
                                .now = time(NULL)};
        char dir[2048];
        int e;

        if (spool_queues_dir(spool_queues_name(q), dir, sizeof(dir)) < 0)
            continue;
        s.dir = dir;
        e = spool_scan_sync(dir, ctl_summary_file, &s);
        if (e && e != ENOENT) {
            fprintf(stderr, "selorctl: cannot read %s: %s\n", dir, strerror(e));
            rc = 1;
        } else if (e == 0 || q == 0) {
            ctl_summary_print(&s, spool_queues_name(q));
        }
        mem_free(s.rows);
    }
    return rc;
}
