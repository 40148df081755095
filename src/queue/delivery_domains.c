/*
 * delivery_domains.c - remote domains across delivery runs (see
 * delivery_domains.h).  Small arrays: a node delivers to a few hundred
 * domains at once at most, and each entry goes when its count does.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "deliver_smtp.h"
#include "delivery_domains.h"
#include "mem.h"

/* Room for one more element in an array that doubles. */
#define DD_GROW(arr, n, alloc)                                              \
    do {                                                                    \
        if ((n) == (alloc)) {                                               \
            (alloc) = (alloc) ? (alloc) * 2 : 16;                           \
            (arr) = mem_realloc((arr), (alloc) * sizeof(*(arr)));           \
        }                                                                   \
    } while (0)

int delivery_domains_take(struct delivery_domains *dd, const char *domain, long limit)
{
    size_t i;

    for (i = 0; i < dd->nbusy; i++)
        if (strcasecmp(dd->busy[i].domain, domain) == 0)
            break;
    if (i < dd->nbusy && limit > 0 && dd->busy[i].n >= limit)
        return 0;
    if (i == dd->nbusy) {
        DD_GROW(dd->busy, dd->nbusy, dd->busy_alloc);
        snprintf(dd->busy[i].domain, sizeof(dd->busy[i].domain), "%s", domain);
        dd->busy[i].n = 0;
        dd->nbusy++;
    }
    dd->busy[i].n++;
    return 1;
}

void delivery_domains_wait(struct delivery_domains *dd, struct delivery_domains_waiter *w)
{
    if (w->listed)
        return;
    DD_GROW(dd->waiting, dd->nwaiting, dd->waiting_alloc);
    dd->waiting[dd->nwaiting++] = w;
    w->listed = 1;
}

void delivery_domains_unwait(struct delivery_domains *dd,
                             struct delivery_domains_waiter *w)
{
    for (size_t i = 0; w->listed && i < dd->nwaiting; i++) {
        if (dd->waiting[i] != w)
            continue;
        memmove(&dd->waiting[i], &dd->waiting[i + 1],
                (dd->nwaiting - i - 1) * sizeof(*dd->waiting));
        dd->nwaiting--;
        break;
    }
    w->listed = 0;
}

void delivery_domains_give(struct delivery_domains *dd, const char *domain)
{
    struct delivery_domains_waiter *next;

    for (size_t i = 0; i < dd->nbusy; i++) {
        if (strcasecmp(dd->busy[i].domain, domain) != 0)
            continue;
        if (--dd->busy[i].n <= 0)
            dd->busy[i] = dd->busy[--dd->nbusy];
        break;
    }
    if (dd->nwaiting > 0) {
        next = dd->waiting[0];
        delivery_domains_unwait(dd, next);
        next->wake(next->arg);
    }
}

static struct delivery_dead_domain *dd_dead_find(struct delivery_domains *dd,
                                                 const char *domain)
{
    for (size_t i = 0; i < dd->ndead; i++)
        if (strcasecmp(dd->dead[i].domain, domain) == 0)
            return &dd->dead[i];
    return NULL;
}

const struct delivery_dead_domain *delivery_domains_paused(struct delivery_domains *dd,
                                                           const char *domain, long now)
{
    const struct delivery_dead_domain *x = dd_dead_find(dd, domain);

    return x && x->until > now ? x : NULL;
}

void delivery_domains_note(struct delivery_domains *dd, const char *domain,
                           const struct deliver_rcpt_result *res, size_t n, long cap)
{
    struct delivery_dead_domain *x = dd_dead_find(dd, domain);
    int unreachable = n > 0;
    long pause;

    for (size_t k = 0; k < n; k++)
        unreachable &= res[k].status == DELIVER_TEMP && res[k].host[0] == '\0';
    if (!unreachable) {
        if (x)
            *x = dd->dead[--dd->ndead];
        return;
    }
    if (x == NULL) {
        DD_GROW(dd->dead, dd->ndead, dd->dead_alloc);
        x = &dd->dead[dd->ndead++];
        memset(x, 0, sizeof(*x));
        snprintf(x->domain, sizeof(x->domain), "%s", domain);
    }
    x->fails++;
    pause = x->fails > 12 ? cap : 30L << (x->fails - 1);
    x->until = (long)time(NULL) + (pause < cap ? pause : cap);
    snprintf(x->answer, sizeof(x->answer), "%s", res[0].answer);
}
