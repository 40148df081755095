/*
 * mem.c - allocation that never returns NULL (see mem.h).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

static void *mem_check(void *p, size_t n)
{
    if (p == NULL && n != 0)
        log_panic("out of memory allocating %zu bytes", n);
    return p;
}

void *mem_alloc(size_t n)
{
    return mem_check(malloc(n ? n : 1), n);
}

void *mem_zalloc(size_t n)
{
    return mem_check(calloc(1, n ? n : 1), n);
}

void *mem_realloc(void *p, size_t n)
{
    return mem_check(realloc(p, n ? n : 1), n);
}

char *mem_strdup(const char *s)
{
    return mem_strndup(s, strlen(s));
}

char *mem_strndup(const char *s, size_t n)
{
    char *d = mem_alloc(n + 1);

    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void mem_free(void *p)
{
    free(p);
}
