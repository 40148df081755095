/*
 * test_async.c - owned asynchronous requests: answers reach only a live
 * owner, cancelling unties everything, an owner's memory outlives the
 * thread-pool work that uses it, and the cancel hooks run once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "async.h"
#include "mem.h"

/* A service's request: the answer is delivered to `answered` of its owner. */
struct svc_req {
    struct async_req ar;
    int cancelled;
};

static void svc_cancel(struct async_req *r)
{
    ((struct svc_req *)r)->cancelled++;
}

static void test_answer_reaches_live_owner(void **state)
{
    struct async_owner o;
    struct svc_req a = {0}, b = {0};

    async_owner_init(&o);
    async_req_start(&a.ar, &o, svc_cancel, 0);
    async_req_start(&b.ar, &o, svc_cancel, 0);
    assert_int_equal(async_owner_pending(&o), 2);
    assert_true(async_req_live(&a.ar));
    assert_int_equal(async_req_end(&b.ar), 1);
    assert_false(async_req_live(&b.ar));
    assert_int_equal(async_owner_pending(&o), 1);
    assert_int_equal(async_req_end(&a.ar), 1);
    assert_int_equal(async_owner_pending(&o), 0);
    assert_int_equal(a.cancelled + b.cancelled, 0);
}

static void test_cancel_drops_late_answers(void **state)
{
    struct async_owner o;
    struct svc_req r[5];

    memset(r, 0, sizeof(r));
    async_owner_init(&o);
    for (int i = 0; i < 5; i++)
        async_req_start(&r[i].ar, &o, svc_cancel, 0);
    async_req_end(&r[2].ar);                /* answered before the cancel */
    async_owner_cancel(&o);
    assert_int_equal(async_owner_pending(&o), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].cancelled, i == 2 ? 0 : 1);
        assert_int_equal(async_req_end(&r[i].ar), 0);   /* late: dropped */
    }
    async_owner_cancel(&o);                  /* nothing left: no hook runs again */
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].cancelled, i == 2 ? 0 : 1);
}

static void test_cancel_one(void **state)
{
    struct async_owner o;
    struct svc_req a = {0}, b = {0};

    async_owner_init(&o);
    async_req_start(&a.ar, &o, svc_cancel, 0);
    async_req_start(&b.ar, &o, NULL, 0);
    async_req_cancel(&a.ar);
    async_req_cancel(&a.ar);                 /* twice: the hook runs once */
    assert_int_equal(a.cancelled, 1);
    assert_int_equal(async_req_end(&a.ar), 0);
    async_req_cancel(&b.ar);                 /* no hook */
    assert_int_equal(async_req_end(&b.ar), 0);
    assert_int_equal(async_owner_pending(&o), 0);
}

/* A hook that frees its request, as services whose work can stop at once do. */
struct heap_req {
    struct async_req ar;
    int *freed;
};

static void heap_cancel(struct async_req *r)
{
    struct heap_req *h = (struct heap_req *)r;

    (*h->freed)++;
    mem_free(h);
}

static void test_hook_may_free(void **state)
{
    struct async_owner o;
    int freed = 0;

    async_owner_init(&o);
    for (int i = 0; i < 10; i++) {
        struct heap_req *h = mem_zalloc(sizeof(*h));
        h->freed = &freed;
        async_req_start(&h->ar, &o, heap_cancel, 0);
    }
    async_owner_cancel(&o);
    assert_int_equal(freed, 10);   /* and ASan sees no use after free */
}

/* ---- an owner held by its requests ---- */

struct owner {
    struct async_owner own;
    int released;
};

static void owner_release(struct async_owner *o)
{
    ((struct owner *)o)->released++;
}

static void test_close_waits_for_held(void **state)
{
    struct owner w = {0};
    struct svc_req held = {0}, plain = {0};

    async_owner_init(&w.own);
    async_req_start(&held.ar, &w.own, svc_cancel, 1);
    async_req_start(&plain.ar, &w.own, svc_cancel, 0);
    async_owner_close(&w.own, owner_release);
    assert_int_equal(held.cancelled, 1);
    assert_int_equal(plain.cancelled, 1);
    assert_int_equal(w.released, 0);          /* held still uses the owner */
    assert_int_equal(async_req_end(&plain.ar), 0);
    assert_int_equal(w.released, 0);
    assert_int_equal(async_req_end(&held.ar), 0);
    assert_int_equal(w.released, 1);          /* now, and only once */
}

