/*
 * hash.h - FNV-1a, 64 bits: the one non-cryptographic hash of names that
 * must come out the same in every process and on every node (queue names
 * from paths, rate keys in shared memory, the rules' content hash).
 * Must not: be used where a client could choose colliding inputs to hurt
 * us (a table a client fills needs a keyed hash).
 */
#ifndef SELOR_HASH_H
#define SELOR_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_BASIS 14695981039346656037ULL

static inline uint64_t hash_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

static inline uint64_t hash_fnv1a_str(const char *s)
{
    uint64_t h = HASH_FNV_BASIS;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

#endif
