/*
 * test_passwd.c - unit tests of the passwd module (modules/passwd).
 *
 * Loads build/asan/mod/selor_passwd.so (or $SELOR_MOD_DIR/selor_passwd.so)
 * with dlopen, gives it a test host table (options from an array, logs
 * captured, per-request allocations freed by the test) and a private libuv
 * loop, and checks lookups, errors, AUTH in the thread pool, cancel, reload
 * and system accounts against passwd files written in a mkdtemp directory.
 * Must not: depend on the machine's accounts (system accounts come from a
 * test Passwd_system file) or leave files behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "selor_module.h"

/* ---- the test host ------------------------------------------------------ */

#define T_MAX_OPTS 8
#define T_LOG_MAX 8192

struct t_host_data {
    const char *names[T_MAX_OPTS];
    const char *values[T_MAX_OPTS];
    int lines[T_MAX_OPTS];
    size_t nopts;
    char warn[T_LOG_MAX], info[T_LOG_MAX];
    int nwarn, ninfo;
};

/* The host functions have no context argument: they read this. */
static struct t_host_data t_host;

static void t_set_option(const char *name, const char *value, int line)
{
    for (size_t i = 0; i < t_host.nopts; i++)
        if (strcmp(t_host.names[i], name) == 0) {
            t_host.values[i] = value;
            t_host.lines[i] = line;
            return;
        }
    assert_true(t_host.nopts < T_MAX_OPTS);
    t_host.names[t_host.nopts] = name;
    t_host.values[t_host.nopts] = value;
    t_host.lines[t_host.nopts++] = line;
}

static const char *t_option(const char *name)
{
    for (size_t i = 0; i < t_host.nopts; i++)
        if (strcmp(t_host.names[i], name) == 0)
            return t_host.values[i];
    return NULL;
}

static void t_option_where(const char *name, char *out, size_t outlen)
{
    int line = 0;

    for (size_t i = 0; i < t_host.nopts; i++)
        if (strcmp(t_host.names[i], name) == 0)
            line = t_host.lines[i];
    snprintf(out, outlen, "test.conf:%d", line);
}

static void t_log_append(char *log, const char *fmt, va_list ap)
{
    size_t len = strlen(log);

    if (len + 1 < T_LOG_MAX) {
        vsnprintf(log + len, T_LOG_MAX - len, fmt, ap);
        len = strlen(log);
        if (len + 1 < T_LOG_MAX)
            strcat(log, "\n");
    }
}

__attribute__((format(printf, 1, 2)))
static void t_log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    t_log_append(t_host.warn, fmt, ap);
    va_end(ap);
    t_host.nwarn++;
}

__attribute__((format(printf, 1, 2)))
static void t_log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    t_log_append(t_host.info, fmt, ap);
    va_end(ap);
    t_host.ninfo++;
}

/* A request with the list of what the module allocated for it. */
struct t_alloc {
    struct t_alloc *next;
    size_t size;
    max_align_t data[];
};

struct t_req {
    struct selor_lookup lk;   /* first: the alloc callback casts */
    struct t_alloc *allocs;
    int done_calls;
};

static void *t_alloc(struct selor_lookup *lk, size_t size)
{
    struct t_req *r = (struct t_req *)lk;
    struct t_alloc *a = malloc(sizeof(*a) + size);

    assert_non_null(a);
    a->size = size;
    a->next = r->allocs;
    r->allocs = a;
    return a->data;
}

static int t_owned(const struct t_req *r, const void *p)
{
    for (const struct t_alloc *a = r->allocs; a; a = a->next)
        if ((const char *)p >= (const char *)a->data &&
            (const char *)p < (const char *)a->data + a->size)
            return 1;
    return 0;
}

static void t_req_clear(struct t_req *r)
{
    while (r->allocs) {
        struct t_alloc *next = r->allocs->next;
        free(r->allocs);
        r->allocs = next;
    }
    memset(r, 0, sizeof(*r));
}

static void t_done(struct selor_lookup *lk)
{
    ((struct t_req *)lk)->done_calls++;
}

static const struct selor_host t_host_table = {
    SELOR_MODULE_ABI, t_option, t_option_where, t_log_warn, t_log_info, t_alloc,
};

/* ---- fixture: module, temp dir, loop -------------------------------------- */

