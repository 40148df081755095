/*
 * test_pgsql.c - unit tests of the pgsql module (modules/pgsql) through
 * its ABI: loaded with dlopen from $SELOR_MOD_DIR (default
 * build/asan/mod), a test host table, a private libuv loop.
 *
 * Option checks, lookups before attach and an unreachable database run
 * everywhere.  The tests that need a database run when SELOR_PG_CONNINFO
 * names one holding the schema of tests/system/test_pgsql.py (that test
 * runs this program against its own server); otherwise they are skipped.
 * Must not: need a database for the first group, or leave a handle open.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "selor_module.h"

/* ---- the test host ------------------------------------------------------ */

#define T_OPTS 12

static struct {
    const char *names[T_OPTS], *values[T_OPTS];
    size_t n;
    char warn[4096];
    int nwarn;
} t_host;

static void t_opt(const char *name, const char *value)
{
    for (size_t i = 0; i < t_host.n; i++)
        if (strcmp(t_host.names[i], name) == 0) {
            t_host.values[i] = value;
            return;
        }
    assert_true(t_host.n < T_OPTS);
    t_host.names[t_host.n] = name;
    t_host.values[t_host.n++] = value;
}

static const char *t_option(const char *name)
{
    for (size_t i = 0; i < t_host.n; i++)
        if (strcmp(t_host.names[i], name) == 0)
            return t_host.values[i];
    return NULL;
}

static void t_where(const char *name, char *out, size_t len)
{
    snprintf(out, len, "test.conf:%s", name);
}

__attribute__((format(printf, 1, 2)))
static void t_warn(const char *fmt, ...)
{
    size_t len = strlen(t_host.warn);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t_host.warn + len, sizeof(t_host.warn) - len, fmt, ap);
    va_end(ap);
    len = strlen(t_host.warn);
    if (len + 1 < sizeof(t_host.warn))
        strcat(t_host.warn, "\n");
    t_host.nwarn++;
}

struct t_req {
    struct selor_lookup lk;     /* first: t_alloc casts */
    void *mem[64];
    size_t nmem;
    int done_calls;
};

static void *t_alloc(struct selor_lookup *lk, size_t size)
{
    struct t_req *r = (struct t_req *)lk;

    assert_true(r->nmem < 64);
    return r->mem[r->nmem++] = malloc(size);
}

static void t_req_clear(struct t_req *r)
{
    for (size_t i = 0; i < r->nmem; i++)
        free(r->mem[i]);
    memset(r, 0, sizeof(*r));
}

static uv_loop_t *t_loop;

static void t_done(struct selor_lookup *lk)
{
    ((struct t_req *)lk)->done_calls++;
    uv_stop(t_loop);
}

static const struct selor_host t_host_table = {
    SELOR_MODULE_ABI, t_option, t_where, t_warn, t_warn, t_alloc,
};

/* ---- fixture -------------------------------------------------------------- */

struct t_fx {
    const struct selor_module *mod;
    uv_loop_t loop;
    void *state;
};

static void *t_dl;

static int t_group_setup(void **unused)
{
    const char *dir = getenv("SELOR_MOD_DIR");
    char path[512];

    snprintf(path, sizeof(path), "%s/selor_pgsql.so", dir ? dir : "build/asan/mod");
    if ((t_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
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

static const char *t_conninfo(void)
{
    return getenv("SELOR_PG_CONNINFO");
}

static int t_setup(void **statep)
{
    struct t_fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    memset(&t_host, 0, sizeof(t_host));
    f->mod = dlsym(t_dl, "selor_module");
    assert_int_equal(uv_loop_init(&f->loop), 0);
    t_loop = &f->loop;
    t_opt("Pgsql_conninfo", t_conninfo() ? t_conninfo() : "hostaddr=127.0.0.1 port=1");
    t_opt("Pgsql_query_mailbox", "SELECT * FROM mailbox_lookup($1)");
    t_opt("Pgsql_query_alias", "SELECT target FROM aliases WHERE address = $1");
    t_opt("Pgsql_query_domain_mailboxes", "SELECT address FROM mailboxes WHERE "
          "substring(address from '@([^@]*)$') = $1 ORDER BY address");
    *statep = f;
    return 0;
}

static void t_noop_close(uv_handle_t *h)
{
}

static void t_walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, t_noop_close);
}

/* Detaches; the module must have closed every handle of its own. */
static int t_teardown(void **statep)
{
    struct t_fx *f = *statep;

    if (f->state)
        f->mod->detach(f->state);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&f->loop) != 0) {
        uv_walk(&f->loop, t_walk_close, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
        fail_msg("the module left handles open after detach");
    }
    free(f);
    return 0;
}

static int t_init(struct t_fx *f, char *err, size_t len)
{
    err[0] = '\0';
    return f->mod->init(&t_host_table, &f->state, err, len);
}

static void t_attach(struct t_fx *f)
{
    char err[256];

    if (t_init(f, err, sizeof(err)) != 0)
        fail_msg("init: %s", err);
    assert_int_equal(f->mod->attach(f->state, &f->loop), 0);
}

