/*
 * metrics.c - counters in memory shared by every process of a node.
 *
 * Owns: one anonymous shared mapping the master makes before it forks,
 * cut into slots of METRICS_NVALUES 64-bit values, one slot per process
 * (SMTP workers, the queue process, the ops process, the master last).  A
 * slot has one writer, its process (threads of the pool included, hence
 * atomic adds; relaxed: nothing is ordered by them); a child that restarts
 * is given its predecessor's slot, so its counts go on from where they
 * were.  Rendering sums every slot.  Must not: block, allocate on the hot
 * path, take a lock, or lose a count when a child restarts.
 *
 * The layout is fixed at build time from METRICS_FAMILIES (metrics.h):
 * a family takes n1 * n2 series of its label sets, a counter or gauge
 * series one value, a histogram series its buckets (the last is +Inf, not
 * cumulative in memory) and the sum of what it observed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "metrics.h"
#include "spool_queues.h"

enum { T_COUNTER, T_GAUGE, T_HISTOGRAM };

#define CNT_(...) +1
enum {
    N_NONE = 1,
    N_REASON = 0 METRICS_L_REASON(CNT_),
    N_TRANSPORT = 0 METRICS_L_TRANSPORT(CNT_),
    N_STATUS = 0 METRICS_L_STATUS(CNT_),
    N_DIRECTION = 0 METRICS_L_DIRECTION(CNT_),
    N_EVENT = 0 METRICS_L_EVENT(CNT_),
    N_VERDICT = 0 METRICS_L_VERDICT(CNT_),
    N_MILTER = 0 METRICS_L_MILTER(CNT_),
    N_QUEUE = METRICS_QUEUES_MAX,
};
enum {
    NB_NOHIST = 0 METRICS_B_NOHIST(CNT_),
    NB_DELAY = 0 METRICS_B_DELAY(CNT_),
    NB_SIZE = 0 METRICS_B_SIZE(CNT_),
};
/* Values a series takes: a histogram's buckets, +Inf and sum. */
#define W_(b) (NB_##b ? NB_##b + 2 : 1)

#define OFF_(id, t, n, h, k1, s1, k2, s2, b) \
    OFF_##id, END_##id = OFF_##id + N_##s1 * N_##s2 * W_(b) - 1,
enum { METRICS_FAMILIES(OFF_) METRICS_NVALUES };

#define STR_(c, s) s,
static const char *const v_NONE[] = { "" };
static const char *const v_REASON[] = { METRICS_L_REASON(STR_) };
static const char *const v_TRANSPORT[] = { METRICS_L_TRANSPORT(STR_) };
static const char *const v_STATUS[] = { METRICS_L_STATUS(STR_) };
static const char *const v_DIRECTION[] = { METRICS_L_DIRECTION(STR_) };
static const char *const v_EVENT[] = { METRICS_L_EVENT(STR_) };
static const char *const v_VERDICT[] = { METRICS_L_VERDICT(STR_) };
static const char *const v_MILTER[] = { METRICS_L_MILTER(STR_) };
#define v_QUEUE NULL    /* spool_queues_name() */

#define BOUND_(v) v,
static const uint64_t b_NOHIST[1] = { 0 };
static const uint64_t b_DELAY[] = { METRICS_B_DELAY(BOUND_) };
static const uint64_t b_SIZE[] = { METRICS_B_SIZE(BOUND_) };

struct metrics_family {
    const char *name, *help;
    int type;
    const char *k1, *k2;
    const char *const *v1, *const *v2;
    unsigned n1, n2;
    const uint64_t *bounds;
    unsigned nb, width, off;
};

#define FAM_(id, t, n, h, k1, s1, k2, s2, b) \
    { n, h, T_##t, k1, k2, v_##s1, v_##s2, N_##s1, N_##s2, b_##b, NB_##b, W_(b), OFF_##id },
static const struct metrics_family metrics_fam[METRICS_NFAMILIES] = {
    METRICS_FAMILIES(FAM_)
};

/* A process without a shared slot (selorctl, tests, tools) counts here. */
static uint64_t metrics_private[METRICS_NVALUES];
static uint64_t *metrics_region;     /* nslots slots, or NULL */
static int metrics_nslots;
static uint64_t *metrics_slot = metrics_private;

int metrics_init(int nslots)
{
    size_t size;
    void *p;

    if (nslots < 1)
        return -1;
    size = (size_t)nslots * METRICS_NVALUES * sizeof(uint64_t);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        log_warn("metrics: cannot map %zu bytes of shared memory: %m; counting "
                 "in this process only", size);
        return -1;
    }
    if (metrics_region)
        munmap(metrics_region, (size_t)metrics_nslots * METRICS_NVALUES * sizeof(uint64_t));
    metrics_region = p;
    metrics_nslots = nslots;
    metrics_slot = metrics_region + (size_t)(nslots - 1) * METRICS_NVALUES;
    return 0;
}

void metrics_use_slot(int slot)
{
    if (metrics_region && slot >= 0 && slot < metrics_nslots)
        metrics_slot = metrics_region + (size_t)slot * METRICS_NVALUES;
}

/* ---- writing (one writer per slot) ---- */