struct t_fx {
    const struct selor_module *mod;
    char dir[64], file[128], sys[128], bad[128];
    uv_loop_t loop;
    void *state;
    int attached;
};

static void *t_dl;

static int t_group_setup(void **unused)
{
    const char *dir = getenv("SELOR_MOD_DIR");
    char path[512];

    snprintf(path, sizeof(path), "%s/selor_passwd.so", dir ? dir : "build/asan/mod");
    t_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (t_dl == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return -1;
    }
    return dlsym(t_dl, "selor_module") ? 0 : -1;
}

static int t_group_teardown(void **unused)
{
    dlclose(t_dl);
    return 0;
}

static int t_setup(void **statep)
{
    struct t_fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    memset(&t_host, 0, sizeof(t_host));
    f->mod = dlsym(t_dl, "selor_module");
    snprintf(f->dir, sizeof(f->dir), "/tmp/selor_pw_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof(f->file), "%s/passwd", f->dir);
    snprintf(f->sys, sizeof(f->sys), "%s/system", f->dir);
    snprintf(f->bad, sizeof(f->bad), "%s/missing", f->dir);
    t_set_option("Module", "/usr/lib/selor/selor_passwd.so", 3);
    t_set_option("Passwd_file", f->file, 4);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *statep = f;
    return 0;
}

/* Detaches, lets the module close its timer, and checks nothing is left. */
static int t_teardown(void **statep)
{
    struct t_fx *f = *statep;

    if (f->state)
        f->mod->detach(f->state);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->file);
    unlink(f->sys);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void t_write(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Replaces path in one step (a new inode), so no half-written file is seen. */
static void t_write_atomic(const char *path, const char *text)
{
    char tmp[160];

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    t_write(tmp, text);
    assert_int_equal(rename(tmp, path), 0);
}

static int t_init(struct t_fx *f, char *err, size_t errlen)
{
    err[0] = '\0';
    return f->mod->init(&t_host_table, &f->state, err, errlen);
}

/* Writes the passwd file, loads it (must succeed) and attaches. */
static void t_load(struct t_fx *f, const char *text)
{
    char err[256];

    t_write(f->file, text);
    if (t_init(f, err, sizeof(err)) != 0)
        fail_msg("init failed: %s", err);
    assert_int_equal(f->mod->attach(f->state, &f->loop), 0);
    f->attached = 1;
}

static int t_lookup(struct t_fx *f, struct t_req *r, enum selor_lookup_kind kind,
                    const char *key, const char *password)
{
    t_req_clear(r);
    r->lk.kind = kind;
    r->lk.key = key;
    r->lk.password = password;
    r->lk.done = t_done;
    r->lk.mbox.uid = r->lk.mbox.gid = -2;
    return f->mod->lookup(f->state, &r->lk);
}

/* Immediate lookup, result only. */
static int t_ask(struct t_fx *f, enum selor_lookup_kind kind, const char *key)
{
    struct t_req r = {0};
    int res = t_lookup(f, &r, kind, key, NULL);

    t_req_clear(&r);
    return res;
}

static void t_watchdog_fired(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void t_close_noop(uv_handle_t *h)
{
}

/* Runs the loop until nothing but the module's unref'd timer is left (at
 * most 10 s). */
static void t_run(struct t_fx *f)
{
    uv_timer_t wd;

    uv_timer_init(&f->loop, &wd);
    uv_timer_start(&wd, t_watchdog_fired, 10000, 0);
    uv_unref((uv_handle_t *)&wd);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wd, t_close_noop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* An AUTH lookup carried to its end: the final result. */
static int t_auth(struct t_fx *f, struct t_req *r, const char *user,
                  const char *password)
{
    int res = t_lookup(f, r, SELOR_LOOKUP_AUTH, user, password);

    if (res != SELOR_PENDING)
        return res;
    assert_int_equal(r->done_calls, 0);
    t_run(f);
    assert_int_equal(r->done_calls, 1);
    return r->lk.result;
}

struct t_until {
    struct t_fx *f;
    int (*cond)(struct t_fx *f);
    uint64_t deadline;
    int met;
};

static void t_until_tick(uv_timer_t *t)
{
    struct t_until *u = t->data;

    if ((u->met = u->cond(u->f)) || uv_now(t->loop) >= u->deadline)
        uv_stop(t->loop);
}

/* Runs the loop until cond holds or max_ms pass; whether it held. */
static int t_run_until(struct t_fx *f, int (*cond)(struct t_fx *), uint64_t max_ms)
{
    struct t_until u = {f, cond, 0, 0};
    uv_timer_t t;

    uv_update_time(&f->loop);
    u.deadline = uv_now(&f->loop) + max_ms;
    uv_timer_init(&f->loop, &t);
    t.data = &u;
    uv_timer_start(&t, t_until_tick, 50, 50);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, t_close_noop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return u.met;
}

/* A crypt(3) hash of password with the given setting prefix. */
static void t_hash(const char *password, const char *setting, char *out, size_t outlen)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *h;

    assert_non_null(cd);
    h = crypt_rn(password, setting, cd, sizeof(*cd));
    assert_non_null(h);
    assert_true(h[0] != '*');
    snprintf(out, outlen, "%s", h);
    free(cd);
}

/* ---- tests ------------------------------------------------------------------ */

static const char t_valid[] =
    "# Selor test accounts\n"
    "\n"
    "alice@example.org:{PLAIN}wonder:1001:1002:Alice:/var/mail/alice:/bin/false:"
    "quota=10M dlocal=/usr/bin/deliver -d %l: \"x y\"\n"
    "   # an indented comment\n"
    "Bob@Example.ORG:{PLAIN}builder\r\n"
    "staff@example.org:{ALIAS}alice@example.org, bob@example.org,carol@elsewhere.net\n"
    "@example.net:{ALIAS}postmaster@example.org\n"
    "demo@selor.test:{PLAIN}demo:::::: \n"
    "nologin@example.org::::::/home/nologin\n"
    "big@example.org:{plain}x::::/h::quota=2G\n";

static void test_module_table(void **statep)
{
    struct t_fx *f = *statep;
    const struct selor_module *m = f->mod;
    unsigned all = (1u << SELOR_LOOKUP_DOMAIN) | (1u << SELOR_LOOKUP_MAILBOX) |
                   (1u << SELOR_LOOKUP_ALIAS) | (1u << SELOR_LOOKUP_AUTH) |
                   (1u << SELOR_LOOKUP_DOMAIN_MAILBOXES);

    assert_int_equal(m->abi, SELOR_MODULE_ABI);
    assert_string_equal(m->name, "passwd");
    assert_int_equal(m->kinds, all);
    assert_non_null(m->options);
    assert_string_equal(m->options[0].name, "Passwd_system");
    assert_int_equal(m->options[0].is_text, 1);
    assert_null(m->options[1].name);
    assert_non_null(m->cancel);
}

static void test_domains(void **statep)
{
    struct t_fx *f = *statep;

    t_load(f, t_valid);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "example.org"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "example.net"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "selor.test"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "Example.ORG"), SELOR_FOUND);
    /* An alias target's domain is not made local. */
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "elsewhere.net"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "org"), SELOR_NOTFOUND);
}