static void t_fire(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until a done() or ms pass. */
static void t_run(struct t_fx *f, uint64_t ms)
{
    uv_timer_t wd;

    uv_timer_init(&f->loop, &wd);
    uv_timer_start(&wd, t_fire, ms, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wd, t_noop_close);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int t_lookup(struct t_fx *f, struct t_req *r, enum selor_lookup_kind kind,
                    const char *key)
{
    t_req_clear(r);
    r->lk.kind = kind;
    r->lk.key = key;
    r->lk.done = t_done;
    return f->mod->lookup(f->state, &r->lk);
}

/* A lookup carried to its end. */
static int t_ask(struct t_fx *f, struct t_req *r, enum selor_lookup_kind kind,
                 const char *key)
{
    int res = t_lookup(f, r, kind, key);

    if (res != SELOR_PENDING)
        return res;
    t_run(f, 10000);
    assert_int_equal(r->done_calls, 1);
    return r->lk.result;
}

#define T_NEED_DB() do { if (t_conninfo() == NULL) skip(); } while (0)

/* ---- without a database ------------------------------------------------------ */

static void test_module_table(void **statep)
{
    struct t_fx *f = *statep;
    const char *want[] = {"Pgsql_conninfo", "Pgsql_query_domain", "Pgsql_query_mailbox",
                          "Pgsql_query_alias", "Pgsql_query_auth",
                          "Pgsql_query_domain_mailboxes", "Pgsql_connections",
                          "Pgsql_cache_ttl", "Pgsql_timeout"};

    assert_int_equal(f->mod->abi, SELOR_MODULE_ABI);
    assert_string_equal(f->mod->name, "pgsql");
    assert_true(f->mod->kinds & (1u << SELOR_LOOKUP_DOMAIN_MAILBOXES));
    assert_non_null(f->mod->cancel);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(f->mod->options[i].name, want[i]);
    assert_null(f->mod->options[sizeof(want) / sizeof(want[0])].name);
}

static void t_init_fails(struct t_fx *f, const char *needle)
{
    char err[256];

    assert_int_equal(t_init(f, err, sizeof(err)), -1);
    assert_null(f->state);
    if (strstr(err, needle) == NULL)
        fail_msg("error %s lacks %s", err, needle);
}

static void test_option_errors(void **statep)
{
    struct t_fx *f = *statep;

    t_opt("Pgsql_conninfo", "nonsense");
    t_init_fails(f, "Pgsql_conninfo");
    t_opt("Pgsql_conninfo", "hostaddr=127.0.0.1");
    t_opt("Pgsql_query_alias", "SELECT target FROM aliases WHERE address = 'x'");
    t_init_fails(f, "must use $1");
    t_opt("Pgsql_query_alias", "");
    t_opt("Pgsql_connections", "0");
    t_init_fails(f, "Pgsql_connections must be a number from 1");
    t_opt("Pgsql_connections", "2");
    t_opt("Pgsql_timeout", "soon");
    t_init_fails(f, "Pgsql_timeout");
    t_opt("Pgsql_timeout", "5");
    t_opt("Pgsql_query_mailbox", NULL);
    t_opt("Pgsql_query_domain_mailboxes", NULL);
    t_init_fails(f, "at least one Pgsql_query_");
}

/* A host name (not an address) is resolved by libpq on the loop: a
 * warning at start says so. */
static void test_host_name_warning(void **statep)
{
    struct t_fx *f = *statep;
    char err[256];

    t_opt("Pgsql_conninfo", "host=db.example.org,10.0.0.1 dbname=mail");
    assert_int_equal(t_init(f, err, sizeof(err)), 0);
    assert_non_null(strstr(t_host.warn, "db.example.org"));
    f->mod->detach(f->state);
    f->state = NULL;
    memset(t_host.warn, 0, sizeof(t_host.warn));
    t_opt("Pgsql_conninfo", "host=/run/postgresql,10.0.0.1 dbname=mail");
    assert_int_equal(t_init(f, err, sizeof(err)), 0);
    assert_string_equal(t_host.warn, "");
}

static void test_before_attach_and_unset_kinds(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    char err[256];

    assert_int_equal(t_init(f, err, sizeof(err)), 0);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "a@b.test"), SELOR_TEMPFAIL);
    assert_non_null(strstr(r.lk.error, "pgsql:"));
    /* no Pgsql_query_domain, no Pgsql_query_auth: not this module's */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_DOMAIN, "b.test"), SELOR_NOTFOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_AUTH, "a@b.test"), SELOR_NOTFOUND);
    t_req_clear(&r);
}

/* Nobody listens: TEMPFAIL with the reason, one warning, not one per lookup. */
static void test_database_unreachable(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};

    t_opt("Pgsql_conninfo", "hostaddr=127.0.0.1 port=1");
    t_attach(f);
    t_run(f, 300);
    for (int i = 0; i < 20; i++) {
        int res = t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "a@b.test");
        assert_int_equal(res, SELOR_TEMPFAIL);
        assert_non_null(strstr(r.lk.error, "pgsql:"));
    }
    t_run(f, 800);   /* a retry or two fail too */
    assert_int_equal(t_host.nwarn, 1);
    assert_non_null(strstr(t_host.warn, "database unavailable"));
    t_req_clear(&r);
}

