/*
 * async.h - who owns an asynchronous request, and what becomes of its
 * answer once the owner has gone.
 *
 * Owns: the one rule every asynchronous request in Selor follows
 * (coordination, DNS, account lookups, thread-pool work, programs, outgoing
 * SMTP sessions, and those to come: TLS, SQL, rules programs, milters):
 *
 *   1. A request belongs to an owner: the SMTP session, delivery run,
 *      control client or process that started it.  The service that
 *      answers later embeds a struct async_req in its own request and ties
 *      it to the owner with async_req_start.
 *   2. When the answer is there, the service calls async_req_end first:
 *      1 means "deliver it", 0 means the owner has gone or cancelled it:
 *      the answer is dropped, and whatever it carries (a lock, a slot) is
 *      given back by the service itself.
 *   3. An owner that goes away, or leaves the state that needed the
 *      answers, calls async_owner_cancel: every pending request is untied
 *      and its service's cancel hook runs (stop the work if it can).
 *   4. An owner's memory is freed only through async_owner_close, which
 *      waits for the requests that use that memory while they run (work on
 *      the thread pool reads and writes its owner's fields) before calling
 *      the owner's release function.
 *
 * An answer given before the starting call returns (the embedded
 * coordination backend, a module answering from memory) reaches a live
 * owner by construction and needs no request.  Everything runs on the
 * owner's loop thread.  Must not: know any service, allocate, or log.
 */
#ifndef SELOR_ASYNC_H
#define SELOR_ASYNC_H

#include <uv.h>

struct async_req;
struct async_owner;

typedef void async_cancel_fn(struct async_req *r);
typedef void async_release_fn(struct async_owner *o);

struct async_req {
    struct async_owner *owner;       /* NULL: ended, cancelled, or never started */
    struct async_req *prev, *next;   /* in the owner's pending list */
    struct async_owner *held;        /* owner whose memory this request uses */
    async_cancel_fn *cancel;         /* the service's hook; may be NULL */
};

struct async_owner {
    struct async_req *pending;
    unsigned npending;
    unsigned holding;                /* requests still using this memory */
    int closed;
    async_release_fn *release;       /* set by async_owner_close */
};

void async_owner_init(struct async_owner *o);
/* Cancels every pending request; the owner stays usable. */
void async_owner_cancel(struct async_owner *o);
/*
 * The owner goes: every pending request is cancelled, and release(o) runs
 * once no request uses the owner's memory any more: at once, or later from
 * the loop.  The caller must not touch o after this call.
 */
void async_owner_close(struct async_owner *o, async_release_fn *release);
/* Requests started and not yet ended or cancelled. */
unsigned async_owner_pending(const struct async_owner *o);

/*
 * Ties r to o.  cancel (may be NULL) runs if the owner cancels first; it
 * may free the service's request, which is then already untied.  holds: r
 * uses o's memory until it ends, so o is not released before.
 */
void async_req_start(struct async_req *r, struct async_owner *o,
                     async_cancel_fn *cancel, int holds);
/* The answer is there: 1 to deliver it, 0 to drop it.  r is untied. */
int async_req_end(struct async_req *r);
/* Still waited for: started, not ended, its owner not gone. */
int async_req_live(const struct async_req *r);
/* The owner no longer wants this one answer (the cancel hook runs). */
void async_req_cancel(struct async_req *r);

/*
 * Thread-pool work owned by o: work(arg) runs on a pool thread, then
 * after(arg, status) on the loop, unless the owner has gone (then not at
 * all).  o's memory is kept while work runs.  0, or a libuv error.
 */
typedef void async_work_fn(void *arg);
typedef void async_after_fn(void *arg, int status);
int async_work(struct async_owner *o, uv_loop_t *loop, async_work_fn *work,
               async_after_fn *after, void *arg);

#endif