static void test_mailbox_fields(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_load(f, t_valid);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "alice@example.org", NULL),
                     SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "alice@example.org");
    assert_string_equal(r.lk.mbox.home, "/var/mail/alice");
    assert_int_equal(r.lk.mbox.uid, 1001);
    assert_int_equal(r.lk.mbox.gid, 1002);
    assert_int_equal(r.lk.mbox.quota, 10LL * 1024 * 1024);
    assert_string_equal(r.lk.mbox.dlocal, "/usr/bin/deliver -d %l: \"x y\"");

    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "bob@example.org", NULL),
                     SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "bob@example.org");
    assert_string_equal(r.lk.mbox.home, "");
    assert_int_equal(r.lk.mbox.uid, -1);
    assert_int_equal(r.lk.mbox.gid, -1);
    assert_int_equal(r.lk.mbox.quota, 0);
    assert_string_equal(r.lk.mbox.dlocal, "");

    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "big@example.org", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.mbox.quota, 2LL * 1024 * 1024 * 1024);
    assert_string_equal(r.lk.mbox.home, "/h");

    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "nologin@example.org"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "demo@selor.test"), SELOR_FOUND);
    /* An alias is not a mailbox. */
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "staff@example.org"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "carol@example.org"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "alice@example.net"), SELOR_NOTFOUND);
    t_req_clear(&r);
}

