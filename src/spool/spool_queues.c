/*
 * spool_queues.c - the registry of queues (see spool_queues.h).
 *
 * Owns: queue names and directories, nothing on disk.  Must not: change
 * after the processes forked (it is read without locks by every thread),
 * create directories or touch queue files.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "hash.h"
#include "mem.h"
#include "log.h"
#include "spool_queues.h"

#define SQ_PATH_MAX 2048

struct sq_entry {
    char name[SPOOL_QUEUE_NAME_MAX];
    char *path;               /* normalised: no trailing or doubled slash */
};

static struct sq_entry *sq;
static size_t sq_n, sq_alloc;

/* Absolute, one slash between components, no "." component, no trailing
 * slash: the form two nodes agree on without asking the filesystem. */
static int sq_normalise(const char *path, char *out, size_t size)
{
    size_t o = 0;

    if (path == NULL || path[0] != '/')
        return -1;
    for (const char *p = path; *p; ) {
        size_t n;
        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.')) {
            p += n;
            continue;
        }
        if (o + 1 + n >= size)
            return -1;
        out[o++] = '/';
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

static const char *sq_add_named(const char *name, const char *norm)
{
    struct sq_entry *e;

    if (sq_n == sq_alloc) {
        sq_alloc = sq_alloc ? sq_alloc * 2 : 4;
        sq = mem_realloc(sq, sq_alloc * sizeof(*sq));
    }
    e = &sq[sq_n++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->path = mem_strdup(norm);
    return e->name;
}

/* A process that never called spool_queues_init (a tool, a unit test)
 * gets the loaded configuration's queues on first use. */
static void sq_ready(void)
{
    if (sq_n == 0 && selor_conf)
        spool_queues_init(selor_conf);
}

void spool_queues_init(const struct config *c)
{
    char norm[SQ_PATH_MAX], qlimit[SQ_PATH_MAX + 8];

    for (size_t i = 0; i < sq_n; i++)
        mem_free(sq[i].path);
    sq_n = 0;
    if (sq_normalise(c->Queue_path, norm, sizeof(norm)) < 0)
        snprintf(norm, sizeof(norm), "%s", c->Queue_path);   /* as config_load left it */
    snprintf(qlimit, sizeof(qlimit), "%s%sqlimit", norm, strcmp(norm, "/") ? "/" : "");
    sq_add_named("main", norm);
    sq_add_named("qlimit", qlimit);
}

static const struct sq_entry *sq_by_path(const char *norm)
{
    for (size_t i = 0; i < sq_n; i++)
        if (strcmp(sq[i].path, norm) == 0)
            return &sq[i];
    return NULL;
}

static const struct sq_entry *sq_by_name(const char *name)
{
    for (size_t i = 0; name && i < sq_n; i++)
        if (strcmp(sq[i].name, name) == 0)
            return &sq[i];
    return NULL;
}


const char *spool_queues_add(const char *path)
{
    char norm[SQ_PATH_MAX], name[SPOOL_QUEUE_NAME_MAX];
    const struct sq_entry *e;

    sq_ready();
    if (sq_normalise(path, norm, sizeof(norm)) < 0)
        return NULL;
    if ((e = sq_by_path(norm)) != NULL)
        return e->name;
    snprintf(name, sizeof(name), "q%012llx",
             (unsigned long long)(hash_fnv1a_str(norm) & 0xffffffffffffULL));
    if (sq_by_name(name))
        return NULL;   /* two paths, one hash: never seen, but never mixed up */
    return sq_add_named(name, norm);
}

int spool_queues_dir(const char *name, char *out, size_t size)
{
    const struct sq_entry *e;

    sq_ready();
    e = sq_by_name(name);
    if (e == NULL || (size_t)snprintf(out, size, "%s", e->path) >= size)
        return -1;
    return 0;
}

const char *spool_queues_for_path(const char *path)
{
    char norm[SQ_PATH_MAX];
    const struct sq_entry *e;

    sq_ready();
    if (sq_normalise(path, norm, sizeof(norm)) < 0)
        return NULL;
    e = sq_by_path(norm);
    return e ? e->name : NULL;
}

size_t spool_queues_count(void)
{
    sq_ready();
    return sq_n;
}

const char *spool_queues_name(size_t i)
{
    sq_ready();
    return i < sq_n ? sq[i].name : NULL;
}

const char *spool_queues_coord(const char *name)
{
    return name && strcmp(name, "qlimit") == 0 ? "qlimit" : "main";
}

const char *spool_queues_find(const char *coord, const char *qid, char *dir, size_t size)
{
    char path[SQ_PATH_MAX + 80];
    int first = 1;

    sq_ready();
    for (size_t i = 0; i < sq_n; i++) {
        if (coord && strcmp(spool_queues_coord(sq[i].name), coord) != 0)
            continue;
        if (first)
            snprintf(dir, size, "%s", sq[i].path);
        first = 0;
        snprintf(path, sizeof(path), "%s/l%s", sq[i].path, qid);
        if (access(path, F_OK) == 0) {
            snprintf(dir, size, "%s", sq[i].path);
            return sq[i].name;
        }
    }
    return NULL;
}

void spool_queues_check_new(const char *path, void *arg)
{
    (void)arg;
    if (spool_queues_for_path(path) == NULL)
        log_warn("rules: Def! Queue_path '%s' names a spool directory this node did not "
                 "set up at start; mail for it is refused until Selor restarts", path);
}