/* ---- with the test database ------------------------------------------------------- */

static void test_mailbox_and_lists(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    int seen = 0;

    T_NEED_DB();
    t_attach(f);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_FOUND);
    assert_string_equal(r.lk.mbox.user, "alice@local.test");
    assert_string_equal(r.lk.mbox.home, "/home/alice");
    assert_int_equal(r.lk.mbox.uid, 1001);
    assert_int_equal(r.lk.mbox.gid, 1002);
    assert_int_equal(r.lk.mbox.quota, 1048576);
    assert_string_equal(r.lk.mbox.dlocal, "");
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "nopw@local.test"), SELOR_FOUND);
    assert_int_equal(r.lk.mbox.uid, -1);
    assert_string_equal(r.lk.mbox.home, "");
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "ghost@local.test"), SELOR_NOTFOUND);
    /* broadcast list of a domain, and a broadcast alias target as is */
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_DOMAIN_MAILBOXES, "local.test"), SELOR_FOUND);
    assert_true(r.lk.ntargets >= 10);
    for (size_t i = 0; i < r.lk.ntargets; i++)
        seen += strcmp(r.lk.targets[i], "alice@local.test") == 0;
    assert_int_equal(seen, 1);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_DOMAIN_MAILBOXES, "nowhere.test"),
                     SELOR_NOTFOUND);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_ALIAS, "all@local.test"), SELOR_FOUND);
    assert_int_equal(r.lk.ntargets, 1);
    assert_string_equal(r.lk.targets[0], "@local.test");
    /* the second time from the cache, at once, the same answer */
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_ALIAS, "all@local.test"), SELOR_FOUND);
    assert_string_equal(r.lk.targets[0], "@local.test");
    t_req_clear(&r);
}

/* After cancel, done() never comes, even when the result does. */
static void test_cancel(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0}, r2 = {0};

    T_NEED_DB();
    t_opt("Pgsql_cache_ttl", "0");
    t_attach(f);
    assert_int_equal(t_ask(f, &r2, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_FOUND);
    assert_int_equal(t_lookup(f, &r, SELOR_LOOKUP_MAILBOX, "alice@local.test"),
                     SELOR_PENDING);
    f->mod->cancel(f->state, &r.lk);
    t_run(f, 500);
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(t_ask(f, &r2, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_FOUND);
    t_req_clear(&r);
    t_req_clear(&r2);
}

/* A query past Pgsql_timeout: TEMPFAIL at the timeout, and the only
 * connection serves again afterwards. */
static void test_timeout_then_reuse(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r = {0};
    uint64_t t0;

    T_NEED_DB();
    t_opt("Pgsql_timeout", "1");
    t_opt("Pgsql_connections", "1");
    t_opt("Pgsql_cache_ttl", "0");
    t_attach(f);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_FOUND);
    uv_update_time(&f->loop);
    t0 = uv_now(&f->loop);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "slow@local.test"), SELOR_TEMPFAIL);
    assert_non_null(strstr(r.lk.error, "timed out"));
    assert_true(uv_now(&f->loop) - t0 >= 900 && uv_now(&f->loop) - t0 < 2500);
    assert_int_equal(t_ask(f, &r, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_FOUND);
    assert_int_equal(t_host.nwarn, 0);
    t_req_clear(&r);
}

/* detach with a query in flight and one queued: no done(), every handle
 * closed (t_teardown checks), nothing leaked (ASan). */
static void test_detach_with_pending(void **statep)
{
    struct t_fx *f = *statep;
    struct t_req r1 = {0}, r2 = {0};

    T_NEED_DB();
    t_opt("Pgsql_connections", "1");
    t_opt("Pgsql_cache_ttl", "0");
    t_attach(f);
    t_run(f, 300);
    assert_int_equal(t_lookup(f, &r1, SELOR_LOOKUP_MAILBOX, "slow@local.test"), SELOR_PENDING);
    assert_int_equal(t_lookup(f, &r2, SELOR_LOOKUP_MAILBOX, "alice@local.test"), SELOR_PENDING);
    f->mod->detach(f->state);
    f->state = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r1.done_calls + r2.done_calls, 0);
    t_req_clear(&r1);
    t_req_clear(&r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_module_table, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_option_errors, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_host_name_warning, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_before_attach_and_unset_kinds, t_setup,
                                        t_teardown),
        cmocka_unit_test_setup_teardown(test_database_unreachable, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_and_lists, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_then_reuse, t_setup, t_teardown),
        cmocka_unit_test_setup_teardown(test_detach_with_pending, t_setup, t_teardown),
    };

    return cmocka_run_group_tests(tests, t_group_setup, t_group_teardown);
}