static void test_aliases(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_load(f, t_valid);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_ALIAS, "staff@example.org", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 3);
    assert_string_equal(r.lk.targets[0], "alice@example.org");
    assert_string_equal(r.lk.targets[1], "bob@example.org");
    assert_string_equal(r.lk.targets[2], "carol@elsewhere.net");

    /* The catch-all, asked as "@domain" (Seek_df_alias). */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_ALIAS, "@example.net", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 1);
    assert_string_equal(r.lk.targets[0], "postmaster@example.org");

    assert_int_equal(t_ask(f, SELOR_LOOKUP_ALIAS, "@example.org"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_ALIAS, "alice@example.org"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_ALIAS, "x@example.net"), SELOR_NOTFOUND);
    t_req_clear(&r);
}

/* An alias target "@domain" (a broadcast) is kept as written. */
static void test_broadcast_target(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    char err[256];

    t_load(f, "all@example.org:{ALIAS}@example.org, bob@elsewhere.net\n"
              "a@example.org:{PLAIN}x\n");
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_ALIAS, "all@example.org", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 2);
    assert_string_equal(r.lk.targets[0], "@example.org");
    assert_string_equal(r.lk.targets[1], "bob@elsewhere.net");
    t_req_clear(&r);
    f->mod->detach(f->state);
    f->state = NULL;
    /* Still refused: an empty domain, or a bare word. */
    t_write(f->file, "all@example.org:{ALIAS}@\n");
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no domain after @"));
    t_write(f->file, "all@example.org:{ALIAS}nobody\n");
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not user@domain"));
}

static int t_has(const struct t_req *r, const char *addr)
{
    for (size_t i = 0; i < r->lk.ntargets; i++)
        if (strcmp(r->lk.targets[i], addr) == 0)
            return 1;
    return 0;
}

/* Every mailbox of a domain (broadcasts), sorted; not aliases, not other
 * domains. */
static void test_domain_mailboxes(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_load(f, t_valid);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_DOMAIN_MAILBOXES, "example.org", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 4);
    assert_string_equal(r.lk.targets[0], "alice@example.org");
    assert_string_equal(r.lk.targets[1], "big@example.org");
    assert_string_equal(r.lk.targets[2], "bob@example.org");
    assert_string_equal(r.lk.targets[3], "nologin@example.org");
    assert_true(t_owned(&r, r.lk.targets));
    /* A local domain with only a catch-all has no mailbox; a remote one
     * is not known. */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_DOMAIN_MAILBOXES, "example.net", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 0);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN_MAILBOXES, "elsewhere.net"),
                     SELOR_NOTFOUND);
    t_req_clear(&r);
}

static void test_case_insensitive(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_load(f, t_valid);
    /* Bob@Example.ORG in the file; the core asks in lower case. */
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "bob@example.org"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "BOB@EXAMPLE.ORG"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_ALIAS, "Staff@Example.Org"), SELOR_FOUND);
    assert_int_equal(t_auth(f, &r, "BOB@example.ORG", "builder"), SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "bob@example.org");
    /* Passwords are not case-insensitive. */
    assert_int_equal(t_auth(f, &r, "bob@example.org", "Builder"), SELOR_NOTFOUND);
    t_req_clear(&r);
}

static void test_auth_plain(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_load(f, t_valid);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "demo@selor.test", "demo"),
                     SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "demo@selor.test");
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice@example.org", "wonder"),
                     SELOR_FOUND);
    assert_int_equal(r.lk.mbox.uid, 1001);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice@example.org", "wonde"),
                     SELOR_NOTFOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice@example.org", "wonderr"),
                     SELOR_NOTFOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice@example.org", ""),
                     SELOR_NOTFOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "nobody@example.org", "x"),
                     SELOR_NOTFOUND);
    /* Aliases and password-less mailboxes cannot log in. */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "staff@example.org", ""),
                     SELOR_NOTFOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "nologin@example.org", ""),
                     SELOR_NOTFOUND);
    assert_int_equal(r.done_calls, 0);
    t_req_clear(&r);
}

