/*
 * coord_embedded.c - the single-node coordination backend.
 *
 * Owns, for one node:
 *  - the anti-DoS ring of recent connections and the AUTH failure counts
 *    (a fixed table: when it is full the count nearest its end is
 *    forgotten first), in an anonymous shared mapping made by the master
 *    before it forks, guarded by a robust process-shared mutex (a process
 *    killed while holding it cannot wedge the others);
 *  - the rate counts (coord_rate), in the same mapping under the same
 *    mutex: a fixed table of keys (the key idle longest is forgotten first
 *    when it is full), each a ring of counts per slice of its window;
 *  - the due-time index, locks and delivery slots.  Only the queue process
 *    delivers, so these live in its memory; SMTP workers announce new mail
 *    to it with a datagram over a socket pair the master made (if that
 *    socket is full the announcement is dropped: the next directory scan
 *    finds the file).  A fencing token is the wall clock in milliseconds,
 *    bumped to stay strictly increasing: it survives a restart of the
 *    queue process without being stored.
 * Every answer is given before the call returns, to an owner that is
 * therefore alive: no request needs tracking (async.h).
 * Must not: be used by more than one node (it sees only its own processes)
 * or block: every operation is a few memory operations or one send(2).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "coord.h"
#include "hash.h"
#include "log.h"
#include "mem.h"

#define EMB_QUEUES 2      /* "main" and "qlimit" */
#define EMB_POOLS 8
#define EMB_MSG_MAX 128
#define EMB_AUTH_SLOTS 4096   /* AUTH failure counts a node keeps (addresses, logins) */
#define EMB_RATE_KEYS 1024    /* rate keys a node keeps (about 0.5 MB shared) */
#define EMB_RATE_SLICES 32    /* a rate window is counted in this many slices */

struct emb_conn {
    uint64_t ip_hash;
    int64_t at_ms;
};

/* Failed logins of one address or one login (key: a hash; 0 = free). */
struct emb_auth {
    uint64_t key;
    int64_t until_ms;        /* forgotten then (coord_mono_ms) */
    long count;
};

/* Events of one slice of a rate window: slice number `no` (time / width). */
struct emb_slice {
    int64_t no;
    long count;
};

/* The recent events of one rate key (key: a hash; 0 = free).  Counts per
 * slice, not per event, so a key's memory does not grow with its limit. */
struct emb_rate {
    uint64_t key;
    int64_t last_ms;         /* its newest event (coord_mono_ms) */
    int64_t width_ms;        /* one slice; another window starts the key afresh */
    struct emb_slice slice[EMB_RATE_SLICES];
};

struct emb_shared {
    pthread_mutex_t lock;
    struct emb_auth auth[EMB_AUTH_SLOTS];
    struct emb_rate rate[EMB_RATE_KEYS];
    size_t ring_size, ring_next, ring_used;
    struct emb_conn ring[];  /* Limit_buf entries */
};

/* A queue file the index knows about. */
struct emb_file {
    struct emb_file *next;   /* hash chain */
    long due;                /* -1: known but not due (held) */
    uint64_t gen;            /* the heap entry that is current for it */
    int held;
    char qid[COORD_QID_MAX];
};

/* Heap entries name their file, so a forgotten file can be freed at once;
 * an entry whose generation is not its file's current one is stale. */
struct emb_heap_entry {
    long due;
    uint64_t gen;
    char qid[COORD_QID_MAX];
};

struct emb_queue {
    char name[16];
    struct emb_file **buckets;
    size_t nbuckets, nfiles;
    struct emb_heap_entry *heap;
    size_t nheap, heap_alloc;
    uint64_t gen;            /* generation counter for heap entries */
    long used;               /* slots taken by claims of this queue */
};

struct emb_pool {
    char name[16];
    long used;
};

struct coord_embedded {
    struct coord base;
    struct emb_shared *sh;
    size_t map_size;
    long limit_cnx, limit_time_ms;
    int sock[2];             /* [0] read by the queue process, [1] written by workers */
    uv_loop_t *loop;
    uv_poll_t poll;
    int watching;
    coord_wake_fn *wake;
    void *wake_arg;
    struct emb_queue queues[EMB_QUEUES];
    struct emb_pool pools[EMB_POOLS];
    uint64_t last_token, last_slot;
};

