/*
 * pgsql_cache.c - the pgsql module's short memory of answers, per process
 * (Pgsql_cache_ttl): FOUND and NOTFOUND answers keyed by kind and key, at
 * most PGSQL_CACHE_MAX of them, the oldest evicted first.
 * Owns: the entries and the answers put in it.
 * Must not: hold a TEMPFAIL (a database that comes back must be seen at
 * once), or anything typed by a client as a password (AUTH answers hold
 * the stored hash; the password is checked again at every login).
 */
#include <stdlib.h>
#include <string.h>

#include "pgsql.h"

struct pgsql_entry {
    struct pgsql_entry *hnext;          /* bucket chain */
    struct pgsql_entry *older, *newer;  /* insertion order */
    struct pgsql_answer *ans;
    uint64_t expires, hash;
    int kind;
    char key[];
};

struct pgsql_cache {
    struct pgsql_entry **buckets;
    size_t nbuckets, n, max;            /* nbuckets: a power of two */
    struct pgsql_entry *oldest, *newest;
};

static uint64_t pgsql_hash(int kind, const char *s)
{
    uint64_t h = 14695981039346656037ULL ^ (uint64_t)kind;  /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct pgsql_cache *pgsql_cache_new(size_t max)
{
    struct pgsql_cache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->max = max;
    c->nbuckets = 1024;
    while (c->nbuckets < max)
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

static void pgsql_entry_remove(struct pgsql_cache *c, struct pgsql_entry *e)
{
    struct pgsql_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->n--;
    pgsql_answer_free(e->ans);
    free(e);
}

void pgsql_cache_free(struct pgsql_cache *c)
{
    if (c == NULL)
        return;
    while (c->oldest)
        pgsql_entry_remove(c, c->oldest);
    free(c->buckets);
    free(c);
}

static struct pgsql_entry *pgsql_cache_find(struct pgsql_cache *c, int kind,
                                            const char *key, uint64_t h)
{
    struct pgsql_entry *e = c->buckets[h & (c->nbuckets - 1)];

    for (; e; e = e->hnext)
        if (e->hash == h && e->kind == kind && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

const struct pgsql_answer *pgsql_cache_get(struct pgsql_cache *c, int kind,
                                           const char *key, uint64_t now)
{
    struct pgsql_entry *e;

    if (c == NULL)
        return NULL;
    e = pgsql_cache_find(c, kind, key, pgsql_hash(kind, key));
    if (e != NULL && e->expires <= now) {
        pgsql_entry_remove(c, e);
        e = NULL;
    }
    return e ? e->ans : NULL;
}

void pgsql_cache_put(struct pgsql_cache *c, int kind, const char *key,
                     struct pgsql_answer *a, uint64_t expires)
{
    uint64_t h = pgsql_hash(kind, key);
    struct pgsql_entry *e;
    size_t len = strlen(key) + 1;

    if (c == NULL || c->max == 0 || (e = malloc(sizeof(*e) + len)) == NULL) {
        pgsql_answer_free(a);
        return;
    }
    struct pgsql_entry *old = pgsql_cache_find(c, kind, key, h);
    if (old != NULL)
        pgsql_entry_remove(c, old);
    if (c->n >= c->max)
        pgsql_entry_remove(c, c->oldest);
    memcpy(e->key, key, len);
    e->kind = kind;
    e->hash = h;
    e->ans = a;
    e->expires = expires;
    e->hnext = c->buckets[h & (c->nbuckets - 1)];
    c->buckets[h & (c->nbuckets - 1)] = e;
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->n++;
}
