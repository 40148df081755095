/*
 * lease.c - keeping a queue file's lock (see lease.h).
 *
 * Why from the asking time: a Redis reply can be delayed (a slow network,
 * a busy Redis) by more than a third of a lease.  The lock was extended
 * when Redis ran the script, which is after we asked, so "asked + lease" is
 * a time the lock surely lasts to; "answered + lease" is not.  Renewals go
 * out every tick even while earlier ones are unanswered: answers that come
 * late then still come often.
 */
#include "async.h"
#include "lease.h"
#include "log.h"

static void lease_renewed(void *arg, int status)
{
    struct lease *l = arg;
    uint64_t asked = l->out_asked[l->out_head];
    unsigned gen = l->out_gen[l->out_head];

    if (l->out_n == 0)
        return;
    l->out_head = (l->out_head + 1) % LEASE_RENEWALS_OUT;
    l->out_n--;
    if (gen != l->gen)
        return;          /* a renewal of the claim this lease held before */
    if (status == COORD_OK) {
        uint64_t until = asked + l->lease_ms;
        if (until > atomic_load(&l->until_ms))
            atomic_store(&l->until_ms, until);
        return;
    }
    if (status == COORD_LOST && !lease_lost(l)) {
        log_warn("%s: the lock was lost; stopping without writing", l->claim.qid);
        lease_mark_lost(l);
        uv_timer_stop(&l->timer);
        l->fn(l->arg, LEASE_LOST);
    }
    /* COORD_DOWN: the tick stops us before the lease can lapse */
}

/*
 * Every third of a lease: renew.  A holder whose renewals do not come back
 * in time keeps what is under way but is told to start nothing more, before
 * its lease could lapse; renewing goes on, and a late answer makes it sure
 * again.
 */
static void lease_tick(uv_timer_t *t)
{
    struct lease *l = t->data;

    if (lease_lost(l))
        return;
    if (coord_mono_ms() >= atomic_load(&l->until_ms)) {
        log_warn("%s: the lock lapsed without a renewal; stopping", l->claim.qid);
        lease_mark_lost(l);
        uv_timer_stop(&l->timer);
        l->fn(l->arg, LEASE_LOST);
        return;
    }
    if (!lease_valid(l) && !l->shaky) {
        log_warn("%s: the lock could not be renewed in time; starting nothing more "
                 "before it could lapse", l->claim.qid);
        l->shaky = 1;
        l->fn(l->arg, LEASE_SHAKY);
    } else if (lease_valid(l) && l->shaky) {
        log_info("%s: the lock is renewed again", l->claim.qid);
        l->shaky = 0;
        l->fn(l->arg, LEASE_SURE);
    }
    if (l->out_n < LEASE_RENEWALS_OUT) {
        unsigned k = (l->out_head + l->out_n) % LEASE_RENEWALS_OUT;
        l->out_asked[k] = coord_mono_ms();
        l->out_gen[k] = l->gen;
        l->out_n++;
        coord_renew(l->coord, l->owner, &l->claim, lease_renewed, l);
    }
    l->fn(l->arg, LEASE_TICK);
}

void lease_init(struct lease *l, uv_loop_t *loop, lease_fn *fn, void *arg)
{
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->out_head = l->out_n = l->gen = 0;
    l->fn = fn;
    l->arg = arg;
    atomic_store(&l->until_ms, 0);
    atomic_store(&l->lost, 1);   /* nothing held yet */
}

void lease_begin(struct lease *l, struct coord *coord, struct async_owner *owner,
                 const struct coord_claim *cl, long lease_s)
{
    l->coord = coord;
    l->owner = owner;
    l->claim = *cl;
    l->lease_ms = (uint64_t)lease_s * 1000;
    l->asked_ms = cl->asked_ms ? cl->asked_ms : coord_mono_ms();
    atomic_store(&l->until_ms, l->asked_ms + l->lease_ms);
    atomic_store(&l->lost, 0);
    l->gen++;        /* renewals of an earlier claim may still be answered */
    l->shaky = 0;
    uv_timer_start(&l->timer, lease_tick, l->lease_ms / 3, l->lease_ms / 3);
}

int lease_valid(const struct lease *l)
{
    return !atomic_load(&l->lost) &&
           coord_mono_ms() + l->lease_ms / 4 <= atomic_load(&l->until_ms);
}

void lease_mark_lost(struct lease *l)
{
    atomic_store(&l->lost, 1);
}

int lease_lost(const struct lease *l)
{
    return atomic_load(&l->lost);
}

void lease_stop(struct lease *l)
{
    uv_timer_stop(&l->timer);
}

void lease_close(struct lease *l, uv_close_cb close_cb)
{
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, close_cb);
}