/* ---- anti-DoS ring (shared memory) ---- */

static int64_t emb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void emb_lock(struct emb_shared *sh)
{
    if (pthread_mutex_lock(&sh->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&sh->lock);
}

/*
 * Records the connection, then counts the newest run of connections from
 * the same address whose gaps are each under Limit_time: Limit_cnx of them
 * trip the limit.
 */
static int emb_judge(struct coord_embedded *e, uint64_t ip, int64_t now)
{
    struct emb_shared *sh = e->sh;
    int64_t later = now;
    long run = 1;

    for (size_t k = 0; k < sh->ring_used; k++) {
        size_t i = (sh->ring_next + sh->ring_size - 1 - k) % sh->ring_size;
        if (sh->ring[i].ip_hash != ip)
            continue;
        if (later - sh->ring[i].at_ms >= e->limit_time_ms)
            break;
        later = sh->ring[i].at_ms;
        run++;
    }
    sh->ring[sh->ring_next].ip_hash = ip;
    sh->ring[sh->ring_next].at_ms = now;
    sh->ring_next = (sh->ring_next + 1) % sh->ring_size;
    if (sh->ring_used < sh->ring_size)
        sh->ring_used++;
    return run >= e->limit_cnx ? COORD_LIMIT : COORD_OK;
}

static void emb_conn_check(struct coord *c, struct async_owner *o, const char *ip,
                           coord_conn_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    int verdict = COORD_OK;

    if (e->sh->ring_size > 0) {
        emb_lock(e->sh);
        verdict = emb_judge(e, hash_fnv1a_str(ip), emb_now_ms());
        pthread_mutex_unlock(&e->sh->lock);
    }
    fn(arg, verdict);
}

/* ---- AUTH failure counts (shared memory) ---- */

/* The keys of an address and of a login (letter case ignored). */
static void emb_auth_keys(const char *ip, const char *login, uint64_t key[2])
{
    char buf[320];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "login %s", login);

    for (size_t i = 0; i < n && i < sizeof(buf); i++)
        buf[i] = (char)tolower((unsigned char)buf[i]);
    key[1] = hash_fnv1a_str(buf) | 1;   /* never 0, the free mark */
    snprintf(buf, sizeof(buf), "ip %s", ip);
    key[0] = hash_fnv1a_str(buf) | 1;
}

/* The live count of key; with create, a new one (count 0) in the free or
 * expired slot, or else the one nearest its end. */
static struct emb_auth *emb_auth_find(struct emb_shared *sh, uint64_t key, int64_t now,
                                      int create)
{
    struct emb_auth *victim = &sh->auth[0];

    for (size_t i = 0; i < EMB_AUTH_SLOTS; i++) {
        struct emb_auth *a = &sh->auth[i];
        if (a->key == key && a->until_ms > now)
            return a;
        if (a->until_ms < victim->until_ms)
            victim = a;
    }
    if (!create)
        return NULL;
    victim->key = key;
    victim->count = 0;
    victim->until_ms = now;
    return victim;
}

static void emb_auth_check(struct coord *c, struct async_owner *o, const char *ip,
                           const char *login, long limit, coord_auth_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    int64_t now = (int64_t)coord_mono_ms();
    int verdict = COORD_OK;
    uint64_t key[2];

    emb_auth_keys(ip, login, key);
    emb_lock(e->sh);
    for (int k = 0; k < 2; k++) {
        struct emb_auth *a = emb_auth_find(e->sh, key[k], now, 0);
        if (a && a->count >= limit)
            verdict = COORD_LIMIT;
    }
    pthread_mutex_unlock(&e->sh->lock);
    fn(arg, verdict);
}

static void emb_auth_failed(struct coord *c, const char *ip, const char *login, long ttl)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    int64_t now = (int64_t)coord_mono_ms();
    uint64_t key[2];

    emb_auth_keys(ip, login, key);
    emb_lock(e->sh);
    for (int k = 0; k < 2; k++) {
        struct emb_auth *a = emb_auth_find(e->sh, key[k], now, 1);
        a->count++;
        a->until_ms = now + (int64_t)ttl * 1000;
    }
    pthread_mutex_unlock(&e->sh->lock);
}

