/*
 * selor_passwd.c - the "passwd" account module: local domains, mailboxes,
 * aliases and logins from a Dovecot-style passwd-file (Passwd_file) and,
 * when that file says so (*@domain:{SYSTEM}), from the system's passwd
 * file (Passwd_system).  See docs/modules.md for the file format.
 *
 * Owns: parsing the files into hash tables, answering DOMAIN, MAILBOX,
 * ALIAS and AUTH lookups from them, checking passwords (crypt and the
 * shadow database in libuv's thread pool, never on the loop thread), and
 * reloading Passwd_file when it changes (parsed in the thread pool, the
 * tables swapped on the loop thread).
 * Must not: include Selor's internal headers (only selor_module.h and
 * libuv), keep global mutable state (everything lives in struct pw_state),
 * read files or run crypt on the loop thread once attached, or touch a
 * request after cancel() or after calling its done().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <shadow.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "selor_module.h"
#include "../common/pwscheme.h"
#include "../common/reqmem.h"

#define PW_FIELDS 8            /* user:password:uid:gid:gecos:home:shell:extra */
#define PW_KEY_MAX 512         /* longest user@domain (or login) accepted */
#define PW_LINE_MAX (SELOR_ALIAS_MAX_TARGETS * 256 + 4096)
#define PW_PASSWORD_MAX 1024   /* longer passwords are refused unchecked */
#define PW_RELOAD_MS 2000      /* how often Passwd_file is looked at */
#define PW_CHUNK 65536         /* string pool chunk */
#define PW_SHADOW_BUF 4096
#define PW_SHADOW_FILE "/etc/shadow"
#define PW_FIRST_USER_UID 1000
#define PW_NOBODY_UID 65534
#define PW_ID_MAX 4294967294L  /* (uid_t)-1 means "none" */
#define PW_EOPEN (-2)          /* pw_load: the file could not be opened */

#define PW_CONTAINER(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ---- string pool: every string and entry of one table ---------------- */

struct pw_chunk {
    struct pw_chunk *next;
    size_t used, size;
    max_align_t data[];
};

struct pw_pool {
    struct pw_chunk *head;
};

static struct pw_chunk *pw_chunk_new(size_t size)
{
    struct pw_chunk *c = malloc(sizeof(*c) + size);

    if (c != NULL) {
        c->used = 0;
        c->size = size;
        c->next = NULL;
    }
    return c;
}

static void *pw_pool_alloc(struct pw_pool *pool, size_t n)
{
    struct pw_chunk *c = pool->head;
    size_t align = sizeof(max_align_t);

    n = (n + align - 1) / align * align;
    if (n > PW_CHUNK / 4 && c != NULL) {
        /* A big block gets its own chunk, behind the current one. */
        struct pw_chunk *big = pw_chunk_new(n);
        if (big == NULL)
            return NULL;
        big->used = n;
        big->next = c->next;
        c->next = big;
        return big->data;
    }
    if (c == NULL || c->size - c->used < n) {
        c = pw_chunk_new(n > PW_CHUNK ? n : PW_CHUNK);
        if (c == NULL)
            return NULL;
        c->next = pool->head;
        pool->head = c;
    }
    c->used += n;
    return (char *)c->data + (c->used - n);
}