static void test_auth_sha512(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    char h6[256], text[640];

    t_hash("s3cret pass", "$6$saltsaltsalt$", h6, sizeof(h6));
    snprintf(text, sizeof(text), "carol@example.org:{SHA512-CRYPT}%s"
             ":1002:1003::/home/carol::quota=5K\n", h6);
    t_load(f, text);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "Carol@Example.org", "s3cret pass"),
                     SELOR_PENDING);
    t_run(f);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.lk.result, SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "carol@example.org");
    assert_string_equal(r.lk.mbox.home, "/home/carol");
    assert_int_equal(r.lk.mbox.uid, 1002);
    assert_int_equal(r.lk.mbox.gid, 1003);
    assert_int_equal(r.lk.mbox.quota, 5 * 1024);
    /* The answer of a pending lookup lives in the request's memory. */
    assert_true(t_owned(&r, r.lk.mbox.user));
    assert_true(t_owned(&r, r.lk.mbox.home));

    assert_int_equal(t_auth(f, &r, "carol@example.org", "s3cret pasS"), SELOR_NOTFOUND);
    assert_int_equal(t_auth(f, &r, "carol@example.org", ""), SELOR_NOTFOUND);
    t_req_clear(&r);
}

static void test_auth_other_crypts(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    char h6[256], h5[256], h2[256], text[2048];

    t_hash("s3cret pass", "$6$saltsaltsalt$", h6, sizeof(h6));
    t_hash("five", "$5$pepper$", h5, sizeof(h5));
    t_hash("blow", "$2b$04$abcdefghijklmnopqrstuu", h2, sizeof(h2));
    snprintf(text, sizeof(text),
             "dave@example.org:{SHA256-CRYPT}%s\n"
             "erin@example.org:{BLF-CRYPT}%s\n"
             "fred@example.org:%s\n"
             "gina@example.org:{CRYPT}%s\n", h5, h2, h6, h5);
    t_load(f, text);
    assert_int_equal(t_auth(f, &r, "dave@example.org", "five"), SELOR_FOUND);
    assert_int_equal(t_auth(f, &r, "dave@example.org", "six"), SELOR_NOTFOUND);
    assert_int_equal(t_auth(f, &r, "erin@example.org", "blow"), SELOR_FOUND);
    assert_int_equal(t_auth(f, &r, "erin@example.org", "blew"), SELOR_NOTFOUND);
    /* No {SCHEME}: CRYPT, as Dovecot. */
    assert_int_equal(t_auth(f, &r, "fred@example.org", "s3cret pass"), SELOR_FOUND);
    assert_int_equal(t_auth(f, &r, "gina@example.org", "five"), SELOR_FOUND);
    assert_int_equal(t_auth(f, &r, "gina@example.org", "s3cret pass"), SELOR_NOTFOUND);
    t_req_clear(&r);
}

static void test_auth_cancel(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req *r = calloc(1, sizeof(*r));
    struct t_req r2 = {0};
    char h6[256], text[640];

    assert_non_null(r);
    t_hash("pw", "$6$cancelsalt$", h6, sizeof(h6));
    snprintf(text, sizeof(text), "carol@example.org:{SHA512-CRYPT}%s\n", h6);
    t_load(f, text);
    assert_int_equal(t_lookup(f, r, SELOR_LOOKUP_AUTH, "carol@example.org", "pw"),
                     SELOR_PENDING);
    /* A second one, left to finish, shows the first one's cancel is local. */
    assert_int_equal(t_lookup(f, &r2, SELOR_LOOKUP_AUTH, "carol@example.org", "pw"),
                     SELOR_PENDING);
    f->mod->cancel(f->state, &r->lk);
    /* The owner goes away at once: ASan reports any later use. */
    t_req_clear(r);
    free(r);
    t_run(f);
    assert_int_equal(r2.done_calls, 1);
    assert_int_equal(r2.lk.result, SELOR_FOUND);
    t_req_clear(&r2);
}

static void test_detach_with_pending_auth(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    char h6[256], text[640];

    t_hash("pw", "$6$detachsalt$", h6, sizeof(h6));
    snprintf(text, sizeof(text), "carol@example.org:{SHA512-CRYPT}%s\n", h6);
    t_load(f, text);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "carol@example.org", "pw"),
                     SELOR_PENDING);
    f->mod->detach(f->state);
    f->state = NULL;
    t_run(f);  /* the lookup still ends; then the state is freed */
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.lk.result, SELOR_FOUND);
    t_req_clear(&r);
}

