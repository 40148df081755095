/*
 * async.c - owned asynchronous requests (see async.h for the rule).
 *
 * An owner keeps its pending requests in a doubly linked list, so
 * cancelling one or all is constant work per request and a request ends
 * without a search.  A request that uses its owner's memory (thread-pool
 * work) also counts in `holding` until its service says it has finished
 * with that memory, which may be after the owner cancelled it: a pool
 * thread cannot be stopped midway.
 */
#include <stddef.h>

#include "async.h"
#include "mem.h"

void async_owner_init(struct async_owner *o)
{
    o->pending = NULL;
    o->npending = 0;
    o->holding = 0;
    o->closed = 0;
    o->release = NULL;
}

static void async_unlink(struct async_req *r)
{
    struct async_owner *o = r->owner;

    if (r->prev)
        r->prev->next = r->next;
    else
        o->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->owner = NULL;
    o->npending--;
}

/* A held request is done with its owner's memory. */
static void async_unhold(struct async_req *r)
{
    struct async_owner *h = r->held;

    r->held = NULL;
    if (h && --h->holding == 0 && h->closed)
        h->release(h);
}

void async_req_start(struct async_req *r, struct async_owner *o,
                     async_cancel_fn *cancel, int holds)
{
    r->owner = o;
    r->cancel = cancel;
    r->prev = NULL;
    r->next = o->pending;
    if (o->pending)
        o->pending->prev = r;
    o->pending = r;
    o->npending++;
    r->held = holds ? o : NULL;
    if (holds)
        o->holding++;
}

int async_req_end(struct async_req *r)
{
    int deliver = r->owner != NULL;

    if (deliver)
        async_unlink(r);
    /* A closed owner has no pending requests, so deliver is 0 whenever
     * this releases it. */
    async_unhold(r);
    return deliver;
}

int async_req_live(const struct async_req *r)
{
    return r->owner != NULL;
}

void async_req_cancel(struct async_req *r)
{
    if (r->owner == NULL)
        return;
    async_unlink(r);
    if (r->cancel)
        r->cancel(r);   /* may free r */
}

void async_owner_cancel(struct async_owner *o)
{
    while (o->pending)
        async_req_cancel(o->pending);
}

void async_owner_close(struct async_owner *o, async_release_fn *release)
{
    o->release = release;
    async_owner_cancel(o);
    o->closed = 1;
    if (o->holding == 0)
        release(o);
}

unsigned async_owner_pending(const struct async_owner *o)
{
    return o->npending;
}

/* ---- thread-pool work ---- */

struct async_job {
    uv_work_t work;
    struct async_req req;
    async_work_fn *fn;
    async_after_fn *after;
    void *arg;
};

static void async_job_run(uv_work_t *w)
{
    struct async_job *j = w->data;

    j->fn(j->arg);
}

static void async_job_done(uv_work_t *w, int status)
{
    struct async_job *j = w->data;

    if (async_req_end(&j->req))
        j->after(j->arg, status);
    mem_free(j);
}

/* Only a job still queued can be taken back; a running one finishes and
 * its answer is dropped. */
static void async_job_cancel(struct async_req *r)
{
    struct async_job *j = (struct async_job *)((char *)r - offsetof(struct async_job, req));

    uv_cancel((uv_req_t *)&j->work);
}

int async_work(struct async_owner *o, uv_loop_t *loop, async_work_fn *work,
               async_after_fn *after, void *arg)
{
    struct async_job *j = mem_zalloc(sizeof(*j));
    int r;

    j->fn = work;
    j->after = after;
    j->arg = arg;
    j->work.data = j;
    async_req_start(&j->req, o, async_job_cancel, 1);
    r = uv_queue_work(loop, &j->work, async_job_run, async_job_done);
    if (r < 0) {
        async_req_end(&j->req);
        mem_free(j);
    }
    return r;
}
