/*
 * coord_redis_limits.c - the limits Redis holds for the whole cluster:
 * the connections every node saw from an address (Limit_*), the AUTH
 * lockout, rate counts (coord_rate) and delivery slots that are leases
 * (Dlocal_max_procs, Dremote_max_procs).  Each is one script, one round
 * trip.  Failed logins are counted in two keys per failure, the client's
 * address and the login, each expiring by itself; a rate is one sorted
 * set of recent events per key, judged and trimmed by its script.  When Redis cannot answer, connections and failed logins are
 * judged by this node alone (the embedded backend), rates answer
 * COORD_DOWN and slots are refused.  Must not: touch the index, claims or
 * locks (coord_redis.c), or block the loop.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "coord_redis_int.h"
#include "log.h"
#include "mem.h"

/* ---- anti-DoS ---- */

static void crl_conn_reply(struct cr_call *call, redisReply *r, int live)
{
    long long v = cr_int(r);

    if (!live)
        return;
    if (v < 0) {   /* Redis failed meanwhile: this node judges alone (at once) */
        coord_conn_check(call->cr->local, NULL, call->ip, call->fn.conn, call->arg);
        return;
    }
    call->fn.conn(call->arg, v == 1 ? COORD_LIMIT : COORD_OK);
}

void crl_conn_check(struct coord *c, struct async_owner *o, const char *ip,
                          coord_conn_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    const struct config *conf = cr->conf;
    char key[256], buf[32], cnx[32], win[32];
    struct cr_call *call;

    if (conf->Limit_buf <= 0) {
        fn(arg, COORD_OK);
        return;
    }
    if (!cr_ready(cr)) {
        coord_conn_check(cr->local, o, ip, fn, arg);
        return;
    }
    call = cr_call_new(cr, o, CR_S_CONN, crl_conn_reply, arg);
    call->fn.conn = fn;
    snprintf(call->ip, sizeof(call->ip), "%s", ip);
    cr_key(cr, key, sizeof(key), "conns", NULL);
    snprintf(buf, sizeof(buf), "%ld", conf->Limit_buf);
    snprintf(cnx, sizeof(cnx), "%ld", conf->Limit_cnx);
    snprintf(win, sizeof(win), "%ld", conf->Limit_time * 1000);
    cr_eval(call, 1, (const char *const[]){key, ip, buf, cnx, win, NULL});
}

/* ---- AUTH lockout ---- */

/* The two count keys: the address, and the login in lower case. */
static void crl_auth_keys(const struct coord_redis *cr, const char *ip, const char *login,
                         char kip[256], char klogin[512])
{
    char low[256];
    size_t i;

    for (i = 0; login[i] && i < sizeof(low) - 1; i++)
        low[i] = (char)tolower((unsigned char)login[i]);
    low[i] = '\0';
    cr_key(cr, kip, 256, "authfail:ip", ip);
    cr_key(cr, klogin, 512, "authfail:login", low);
}

static void crl_auth_check_reply(struct cr_call *call, redisReply *r, int live)
{
    long long v = cr_int(r);

    if (!live)
        return;
    if (v < 0) {   /* Redis failed meanwhile: this node's counts (at once) */
        coord_auth_check(call->cr->local, NULL, call->ip, call->login, call->num,
                         call->fn.auth, call->arg);
        return;
    }
    call->fn.auth(call->arg, v == 1 ? COORD_LIMIT : COORD_OK);
}

void crl_auth_check(struct coord *c, struct async_owner *o, const char *ip,
                          const char *login, long limit, coord_auth_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char kip[256], klogin[512], slimit[32];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        coord_auth_check(cr->local, o, ip, login, limit, fn, arg);
        return;
    }
    call = cr_call_new(cr, o, CR_S_AUTH_CHECK, crl_auth_check_reply, arg);
    call->fn.auth = fn;
    call->num = limit;
    snprintf(call->ip, sizeof(call->ip), "%s", ip);
    snprintf(call->login, sizeof(call->login), "%s", login);
    crl_auth_keys(cr, ip, login, kip, klogin);
    snprintf(slimit, sizeof(slimit), "%ld", limit);
    cr_eval(call, 2, (const char *const[]){kip, klogin, slimit, NULL});
}

/* Nobody waits for it; a failure Redis could not count is counted here. */
static void crl_auth_fail_reply(struct cr_call *call, redisReply *r, int live)
{
    if (r == NULL)
        coord_auth_failed(call->cr->local, call->ip, call->login, call->num);
}

void crl_auth_failed(struct coord *c, const char *ip, const char *login, long ttl)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char kip[256], klogin[512], sttl[32];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        coord_auth_failed(cr->local, ip, login, ttl);
        return;
    }
    call = cr_call_new(cr, NULL, CR_S_AUTH_FAIL, crl_auth_fail_reply, NULL);
    call->num = ttl;
    snprintf(call->ip, sizeof(call->ip), "%s", ip);
    snprintf(call->login, sizeof(call->login), "%s", login);
    crl_auth_keys(cr, ip, login, kip, klogin);
    snprintf(sttl, sizeof(sttl), "%ld", ttl * 1000);
    cr_eval(call, 2, (const char *const[]){kip, klogin, sttl, NULL});
}