struct t_bad_case {
    int line;
    const char *text;
    const char *why;
};

static void test_malformed_lines(void **statep)
{
    static const struct t_bad_case cases[] = {
        {3, "# c\na@x.org:{PLAIN}p\nb@x.org:{PLAIN}p:abc\n", "uid must be a number"},
        {1, "a@x.org:{PLAIN}p:1:-5\n", "gid must be a number"},
        {2, "\na@x.org:{PLAIN}p:::::: quota=12X\n", "quota must be"},
        {1, "a@x.org:{PLAIN}p:::::: quota=99999999999G\n", "quota too large"},
        {1, "a@x.org:{PLAIN}p:::::: color=blue\n", "unknown extra field color=blue"},
        {1, "nodomain:{PLAIN}p\n", "not user@domain"},
        {1, "a@:{PLAIN}p\n", "no domain"},
        {1, "a b@x.org:{PLAIN}p\n", "space"},
        {1, "justakey\n", "expected user@domain"},
        {2, "a@x.org:{PLAIN}p\nA@X.org:{PLAIN}q\n", "duplicate mailbox a@x.org (first on line 1)"},
        {1, "@x.org:{PLAIN}p\n", "catch-all"},
        {1, "*@x.org:{PLAIN}p\n", "only allowed with {SYSTEM}"},
        {1, "a@x.org:{SYSTEM}\n", "{SYSTEM} needs the key *@domain"},
        {1, "a@x.org:{ALIAS}b@x.org,,c@x.org\n", "empty alias target"},
        {1, "a@x.org:{ALIAS}b\n", "alias target b"},
        {1, "a@x.org:{ALIAS}b@x.org:1000\n", "takes no uid"},
        {1, "a@x.org:{PLAIN}\n", "empty {PLAIN} password"},
        {1, "a@x.org:{SHA512-CRYPT}$5$abc$def\n", "not a valid {SHA512-CRYPT} hash"},
        {1, "a@x.org:{SHA512-CRYPT\n", "unterminated"},
        {1, "a@x.org:{BLF-CRYPT}nothash\n", "not a valid {BLF-CRYPT} hash"},
        {2, "a@x.org:{PLAIN}p\nb@x.org:{PLAIN}p\0q\n", "NUL byte"},
    };
    struct t_fx *f = *statep;
    char err[256], where[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *fp = fopen(f->file, "w");
        size_t len = strlen(cases[i].text);
        assert_non_null(fp);
        if (strstr(cases[i].why, "NUL"))
            len += strlen(cases[i].text + len + 1) + 1;
        assert_int_equal(fwrite(cases[i].text, 1, len, fp), len);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(t_init(f, err, sizeof(err)), -1);
        assert_null(f->state);
        snprintf(where, sizeof(where), "%s:%d: ", f->file, cases[i].line);
        if (strstr(err, where) == NULL || strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: want \"%s...%s\", got \"%s\"", i, where,
                     cases[i].why, err);
    }
}

static void test_too_many_targets(void **statep)
{
    struct t_fx *f = *statep;
    size_t n = SELOR_ALIAS_MAX_TARGETS + 1, len = 64 + 2 * n * 16;
    char *text = malloc(len), *p = text, err[256];

    assert_non_null(text);
    p += sprintf(p, "ok@x.org:{ALIAS}");
    for (size_t i = 0; i < SELOR_ALIAS_MAX_TARGETS; i++)
        p += sprintf(p, "%st%zu@y.org", i ? "," : "", i);
    p += sprintf(p, "\nbig@x.org:{ALIAS}");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%st%zu@y.org", i ? "," : "", i);
    strcpy(p, "\n");
    t_write(f->file, text);
    free(text);
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2: more than 1000 alias targets"));
}

static void test_unknown_scheme(void **statep)
{
    struct t_fx *f = *statep;
    char err[256], want[200];

    t_write(f->file, "a@x.org:{PLAIN}p\n# c\nb@x.org:{MD5}0123456789abcdef\n");
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: unknown password scheme {MD5}", f->file);
    assert_non_null(strstr(err, want));
}

