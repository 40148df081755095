/*
 * milter_head.c - the header section milters change (see milter_head.h).
 *
 * A value coming from a milter is cleaned before it is kept: CR LF and CR
 * become LF, a line break must be followed by whitespace (else it would
 * start a field of the milter's making, or end the section), no line is
 * whitespace alone (some readers take it for the empty line), and control
 * characters other than tab go.  Nothing a milter sends can make the
 * section longer than MILTER_HEAD_MAX_FIELDS fields.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "milter_head.h"

void milter_head_init(struct milter_head *h)
{
    memset(h, 0, sizeof(*h));
    arena_init(&h->mem, 4096);
}

void milter_head_free(struct milter_head *h)
{
    mem_free(h->f);
    arena_clear(&h->mem);
    memset(h, 0, sizeof(*h));
}

/* RFC 5322 field name: printable US-ASCII but colon. */
static size_t milter_head_name_len(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
        i++;
    return i;
}

static int milter_head_name_ok(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n <= 200 && milter_head_name_len(name, n) == n;
}

static int milter_head_grow(struct milter_head *h)
{
    if (h->n >= MILTER_HEAD_MAX_FIELDS)
        return -1;
    if (h->n == h->alloc) {
        h->alloc = h->alloc ? h->alloc * 2 : 32;
        h->f = mem_realloc(h->f, h->alloc * sizeof(*h->f));
    }
    return 0;
}

size_t milter_head_parse(struct milter_head *h, const char *content, size_t len)
{
    size_t at = 0;

    while (at < len) {
        const char *line = content + at;
        const char *nl = memchr(line, '\n', len - at);
        size_t n = nl ? (size_t)(nl - line) : len - at;
        size_t name = milter_head_name_len(line, n);
        size_t end = at + n + (nl != NULL);

        if (n == 0)
            return end;                       /* the empty line */
        if (name == 0 || name == n || line[name] != ':' || milter_head_grow(h) < 0)
            return at;                        /* not a field: the body starts */
        /* continuation lines belong to the field */
        while (end < len && (content[end] == ' ' || content[end] == '\t')) {
            const char *next = memchr(content + end, '\n', len - end);
            end = next ? (size_t)(next - content) + 1 : len;
        }
        h->f[h->n].name = arena_strndup(&h->mem, line, name);
        h->f[h->n].value = arena_strndup(&h->mem, line + name + 1,
                                         end - at - name - 1 - (content[end - 1] == '\n'));
        h->n++;
        at = end;
    }
    return at;
}

const char *milter_head_value(const struct milter_head_field *f, int leadspc)
{
    const char *v = f->value;

    if (!leadspc)
        while (*v == ' ' || *v == '\t')
            v++;
    return v;
}

/* A milter's value made safe to write: see the file comment.  A value
 * without leading whitespace gets the usual one space. */
static const char *milter_head_clean(struct milter_head *h, const char *v)
{
    size_t n = strlen(v);
    char *out = arena_alloc(&h->mem, 2 * n + 2), *o = out;

    if (*v != ' ' && *v != '\t')
        *o++ = ' ';
    for (const char *p = v; *p; p++) {
        if (*p == '\r' && p[1] == '\n')
            continue;
        if (*p == '\r' || *p == '\n') {
            if (o - out >= 2 && o[-1] == '\t' && o[-2] == '\n')
                continue;   /* no line of whitespace alone: it reads as empty */
            *o++ = '\n';
            if (p[1] != ' ' && p[1] != '\t')
                *o++ = '\t';
            continue;
        }
        if ((unsigned char)*p < 32 && *p != '\t')
            continue;
        *o++ = *p;
    }
    while (o > out && (o[-1] == '\n' || o[-1] == '\t' || o[-1] == ' '))
        o--;
    *o = '\0';
    return out;
}

int milter_head_insert(struct milter_head *h, size_t idx, const char *name,
                       const char *value)
{
    if (!milter_head_name_ok(name) || milter_head_grow(h) < 0)
        return -1;
    if (idx > h->n)
        idx = h->n;
    memmove(h->f + idx + 1, h->f + idx, (h->n - idx) * sizeof(*h->f));
    h->f[idx].name = arena_strdup(&h->mem, name);
    h->f[idx].value = milter_head_clean(h, value);
    h->n++;
    h->changed = 1;
    return 0;
}

int milter_head_add(struct milter_head *h, const char *name, const char *value)
{
    return milter_head_insert(h, h->n, name, value);
}

int milter_head_change(struct milter_head *h, const char *name, size_t idx,
                       const char *value)
{
    size_t seen = 0;

    if (!milter_head_name_ok(name))
        return -1;
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->f[i].name, name) != 0 || ++seen != (idx ? idx : 1))
            continue;
        if (value[0] == '\0') {
            memmove(h->f + i, h->f + i + 1, (h->n - i - 1) * sizeof(*h->f));
            h->n--;
        } else {
            h->f[i].value = milter_head_clean(h, value);
        }
        h->changed = 1;
        return 0;
    }
    return value[0] ? milter_head_add(h, name, value) : 0;
}

void milter_head_format(const struct milter_head *h, struct buf *out)
{
    for (size_t i = 0; i < h->n; i++)
        buf_printf(out, "%s:%s\n", h->f[i].name, h->f[i].value);
    buf_putc(out, '\n');
}
