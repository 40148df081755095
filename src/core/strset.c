/*
 * strset.c - case-insensitive string set (see strset.h).  Kept at most
 * half full, so a probe is short.
 */
#include <stdint.h>
#include <strings.h>

#include "mem.h"
#include "strset.h"

static uint64_t strset_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a over lower case */

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32 : c)) * 1099511628211ULL;
    }
    return h;
}

static const char **strset_find(const struct strset *set, const char *s)
{
    size_t i = (size_t)strset_hash(s) & (set->cap - 1);

    while (set->slot[i] && strcasecmp(set->slot[i], s) != 0)
        i = (i + 1) & (set->cap - 1);
    return &set->slot[i];
}

static void strset_grow(struct strset *set)
{
    struct strset bigger = {NULL, set->cap ? set->cap * 2 : 16, 0};

    bigger.slot = mem_zalloc(bigger.cap * sizeof(*bigger.slot));
    for (size_t i = 0; i < set->cap; i++)
        if (set->slot[i])
            *strset_find(&bigger, set->slot[i]) = set->slot[i];
    bigger.n = set->n;
    mem_free(set->slot);
    *set = bigger;
}

int strset_add(struct strset *set, const char *s)
{
    const char **p;

    if ((set->n + 1) * 2 > set->cap)
        strset_grow(set);
    p = strset_find(set, s);
    if (*p)
        return 0;
    *p = s;
    set->n++;
    return 1;
}

int strset_has(const struct strset *set, const char *s)
{
    return set->cap > 0 && *strset_find(set, s) != NULL;
}

void strset_free(struct strset *set)
{
    mem_free(set->slot);
    set->slot = NULL;
    set->cap = set->n = 0;
}