static void test_option_errors(void **statep)
{
    struct t_fx *f = *statep;
    char err[256];

    t_set_option("Passwd_file", NULL, 0);
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "test.conf:3: "));  /* where Module is */
    assert_non_null(strstr(err, "Passwd_file"));

    t_set_option("Passwd_file", "", 0);
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Passwd_file"));

    t_set_option("Passwd_file", f->bad, 4);
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "test.conf:4: "));
    assert_non_null(strstr(err, f->bad));
    assert_non_null(strstr(err, "cannot open"));

    t_set_option("Passwd_file", f->file, 4);
    t_write(f->file, "a@x.org:{PLAIN}p\n");
    t_set_option("Passwd_system", "etc/passwd", 9);
    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "test.conf:9: Passwd_system must be an absolute path"));
    assert_null(f->state);

    /* Init without attach, then detach: nothing leaks. */
    t_set_option("Passwd_system", NULL, 0);
    assert_int_equal(t_init(f, err, sizeof(err)), 0);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "a@x.org"), SELOR_FOUND);
    f->mod->detach(f->state);
    f->state = NULL;
}

static int t_has_newbie(struct t_fx *f)
{
    return t_ask(f, SELOR_LOOKUP_MAILBOX, "newbie@example.com") == SELOR_FOUND;
}

static int t_warned(struct t_fx *f)
{
    return t_host.nwarn > 0;
}

static void test_reload(void **statep)
{
    struct t_fx *f = *statep;

    t_load(f, "old@example.com:{PLAIN}p\n");
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "old@example.com"), SELOR_FOUND);
    t_write(f->file, "newbie@example.com:{PLAIN}p:42\n"
                     "list@example.net:{ALIAS}newbie@example.com\n");
    assert_true(t_run_until(f, t_has_newbie, 6000));
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "old@example.com"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "example.net"), SELOR_FOUND);
    assert_non_null(strstr(t_host.info, "reloaded"));
    assert_int_equal(t_host.nwarn, 0);
}

static void test_reload_failure_keeps_table(void **statep)
{
    struct t_fx *f = *statep;
    char want[200];

    t_load(f, "old@example.com:{PLAIN}p\n");
    t_write_atomic(f->file, "newbie@example.com:{PLAIN}p\nbroken line without colon\n");
    assert_true(t_run_until(f, t_warned, 6000));
    snprintf(want, sizeof(want), "%s:2: expected user@domain", f->file);
    assert_non_null(strstr(t_host.warn, want));
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "old@example.com"), SELOR_FOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "newbie@example.com"), SELOR_NOTFOUND);
    /* The same bad file is not parsed (and reported) again and again. */
    t_run_until(f, t_has_newbie, 2500);
    assert_int_equal(t_host.nwarn, 1);
    /* Fixed: the next change is taken. */
    t_write_atomic(f->file, "newbie@example.com:{PLAIN}p\n");
    assert_true(t_run_until(f, t_has_newbie, 6000));
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "old@example.com"), SELOR_NOTFOUND);
}

static const char t_system[] =
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "toor:x:0:0::/root:/bin/sh\n"
    "Alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
    "bob:x:1001:100::/home/bob:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "+nisuser\n";

static void t_system_load(struct t_fx *f)
{
    t_write(f->sys, t_system);
    t_set_option("Passwd_system", f->sys, 12);
    t_load(f, "*@sys.example:{SYSTEM}\n"
              "bob@sys.example:{PLAIN}virtual::::/virt/bob\n");
}

