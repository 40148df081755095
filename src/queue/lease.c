/*
 * lease.c - keeping a queue file's lock (see lease.h).
 *
 * Why from the asking time: a Redis reply can be delayed (a slow network,
 * a busy Redis) by more than a third of a lease.  The lock was extended
 * when Redis ran the script, which is after we asked, so "asked + lease" is
 * a time the lock surely lasts to; "answered + lease" is not.  Renewals go
 * out every tick even while earlier ones are unanswered: answers that come
 * late then still come often.
 *
 * Why a deadline timer and not a check at each renewal: the lock can lapse
 * in Redis at "asked + lease" if Redis ran the renewal at once; a holder
 * that only looked at its clock every third of a lease could notice up to
 * a third of a lease after that, while a node that reaches Redis takes the
 * file over.  So the one timer is set to the next of: the next renewal,
 * the moment a quarter of the lease is left, the moment none is.
 */
#include "async.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"

static void lease_wake(uv_timer_t *t);

/* The next moment the verdict or the renewals need this holder. */
static void lease_arm(struct lease *l)
{
    uint64_t now = coord_mono_ms(), until = atomic_load(&l->until_ms);
    /* +1: lease_valid still holds at exactly until - lease/4 */
    uint64_t edge = l->shaky ? until : until - l->lease_ms / 4 + 1;
    uint64_t at = edge < l->next_renew_ms ? edge : l->next_renew_ms;

    if (l->running && !lease_lost(l))
        uv_timer_start(&l->timer, lease_wake, at > now ? at - now : 0, 0);
}

static void lease_end(struct lease *l)
{
    lease_mark_lost(l);
    l->running = 0;
    uv_timer_stop(&l->timer);
}

/*
 * Tells the holder what its clock makes of the lock.  A holder whose
 * renewals do not come back in time keeps what is under way but starts
 * nothing more, before its lease could lapse; renewing goes on, and a
 * late answer makes it sure again.  0 while the lock may still hold.
 */
static int lease_judge(struct lease *l)
{
    int valid = lease_valid(l);

    if (coord_mono_ms() >= atomic_load(&l->until_ms)) {
        log_warn("%s: the lock lapsed without a renewal; stopping", l->claim.qid);
        lease_end(l);
        l->fn(l->arg, LEASE_LOST);
        return -1;
    }
    if (!valid && !l->shaky) {
        log_warn("%s: the lock could not be renewed in time; starting nothing more "
                 "before it could lapse", l->claim.qid);
        l->shaky = 1;
        metrics_inc(METRIC_LEASE_RENEWALS_MISSED);
        l->fn(l->arg, LEASE_SHAKY);
    } else if (valid && l->shaky) {
        log_info("%s: the lock is renewed again", l->claim.qid);
        l->shaky = 0;
        l->fn(l->arg, LEASE_SURE);
    }
    return 0;
}

static void lease_renewed(void *arg, int status)
{
    struct lease *l = arg;
    uint64_t asked = l->out_asked[l->out_head];
    unsigned gen = l->out_gen[l->out_head];

    if (l->out_n == 0)
        return;
    l->out_head = (l->out_head + 1) % LEASE_RENEWALS_OUT;
    l->out_n--;
    if (gen != l->gen || lease_lost(l) || !l->running)
        return;          /* a renewal of the claim this lease held before */
    if (status == COORD_OK) {
        uint64_t until = asked + l->lease_ms;
        if (until > atomic_load(&l->until_ms))
            atomic_store(&l->until_ms, until);
        if (lease_judge(l) == 0)
            lease_arm(l);
        return;
    }
    if (status == COORD_LOST) {
        log_warn("%s: the lock was lost; stopping without writing", l->claim.qid);
        lease_end(l);
        l->fn(l->arg, LEASE_LOST);
    }
    /* COORD_DOWN: the deadline stops us before the lease can lapse */
}

static void lease_renew(struct lease *l)
{
    uint64_t now = coord_mono_ms();

    l->next_renew_ms += l->lease_ms / 3;
    if (l->next_renew_ms <= now)      /* the loop was held up: no burst */
        l->next_renew_ms = now + l->lease_ms / 3;
    if (l->out_n < LEASE_RENEWALS_OUT) {
        unsigned k = (l->out_head + l->out_n) % LEASE_RENEWALS_OUT;
        l->out_asked[k] = now;
        l->out_gen[k] = l->gen;
        l->out_n++;
        coord_renew(l->coord, l->owner, &l->claim, lease_renewed, l);
    }
    l->fn(l->arg, LEASE_TICK);
}

static void lease_wake(uv_timer_t *t)
{
    struct lease *l = t->data;

    if (lease_lost(l) || !l->running || lease_judge(l) < 0)
        return;
    if (l->running && coord_mono_ms() >= l->next_renew_ms)
        lease_renew(l);
    lease_arm(l);
}

void lease_init(struct lease *l, uv_loop_t *loop, lease_fn *fn, void *arg)
{
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->out_head = l->out_n = l->gen = 0;
    l->running = 0;
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
    l->running = 1;
    l->next_renew_ms = coord_mono_ms() + l->lease_ms / 3;
    lease_arm(l);
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
    l->running = 0;
    uv_timer_stop(&l->timer);
}

void lease_close(struct lease *l, uv_close_cb close_cb)
{
    l->running = 0;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, close_cb);
}
