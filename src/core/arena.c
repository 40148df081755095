/*
 * arena.c - bump allocator over a list of chunks (see arena.h).
 */
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "mem.h"

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    max_align_t data[];
};

void arena_init(struct arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 1024;
}

void *arena_alloc(struct arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    struct arena_chunk *c = a->head;
    size_t size;
    void *p;

    n = (n + align - 1) & ~(align - 1);
    if (c == NULL || c->size - c->used < n) {
        size = n > a->chunk_size ? n : a->chunk_size;
        c = mem_alloc(sizeof(*c) + size);
        c->used = 0;
        c->size = size;
        /* An oversized chunk goes second so the current one keeps serving. */
        if (n > a->chunk_size && a->head) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);

    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

void arena_clear(struct arena *a)
{
    struct arena_chunk *c, *next;

    for (c = a->head; c; c = next) {
        next = c->next;
        mem_free(c);
    }
    a->head = NULL;
}