static uint64_t *metrics_series(enum metric m, unsigned i, unsigned j)
{
    const struct metrics_family *f;

    if ((unsigned)m >= METRICS_NFAMILIES)
        return NULL;
    f = &metrics_fam[m];
    if (i >= f->n1 || j >= f->n2)
        return NULL;
    return metrics_slot + f->off + ((size_t)i * f->n2 + j) * f->width;
}

void metrics_count(enum metric m, unsigned i, unsigned j, uint64_t n)
{
    uint64_t *v = metrics_series(m, i, j);

    if (v && n)
        __atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

void metrics_set(enum metric m, unsigned i, int64_t v)
{
    uint64_t *p = metrics_series(m, i, 0);

    if (p)
        __atomic_store_n(p, (uint64_t)v, __ATOMIC_RELAXED);
}

void metrics_observe(enum metric m, int64_t value)
{
    uint64_t *p = metrics_series(m, 0, 0), v = value > 0 ? (uint64_t)value : 0;
    const struct metrics_family *f;
    unsigned k = 0;

    if (p == NULL || metrics_fam[m].type != T_HISTOGRAM)
        return;
    f = &metrics_fam[m];
    while (k < f->nb && v > f->bounds[k])
        k++;
    __atomic_fetch_add(&p[k], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p[f->nb + 1], v, __ATOMIC_RELAXED);
}

/* ---- rendering ---- */

static uint64_t metrics_sum(size_t idx)
{
    uint64_t s = 0;

    if (metrics_region == NULL)
        return __atomic_load_n(&metrics_private[idx], __ATOMIC_RELAXED);
    for (int k = 0; k < metrics_nslots; k++)
        s += __atomic_load_n(&metrics_region[(size_t)k * METRICS_NVALUES + idx],
                             __ATOMIC_RELAXED);
    return s;
}

void metrics_escape(struct buf *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            buf_putc(out, '\\');
        if (*p == '\n')
            buf_puts(out, "\\n");
        else
            buf_putc(out, *p);
    }
}

static void metrics_label(struct buf *out, const char *key, const char *value)
{
    if (out->len && out->data[out->len - 1] != '{')
        buf_putc(out, ',');
    buf_printf(out, "%s=\"", key);
    metrics_escape(out, value);
    buf_putc(out, '"');
}

/* name{labels} of series (i, j), with le when given; no braces when none. */
static void metrics_series_name(struct buf *out, const struct metrics_family *f,
                                const char *suffix, unsigned i, unsigned j, const char *le)
{
    struct buf l = BUF_INIT(0);

    buf_putc(&l, '{');
    if (f->k1)
        metrics_label(&l, f->k1, f->v1 ? f->v1[i] : spool_queues_name(i));
    if (f->k2)
        metrics_label(&l, f->k2, f->v2[j]);
    if (le)
        metrics_label(&l, "le", le);
    buf_printf(out, "%s%s", f->name, suffix);
    if (l.len > 1) {
        buf_append(out, l.data, l.len);
        buf_putc(out, '}');
    }
    buf_free(&l);
}

/* HELP text: backslash and line feed escaped. */
static void metrics_help(struct buf *out, const struct metrics_family *f)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };

    buf_printf(out, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            buf_puts(out, "\\\\");
        else if (*p == '\n')
            buf_puts(out, "\\n");
        else
            buf_putc(out, *p);
    }
    buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
}

static void metrics_histogram(struct buf *out, const struct metrics_family *f, size_t base,
                              unsigned i, unsigned j)
{
    uint64_t cum = 0;
    char le[32];

    for (unsigned k = 0; k <= f->nb; k++) {
        cum += metrics_sum(base + k);
        if (k < f->nb)
            snprintf(le, sizeof(le), "%llu", (unsigned long long)f->bounds[k]);
        else
            snprintf(le, sizeof(le), "+Inf");
        metrics_series_name(out, f, "_bucket", i, j, le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    metrics_series_name(out, f, "_sum", i, j, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)metrics_sum(base + f->nb + 1));
    metrics_series_name(out, f, "_count", i, j, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)cum);
}

static void metrics_family(struct buf *out, const struct metrics_family *f)
{
    unsigned n1 = f->n1;

    if (f->v1 == NULL && spool_queues_count() < n1)   /* the queues there are */
        n1 = (unsigned)spool_queues_count();
    metrics_help(out, f);
    for (unsigned i = 0; i < n1; i++) {
        for (unsigned j = 0; j < f->n2; j++) {
            size_t base = f->off + ((size_t)i * f->n2 + j) * f->width;
            if (f->type == T_HISTOGRAM) {
                metrics_histogram(out, f, base, i, j);
                continue;
            }
            metrics_series_name(out, f, "", i, j, NULL);
            if (f->type == T_GAUGE)
                buf_printf(out, " %lld\n", (long long)(int64_t)metrics_sum(base));
            else
                buf_printf(out, " %llu\n", (unsigned long long)metrics_sum(base));
        }
    }
}

void metrics_render(struct buf *out)
{
    for (int m = 0; m < METRICS_NFAMILIES; m++)
        metrics_family(out, &metrics_fam[m]);
}