static void test_close_idle_releases_at_once(void **state)
{
    struct owner w = {0};
    struct svc_req held = {0};

    async_owner_init(&w.own);
    async_req_start(&held.ar, &w.own, NULL, 1);
    assert_int_equal(async_req_end(&held.ar), 1);   /* answered while open */
    async_owner_close(&w.own, owner_release);
    assert_int_equal(w.released, 1);
}

/* ---- thread-pool work ---- */

struct job_owner {
    struct async_owner own;
    uv_sem_t go;           /* the work waits for it: a job "running" */
    int block;
    int worked, after_calls, after_status, released;
};

static void job_work(void *arg)
{
    struct job_owner *jo = arg;

    if (jo->block)
        uv_sem_wait(&jo->go);
    jo->worked++;           /* writes the owner's memory, as delivery jobs do */
}

static void job_after(void *arg, int status)
{
    struct job_owner *jo = arg;

    jo->after_calls++;
    jo->after_status = status;
}

static void job_release(struct async_owner *o)
{
    ((struct job_owner *)o)->released++;
}

static void test_work_delivers(void **state)
{
    uv_loop_t loop;
    struct job_owner jo = {0};

    uv_loop_init(&loop);
    async_owner_init(&jo.own);
    assert_int_equal(async_work(&jo.own, &loop, job_work, job_after, &jo), 0);
    assert_int_equal(async_owner_pending(&jo.own), 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(jo.worked, 1);
    assert_int_equal(jo.after_calls, 1);
    assert_int_equal(jo.after_status, 0);
    assert_int_equal(async_owner_pending(&jo.own), 0);
    uv_loop_close(&loop);
}

/* The owner goes while its job runs: the owner's memory stays until the
 * job is over, and the job's answer is dropped. */
static void test_work_outlives_owner(void **state)
{
    uv_loop_t loop;
    struct job_owner *jo = mem_zalloc(sizeof(*jo));

    uv_loop_init(&loop);
    uv_sem_init(&jo->go, 0);
    jo->block = 1;
    async_owner_init(&jo->own);
    assert_int_equal(async_work(&jo->own, &loop, job_work, job_after, jo), 0);
    /* Give the pool a moment to pick the job up, then close the owner. */
    for (int i = 0; i < 50 && jo->worked == 0; i++)
        usleep(2000);
    async_owner_close(&jo->own, job_release);
    assert_int_equal(jo->released, 0);
    uv_sem_post(&jo->go);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(jo->worked, 1);
    assert_int_equal(jo->after_calls, 0);
    assert_int_equal(jo->released, 1);
    uv_sem_destroy(&jo->go);
    mem_free(jo);
    uv_loop_close(&loop);
}

/* Many jobs, the pool busy: those still queued are taken back, none is
 * delivered, and the owner is released once, after the last one. */
static void test_work_queued_cancelled(void **state)
{
    uv_loop_t loop;
    struct job_owner blockers = {0}, jo = {0};

    uv_loop_init(&loop);
    uv_sem_init(&blockers.go, 0);
    blockers.block = 1;
    async_owner_init(&blockers.own);
    async_owner_init(&jo.own);
    for (int i = 0; i < 4; i++)   /* libuv's default pool: every thread busy */
        async_work(&blockers.own, &loop, job_work, job_after, &blockers);
    for (int i = 0; i < 20; i++)
        async_work(&jo.own, &loop, job_work, job_after, &jo);
    async_owner_close(&jo.own, job_release);
    for (int i = 0; i < 4; i++)
        uv_sem_post(&blockers.go);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(jo.after_calls, 0);
    assert_int_equal(jo.released, 1);
    assert_true(jo.worked < 20);       /* queued ones never ran */
    assert_int_equal(blockers.after_calls, 4);
    uv_sem_destroy(&blockers.go);
    uv_loop_close(&loop);
}

int main(void)
{
    setenv("UV_THREADPOOL_SIZE", "4", 1);   /* test_work_queued_cancelled fills it */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_reaches_live_owner),
        cmocka_unit_test(test_cancel_drops_late_answers),
        cmocka_unit_test(test_cancel_one),
        cmocka_unit_test(test_hook_may_free),
        cmocka_unit_test(test_close_waits_for_held),
        cmocka_unit_test(test_close_idle_releases_at_once),
        cmocka_unit_test(test_work_delivers),
        cmocka_unit_test(test_work_outlives_owner),
        cmocka_unit_test(test_work_queued_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