/* ---- rate counts (shared memory) ---- */

/* At most COORD_RATE_KEY_MAX bytes of key count, as the interface says.  A
 * 64-bit hash stands for the text: two keys that collide share a count, a
 * risk far below anything a rate limit is tuned for. */
static uint64_t emb_rate_key(const char *key)
{
    char cut[COORD_RATE_KEY_MAX + 1];

    snprintf(cut, sizeof(cut), "%s", key);
    return hash_fnv1a_str(cut) | 1;   /* never 0, the free mark */
}

/* The entry of key, or a fresh one in a free slot or in place of the key
 * idle longest. */
static struct emb_rate *emb_rate_find(struct emb_shared *sh, uint64_t key)
{
    struct emb_rate *victim = &sh->rate[0];

    for (size_t i = 0; i < EMB_RATE_KEYS; i++) {
        struct emb_rate *r = &sh->rate[i];
        if (r->key == key)
            return r;
        if (r->key == 0 || (victim->key != 0 && r->last_ms < victim->last_ms))
            victim = r;
    }
    memset(victim, 0, sizeof(*victim));
    victim->key = key;
    return victim;
}

/*
 * Adds the event at now and counts the events of the slices the window
 * covers.  A slice is window / (EMB_RATE_SLICES - 1) rounded up, so the
 * slices counted span at least the window and at most two slices more: the
 * limit errs on the strict side, by about 1/15 of the window at worst.
 */
static long emb_rate_count(struct emb_rate *r, int64_t now, int64_t window_ms)
{
    int64_t width = (window_ms + EMB_RATE_SLICES - 2) / (EMB_RATE_SLICES - 1);
    int64_t cur;
    struct emb_slice *s;
    long n = 0;

    if (width < 1)
        width = 1;
    if (r->width_ms != width) {
        memset(r->slice, 0, sizeof(r->slice));
        r->width_ms = width;
    }
    cur = now / width;
    s = &r->slice[cur % EMB_RATE_SLICES];
    if (s->no != cur) {
        s->no = cur;
        s->count = 0;
    }
    s->count++;
    r->last_ms = now;
    for (int i = 0; i < EMB_RATE_SLICES; i++)
        if (r->slice[i].no > cur - EMB_RATE_SLICES && r->slice[i].no <= cur)
            n += r->slice[i].count;
    return n;
}

static void emb_rate(struct coord *c, struct async_owner *o, const char *key, long limit,
                     long window, coord_status_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    int64_t now = (int64_t)coord_mono_ms();   /* one clock for every process */
    uint64_t k = emb_rate_key(key);
    long n;

    emb_lock(e->sh);
    n = emb_rate_count(emb_rate_find(e->sh, k), now, (int64_t)window * 1000);
    pthread_mutex_unlock(&e->sh->lock);
    fn(arg, n > limit ? COORD_LIMIT : COORD_OK);
}

/* ---- the due-time index of one queue (queue process memory) ---- */

static struct emb_queue *emb_queue(struct coord_embedded *e, const char *name)
{
    for (int i = 0; i < EMB_QUEUES; i++)
        if (strcmp(e->queues[i].name, name) == 0)
            return &e->queues[i];
    return &e->queues[0];
}

static struct emb_file **emb_slot(struct emb_queue *q, const char *qid)
{
    struct emb_file **pp = &q->buckets[hash_fnv1a_str(qid) % q->nbuckets];

