/*
 * reqmem.h - copies into a lookup request's own memory (host->alloc), so
 * that an answer stays valid after the module's data changes or its
 * database row is freed.  Shared by the account modules.
 *
 * Owns: nothing.  Must not: allocate anything but through host->alloc.
 */
#ifndef SELOR_REQMEM_H
#define SELOR_REQMEM_H

#include "selor_module.h"

#pragma GCC visibility push(hidden)

/* A copy of s freed with req, or NULL when out of memory. */
const char *reqmem_strdup(const struct selor_host *host, struct selor_lookup *req,
                          const char *s);

#pragma GCC visibility pop

#endif