/* ---- rate counts ---- */

/* The key's text escaped into a key name: letters, digits and "@._-" as
 * they are, every other byte as %XX, so any text is safe, stays readable
 * for an operator, and is bounded (3 bytes per byte of at most
 * COORD_RATE_KEY_MAX). */
#define CR_RATE_NAME_MAX (3 * COORD_RATE_KEY_MAX + 1)

static void crl_rate_name(const char *key, char out[CR_RATE_NAME_MAX])
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; key[i] && i < COORD_RATE_KEY_MAX; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (isalnum(ch) || strchr("@._-", ch)) {
            out[o++] = (char)ch;
            continue;
        }
        out[o++] = '%';
        out[o++] = hex[ch >> 4];
        out[o++] = hex[ch & 15];
    }
    out[o] = '\0';
}

static void crl_rate_reply(struct cr_call *call, redisReply *r, int live)
{
    long long v = cr_int(r);

    if (live)   /* a dropped answer granted nothing: the event just counts */
        call->fn.status(call->arg, v == 0 ? COORD_OK : v == 1 ? COORD_LIMIT : COORD_DOWN);
}

void crl_rate(struct coord *c, struct async_owner *o, const char *key, long limit,
                    long window, coord_status_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char name[CR_RATE_NAME_MAX], kev[sizeof(cr->prefix) + 8 + CR_RATE_NAME_MAX],
        slimit[32], swin[32], member[128];
    struct cr_call *call;

    if (!cr_ready(cr)) {
        fn(arg, COORD_DOWN);
        return;
    }
    call = cr_call_new(cr, o, CR_S_RATE, crl_rate_reply, arg);
    call->fn.status = fn;
    crl_rate_name(key, name);
    cr_key(cr, kev, sizeof(kev), "rate", name);
    snprintf(slimit, sizeof(slimit), "%ld", limit);
    snprintf(swin, sizeof(swin), "%ld", window * 1000);
    snprintf(member, sizeof(member), "%s %d %llu", cr->node, (int)getpid(),
             (unsigned long long)++cr->slot_seq);
    cr_eval(call, 1, (const char *const[]){kev, slimit, swin, member, NULL});
}

/* ---- slots (Dlocal_max_procs) ---- */

static void crl_slot_reply(struct cr_call *call, redisReply *r, int live)
{
    long long v = cr_int(r);

    if (!live) {   /* nobody waits for this slot: it goes back at once */
        if (v == 1)
            crl_slot_release(&call->cr->base, call->queue, call->cl.token);
        return;
    }
    call->fn.slot(call->arg, v == 1 ? COORD_OK : v == 0 ? COORD_FULL : COORD_DOWN,
                  v == 1 ? call->cl.token : 0);
}

void crl_slot_acquire(struct coord *c, struct async_owner *o, const char *pool,
                            long limit, coord_slot_fn *fn, void *arg)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char key[256], slimit[32], slease[32], member[128];
    struct cr_call *call;

    if (limit <= 0) {
        fn(arg, COORD_OK, ++cr->slot_seq);
        return;
    }
    if (!cr_ready(cr)) {
        coord_slot_acquire(cr->local, o, pool, limit, fn, arg);
        return;
    }
    call = cr_call_new(cr, o, CR_S_SLOT, crl_slot_reply, arg);
    call->fn.slot = fn;
    call->cl.token = ++cr->slot_seq;
    snprintf(call->queue, sizeof(call->queue), "%s", pool);
    cr_key(cr, key, sizeof(key), "slots", pool);
    snprintf(slimit, sizeof(slimit), "%ld", limit);
    snprintf(slease, sizeof(slease), "%ld", cr->lease_ms);
    snprintf(member, sizeof(member), "%s %d %llu", cr->node, (int)getpid(),
             (unsigned long long)call->cl.token);
    cr_eval(call, 1, (const char *const[]){key, slimit, slease, member, NULL});
}

void crl_slot_release(struct coord *c, const char *pool, uint64_t slot)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char key[256], member[128];

    coord_slot_release(cr->local, pool, slot);   /* if it came from there */
    if (!cr_ready(cr))
        return;   /* the lease ends by itself */
    cr_key(cr, key, sizeof(key), "slots", pool);
    snprintf(member, sizeof(member), "%s %d %llu", cr->node, (int)getpid(),
             (unsigned long long)slot);
    redisAsyncCommand(cr->ac, NULL, NULL, "ZREM %s %s", key, member);
    cr->commands++;
}

void crl_slot_renew(struct coord *c, const char *pool, uint64_t slot)
{
    struct coord_redis *cr = (struct coord_redis *)c;
    char key[256], member[128], slease[32];
    struct cr_call *call;

    if (!cr_ready(cr))
        return;
    call = cr_call_new(cr, NULL, CR_S_SLOT_RENEW, cr_ignore_reply, NULL);
    cr_key(cr, key, sizeof(key), "slots", pool);
    snprintf(slease, sizeof(slease), "%ld", cr->lease_ms);
    snprintf(member, sizeof(member), "%s %d %llu", cr->node, (int)getpid(),
             (unsigned long long)slot);
    cr_eval(call, 1, (const char *const[]){key, slease, member, NULL});
}