    while (*pp && strcmp((*pp)->qid, qid) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void emb_rehash(struct emb_queue *q)
{
    size_t n = q->nbuckets ? q->nbuckets * 2 : 1024;
    struct emb_file **b = mem_zalloc(n * sizeof(*b));

    for (size_t i = 0; i < q->nbuckets; i++) {
        for (struct emb_file *f = q->buckets[i], *next; f; f = next) {
            next = f->next;
            size_t k = hash_fnv1a_str(f->qid) % n;
            f->next = b[k];
            b[k] = f;
        }
    }
    mem_free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

static struct emb_file *emb_find(struct emb_queue *q, const char *qid, int create)
{
    struct emb_file **pp, *f;

    if (q->nbuckets == 0 || q->nfiles >= q->nbuckets)
        emb_rehash(q);
    pp = emb_slot(q, qid);
    if (*pp || !create)
        return *pp;
    f = mem_zalloc(sizeof(*f));
    snprintf(f->qid, sizeof(f->qid), "%s", qid);
    f->due = -1;
    *pp = f;
    q->nfiles++;
    return f;
}

static void emb_forget(struct emb_queue *q, struct emb_file *f)
{
    struct emb_file **pp = emb_slot(q, f->qid);

    *pp = f->next;
    q->nfiles--;
    mem_free(f);
}

static int emb_heap_less(const struct emb_heap_entry *a, const struct emb_heap_entry *b)
{
    return a->due < b->due;
}

static void emb_heap_swap(struct emb_queue *q, size_t a, size_t b)
{
    struct emb_heap_entry t = q->heap[a];

    q->heap[a] = q->heap[b];
    q->heap[b] = t;
}

static void emb_heap_push(struct emb_queue *q, const struct emb_file *f)
{
    size_t i;

    if (q->nheap == q->heap_alloc) {
        q->heap_alloc = q->heap_alloc ? q->heap_alloc * 2 : 1024;
        q->heap = mem_realloc(q->heap, q->heap_alloc * sizeof(*q->heap));
    }
    i = q->nheap++;
    q->heap[i].due = f->due;
    q->heap[i].gen = f->gen;
    memcpy(q->heap[i].qid, f->qid, sizeof(f->qid));
    while (i > 0 && emb_heap_less(&q->heap[i], &q->heap[(i - 1) / 2])) {
        emb_heap_swap(q, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void emb_heap_pop(struct emb_queue *q)
{
    size_t i = 0;

    q->heap[0] = q->heap[--q->nheap];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && emb_heap_less(&q->heap[l], &q->heap[m]))
            m = l;
        if (r < q->nheap && emb_heap_less(&q->heap[r], &q->heap[m]))
            m = r;
        if (m == i)
            break;
        emb_heap_swap(q, i, m);
        i = m;
    }
}

/* The file of the top entry if that entry is current, else NULL. */
static struct emb_file *emb_heap_top(struct emb_queue *q)
{
    while (q->nheap > 0) {
        struct emb_file *f = emb_find(q, q->heap[0].qid, 0);
        if (f && !f->held && f->gen == q->heap[0].gen)
            return f;
        emb_heap_pop(q);
    }
    return NULL;
}

static void emb_set_due(struct emb_queue *q, struct emb_file *f, long due)
{
    f->due = due;
    f->gen = ++q->gen;
    emb_heap_push(q, f);
}

static void emb_announce_local(struct coord_embedded *e, const char *queue,
                               const char *qid, long due, int mode)
{
    struct emb_queue *q = emb_queue(e, queue);
    struct emb_file *f = emb_find(q, qid, 1);

    if (f->held)
        return;
    if (mode == COORD_ANN_NEW && f->due >= 0)
        return;
    emb_set_due(q, f, due < 0 ? 0 : due);
}

static uint64_t emb_token(struct coord_embedded *e)
{
    uint64_t now = (uint64_t)emb_now_ms();

    e->last_token = now > e->last_token ? now : e->last_token + 1;
    return e->last_token;
}

static void emb_claim_fill(struct coord_embedded *e, struct coord_claim *cl,
                           const char *queue, const char *qid, int with_slot)
{
    memset(cl, 0, sizeof(*cl));
    snprintf(cl->queue, sizeof(cl->queue), "%s", queue);
    snprintf(cl->qid, sizeof(cl->qid), "%s", qid);
    cl->token = emb_token(e);
    cl->slot = with_slot ? ++e->last_slot : 0;
    cl->asked_ms = coord_mono_ms();
}

static void emb_claim_next(struct coord *c, struct async_owner *o, const char *queue,
                           long limit, long now, coord_claim_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    struct emb_queue *q = emb_queue(e, queue);
    struct emb_file *f;
    struct coord_claim cl;

    if (limit > 0 && q->used >= limit) {
        fn(arg, COORD_FULL, NULL);
        return;
    }
    f = emb_heap_top(q);
    if (f == NULL || f->due > now) {
        fn(arg, COORD_EMPTY, NULL);
        return;
    }
    emb_heap_pop(q);
    f->held = 1;
    f->due = -1;
    q->used++;
    emb_claim_fill(e, &cl, queue, f->qid, 1);
    fn(arg, COORD_OK, &cl);
}

static void emb_claim_id(struct coord *c, struct async_owner *o, const char *queue,
                         const char *qid, coord_claim_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    struct emb_file *f = emb_find(emb_queue(e, queue), qid, 1);
    struct coord_claim cl;

    if (f->held) {
        fn(arg, COORD_BUSY, NULL);
        return;
    }
    f->held = 1;
    f->due = -1;
    emb_claim_fill(e, &cl, queue, qid, 0);
    fn(arg, COORD_OK, &cl);
}

static void emb_renew(struct coord *c, struct async_owner *o,
                      const struct coord_claim *cl, coord_status_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    struct emb_file *f = emb_find(emb_queue(e, cl->queue), cl->qid, 0);

    fn(arg, f && f->held ? COORD_OK : COORD_LOST);
}

static void emb_release(struct coord *c, const struct coord_claim *cl, long next_due)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    struct emb_queue *q = emb_queue(e, cl->queue);
    struct emb_file *f = emb_find(q, cl->qid, 0);

    if (cl->slot && q->used > 0)
        q->used--;
    if (f == NULL)
        return;
    f->held = 0;
    if (next_due == COORD_DUE_KEEP)
        emb_set_due(q, f, (long)time(NULL));
    else if (next_due < 0)
        emb_forget(q, f);
    else
        emb_set_due(q, f, next_due);
}

/* The files one batch claimed so far (emb_claim_next answers at once). */
struct emb_batch {
    struct coord_claim cl[COORD_BATCH_MAX];
    size_t n;
    int status;
};

static void emb_batch_one(void *arg, int status, const struct coord_claim *cl)
{
    struct emb_batch *b = arg;

    b->status = status;
    if (status == COORD_OK)
        b->cl[b->n++] = *cl;
}

static void emb_claim_batch(struct coord *c, struct async_owner *o, const char *queue,
                            long limit, long now, size_t want,
                            const struct coord_release *rel, size_t nrel,
                            coord_batch_fn *fn, void *arg)
{
    struct emb_batch b;

    for (size_t i = 0; i < nrel; i++)
        emb_release(c, &rel[i].cl, rel[i].next_due);
    if (want == 0)
        return;
    b.n = 0;
    b.status = COORD_OK;
    while (b.n < want && b.status == COORD_OK)
        emb_claim_next(c, o, queue, limit, now, emb_batch_one, &b);
    fn(arg, b.n == want ? COORD_OK : b.status, b.cl, b.n);
}

/* ---- announcements ---- */

static void emb_announce(struct coord *c, const char *queue, const char *qid,
                         long due, int mode)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    char msg[EMB_MSG_MAX];
    int n;

    if (e->watching) {
        emb_announce_local(e, queue, qid, due, mode);
        return;
    }
    n = snprintf(msg, sizeof(msg), "%s %s %ld %d", queue, qid, due, mode);
    if (n > 0 && (size_t)n < sizeof(msg))
        (void)send(e->sock[1], msg, (size_t)n, MSG_DONTWAIT);
}

static void emb_on_datagram(uv_poll_t *p, int status, int events)
{
    struct coord_embedded *e = p->data;
    char msg[EMB_MSG_MAX + 1], queue[16], qid[COORD_QID_MAX];
    long due;
    int mode, got = 0;
    ssize_t n;

    while ((n = recv(e->sock[0], msg, EMB_MSG_MAX, MSG_DONTWAIT)) > 0) {
        msg[n] = '\0';
        if (sscanf(msg, "%15s %63s %ld %d", queue, qid, &due, &mode) == 4) {
            emb_announce_local(e, queue, qid, due, mode);
            got |= due <= (long)time(NULL);   /* due later: the tick finds it */
        }
    }
    if (got && e->wake)
        e->wake(e->wake_arg);
}

static void emb_watch(struct coord *c, coord_wake_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;

    e->wake = fn;
    e->wake_arg = arg;
    e->watching = 1;
    if (e->loop && uv_poll_init(e->loop, &e->poll, e->sock[0]) == 0) {
        e->poll.data = e;
        uv_poll_start(&e->poll, UV_READABLE, emb_on_datagram);
    }
}

/* ---- slots ---- */

static struct emb_pool *emb_pool(struct coord_embedded *e, const char *name)
{
    for (int i = 0; i < EMB_POOLS; i++) {
        if (e->pools[i].name[0] == '\0')
            snprintf(e->pools[i].name, sizeof(e->pools[i].name), "%s", name);
        if (strcmp(e->pools[i].name, name) == 0)
            return &e->pools[i];
    }
    return &e->pools[EMB_POOLS - 1];
}

static void emb_slot_acquire(struct coord *c, struct async_owner *o, const char *pool,
                             long limit, coord_slot_fn *fn, void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    struct emb_pool *p = emb_pool(e, pool);

    if (limit > 0 && p->used >= limit) {
        fn(arg, COORD_FULL, 0);
        return;
    }
    p->used++;
    fn(arg, COORD_OK, ++e->last_slot);
}

static void emb_slot_release(struct coord *c, const char *pool, uint64_t slot)
{
    struct emb_pool *p = emb_pool((struct coord_embedded *)c, pool);

    if (slot && p->used > 0)
        p->used--;
}

/* ---- life ---- */

static int emb_attach(struct coord *c, uv_loop_t *loop)
{
    ((struct coord_embedded *)c)->loop = loop;
    return 0;
}

static void emb_poll_closed(uv_handle_t *h)
{
}

static void emb_detach(struct coord *c)
{
    struct coord_embedded *e = (struct coord_embedded *)c;

    if (e->watching && e->loop)
        uv_close((uv_handle_t *)&e->poll, emb_poll_closed);
    e->watching = 0;
}

static void emb_destroy(struct coord *c)
{
    struct coord_embedded *e = (struct coord_embedded *)c;

    for (int i = 0; i < EMB_QUEUES; i++) {
        struct emb_queue *q = &e->queues[i];
        for (size_t b = 0; b < q->nbuckets; b++)
            for (struct emb_file *f = q->buckets[b], *next; f; f = next) {
                next = f->next;
                mem_free(f);
            }
        mem_free(q->buckets);
        mem_free(q->heap);
    }
    close(e->sock[0]);
    close(e->sock[1]);
    munmap(e->sh, e->map_size);
    mem_free(e);
}

static const struct coord_ops emb_ops = {
    .name = "embedded",
    .attach = emb_attach,
    .detach = emb_detach,
    .destroy = emb_destroy,
    .conn_check = emb_conn_check,
    .announce = emb_announce,
    .watch = emb_watch,
    .claim_next = emb_claim_next,
    .claim_id = emb_claim_id,
    .renew = emb_renew,
    .release = emb_release,
    .claim_batch = emb_claim_batch,
    .slot_acquire = emb_slot_acquire,
    .slot_release = emb_slot_release,
    .auth_check = emb_auth_check,
    .auth_failed = emb_auth_failed,
    .rate = emb_rate,
};

static int emb_shared_map(struct coord_embedded *e, size_t ring, struct buf *err)
{
    pthread_mutexattr_t ma;

    e->map_size = sizeof(struct emb_shared) + ring * sizeof(struct emb_conn);
    e->sh = mmap(NULL, e->map_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (e->sh == MAP_FAILED) {
        buf_printf(err, "cannot map shared memory: %s", strerror(errno));
        return -1;
    }
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&e->sh->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    e->sh->ring_size = ring;
    return 0;
}

struct coord *coord_embedded_create(const struct config *conf, struct buf *err)
{
    struct coord_embedded *e = mem_zalloc(sizeof(*e));

    e->base.ops = &emb_ops;
    e->limit_cnx = conf->Limit_cnx;
    e->limit_time_ms = conf->Limit_time * 1000;
    snprintf(e->queues[0].name, sizeof(e->queues[0].name), "main");
    snprintf(e->queues[1].name, sizeof(e->queues[1].name), "qlimit");
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, e->sock) < 0) {
        buf_printf(err, "cannot create the announcement socket: %s", strerror(errno));
        mem_free(e);
        return NULL;
    }
    if (emb_shared_map(e, (size_t)conf->Limit_buf, err) < 0) {
        close(e->sock[0]);
        close(e->sock[1]);
        mem_free(e);
        return NULL;
    }
    return &e->base;
}