static void test_system_accounts(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_system_load(f);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_DOMAIN, "sys.example"), SELOR_FOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "alice@sys.example", NULL),
                     SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "Alice");
    assert_string_equal(r.lk.mbox.home, "/home/alice");
    assert_int_equal(r.lk.mbox.uid, 1000);
    assert_int_equal(r.lk.mbox.gid, 1000);
    assert_string_equal(r.lk.mbox.dlocal, "");
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "root@sys.example", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.mbox.uid, 0);
    /* A virtual entry wins over the system account of the same name. */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "bob@sys.example", NULL),
                     SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "bob@sys.example");
    assert_string_equal(r.lk.mbox.home, "/virt/bob");
    /* Not mailboxes: system uids, a second uid 0, nobody. */
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "daemon@sys.example"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "toor@sys.example"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "nobody@sys.example"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "nisuser@sys.example"), SELOR_NOTFOUND);
    /* Only in {SYSTEM} domains. */
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "alice@other.example"), SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "alice"), SELOR_NOTFOUND);
    /* No shadow entry for alice on this machine: refused, after the pool. */
    assert_int_equal(t_auth(f, &r, "alice@sys.example", "x"), SELOR_NOTFOUND);
    assert_int_equal(t_auth(f, &r, "daemon", "x"), SELOR_NOTFOUND);
    assert_int_equal(t_auth(f, &r, "bob@sys.example", "virtual"), SELOR_FOUND);
    /* Broadcast list: system accounts as they are mailboxes, once each. */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_DOMAIN_MAILBOXES, "sys.example", NULL),
                     SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 3);  /* alice, bob (once), root */
    assert_true(t_has(&r, "alice@sys.example"));
    assert_true(t_has(&r, "root@sys.example"));
    assert_true(t_has(&r, "bob@sys.example"));
    assert_false(t_has(&r, "daemon@sys.example"));
    assert_false(t_has(&r, "nobody@sys.example"));
    for (size_t i = 1; i < r.lk.ntargets; i++)
        assert_true(strcmp(r.lk.targets[i - 1], r.lk.targets[i]) < 0);
    t_req_clear(&r);
}

/* In a child that cannot read /etc/shadow: NOTFOUND and one warning. */
static int t_shadow_child(struct t_fx *f)
{
    struct t_req r = {0};
    int res1, res2;

    if (getuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
        return 2;
    if (access("/etc/shadow", R_OK) == 0)
        return 3;
    memset(&t_host, 0, sizeof(t_host));
    t_set_option("Module", "x", 1);
    t_set_option("Passwd_file", f->file, 2);
    t_set_option("Passwd_system", f->sys, 3);
    if (uv_loop_init(&f->loop) < 0 || t_init(f, (char[256]){0}, 256) < 0 ||
        f->mod->attach(f->state, &f->loop) < 0)
        return 4;
    res1 = t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice", "x");
    t_run(f);
    res1 = res1 == SELOR_PENDING && r.done_calls == 1 ? r.lk.result : -1;
    res2 = t_lookup(f, &r, SELOR_LOOKUP_AUTH, "alice@sys.example", "x");
    t_run(f);
    res2 = res2 == SELOR_PENDING && r.done_calls == 1 ? r.lk.result : -1;
    if (res1 != SELOR_NOTFOUND || res2 != SELOR_NOTFOUND)
        return 5;
    if (t_host.nwarn != 1 || strstr(t_host.warn, "shadow") == NULL)
        return 6;
    return 0;
}

static void test_system_auth_without_shadow(void **statep)
{
    struct t_fx *f = *statep;
    int status;
    pid_t pid;

    t_write(f->sys, t_system);
    t_write(f->file, "*@sys.example:{SYSTEM}\n");
    if (getuid() != 0 && access("/etc/shadow", R_OK) == 0)
        skip();  /* neither readable-free nor able to drop privileges */
    /* The child runs as nobody: let it read the test files. */
    assert_int_equal(chmod(f->dir, 0755), 0);
    assert_int_equal(chmod(f->file, 0644), 0);
    assert_int_equal(chmod(f->sys, 0644), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(t_shadow_child(f));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int t_has_carl(struct t_fx *f)
{
    return t_ask(f, SELOR_LOOKUP_MAILBOX, "carl@sys.example") == SELOR_FOUND;
}

static void test_system_file_reload(void **statep)
{
    struct t_fx *f = *statep;

    t_system_load(f);
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "carl@sys.example"), SELOR_NOTFOUND);
    t_write(f->sys, "carl:x:1500:1500::/home/carl:/bin/sh\n");
    assert_true(t_run_until(f, t_has_carl, 6000));
    assert_int_equal(t_ask(f, SELOR_LOOKUP_MAILBOX, "alice@sys.example"), SELOR_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_module_table, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_domains, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_fields, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_aliases, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_broadcast_target, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_domain_mailboxes, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_case_insensitive, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_auth_plain, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_auth_sha512, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_auth_other_crypts, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_auth_cancel, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_detach_with_pending_auth, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_too_many_targets, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_scheme, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_option_errors, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_reload, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_reload_failure_keeps_table, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_system_accounts, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_system_auth_without_shadow, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_system_file_reload, t_setup, t_teardown),
    };

    return cmocka_run_group_tests_name("passwd", tests, t_group_setup, t_group_teardown);
}
