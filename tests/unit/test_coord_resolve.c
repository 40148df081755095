/*
 * test_coord_resolve.c - Redis host names become numeric addresses without
 * blocking (cluster/coord_net.c): an IP literal answers at once, a name
 * through c-ares on the loop (IPv4 first), and a lookup whose owner
 * cancelled never answers, even when the resolver is freed meanwhile.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "async.h"
#include "coord_net.h"
#include "dns.h"

struct got {
    int calls;
    struct coord_addrs a;
};

static void on_addrs(void *arg, const struct coord_addrs *a)
{
    struct got *g = arg;

    g->calls++;
    g->a = *a;
}

static struct net_hostport hostport(const char *host, int port)
{
    struct net_hostport hp;

    snprintf(hp.host, sizeof(hp.host), "%s", host);
    hp.port = port;
    return hp;
}

static void test_literal_at_once(void **state)
{
    struct coord_resolve r;
    struct async_owner o;
    struct got g = {0};
    struct net_hostport hp = hostport("::1", 6380);

    (void)state;
    async_owner_init(&o);
    coord_resolve(&r, NULL, &o, &hp, on_addrs, &g);   /* no resolver needed */
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.a.n, 1);
    assert_string_equal(g.a.ip[0], "::1");
    assert_int_equal(g.a.port, 6380);
    hp = hostport("redis.example", 6379);
    coord_resolve(&r, NULL, &o, &hp, on_addrs, &g);
    assert_int_equal(g.calls, 2);
    assert_int_equal(g.a.n, 0);
    assert_non_null(strstr(g.a.why, "no resolver"));
}

static void test_localhost_through_c_ares(void **state)
{
    uv_loop_t loop;
    char err[200];
    struct dns *d;
    struct coord_resolve r;
    struct async_owner o;
    struct got g = {0};
    struct net_hostport hp = hostport("localhost", 6379);

    (void)state;
    uv_loop_init(&loop);
    d = dns_new(&loop, "", err, sizeof(err));   /* the system's: /etc/hosts */
    assert_non_null(d);
    async_owner_init(&o);
    coord_resolve(&r, d, &o, &hp, on_addrs, &g);
    while (g.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(g.calls, 1);
    assert_true(g.a.n >= 1);
    assert_int_equal(g.a.port, 6379);
    /* IPv4 first when there is one */
    if (strcmp(g.a.ip[0], "127.0.0.1") != 0)
        for (int i = 1; i < g.a.n; i++)
            assert_null(strchr(g.a.ip[i], '.'));
    dns_free(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A resolver that answers only later (a port nobody serves): the owner
 * cancels first, and neither the loop nor freeing the resolver answers. */
static void test_cancelled_never_answers(void **state)
{
    uv_loop_t loop;
    char err[200];
    struct dns *d;
    struct coord_resolve r;
    struct async_owner o;
    struct got g = {0};
    struct net_hostport hp = hostport("redis.example", 6379);

    (void)state;
    uv_loop_init(&loop);
    d = dns_new(&loop, "127.0.0.1:9", err, sizeof(err));
    assert_non_null(d);
    async_owner_init(&o);
    coord_resolve(&r, d, &o, &hp, on_addrs, &g);
    assert_int_equal(async_owner_pending(&o), 1);
    async_owner_cancel(&o);
    for (int i = 0; i < 50 && uv_run(&loop, UV_RUN_NOWAIT); i++)
        ;
    dns_free(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A name that does not resolve: an answer with no address and a reason. */
static void test_failure_says_why(void **state)
{
    uv_loop_t loop;
    char err[200];
    struct dns *d;
    struct coord_resolve r;
    struct async_owner o;
    struct got g = {0};
    struct net_hostport hp = hostport("redis.example", 6379);

    (void)state;
    uv_loop_init(&loop);
    d = dns_new(&loop, "127.0.0.1:9", err, sizeof(err));
    assert_non_null(d);
    async_owner_init(&o);
    coord_resolve(&r, d, &o, &hp, on_addrs, &g);
    while (g.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.a.n, 0);
    assert_non_null(strstr(g.a.why, "cannot resolve the name"));
    dns_free(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_at_once),
        cmocka_unit_test(test_localhost_through_c_ares),
        cmocka_unit_test(test_cancelled_never_answers),
        cmocka_unit_test(test_failure_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
