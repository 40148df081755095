/*
 * fuzz_config.c - selor.conf (src/core/config.h, src/core/config_options.h).
 *
 * Input: the text of a selor.conf, written to a memfd and loaded with
 * config_load("/proc/self/fd/N").
 *
 * Invariants:
 *  - either a config, or NULL with exactly one line "PATH:LINE: message",
 *    LINE between 1 and the file's line count; every warning line has the
 *    same form; config_free always, and nothing leaks (LeakSanitizer);
 *  - a loaded config: every number within its option's [min, max], every
 *    text set, every recorded line within the file, Msg_* texts start with
 *    a reply code, Timezone is "" or +-HHMM;
 *  - written back out (every option, the Module list and the unknown
 *    options, in selor.conf syntax) and loaded again, it is the same
 *    configuration, without errors or warnings;
 *  - config_check_extras fails on the first unknown option no module
 *    claims, with "PATH:LINE: unknown option NAME" (or "NAME takes ..."
 *    when claimed with the wrong type), and passes when all are claimed;
 *  - the queue registry (spool_queues_init) gives "main" Queue_path
 *    normalised (no trailing, doubled or "." components) and "qlimit" that
 *    plus "/qlimit", and knows Queue_path however written as "main";
 *    config_ctl_path ends in ".ctl".
 */
#include <ctype.h>

#include "fuzz_util.h"
#include "spool_queues.h"
#include "buf.h"
#include "config.h"

#define LINE_MAX_CONF 8190  /* the longest line config.c reads */

/* "PATH:LINE: message", one line, LINE in 1..lines; returns LINE. */
static long check_located(const char *msg, size_t len, const char *path, long lines)
{
    size_t pl = strlen(path);
    char *end;
    long line;

    if (len < pl + 4 || memcmp(msg, path, pl) != 0 || msg[pl] != ':') {
        fuzz_dump("message", msg, len);
        CHECK(!"a message without its PATH:LINE: prefix");
    }
    line = strtol(msg + pl + 1, &end, 10);
    CHECK(end > msg + pl + 1 && end[0] == ':' && end[1] == ' ');
    if (line < 1 || line > lines) {
        fuzz_dump("message", msg, len);
        fprintf(stderr, "the file has %ld lines\n", lines);
        CHECK(!"a message names a line outside the file");
    }
    CHECK(memchr(msg, '\n', len) == NULL);
    return line;
}

static void put_text(struct buf *out, const char *name, const char *v)
{
    buf_printf(out, "%s \"", name);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *v);
    }
    buf_puts(out, "\"\n");
}

/* The configuration in selor.conf syntax. */
static void write_back(const struct config *c, struct buf *out)
{
#define CONF_NUM(f, n, d, lo, hi, fl) buf_printf(out, "%s %ld\n", n, c->f);
#define CONF_TEXT(f, n, d, fl) \
    if (!((fl) & CONF_F_LIST)) \
        put_text(out, n, c->f);
#include "config_options.h"
    for (size_t i = 0; i < c->nmodules; i++)
        put_text(out, "Module", c->modules[i]);
    for (size_t i = 0; i < c->nextra; i++) {
        if (c->extra[i].quoted)
            put_text(out, c->extra[i].name, c->extra[i].value);
        else  /* a comment after it: a word may end in a CR */
            buf_printf(out, "%s %s #\n", c->extra[i].name, c->extra[i].value);
    }
}

static void check_config(const struct config *c, long lines)
{
#define CONF_NUM(f, n, d, lo, hi, fl) CHECK(c->f >= (lo) && c->f <= (hi));
#define CONF_TEXT(f, n, d, fl) CHECK(c->f != NULL);
#include "config_options.h"
    for (int i = 0; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        CHECK(o != NULL && c->line[i] >= 0 && c->line[i] <= lines);
        CHECK(config_option_index(o->name) == i);
    }
    for (size_t i = 0; i < c->nextra; i++) {
        CHECK(c->extra[i].line >= 1 && c->extra[i].line <= lines);
        CHECK(config_option_index(c->extra[i].name) < 0);
        CHECK(isalpha((unsigned char)c->extra[i].name[0]));
    }
#define CONF_NUM(f, n, d, lo, hi, fl)
#define CONF_TEXT(f, n, d, fl) \
    if (strncmp(n, "Msg_", 4) == 0 && strcmp(n, "Msg_cannot_connect") != 0 && \
        strcmp(n, "Msg_cannot_resolve") != 0) \
        CHECK(c->f[0] >= '2' && c->f[0] <= '5' && isdigit((unsigned char)c->f[1]) && \
              isdigit((unsigned char)c->f[2]) && (c->f[3] == ' ' || c->f[3] == '\0'));
#include "config_options.h"
    CHECK(c->Timezone[0] == '\0' || (strlen(c->Timezone) == 5 && c->tz_set));
    CHECK(c->tz_offset >= -15 * 3600 && c->tz_offset <= 15 * 3600);
}

