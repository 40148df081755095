/*
 * rules_set.c - every rules file a configuration can reach, as one
 * generation, and its reload.
 *
 * Owns: which files are loaded: the value of each Event.* option, and the
 * value of every Def! of an Event.* option found in a loaded file (so a
 * per-network file a connection rule switches to is checked at start, for
 * the event that will run it); reading them (a value starting with / is a
 * file, any other is one inline rule); the generation's reference count (a
 * session keeps the generation it started with); the check every 2 s and
 * on SIGHUP, where a file that no longer loads keeps its previous version.
 * Must not: evaluate rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hash.h"
#include "log.h"
#include "mem.h"
#include "rules_int.h"

#define RULES_FILE_MAX (16 << 20)
#define RULES_WATCH_MS 2000

struct rules_set {
    unsigned refs;
    struct rules_file **files;
    size_t nfiles;
    char hash[20];
};

struct rules_set *rules_current;

static const int rules_event_idx[RULES_NEVENTS] = {
    CONF_IDX_Event_limit, CONF_IDX_Event_connection, CONF_IDX_Event_helo,
    CONF_IDX_Event_auth, CONF_IDX_Event_from, CONF_IDX_Event_rcpt,
    CONF_IDX_Event_lrcpt_refused, CONF_IDX_Event_data_cmd, CONF_IDX_Event_data,
    CONF_IDX_Event_qstart_process, CONF_IDX_Event_qend_process,
    CONF_IDX_Event_error_report, CONF_IDX_Event_dl_rcpt,
};

const char *rules_event_name(enum rules_event ev)
{
    return config_option(rules_event_idx[ev])->name;
}

int rules_event_option(enum rules_event ev)
{
    return rules_event_idx[ev];
}

static int rules_event_of_option(int idx)
{
    for (int e = 0; e < RULES_NEVENTS; e++)
        if (rules_event_idx[e] == idx)
            return e;
    return -1;
}

/* ---- reading one file ---- */

