/*
 * coord.c - backend choice and the calls of the coordination interface
 * (see coord.h).
 */
#include <time.h>

#include "config.h"
#include "coord.h"

uint64_t coord_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct coord *coord_create(const struct config *conf, struct buf *err)
{
    if (conf->Redis_server[0] || conf->Redis_sentinels[0])
        return coord_redis_create(conf, err);
    return coord_embedded_create(conf, err);
}

int coord_attach(struct coord *c, uv_loop_t *loop)
{
    return c->ops->attach ? c->ops->attach(c, loop) : 0;
}

void coord_detach(struct coord *c)
{
    if (c->ops->detach)
        c->ops->detach(c);
}

void coord_destroy(struct coord *c)
{
    if (c)
        c->ops->destroy(c);
}

void coord_conn_check(struct coord *c, struct async_owner *o, const char *ip,
                      coord_conn_fn *fn, void *arg)
{
    c->ops->conn_check(c, o, ip, fn, arg);
}

void coord_announce(struct coord *c, const char *queue, const char *qid, long due,
                    int mode)
{
    c->ops->announce(c, queue, qid, due, mode);
}

void coord_watch(struct coord *c, coord_wake_fn *fn, void *arg)
{
    c->ops->watch(c, fn, arg);
}

void coord_claim_next(struct coord *c, struct async_owner *o, const char *queue,
                      long limit, long now, coord_claim_fn *fn, void *arg)
{
    c->ops->claim_next(c, o, queue, limit, now, fn, arg);
}

void coord_claim_id(struct coord *c, struct async_owner *o, const char *queue,
                    const char *qid, coord_claim_fn *fn, void *arg)
{
    c->ops->claim_id(c, o, queue, qid, fn, arg);
}

void coord_renew(struct coord *c, struct async_owner *o, const struct coord_claim *cl,
                 coord_status_fn *fn, void *arg)
{
    c->ops->renew(c, o, cl, fn, arg);
}

void coord_release(struct coord *c, const struct coord_claim *cl, long next_due)
{
    c->ops->release(c, cl, next_due);
}

void coord_claim_batch(struct coord *c, struct async_owner *o, const char *queue,
                       long limit, long now, size_t want, const struct coord_release *rel,
                       size_t nrel, coord_batch_fn *fn, void *arg)
{
    if (want > COORD_BATCH_MAX)
        want = COORD_BATCH_MAX;
    c->ops->claim_batch(c, o, queue, limit, now, want, rel, nrel, fn, arg);
}

void coord_slot_acquire(struct coord *c, struct async_owner *o, const char *pool,
                        long limit, coord_slot_fn *fn, void *arg)
{
    c->ops->slot_acquire(c, o, pool, limit, fn, arg);
}

void coord_slot_release(struct coord *c, const char *pool, uint64_t slot)
{
    c->ops->slot_release(c, pool, slot);
}

int coord_take_rescan(struct coord *c)
{
    return c->ops->take_rescan ? c->ops->take_rescan(c) : 0;
}

void coord_set_rules(struct coord *c, const char *hash)
{
    if (c->ops->set_rules)
        c->ops->set_rules(c, hash);
}

void coord_set_inflight(struct coord *c, long n)
{
    if (c->ops->set_inflight)
        c->ops->set_inflight(c, n);
}

void coord_slot_renew(struct coord *c, const char *pool, uint64_t slot)
{
    if (c->ops->slot_renew)
        c->ops->slot_renew(c, pool, slot);
}

void coord_auth_check(struct coord *c, struct async_owner *o, const char *ip,
                      const char *login, long limit, coord_auth_fn *fn, void *arg)
{
    if (limit <= 0) {
        fn(arg, COORD_OK);
        return;
    }
    c->ops->auth_check(c, o, ip, login, limit, fn, arg);
}

void coord_auth_failed(struct coord *c, const char *ip, const char *login, long ttl)
{
    c->ops->auth_failed(c, ip, login, ttl);
}

void coord_rate(struct coord *c, struct async_owner *o, const char *key, long limit,
                long window, coord_status_fn *fn, void *arg)
{
    if (limit < 0 || window <= 0) {
        fn(arg, COORD_OK);
        return;
    }
    if (c->ops->rate == NULL) {
        fn(arg, COORD_DOWN);
        return;
    }
    if (window > COORD_RATE_WINDOW_MAX)   /* keeps the backends' ms in range */
        window = COORD_RATE_WINDOW_MAX;
    c->ops->rate(c, o, key, limit, window, fn, arg);
}

void coord_drain_state(struct coord *c, struct async_owner *o, coord_drain_fn *fn,
                       void *arg)
{
    if (c->ops->drain_state == NULL) {
        fn(arg, COORD_OK, 0);
        return;
    }
    c->ops->drain_state(c, o, fn, arg);
}