static void check_same(const struct config *a, const struct config *b)
{
#define CONF_NUM(f, n, d, lo, hi, fl) CHECK(a->f == b->f);
#define CONF_TEXT(f, n, d, fl) CHECK(strcmp(a->f, b->f) == 0);
#include "config_options.h"
    CHECK(a->nmodules == b->nmodules);
    for (size_t i = 0; i < a->nmodules; i++)
        CHECK(strcmp(a->modules[i], b->modules[i]) == 0);
    CHECK(a->nextra == b->nextra);
    for (size_t i = 0; i < a->nextra; i++) {
        CHECK(strcmp(a->extra[i].name, b->extra[i].name) == 0);
        CHECK(strcmp(a->extra[i].value, b->extra[i].value) == 0);
        CHECK(a->extra[i].quoted == b->extra[i].quoted);
    }
    CHECK(a->tz_set == b->tz_set && a->tz_offset == b->tz_offset);
}

/* Writes c back out, loads that, and compares. */
static void round_trip(const struct config *c)
{
    struct buf text = BUF_INIT(0), err = BUF_INIT(0), warn = BUF_INIT(0);
    char path[64];
    const char *p, *nl;
    struct config *again;
    int fd;

    write_back(c, &text);
    for (p = buf_cstr(&text); (nl = strchr(p, '\n')) != NULL; p = nl + 1)
        if (nl - p > LINE_MAX_CONF)
            goto out;  /* escaping made a line too long to be read back */
    fd = fuzz_memfd(text.data, text.len, path, sizeof(path));
    again = config_load(path, &err, &warn);
    if (again == NULL) {
        fuzz_dump("written back", text.data, text.len);
        fprintf(stderr, "error: %s\n", buf_cstr(&err));
        CHECK(!"a loaded configuration, written back, does not load");
    }
    CHECK(warn.len == 0);
    check_same(c, again);
    config_free(again);
    close(fd);
out:
    buf_free(&text);
    buf_free(&err);
    buf_free(&warn);
}

/* A module claims names by length: 1 claimed, -1 wrong type, 0 unknown. */
static int claim(const char *name, int quoted, void *arg)
{
    int k = (int)(strlen(name) % 3);

    return arg == NULL ? 0 : k == 0 ? 1 : k == 1 ? -1 : 0;
}

/* config_check_extras fails on the first extra not claimed, saying why. */
static void check_extras(const struct config *c, const char *path)
{
    struct buf err = BUF_INIT(0);

    for (int with = 0; with <= 1; with++) {
        const struct config_extra *e = NULL;
        char want[600];
        int r;

        for (size_t i = 0; i < c->nextra && !e; i++)
            if (claim(c->extra[i].name, 0, with ? &err : NULL) <= 0)
                e = &c->extra[i];
        buf_reset(&err);
        r = config_check_extras(c, claim, with ? &err : NULL, &err);
        CHECK(r == (e ? -1 : 0));
        if (e == NULL)
            continue;
        CHECK(config_extra_find(c, e->name) != NULL);
        snprintf(want, sizeof(want), "%s:%d: %s %s", path, e->line,
                 claim(e->name, 0, with ? &err : NULL) < 0 ? e->name : "unknown option",
                 claim(e->name, 0, with ? &err : NULL) < 0 ? "takes" : e->name);
        CHECK(strncmp(buf_cstr(&err), want, strlen(want)) == 0);
    }
    buf_free(&err);
}

/* Queue directories normalised; the control socket. */
static void check_dirs(const struct config *c)
{
    char main[16384], ql[16384], ctl[16384], again[16384];  /* longer than any line */
    size_t n;

    config_ctl_path(c, ctl, sizeof(ctl));
    n = strlen(ctl);
    CHECK(n >= 4 && strcmp(ctl + n - 4, ".ctl") == 0);
    if (c->Queue_path[0] != '/' || strlen(c->Queue_path) > 1500)
        return;   /* a path the registry does not normalise */
    spool_queues_init(c);
    CHECK(spool_queues_count() == 2);
    CHECK(spool_queues_dir("main", main, sizeof(main)) == 0);
    CHECK(spool_queues_dir("qlimit", ql, sizeof(ql)) == 0);
    n = strlen(main);
    CHECK(main[0] == '/' && (n == 1 || main[n - 1] != '/'));
    CHECK(strstr(main, "//") == NULL && strstr(main, "/./") == NULL);
    CHECK(strncmp(ql, main, n) == 0 &&
          strcmp(ql + n, n == 1 ? "qlimit" : "/qlimit") == 0);
    snprintf(again, sizeof(again), "%s//./", c->Queue_path);
    CHECK(strcmp(spool_queues_add(again), "main") == 0);
    CHECK(spool_queues_count() == 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    long lines = fuzz_lines((const char *)data, size);
    char path[64];
    struct config *c;
    int fd = fuzz_memfd((const char *)data, size, path, sizeof(path));

    c = config_load(path, &err, &warn);
    for (const char *p = buf_cstr(&warn), *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        CHECK(nl != NULL);  /* one warning a line, each ended */
        check_located(p, (size_t)(nl - p), path, lines);
    }
    if (c == NULL) {
        CHECK(err.len > 0);
        check_located(err.data, err.len, path, lines);
    } else {
        CHECK(err.len == 0);
        CHECK(strcmp(c->path, path) == 0);
        check_config(c, lines);
        round_trip(c);
        check_extras(c, path);
        check_dirs(c);
        config_free(c);
    }
    close(fd);
    buf_free(&err);
    buf_free(&warn);
    return 0;
}