static char *pw_pool_strdup(struct pw_pool *pool, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pw_pool_alloc(pool, n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void pw_pool_free(struct pw_pool *pool)
{
    while (pool->head != NULL) {
        struct pw_chunk *next = pool->head->next;
        free(pool->head);
        pool->head = next;
    }
}

/* ---- hash map: string key -> pointer (open addressing) --------------- */

struct pw_slot {
    const char *key;
    void *val;
    uint64_t hash;
};

struct pw_map {
    struct pw_slot *slots;
    size_t cap, n;      /* cap is 0 or a power of two */
};

static uint64_t pw_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;  /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static struct pw_slot *pw_map_slot(struct pw_slot *slots, size_t cap,
                                   const char *key, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);

    while (slots[i].key != NULL &&
           (slots[i].hash != h || strcmp(slots[i].key, key) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static void *pw_map_get(const struct pw_map *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    return pw_map_slot(m->slots, m->cap, key, pw_hash(key))->val;
}

static int pw_map_grow(struct pw_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct pw_slot *slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            *pw_map_slot(slots, cap, m->slots[i].key, m->slots[i].hash) =
                m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

/* Adds a key that is not in the map yet; the key must outlive the map. */
static int pw_map_put(struct pw_map *m, const char *key, void *val)
{
    uint64_t h = pw_hash(key);
    struct pw_slot *s;

    if ((m->n + 1) * 10 > m->cap * 7 && pw_map_grow(m) < 0)
        return -1;
    s = pw_map_slot(m->slots, m->cap, key, h);
    s->key = key;
    s->val = val;
    s->hash = h;
    m->n++;
    return 0;
}

/* ---- the tables built from the files --------------------------------- */

/* The password schemes are pwscheme.c's (shared with the pgsql module);
 * {ALIAS} and {SYSTEM} are this file format's own, numbered after them. */
enum { PW_ALIAS = 100, PW_SYSTEM = 101 };

struct pw_mailbox {
    struct selor_mailbox mb;   /* mb.user is the key: user@domain */
    int scheme;                /* enum pwscheme */
    const char *secret;        /* password or hash, without {SCHEME} */
    int line;
};

struct pw_alias {
    const char **targets;
    size_t n;
    int line;
};

struct pw_sysacct {
    const char *login;         /* as written in the system passwd file */
    const char *home;
    long uid, gid;
};

struct pw_table {
    struct pw_pool pool;
    struct pw_map mailboxes;   /* user@domain -> pw_mailbox */
    struct pw_map aliases;     /* user@domain or @domain -> pw_alias */
    struct pw_map domains;     /* every local domain -> its name */
    struct pw_map sysdomains;  /* domains of *@domain:{SYSTEM} lines */
    struct pw_map sysacct;     /* lower-case login -> pw_sysacct */
    int has_system;
};

static void pw_table_free(struct pw_table *t)
{
    if (t == NULL)
        return;
    pw_pool_free(&t->pool);
    free(t->mailboxes.slots);
    free(t->aliases.slots);
    free(t->domains.slots);
    free(t->sysdomains.slots);
    free(t->sysacct.slots);
    free(t);
}

/* What a file looked like when it was read: a change means "reload". */
struct pw_sig {
    long long mtime_sec, mtime_nsec, size, ino, dev;
};

struct pw_sigs {
    struct pw_sig file, sys;   /* sys stays zero without {SYSTEM} lines */
};

static int pw_sig_equal(const struct pw_sig *a, const struct pw_sig *b)
{
    return a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
           a->size == b->size && a->ino == b->ino && a->dev == b->dev;
}

static int pw_sigs_equal(const struct pw_sigs *a, const struct pw_sigs *b)
{
    return pw_sig_equal(&a->file, &b->file) && pw_sig_equal(&a->sys, &b->sys);
}

static void pw_sig_from_stat(struct pw_sig *sig, const struct stat *sb)
{
    sig->mtime_sec = (long long)sb->st_mtim.tv_sec;
    sig->mtime_nsec = (long long)sb->st_mtim.tv_nsec;
    sig->size = (long long)sb->st_size;
    sig->ino = (long long)sb->st_ino;
    sig->dev = (long long)sb->st_dev;
}

static void pw_sig_from_uv(struct pw_sig *sig, const uv_stat_t *sb)
{
    sig->mtime_sec = (long long)sb->st_mtim.tv_sec;
    sig->mtime_nsec = (long long)sb->st_mtim.tv_nsec;
    sig->size = (long long)sb->st_size;
    sig->ino = (long long)sb->st_ino;
    sig->dev = (long long)sb->st_dev;
}

/* ---- small string helpers -------------------------------------------- */

static char pw_lower_char(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void pw_lower(char *s)
{
    for (; *s; s++)
        *s = pw_lower_char(*s);
}

/* Lower-case copy of s into out; -1 when it does not fit. */
static int pw_lower_copy(const char *s, char *out, size_t outlen)
{
    size_t n = s ? strlen(s) : outlen;

    if (n >= outlen)
        return -1;
    for (size_t i = 0; i <= n; i++)
        out[i] = pw_lower_char(s[i]);
    return 0;
}

static int pw_is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char *pw_trim(char *s)
{
    char *end;

    while (pw_is_space(*s))
        s++;
    end = s + strlen(s);
    while (end > s && pw_is_space(end[-1]))
        *--end = '\0';
    return s;
}

/* ---- parsing ---------------------------------------------------------- */

struct pw_parse {
    struct pw_table *t;
    const char *path;
    int line;
    char *err;
    size_t errlen;
};

typedef int pw_line_fn(struct pw_parse *p, char *line);

/* Writes "PATH:LINE: message" into the error buffer; returns -1. */
__attribute__((format(printf, 2, 3)))
static int pw_fail(struct pw_parse *p, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->path, p->line);

    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int pw_oom(struct pw_parse *p)
{
    return pw_fail(p, "out of memory");
}

/* Splits on ':' into at most PW_FIELDS fields (the last one takes the rest
 * of the line); missing fields are empty strings.  Returns how many. */
static size_t pw_split(char *line, char **f)
{
    size_t n = 1;
    char *p = line;

    f[0] = line;
    while (n < PW_FIELDS && (p = strchr(p, ':')) != NULL) {
        *p++ = '\0';
        f[n++] = p;
    }
    for (size_t i = n; i < PW_FIELDS; i++)
        f[i] = f[n - 1] + strlen(f[n - 1]);
    return n;
}

static int pw_fields_empty(char **f, size_t from)
{
    for (size_t i = from; i < PW_FIELDS; i++)
        if (pw_trim(f[i])[0] != '\0')
            return 0;
    return 1;
}

/* Why s is not a usable user@domain (or @domain when catchall_ok). */
static const char *pw_address_error(const char *s, int catchall_ok)
{
    const char *at = strrchr(s, '@');

    if (strlen(s) > PW_KEY_MAX)
        return "address too long";
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return "space or control character in address";
    if (at == NULL)
        return "not user@domain";
    if (at[1] == '\0')
        return "no domain after @";
    if (at == s && !catchall_ok)
        return "empty user (a catch-all @domain is only allowed with {ALIAS})";
    return NULL;
}

/* Checks a key; returns its domain, or NULL after pw_fail. */
static const char *pw_check_key(struct pw_parse *p, const char *key,
                                int catchall_ok)
{
    const char *why = pw_address_error(key, catchall_ok);

    if (why != NULL) {
        pw_fail(p, "%s: %.*s", why, PW_KEY_MAX, key);
        return NULL;
    }
    return strrchr(key, '@') + 1;
}

static int pw_add_domain(struct pw_parse *p, const char *domain)
{
    char *d;

    if (pw_map_get(&p->t->domains, domain) != NULL)
        return 0;
    d = pw_pool_strdup(&p->t->pool, domain);
    if (d == NULL || pw_map_put(&p->t->domains, d, d) < 0)
        return pw_oom(p);
    return 0;
}

/* "{NAME}rest" -> scheme, *secret = rest.  No braces: CRYPT (Dovecot's
 * default); empty: PWSCHEME_NONE.  -1 after pw_fail for an unknown scheme. */
static int pw_scheme_of(struct pw_parse *p, char *field, char **secret)
{
    const char *rest, *name;
    size_t n;
    int scheme = pwscheme_parse(field, &rest, &name, &n);

    *secret = field + (rest - field);
    if (scheme == PWSCHEME_UNTERMINATED)
        return pw_fail(p, "unterminated {SCHEME} in the password field");
    if (scheme != PWSCHEME_UNKNOWN)
        return scheme;
    if (n == 5 && strncasecmp(name, "ALIAS", 5) == 0)
        return PW_ALIAS;
    if (n == 6 && strncasecmp(name, "SYSTEM", 6) == 0)
        return PW_SYSTEM;
    return pw_fail(p, "unknown password scheme %.*s (known: PLAIN, CRYPT, "
                   "SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ALIAS, SYSTEM)",
                   (int)(n + 2 > 64 ? 64 : n + 2), field);
}

static int pw_check_secret(struct pw_parse *p, int scheme, const char *secret)
{
    if (scheme == PWSCHEME_PLAIN && secret[0] == '\0')
        return pw_fail(p, "empty {PLAIN} password (leave the whole field empty "
                       "for a mailbox that cannot log in)");
    if (pwscheme_check_secret(scheme, secret) != NULL)
        return pw_fail(p, "the password is not a valid {%s} hash",
                       pwscheme_name(scheme));
    return 0;
}

/* A uid or gid: digits, or empty for "unknown" (-1). */
static int pw_parse_id(struct pw_parse *p, char *s, const char *what, long *out)
{
    char *end;
    long v;

    s = pw_trim(s);
    *out = -1;
    if (s[0] == '\0')
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno || v > PW_ID_MAX)
        return pw_fail(p, "%s must be a number: %.64s", what, s);
    *out = v;
    return 0;
}

/* "N", "NK", "NM" or "NG" -> bytes. */
static int pw_parse_quota(struct pw_parse *p, const char *s, long long *out)
{
    unsigned long long v = 0, mult = 1;
    const char *c = s;

    for (; *c >= '0' && *c <= '9'; c++) {
        if (v > (unsigned long long)LLONG_MAX / 10)
            return pw_fail(p, "quota too large: %.64s", s);
        v = v * 10 + (unsigned long long)(*c - '0');
    }
    if (c == s)
        return pw_fail(p, "quota must be a number of bytes with an optional "
                       "K, M or G: %.64s", s);
    switch (pw_lower_char(*c)) {
    case 'k': mult = 1ULL << 10; c++; break;
    case 'm': mult = 1ULL << 20; c++; break;
    case 'g': mult = 1ULL << 30; c++; break;
    default: break;
    }
    if (*c != '\0')
        return pw_fail(p, "quota must be a number of bytes with an optional "
                       "K, M or G: %.64s", s);
    if (v > (unsigned long long)LLONG_MAX / mult)
        return pw_fail(p, "quota too large: %.64s", s);
    *out = (long long)(v * mult);
    return 0;
}

/* Field 8: "quota=N[KMG]" and "dlocal=command..." (the rest of the line). */
static int pw_parse_extra(struct pw_parse *p, char *s, struct pw_mailbox *m)
{
    for (;;) {
        size_t len;
        s += strspn(s, " \t");
        if (*s == '\0')
            return 0;
        if (strncmp(s, "dlocal=", 7) == 0) {
            m->mb.dlocal = pw_pool_strdup(&p->t->pool, pw_trim(s + 7));
            return m->mb.dlocal ? 0 : pw_oom(p);
        }
        len = strcspn(s, " \t");
        if (strncmp(s, "quota=", 6) != 0)
            return pw_fail(p, "unknown extra field %.*s (known: quota=, dlocal=)",
                           (int)(len > 64 ? 64 : len), s);
        if (s[len] != '\0')
            s[len++] = '\0';
        if (pw_parse_quota(p, s + 6, &m->mb.quota) < 0)
            return -1;
        s += len;
    }
}

static int pw_add_mailbox(struct pw_parse *p, char **f, int scheme,
                          const char *secret)
{
    const char *domain = pw_check_key(p, f[0], 0);
    const struct pw_mailbox *old;
    struct pw_mailbox *m;

    if (domain == NULL || pw_check_secret(p, scheme, secret) < 0)
        return -1;
    if ((old = pw_map_get(&p->t->mailboxes, f[0])) != NULL)
        return pw_fail(p, "duplicate mailbox %s (first on line %d)", f[0], old->line);
    if ((m = pw_pool_alloc(&p->t->pool, sizeof(*m))) == NULL)
        return pw_oom(p);
    memset(m, 0, sizeof(*m));
    m->line = p->line;
    m->scheme = scheme;
    m->mb.dlocal = "";
    if (pw_parse_id(p, f[2], "uid", &m->mb.uid) < 0 ||
        pw_parse_id(p, f[3], "gid", &m->mb.gid) < 0 ||
        pw_parse_extra(p, f[7], m) < 0)
        return -1;
    m->mb.user = pw_pool_strdup(&p->t->pool, f[0]);
    m->mb.home = pw_pool_strdup(&p->t->pool, f[5]);
    m->secret = pw_pool_strdup(&p->t->pool, secret);
    if (!m->mb.user || !m->mb.home || !m->secret ||
        pw_map_put(&p->t->mailboxes, m->mb.user, m) < 0)
        return pw_oom(p);
    return pw_add_domain(p, domain);
}

/* A target "@domain" is a broadcast (every mailbox of the domain): Selor
 * expands it, so it is kept as written. */
static int pw_add_target(struct pw_parse *p, struct pw_alias *a, char *t)
{
    const char *why = pw_address_error(t, 1);

    if (t[0] == '\0')
        return pw_fail(p, "empty alias target");
    if (why != NULL)
        return pw_fail(p, "alias target %.*s: %s", PW_KEY_MAX, t, why);
    a->targets[a->n] = pw_pool_strdup(&p->t->pool, t);
    if (a->targets[a->n] == NULL)
        return pw_oom(p);
    a->n++;
    return 0;
}

/* "a@x, b@y" -> targets. */
static int pw_parse_targets(struct pw_parse *p, char *list, struct pw_alias *a)
{
    size_t n = 1;
    char *tok = list;

    for (const char *c = list; *c; c++)
        n += *c == ',';
    if (n > SELOR_ALIAS_MAX_TARGETS)
        return pw_fail(p, "more than %d alias targets", SELOR_ALIAS_MAX_TARGETS);
    a->targets = pw_pool_alloc(&p->t->pool, n * sizeof(*a->targets));
    if (a->targets == NULL)
        return pw_oom(p);
    while (tok != NULL) {
        char *comma = strchr(tok, ',');
        if (comma != NULL)
            *comma = '\0';
        if (pw_add_target(p, a, pw_trim(tok)) < 0)
            return -1;
        tok = comma ? comma + 1 : NULL;
    }
    return 0;
}

static int pw_add_alias(struct pw_parse *p, char **f, char *list)
{
    const char *domain = pw_check_key(p, f[0], 1);
    const struct pw_alias *old;
    struct pw_alias *a;
    char *key;

    if (domain == NULL)
        return -1;
    if (!pw_fields_empty(f, 2))
        return pw_fail(p, "an {ALIAS} entry takes no uid, gid, home or extra field");
    if ((old = pw_map_get(&p->t->aliases, f[0])) != NULL)
        return pw_fail(p, "duplicate alias %s (first on line %d)", f[0], old->line);
    if ((a = pw_pool_alloc(&p->t->pool, sizeof(*a))) == NULL)
        return pw_oom(p);
    memset(a, 0, sizeof(*a));
    a->line = p->line;
    if (pw_parse_targets(p, list, a) < 0)
        return -1;
    key = pw_pool_strdup(&p->t->pool, f[0]);
    if (key == NULL || pw_map_put(&p->t->aliases, key, a) < 0)
        return pw_oom(p);
    return pw_add_domain(p, domain);
}

static int pw_add_system(struct pw_parse *p, char **f, const char *secret)
{
    const char *domain;
    char *d;

    if (strncmp(f[0], "*@", 2) != 0)
        return pw_fail(p, "{SYSTEM} needs the key *@domain");
    if ((domain = pw_check_key(p, f[0] + 1, 1)) == NULL)
        return -1;
    if (secret[0] != '\0' || !pw_fields_empty(f, 2))
        return pw_fail(p, "a *@domain:{SYSTEM} line takes nothing after {SYSTEM}");
    if (pw_map_get(&p->t->sysdomains, domain) != NULL)
        return pw_fail(p, "duplicate *@%s:{SYSTEM} line", domain);
    d = pw_pool_strdup(&p->t->pool, domain);
    if (d == NULL || pw_map_put(&p->t->sysdomains, d, d) < 0)
        return pw_oom(p);
    p->t->has_system = 1;
    return pw_add_domain(p, domain);
}

/* One line of Passwd_file. */
static int pw_parse_entry(struct pw_parse *p, char *line)
{
    char *f[PW_FIELDS], *secret;
    int scheme;

    if (pw_split(line, f) < 2)
        return pw_fail(p, "expected user@domain:{SCHEME}password"
                       "[:uid:gid:gecos:home:shell:extra]");
    pw_lower(f[0]);
    if ((scheme = pw_scheme_of(p, f[1], &secret)) < 0)
        return -1;
    if (strncmp(f[0], "*@", 2) == 0 && scheme != PW_SYSTEM)
        return pw_fail(p, "*@domain is only allowed with {SYSTEM}");
    switch (scheme) {
    case PW_ALIAS: return pw_add_alias(p, f, secret);
    case PW_SYSTEM: return pw_add_system(p, f, secret);
    default: return pw_add_mailbox(p, f, scheme, secret);
    }
}

/* Which logins of the system passwd file are mailboxes (docs/modules.md). */
static int pw_sys_is_mailbox(const char *login, long uid)
{
    if (uid == 0)
        return strcmp(login, "root") == 0;
    return uid >= PW_FIRST_USER_UID && uid != PW_NOBODY_UID;
}

/* One line of Passwd_system: name:password:uid:gid:gecos:home:shell. */
static int pw_parse_sysline(struct pw_parse *p, char *line)
{
    char *f[PW_FIELDS], *key;
    struct pw_sysacct *a;
    long uid, gid;

    if (line[0] == '+' || line[0] == '-')
        return 0;  /* NIS compat lines */
    if (pw_split(line, f) < 7)
        return pw_fail(p, "expected name:password:uid:gid:gecos:home:shell");
    if (f[0][0] == '\0')
        return pw_fail(p, "empty login name");
    if (pw_parse_id(p, f[2], "uid", &uid) < 0 || pw_parse_id(p, f[3], "gid", &gid) < 0)
        return -1;
    if (!pw_sys_is_mailbox(f[0], uid))
        return 0;
    if ((key = pw_pool_strdup(&p->t->pool, f[0])) == NULL)
        return pw_oom(p);
    pw_lower(key);
    if (pw_map_get(&p->t->sysacct, key) != NULL)
        return 0;  /* the first entry wins, as for getpwnam */
    if ((a = pw_pool_alloc(&p->t->pool, sizeof(*a))) == NULL)
        return pw_oom(p);
    a->uid = uid;
    a->gid = gid;
    a->login = pw_pool_strdup(&p->t->pool, f[0]);
    a->home = pw_pool_strdup(&p->t->pool, f[5]);
    if (!a->login || !a->home || pw_map_put(&p->t->sysacct, key, a) < 0)
        return pw_oom(p);
    return 0;
}

/* ---- reading lines with a bounded buffer ------------------------------ */

struct pw_reader {
    int fd;
    char *buf;            /* cap + 1 bytes */
    size_t cap, start, end;
    int eof;
};

/* 1: a line (NUL-terminated, no '\n'); 0: end; -1: too long; -2: error. */
static int pw_read_line(struct pw_reader *r, char **line, size_t *len)
{
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        ssize_t n;
        if (nl != NULL || (r->eof && r->start < r->end)) {
            char *stop = nl ? nl : r->buf + r->end;
            *line = r->buf + r->start;
            *len = (size_t)(stop - *line);
            *stop = '\0';
            r->start = (size_t)(stop - r->buf) + (nl != NULL);
            return 1;
        }
        if (r->eof)
            return 0;
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
        if (r->end == r->cap)
            return -1;
        n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n < 0 && errno != EINTR)
            return -2;
        if (n == 0)
            r->eof = 1;
        if (n > 0)
            r->end += (size_t)n;
    }
}

static int pw_parse_line(struct pw_parse *p, char *line, size_t len,
                         pw_line_fn *fn)
{
    const char *s;

    if (memchr(line, '\0', len) != NULL)
        return pw_fail(p, "NUL byte in the line");
    if (len > 0 && line[len - 1] == '\r')
        line[len - 1] = '\0';
    s = line + strspn(line, " \t");
    if (*s == '\0' || *s == '#')
        return 0;
    return fn(p, line);
}

static int pw_parse_fd(struct pw_parse *p, int fd, pw_line_fn *fn)
{
    struct pw_reader r = {fd, malloc(PW_LINE_MAX + 1), PW_LINE_MAX, 0, 0, 0};
    char *line, ebuf[128];
    size_t len;
    int rc = 0, got = 0;

    if (r.buf == NULL)
        return pw_oom(p);
    while (rc == 0 && (got = pw_read_line(&r, &line, &len)) > 0) {
        p->line++;
        rc = pw_parse_line(p, line, len, fn);
    }
    if (rc == 0 && got == -1) {
        p->line++;
        rc = pw_fail(p, "line longer than %d bytes", PW_LINE_MAX);
    } else if (rc == 0 && got == -2) {
        rc = pw_fail(p, "read error: %s", strerror_r(errno, ebuf, sizeof(ebuf)));
    }
    free(r.buf);
    return rc;
}

/* Parses one file into t; 0, -1 or PW_EOPEN with "PATH[:LINE]: why". */
static int pw_parse_file(struct pw_table *t, const char *path, pw_line_fn *fn,
                         struct pw_sig *sig, char *err, size_t errlen)
{
    struct pw_parse p = {t, path, 0, err, errlen};
    struct stat sb;
    char ebuf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path,
                 strerror_r(errno, ebuf, sizeof(ebuf)));
        return PW_EOPEN;
    }
    if (fstat(fd, &sb) == 0)
        pw_sig_from_stat(sig, &sb);
    rc = pw_parse_fd(&p, fd, fn);
    close(fd);
    return rc;
}

/* Builds a new table from Passwd_file (and Passwd_system if it is used). */
static int pw_load(const char *file, const char *syspath, struct pw_table **out,
                   struct pw_sigs *sigs, char *err, size_t errlen)
{
    struct pw_table *t = calloc(1, sizeof(*t));
    int rc;

    *out = NULL;
    memset(sigs, 0, sizeof(*sigs));
    if (t == NULL) {
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    rc = pw_parse_file(t, file, pw_parse_entry, &sigs->file, err, errlen);
    if (rc == 0 && t->has_system)
        rc = pw_parse_file(t, syspath, pw_parse_sysline, &sigs->sys, err, errlen);
    if (rc < 0) {
        pw_table_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- module state ----------------------------------------------------- */

struct pw_auth_job;

struct pw_state {
    const struct selor_host *host;
    char *file, *syspath;        /* set by init, never changed after */
    struct pw_table *table;      /* loop thread only */
    struct pw_sigs sigs;         /* the files as last read (or tried) */
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_fs_t stat_req;
    struct pw_sigs cand;         /* the files as stat() sees them now */
    int stat_stage;              /* 0: Passwd_file, 1: Passwd_system */
    int attached, detaching, checking, reloading;
    int stat_warned, shadow_warned;
    unsigned busy;               /* open timer + requests in flight */
    struct pw_auth_job *jobs;    /* pending AUTH lookups */
};

static void pw_state_free(struct pw_state *st)
{
    pw_table_free(st->table);
    free(st->file);
    free(st->syspath);
    free(st);
}

/* After detach, the state goes when the last callback has run. */
static void pw_maybe_free(struct pw_state *st)
{
    if (st->detaching && st->busy == 0)
        pw_state_free(st);
}

/* ---- lookups ------------------------------------------------------------ */

/* A system account for "login@domain" of a {SYSTEM} domain, or for a bare
 * "login" when bare_ok (AUTH).  key is a scratch copy. */
static const struct pw_sysacct *pw_find_sysacct(const struct pw_table *t,
                                                char *key, int bare_ok)
{
    char *at = strrchr(key, '@');
    const struct pw_sysacct *a;

    if (!t->has_system || (at == NULL && !bare_ok))
        return NULL;
    if (at != NULL && pw_map_get(&t->sysdomains, at + 1) == NULL)
        return NULL;
    if (at != NULL)
        *at = '\0';
    a = pw_map_get(&t->sysacct, key);
    if (at != NULL)
        *at = '@';
    return a;
}

static void pw_sys_mbox(const struct pw_sysacct *a, struct selor_mailbox *mb)
{
    mb->user = a->login;
    mb->home = a->home;
    mb->uid = a->uid;
    mb->gid = a->gid;
    mb->dlocal = "";
    mb->quota = 0;
}

static int pw_lookup_mailbox(const struct pw_table *t, char *key,
                             struct selor_mailbox *mb)
{
    const struct pw_mailbox *m = pw_map_get(&t->mailboxes, key);
    const struct pw_sysacct *a;

    if (m != NULL) {
        *mb = m->mb;
        return SELOR_FOUND;
    }
    if ((a = pw_find_sysacct(t, key, 0)) == NULL)
        return SELOR_NOTFOUND;
    pw_sys_mbox(a, mb);
    return SELOR_FOUND;
}

static int pw_lookup_alias(const struct pw_table *t, const char *key,
                           struct selor_lookup *req)
{
    const struct pw_alias *a = pw_map_get(&t->aliases, key);

    if (a == NULL)
        return SELOR_NOTFOUND;
    req->targets = a->targets;
    req->ntargets = a->n;
    return SELOR_FOUND;
}

static int pw_tempfail(struct selor_lookup *req, const char *why)
{
    snprintf(req->error, sizeof(req->error), "passwd: %s", why);
    return SELOR_TEMPFAIL;
}

static int pw_strptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "login@domain" in the request's memory, lower case like the file's keys. */
static const char *pw_sys_address(const struct selor_host *host,
                                  struct selor_lookup *req, const char *login,
                                  const char *domain)
{
    size_t n = strlen(login) + strlen(domain) + 2;
    char *addr = host->alloc(req, n);

    if (addr != NULL) {
        snprintf(addr, n, "%s@%s", login, domain);
        pw_lower(addr);
    }
    return addr;
}

/* Every mailbox of a domain, sorted, for broadcasts: the file's mailboxes,
 * then (a {SYSTEM} domain) the system accounts no file line overrides. */
static int pw_domain_mailboxes(const struct pw_state *st, const char *domain,
                               struct selor_lookup *req)
{
    const struct pw_table *t = st->table;
    int sys = t->has_system && pw_map_get(&t->sysdomains, domain) != NULL;
    size_t cap = t->mailboxes.n + (sys ? t->sysacct.n : 0), n = 0;
    const char **out;

    if (pw_map_get(&t->domains, domain) == NULL)
        return SELOR_NOTFOUND;
    if (cap > SELOR_LIST_MAX_TARGETS)
        cap = SELOR_LIST_MAX_TARGETS;
    if ((out = st->host->alloc(req, (cap ? cap : 1) * sizeof(*out))) == NULL)
        return pw_tempfail(req, "out of memory");
    for (size_t i = 0; i < t->mailboxes.cap && n < cap; i++) {
        const char *key = t->mailboxes.slots[i].key, *at;
        if (key != NULL && (at = strrchr(key, '@')) != NULL && strcmp(at + 1, domain) == 0)
            out[n++] = key;
    }
    for (size_t i = 0; sys && i < t->sysacct.cap && n < cap; i++) {
        const struct pw_sysacct *a = t->sysacct.slots[i].val;
        const char *addr;
        if (t->sysacct.slots[i].key == NULL)
            continue;
        if ((addr = pw_sys_address(st->host, req, a->login, domain)) == NULL)
            return pw_tempfail(req, "out of memory");
        if (pw_map_get(&t->mailboxes, addr) == NULL)
            out[n++] = addr;
    }
    qsort(out, n, sizeof(*out), pw_strptr_cmp);
    req->targets = out;
    req->ntargets = n;
    return SELOR_FOUND;
}

/* ---- AUTH in the thread pool ---------------------------------------------- */

enum pw_outcome { PW_AUTH_BAD, PW_AUTH_OK, PW_AUTH_NOSHADOW, PW_AUTH_ERROR };

struct pw_auth_job {
    uv_work_t work;
    struct pw_state *st;
    struct selor_lookup *req;     /* NULL once cancelled */
    struct pw_auth_job *prev, *next;
    int system;                   /* the hash comes from the shadow database */
    enum pw_outcome outcome;      /* set by the worker */
    char why[96];                 /* PW_AUTH_NOSHADOW: the error */
    const char *login, *password, *hash;
    struct selor_mailbox mb;      /* strings in text[] */
    size_t textlen;
    char text[];
};

struct pw_scratch {
    char spbuf[PW_SHADOW_BUF];
};

/* The hash of a system login, or NULL (job->outcome says why). */
static const char *pw_shadow_hash(struct pw_auth_job *job, struct pw_scratch *s)
{
    struct spwd sp, *res = NULL;
    int rc = getspnam_r(job->login, &sp, s->spbuf, sizeof(s->spbuf), &res);

    if (res == NULL) {
        if (rc == 0 || rc == ENOENT)
            rc = eaccess(PW_SHADOW_FILE, R_OK) == 0 ? 0 : errno;
        if (rc != 0) {
            job->outcome = PW_AUTH_NOSHADOW;
            snprintf(job->why, sizeof(job->why), "%s", strerror_r(rc, s->spbuf,
                     sizeof(s->spbuf)));
        }
        return NULL;
    }
    if (sp.sp_expire > 0 && time(NULL) / 86400 >= sp.sp_expire)
        return NULL;
    return sp.sp_pwdp;
}

static void pw_auth_work(uv_work_t *w)
{
    struct pw_auth_job *job = PW_CONTAINER(w, struct pw_auth_job, work);
    struct pw_scratch *s = calloc(1, sizeof(*s));
    const char *hash = job->hash;

    job->outcome = PW_AUTH_BAD;
    if (s == NULL) {
        job->outcome = PW_AUTH_ERROR;
        return;
    }
    if (job->system)
        hash = pw_shadow_hash(job, s);
    if (hash != NULL && hash[0] != '\0') {
        int ok = pwscheme_match_crypt(job->password, hash);
        job->outcome = ok > 0 ? PW_AUTH_OK : ok < 0 ? PW_AUTH_ERROR : PW_AUTH_BAD;
    }
    explicit_bzero(s, sizeof(*s));
    free(s);
}

/* The mailbox of a finished AUTH, copied into the request's memory. */
static int pw_req_mbox(const struct selor_host *host, struct selor_lookup *req,
                       const struct selor_mailbox *mb)
{
    req->mbox = *mb;
    req->mbox.user = reqmem_strdup(host, req, mb->user);
    req->mbox.home = reqmem_strdup(host, req, mb->home);
    req->mbox.dlocal = reqmem_strdup(host, req, mb->dlocal);
    if (!req->mbox.user || !req->mbox.home || !req->mbox.dlocal)
        return -1;
    return 0;
}

static void pw_auth_answer(struct pw_state *st, struct selor_lookup *req,
                           const struct pw_auth_job *job, int status)
{
    req->result = SELOR_NOTFOUND;
    if (status < 0 || job->outcome == PW_AUTH_ERROR)
        req->result = pw_tempfail(req, "password check failed");
    else if (job->outcome == PW_AUTH_OK && pw_req_mbox(st->host, req, &job->mb) < 0)
        req->result = pw_tempfail(req, "out of memory");
    else if (job->outcome == PW_AUTH_OK)
        req->result = SELOR_FOUND;
}

static void pw_job_unlink(struct pw_state *st, struct pw_auth_job *job)
{
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        st->jobs = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
}

static void pw_auth_after(uv_work_t *w, int status)
{
    struct pw_auth_job *job = PW_CONTAINER(w, struct pw_auth_job, work);
    struct pw_state *st = job->st;
    struct selor_lookup *req = job->req;

    pw_job_unlink(st, job);
    st->busy--;
    if (job->outcome == PW_AUTH_NOSHADOW && !st->shadow_warned) {
        st->shadow_warned = 1;
        st->host->log_warn("passwd: cannot read the shadow database (%s): "
                           "system accounts cannot log in", job->why);
    }
    if (req != NULL)
        pw_auth_answer(st, req, job, status);
    explicit_bzero(job->text, job->textlen);
    free(job);
    if (req != NULL)
        req->done(req);
    pw_maybe_free(st);
}

/* A job holding its own copies of everything the worker and the answer need. */
static struct pw_auth_job *pw_job_new(const char *login, const char *password,
                                      const char *hash,
                                      const struct selor_mailbox *mb)
{
    const char *src[6] = {login, password, hash, mb->user, mb->home, mb->dlocal};
    const char *dst[6] = {NULL};
    size_t len[6], total = 0;
    struct pw_auth_job *job;
    char *p;

    for (size_t i = 0; i < 6; i++)
        total += (len[i] = strlen(src[i]) + 1);
    if ((job = calloc(1, sizeof(*job) + total)) == NULL)
        return NULL;
    p = job->text;
    for (size_t i = 0; i < 6; i++) {
        memcpy(p, src[i], len[i]);
        dst[i] = p;
        p += len[i];
    }
    job->textlen = total;
    job->login = dst[0];
    job->password = dst[1];
    job->hash = dst[2];
    job->mb = *mb;
    job->mb.user = dst[3];
    job->mb.home = dst[4];
    job->mb.dlocal = dst[5];
    return job;
}

static int pw_auth_queue(struct pw_state *st, struct selor_lookup *req,
                         const char *login, const char *hash,
                         const struct selor_mailbox *mb)
{
    struct pw_auth_job *job;

    if (st->loop == NULL || st->detaching)
        return pw_tempfail(req, "module not attached to an event loop");
    if ((job = pw_job_new(login, req->password, hash ? hash : "", mb)) == NULL)
        return pw_tempfail(req, "out of memory");
    job->st = st;
    job->req = req;
    job->system = hash == NULL;
    if (uv_queue_work(st->loop, &job->work, pw_auth_work, pw_auth_after) < 0) {
        explicit_bzero(job->text, job->textlen);
        free(job);
        return pw_tempfail(req, "cannot queue the password check");
    }
    job->next = st->jobs;
    if (st->jobs != NULL)
        st->jobs->prev = job;
    st->jobs = job;
    st->busy++;
    return SELOR_PENDING;
}

static int pw_auth_start(struct pw_state *st, char *key, struct selor_lookup *req)
{
    const struct pw_mailbox *m = pw_map_get(&st->table->mailboxes, key);
    const struct pw_sysacct *a;
    struct selor_mailbox mb;

    if (req->password == NULL || strlen(req->password) > PW_PASSWORD_MAX)
        return SELOR_NOTFOUND;
    if (m != NULL && m->scheme == PWSCHEME_PLAIN) {
        if (!pwscheme_equal_ct(req->password, m->secret))
            return SELOR_NOTFOUND;
        req->mbox = m->mb;  /* immediate: the table outlives this call */
        return SELOR_FOUND;
    }
    if (m != NULL)
        return m->scheme == PWSCHEME_NONE ? SELOR_NOTFOUND
               : pw_auth_queue(st, req, m->mb.user, m->secret, &m->mb);
    if ((a = pw_find_sysacct(st->table, key, 1)) == NULL)
        return SELOR_NOTFOUND;
    pw_sys_mbox(a, &mb);
    return pw_auth_queue(st, req, a->login, NULL, &mb);
}

static int pw_lookup(void *state, struct selor_lookup *req)
{
    struct pw_state *st = state;
    char key[PW_KEY_MAX + 1];

    if (pw_lower_copy(req->key, key, sizeof(key)) < 0)
        return SELOR_NOTFOUND;
    switch (req->kind) {
    case SELOR_LOOKUP_DOMAIN:
        return pw_map_get(&st->table->domains, key) ? SELOR_FOUND : SELOR_NOTFOUND;
    case SELOR_LOOKUP_MAILBOX:
        return pw_lookup_mailbox(st->table, key, &req->mbox);
    case SELOR_LOOKUP_ALIAS:
        return pw_lookup_alias(st->table, key, req);
    case SELOR_LOOKUP_AUTH:
        return pw_auth_start(st, key, req);
    case SELOR_LOOKUP_DOMAIN_MAILBOXES:
        return pw_domain_mailboxes(st, key, req);
    }
    return SELOR_NOTFOUND;
}

static void pw_cancel(void *state, struct selor_lookup *req)
{
    struct pw_state *st = state;

    for (struct pw_auth_job *job = st->jobs; job != NULL; job = job->next)
        if (job->req == req) {
            job->req = NULL;  /* pw_auth_after frees the job, quietly */
            uv_cancel((uv_req_t *)&job->work);
            return;
        }
}

/* ---- reload ------------------------------------------------------------- */

struct pw_reload_job {
    uv_work_t work;
    struct pw_state *st;
    struct pw_table *table;       /* the new table, or NULL */
    struct pw_sigs seen, parsed;  /* stat() before, fstat() while parsing */
    int rc;
    char err[512];
};

static void pw_reload_work(uv_work_t *w)
{
    struct pw_reload_job *job = PW_CONTAINER(w, struct pw_reload_job, work);

    job->rc = pw_load(job->st->file, job->st->syspath, &job->table,
                      &job->parsed, job->err, sizeof(job->err));
}

static void pw_reload_after(uv_work_t *w, int status)
{
    struct pw_reload_job *job = PW_CONTAINER(w, struct pw_reload_job, work);
    struct pw_state *st = job->st;

    st->reloading = 0;
    st->busy--;
    if (st->detaching || status < 0 || job->rc < 0) {
        if (!st->detaching)
            st->host->log_warn("passwd: reloading %s failed, keeping the "
                               "accounts loaded before: %s", st->file,
                               status < 0 ? uv_strerror(status) : job->err);
        pw_table_free(job->table);
        st->sigs = job->seen;
    } else {
        pw_table_free(st->table);  /* no lookup holds it: they copy or finish */
        st->table = job->table;
        st->sigs = job->parsed;
        st->host->log_info("passwd: reloaded %s: %zu mailboxes, %zu aliases, "
                           "%zu domains", st->file, st->table->mailboxes.n,
                           st->table->aliases.n, st->table->domains.n);
    }
    free(job);
    pw_maybe_free(st);
}

static void pw_reload_start(struct pw_state *st)
{
    struct pw_reload_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return;  /* tried again at the next tick */
    job->st = st;
    job->seen = st->cand;
    if (uv_queue_work(st->loop, &job->work, pw_reload_work, pw_reload_after) < 0) {
        free(job);
        return;
    }
    st->reloading = 1;
    st->busy++;
}

static void pw_stat_warn(struct pw_state *st, const char *path, int rc)
{
    if (st->stat_warned)
        return;
    st->stat_warned = 1;
    st->host->log_warn("passwd: cannot stat %s (%s); keeping the accounts "
                       "loaded before", path, uv_strerror(rc));
}

/* The stat() round is over; reload when compare and a file changed. */
static void pw_check_done(struct pw_state *st, int compare)
{
    st->checking = 0;
    st->busy--;
    if (st->detaching) {
        pw_maybe_free(st);
        return;
    }
    if (!compare)
        return;
    st->stat_warned = 0;
    if (!pw_sigs_equal(&st->cand, &st->sigs))
        pw_reload_start(st);
}

static void pw_on_stat(uv_fs_t *r);

static int pw_stat_start(struct pw_state *st, int stage)
{
    const char *path = stage ? st->syspath : st->file;
    int rc;

    st->stat_stage = stage;
    rc = uv_fs_stat(st->loop, &st->stat_req, path, pw_on_stat);
    if (rc < 0) {
        uv_fs_req_cleanup(&st->stat_req);
        pw_stat_warn(st, path, rc);
    }
    return rc;
}

static void pw_on_stat(uv_fs_t *r)
{
    struct pw_state *st = PW_CONTAINER(r, struct pw_state, stat_req);
    int stage = st->stat_stage, res = (int)r->result;
    struct pw_sig sig;

    pw_sig_from_uv(&sig, &r->statbuf);
    uv_fs_req_cleanup(r);
    if (res < 0 || st->detaching) {
        if (!st->detaching)
            pw_stat_warn(st, stage ? st->syspath : st->file, res);
        pw_check_done(st, 0);
        return;
    }
    if (stage == 1) {
        st->cand.sys = sig;
        pw_check_done(st, 1);
        return;
    }
    st->cand.file = sig;
    if (!st->table->has_system)
        pw_check_done(st, 1);
    else if (pw_stat_start(st, 1) < 0)
        pw_check_done(st, 0);
}

static void pw_tick(uv_timer_t *t)
{
    struct pw_state *st = PW_CONTAINER(t, struct pw_state, timer);

    if (st->checking || st->reloading || st->detaching)
        return;
    memset(&st->cand, 0, sizeof(st->cand));
    st->checking = 1;
    st->busy++;
    if (pw_stat_start(st, 0) < 0)
        pw_check_done(st, 0);
}

/* ---- module entry points ---------------------------------------------------- */

static int pw_init_fail(const struct selor_host *host, const char *option,
                        char *err, size_t errlen, const char *why)
{
    char where[256] = "";

    if (host != NULL && option != NULL)
        host->option_where(option, where, sizeof(where));
    snprintf(err, errlen, "%s%s%s", where, where[0] ? ": " : "", why);
    return -1;
}

static struct pw_state *pw_state_new(const struct selor_host *host,
                                      const char *file, const char *sys)
{
    struct pw_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    st->host = host;
    st->file = strdup(file);
    st->syspath = strdup(sys);
    if (st->file == NULL || st->syspath == NULL) {
        pw_state_free(st);
        return NULL;
    }
    return st;
}

static int pw_init(const struct selor_host *host, void **state, char *err,
                   size_t errlen)
{
    const char *file = host ? host->option("Passwd_file") : NULL;
    const char *sys = host ? host->option("Passwd_system") : NULL;
    struct pw_state *st;
    char why[512];
    int rc;

    *state = NULL;
    if (host == NULL || host->abi != SELOR_MODULE_ABI)
        return pw_init_fail(NULL, NULL, err, errlen, "host ABI version mismatch");
    if (file == NULL || file[0] == '\0')
        return pw_init_fail(host, "Module", err, errlen, "the passwd module needs "
                            "Passwd_file (the accounts file) to be set");
    if (sys == NULL || sys[0] == '\0')
        sys = "/etc/passwd";
    if (sys[0] != '/')
        return pw_init_fail(host, "Passwd_system", err, errlen,
                            "Passwd_system must be an absolute path");
    if ((st = pw_state_new(host, file, sys)) == NULL)
        return pw_init_fail(NULL, NULL, err, errlen, "out of memory");
    rc = pw_load(st->file, st->syspath, &st->table, &st->sigs, why, sizeof(why));
    if (rc < 0) {
        pw_state_free(st);
        return pw_init_fail(host, rc == PW_EOPEN ? "Passwd_file" : NULL, err,
                            errlen, why);
    }
    *state = st;
    return 0;
}

static int pw_attach(void *state, uv_loop_t *loop)
{
    struct pw_state *st = state;

    if (uv_timer_init(loop, &st->timer) < 0)
        return -1;
    st->loop = loop;
    st->attached = 1;
    st->busy++;  /* the timer, until closed */
    uv_timer_start(&st->timer, pw_tick, PW_RELOAD_MS, PW_RELOAD_MS);
    uv_unref((uv_handle_t *)&st->timer);  /* never keeps a loop alive alone */
    return 0;
}

static void pw_timer_closed(uv_handle_t *h)
{
    struct pw_state *st = PW_CONTAINER(h, struct pw_state, timer);

    st->busy--;
    pw_maybe_free(st);
}

/* Stops the timer; the state is freed once every callback has run (pending
 * AUTH lookups still get their done()). */
static void pw_detach(void *state)
{
    struct pw_state *st = state;

    if (st == NULL || st->detaching)
        return;
    if (!st->attached) {
        pw_state_free(st);
        return;
    }
    st->detaching = 1;
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, pw_timer_closed);
}

static const struct selor_module_option pw_options[] = {
    {"Passwd_system", 1},
    {NULL, 0},
};

extern const struct selor_module selor_module;

const struct selor_module selor_module = {
    .abi = SELOR_MODULE_ABI,
    .name = "passwd",
    .version = "1.0",
    .options = pw_options,
    .init = pw_init,
    .attach = pw_attach,
    .detach = pw_detach,
    .kinds = (1u << SELOR_LOOKUP_DOMAIN) | (1u << SELOR_LOOKUP_MAILBOX) |
             (1u << SELOR_LOOKUP_ALIAS) | (1u << SELOR_LOOKUP_AUTH) |
             (1u << SELOR_LOOKUP_DOMAIN_MAILBOXES),
    .lookup = pw_lookup,
    .cancel = pw_cancel,
};
