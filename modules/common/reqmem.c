/*
 * reqmem.c - copies into a lookup request's memory (see reqmem.h).
 */
#include <string.h>

#include "reqmem.h"

const char *reqmem_strdup(const struct selor_host *host, struct selor_lookup *req,
                          const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = host->alloc(req, n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}
