/*
 * arena.h - memory tied to the life of one thing (a session, a transaction,
 * a parsed queue file), freed in one call.
 *
 * Owns: small allocations that share a lifetime.  Must not: be used for
 * memory that outlives its owner, or for large buffers that grow (use buf).
 */
#ifndef SELOR_ARENA_H
#define SELOR_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head;
    size_t chunk_size;
};

void arena_init(struct arena *a, size_t chunk_size);
void *arena_alloc(struct arena *a, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees everything allocated so far; the arena can be used again. */
void arena_clear(struct arena *a);

#endif
