/*
 * milter_head.h - a message's header section as milters see and change
 * it: the fields in order, each a name and its raw value.
 *
 * Owns: where the header section of the content ends (the first empty
 * line, or the first line that is neither a field nor a continuation),
 * the three header changes of the milter protocol (add, insert at a
 * position, change or delete the n-th field of a name) with the checks
 * that keep the result a valid header section, and writing it back in the
 * spool's form (LF line ends).  Must not: do I/O or know the protocol's
 * wire format.
 */
#ifndef SELOR_MILTER_HEAD_H
#define SELOR_MILTER_HEAD_H

#include <stddef.h>

#include "arena.h"
#include "buf.h"

#define MILTER_HEAD_MAX_FIELDS 10000   /* fields a section may end up with */

struct milter_head_field {
    const char *name;
    const char *value;   /* after the colon, as written: leading space, folds with LF */
};

struct milter_head {
    struct milter_head_field *f;
    size_t n, alloc;
    int changed;          /* a change was made: the content must be rewritten */
    struct arena mem;
};

void milter_head_init(struct milter_head *h);
void milter_head_free(struct milter_head *h);
/*
 * Reads the fields at the start of content (LF line ends).  Returns the
 * length of the header section including the empty line that ends it: the
 * body starts there.  A section cut short (len reached) is taken whole.
 */
size_t milter_head_parse(struct milter_head *h, const char *content, size_t len);
/* The value as a milter is given it: without the whitespace after the
 * colon unless leadspc. */
const char *milter_head_value(const struct milter_head_field *f, int leadspc);
/* 0, or -1 when name or value could not be a field (nothing changes). */
int milter_head_add(struct milter_head *h, const char *name, const char *value);
/* Before field idx (0: first; past the end: last). */
int milter_head_insert(struct milter_head *h, size_t idx, const char *name,
                       const char *value);
/* The idx-th (from 1) field called name gets value; an empty value
 * deletes it; a field that is not there is added (libmilter's rule). */
int milter_head_change(struct milter_head *h, const char *name, size_t idx,
                       const char *value);
/* The section in the spool's form, with the empty line that ends it. */
void milter_head_format(const struct milter_head *h, struct buf *out);

#endif
