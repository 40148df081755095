/*
 * coord_embedded.c - the single-node coordination backend.
 *
 * Owns: state shared by the processes of one node, in an anonymous shared
 * mapping made by the master before it forks, guarded by a robust
 * process-shared mutex (a process killed while holding it cannot wedge the
 * others).  Must not: be used by more than one node (it sees only its own
 * processes) or block: every critical section is a few memory operations.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "config.h"
#include "coord.h"
#include "mem.h"

struct emb_conn {
    uint64_t ip_hash;
    int64_t at_ms;
};

struct emb_shared {
    pthread_mutex_t lock;
    size_t ring_size, ring_next, ring_used;
    struct emb_conn ring[];  /* Limit_buf entries */
};

struct coord_embedded {
    struct coord base;
    struct emb_shared *sh;
    size_t map_size;
    long limit_cnx, limit_time_ms;
};

static int64_t emb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t emb_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
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

static void emb_conn_check(struct coord *c, const char *ip, coord_conn_fn *fn,
                           void *arg)
{
    struct coord_embedded *e = (struct coord_embedded *)c;
    int verdict = COORD_OK;

    if (e->sh->ring_size > 0) {
        emb_lock(e->sh);
        verdict = emb_judge(e, emb_hash(ip), emb_now_ms());
        pthread_mutex_unlock(&e->sh->lock);
    }
    fn(arg, verdict);
}

static void emb_destroy(struct coord *c)
{
    struct coord_embedded *e = (struct coord_embedded *)c;

    munmap(e->sh, e->map_size);
    mem_free(e);
}

static const struct coord_ops emb_ops = {
    .name = "embedded",
    .destroy = emb_destroy,
    .conn_check = emb_conn_check,
};

struct coord *coord_embedded_create(const struct config *conf, struct buf *err)
{
    struct coord_embedded *e = mem_zalloc(sizeof(*e));
    pthread_mutexattr_t ma;
    size_t ring = (size_t)conf->Limit_buf;

    e->base.ops = &emb_ops;
    e->limit_cnx = conf->Limit_cnx;
    e->limit_time_ms = conf->Limit_time * 1000;
    e->map_size = sizeof(struct emb_shared) + ring * sizeof(struct emb_conn);
    e->sh = mmap(NULL, e->map_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (e->sh == MAP_FAILED) {
        buf_printf(err, "cannot map shared memory: %s", strerror(errno));
        mem_free(e);
        return NULL;
    }
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&e->sh->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    e->sh->ring_size = ring;
    return &e->base;
}