static int rules_read(const char *path, struct buf *text, struct stat *st, struct buf *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char chunk[65536];
    ssize_t n;

    if (fd < 0 || fstat(fd, st) < 0) {
        buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        if (text->len + (size_t)n > RULES_FILE_MAX) {
            buf_printf(err, "%s: larger than %d bytes", path, RULES_FILE_MAX);
            close(fd);
            return -1;
        }
        buf_append(text, chunk, (size_t)n);
    }
    close(fd);
    if (n < 0) {
        buf_printf(err, "%s: read error: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static struct rules_file *rules_file_load(const char *spec, unsigned events,
                                          struct buf *err)
{
    struct buf text = BUF_INIT(0);
    struct stat st;
    struct rules_file *f;
    int is_file = spec[0] == '/';

    memset(&st, 0, sizeof(st));
    buf_reset(err);
    if (is_file && rules_read(spec, &text, &st, err) < 0) {
        buf_free(&text);
        return NULL;
    }
    if (!is_file)
        buf_append(&text, spec, strlen(spec));
    f = rules_parse(spec, is_file ? spec : NULL, text.data ? text.data : "", text.len,
                    events, err);
    if (f) {
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->size = st.st_size;
        f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        f->hash = hash_fnv1a(HASH_FNV_BASIS, text.data, text.len);
    }
    buf_free(&text);
    return f;
}

/* A change younger than this may be an editor still writing the file
 * (truncated, half written): it is read a little later. */
#define RULES_SETTLE_NS 300000000LL

static int rules_unsettled;   /* a change was seen too young to read */
static int rules_forced;      /* SIGHUP: the operator says the files are ready */

/* Has the file changed on disk since f was read (and settled)? */
static int rules_file_changed(const struct rules_file *f)
{
    struct stat st;
    struct timespec now;
    int64_t m;

    if (f->path == NULL)
        return 0;
    if (stat(f->path, &st) < 0)
        return 1;
    m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (st.st_dev == f->dev && st.st_ino == f->ino && st.st_size == f->size &&
        m == f->mtime_ns)
        return 0;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!rules_forced && (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - m < RULES_SETTLE_NS) {
        rules_unsettled = 1;
        return 0;
    }
    return 1;
}

/* ---- building a generation ---- */

struct rules_build {
    struct rules_set *set, *old;
    const char *specs[RULES_MAX_FILES];
    unsigned events[RULES_MAX_FILES];
    size_t nspecs;
    int reloading;
    struct buf *err;
    struct arena mem;   /* the specs: a Def!'s value lives in a file that may go */
};

static int rules_want(struct rules_build *b, const char *spec, unsigned events)
{
    for (size_t i = 0; i < b->nspecs; i++)
        if (strcmp(b->specs[i], spec) == 0) {
            int grown = (b->events[i] | events) != b->events[i];
            b->events[i] |= events;
            return grown;
        }
    if (b->nspecs >= RULES_MAX_FILES) {
        buf_printf(b->err, "more than %d rules files", RULES_MAX_FILES);
        return -1;
    }
    b->specs[b->nspecs] = arena_strdup(&b->mem, spec);
    b->events[b->nspecs++] = events;
    return 1;
}

static struct rules_file *rules_old(const struct rules_set *old, const char *spec)
{
    for (size_t i = 0; old && i < old->nfiles; i++)
        if (strcmp(old->files[i]->spec, spec) == 0)
            return old->files[i];
    return NULL;
}

/* A broken edit is reported once, not at every look. */
static int rules_bad_news(struct rules_file *old)
{
    struct stat st;
    int64_t m;

    if (old->path == NULL)
        return 1;
    if (stat(old->path, &st) < 0) {   /* gone: said once too */
        if (old->bad_size == -1)
            return 0;
        old->bad_size = -1;
        return 1;
    }
    m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (m == old->bad_mtime_ns && st.st_size == old->bad_size)
        return 0;
    old->bad_mtime_ns = m;
    old->bad_size = st.st_size;
    return 1;
}

/* The file for spec i: the old one when unchanged, else read again. */
static struct rules_file *rules_get(struct rules_build *b, size_t i)
{
    struct rules_file *old = rules_old(b->old, b->specs[i]), *f;

    if (old && old->events == b->events[i] && !rules_file_changed(old)) {
        old->refs++;
        return old;
    }
    f = rules_file_load(b->specs[i], b->events[i], b->err);
    if (f) {
        f->refs = 1;
        if (b->reloading)
            log_info("rules: %s loaded again (%zu rules)", f->path ? f->path : "inline rule",
                     f->nrules);
        return f;
    }
    if (!b->reloading || old == NULL)
        return NULL;
    if (rules_bad_news(old))
        log_warn("rules: %s (the previous version stays in use)", buf_cstr(b->err));
    old->refs++;
    return old;
}

/* The Def!s of f that name further files or queues. */
static int rules_follow(struct rules_build *b, const struct rules_file *f,
                        void (*queue_path)(const char *, void *), void *arg)
{
    int grown = 0;

    for (size_t r = 0; r < f->nrules; r++)
        for (size_t k = 0; k < f->rules[r].nitems; k++) {
            const struct rules_item *it = &f->rules[r].items[k];
            int ev;
            if (it->op != RULES_A_DEF)
                continue;
            if (it->u.def.idx == CONF_IDX_Queue_path && queue_path)
                queue_path(it->u.def.value, arg);
            ev = rules_event_of_option(it->u.def.idx);
            if (ev >= 0 && it->u.def.value[0]) {
                int g = rules_want(b, it->u.def.value, RULES_EVBIT(ev));
                if (g < 0)
                    return -1;
                grown |= g;
            }
        }
    return grown;
}

static void rules_set_free(struct rules_set *s)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (--s->files[i]->refs == 0)
            rules_file_free(s->files[i]);
    mem_free(s->files);
    mem_free(s);
}

static struct rules_set *rules_build(struct rules_build *b, const struct config *c,
                                     void (*queue_path)(const char *, void *), void *arg)
{
    uint64_t h = HASH_FNV_BASIS;
    int grown = 1;

    for (int e = 0; e < RULES_NEVENTS; e++) {
        const char *v = config_value_text(c, rules_event_idx[e], NULL, 0);
        if (v[0] && rules_want(b, v, RULES_EVBIT(e)) < 0)
            return NULL;
    }
    /* A Def! may name a file, or widen the events of one: until stable. */
    while (grown) {
        grown = 0;
        for (size_t i = 0; i < b->set->nfiles; i++)
            if (--b->set->files[i]->refs == 0)
                rules_file_free(b->set->files[i]);
        b->set->nfiles = 0;
        for (size_t i = 0; i < b->nspecs; i++) {
            struct rules_file *f = rules_get(b, i);
            int g;
            if (f == NULL)
                return NULL;
            b->set->files[b->set->nfiles++] = f;
            if ((g = rules_follow(b, f, queue_path, arg)) < 0)
                return NULL;
            grown |= g;
        }
    }
    for (size_t i = 0; i < b->set->nfiles; i++)
        h = hash_fnv1a(h, &b->set->files[i]->hash, sizeof(uint64_t));
    snprintf(b->set->hash, sizeof(b->set->hash), "%016llx", (unsigned long long)h);
    return b->set;
}

static struct rules_set *rules_make(const struct config *c, struct rules_set *old,
                                    struct buf *err,
                                    void (*queue_path)(const char *, void *), void *arg)
{
    struct rules_build b = {0};
    struct rules_set *s = mem_zalloc(sizeof(*s));

    s->refs = 1;
    s->files = mem_zalloc(RULES_MAX_FILES * sizeof(*s->files));
    b.set = s;
    b.old = old;
    b.reloading = old != NULL;
    b.err = err;
    arena_init(&b.mem, 1024);
    if (rules_build(&b, c, queue_path, arg) == NULL) {
        rules_set_free(s);
        s = NULL;
    }
    arena_clear(&b.mem);
    return s;
}

struct rules_set *rules_load(const struct config *c, struct buf *err,
                             void (*queue_path)(const char *path, void *arg), void *arg)
{
    return rules_make(c, NULL, err, queue_path, arg);
}

static void (*rules_reload_queue_path)(const char *path, void *arg);
static int (*rules_def_check)(int idx, const char *value, struct buf *why, void *arg);
static void *rules_def_check_arg;

void rules_set_def_check(int (*check)(int idx, const char *value, struct buf *why, void *arg),
                         void *arg)
{
    rules_def_check = check;
    rules_def_check_arg = arg;
}

struct rules_set *rules_reload(struct rules_set *old, const struct config *c)
{
    struct buf err = BUF_INIT(0);
    struct rules_set *s = rules_make(c, old, &err, rules_reload_queue_path, NULL);

    static char last_refused[20];   /* a set refused once is not reported again */

    if (s && rules_def_check &&
        rules_check_defs(s, rules_def_check, rules_def_check_arg, &err) < 0) {
        int again = strcmp(last_refused, s->hash) == 0;
        snprintf(last_refused, sizeof(last_refused), "%s", s->hash);
        rules_set_free(s);
        s = NULL;
        if (again)
            buf_reset(&err);
    }
    if (s == NULL && err.len)
        log_warn("rules: %s (the previous rules stay in use)", buf_cstr(&err));
    buf_free(&err);
    if (s && old && strcmp(s->hash, old->hash) == 0 && s->nfiles == old->nfiles) {
        int same = 1;
        for (size_t i = 0; i < s->nfiles; i++)
            same &= s->files[i] == old->files[i];
        if (same) {
            rules_set_free(s);
            return NULL;
        }
    }
    return s;
}

struct rules_set *rules_ref(struct rules_set *set)
{
    if (set)
        set->refs++;
    return set;
}

void rules_unref(struct rules_set *set)
{
    if (set && --set->refs == 0)
        rules_set_free(set);
}

int rules_check_defs(const struct rules_set *set,
                     int (*check)(int idx, const char *value, struct buf *why, void *arg),
                     void *arg, struct buf *err)
{
    struct buf why = BUF_INIT(0);

    for (size_t i = 0; set && i < set->nfiles; i++) {
        const struct rules_file *f = set->files[i];
        for (size_t r = 0; r < f->nrules; r++)
            for (size_t k = 0; k < f->rules[r].nitems; k++) {
                const struct rules_item *it = &f->rules[r].items[k];
                if (it->op != RULES_A_DEF)
                    continue;
                buf_reset(&why);
                if (check(it->u.def.idx, it->u.def.value, &why, arg) < 0) {
                    buf_printf(err, "%s:%d:%d: Def!: %s", f->path ? f->path : "(inline rule)",
                               it->line, it->col, buf_cstr(&why));
                    buf_free(&why);
                    return -1;
                }
            }
    }
    buf_free(&why);
    return 0;
}

const char *rules_hash(const struct rules_set *set)
{
    return set && set->nfiles ? set->hash : "-";
}

const struct rules_file *rules_for(const struct rules_set *set, const char *spec)
{
    if (set == NULL || spec == NULL || spec[0] == '\0')
        return NULL;
    for (size_t i = 0; i < set->nfiles; i++)
        if (strcmp(set->files[i]->spec, spec) == 0)
            return set->files[i];
    return NULL;
}

size_t rules_count(const struct rules_file *f)
{
    return f ? f->nrules : 0;
}

/* ---- the watch ---- */

static struct {
    uv_timer_t timer;
    const struct config *conf;
    int running;
    void (*changed)(void *arg);
    void *arg;
} rules_watch;

static void rules_watch_look(int forced)
{
    struct rules_set *s;

    if (rules_watch.conf == NULL)
        return;
    rules_forced = forced;
    s = rules_reload(rules_current, rules_watch.conf);
    rules_forced = 0;
    if (s == NULL)
        return;
    rules_unref(rules_current);
    rules_current = s;
    log_info("rules: now %s", rules_hash(s));
    if (rules_watch.changed)
        rules_watch.changed(rules_watch.arg);
}

void rules_watch_now(void)
{
    rules_watch_look(1);
}

static void rules_watch_tick(uv_timer_t *t)
{
    (void)t;
    rules_unsettled = 0;
    rules_watch_look(0);
    if (rules_unsettled)   /* look again once the writer is done */
        uv_timer_start(&rules_watch.timer, rules_watch_tick, RULES_SETTLE_NS / 1000000 + 100,
                       RULES_WATCH_MS);
}

void rules_watch_start(uv_loop_t *loop, const struct config *c,
                       void (*changed)(void *arg), void *arg,
                       void (*queue_path)(const char *path, void *arg))
{
    rules_watch.conf = c;
    rules_watch.changed = changed;
    rules_watch.arg = arg;
    rules_reload_queue_path = queue_path;
    if (rules_current && rules_current->nfiles)
        log_info("rules: %s (%zu file%s)", rules_hash(rules_current), rules_current->nfiles,
                 rules_current->nfiles == 1 ? "" : "s");
    if (changed)
        changed(arg);
    uv_timer_init(loop, &rules_watch.timer);
    uv_timer_start(&rules_watch.timer, rules_watch_tick, RULES_WATCH_MS, RULES_WATCH_MS);
    uv_unref((uv_handle_t *)&rules_watch.timer);
    rules_watch.running = 1;
}

void rules_watch_stop(void)
{
    if (rules_watch.running && !uv_is_closing((uv_handle_t *)&rules_watch.timer))
        uv_close((uv_handle_t *)&rules_watch.timer, NULL);
    rules_watch.running = 0;
}
