/*
 * mem.h - allocation that never returns NULL.
 *
 * Owns: the process's answer to out-of-memory (log and abort; a mail server
 * that limps on without memory corrupts queues).  Must not: hide allocation
 * failure behind a NULL that callers forget to test.
 */
#ifndef SELOR_MEM_H
#define SELOR_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_zalloc(size_t n);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void mem_free(void *p);

#endif
