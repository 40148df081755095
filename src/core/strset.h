/*
 * strset.h - a set of strings compared without regard to ASCII case, for
 * dropping duplicate addresses among thousands (a broadcast alias reaches
 * every mailbox of a domain) in linear time.
 *
 * Owns: its index only.  Must not: own or copy the strings (they live in
 * the caller's arena or structure and must outlive the set).
 */
#ifndef SELOR_STRSET_H
#define SELOR_STRSET_H

#include <stddef.h>

struct strset {
    const char **slot;   /* open addressing; NULL = free */
    size_t cap, n;
};

#define STRSET_INIT {NULL, 0, 0}

/* 1 if s was added, 0 if an equal string was there already. */
int strset_add(struct strset *set, const char *s);
int strset_has(const struct strset *set, const char *s);
void strset_free(struct strset *set);

#endif
