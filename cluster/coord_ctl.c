/*
 * coord_ctl.c - what selorctl asks of the cluster's Redis directly, with
 * a synchronous hiredis connection (selorctl has no event loop).
 *
 * Owns: the keys selorctl reads and writes (the node registry, a file's
 * lock holder, a node's drain flag) and their formats as the Redis
 * backend (coord_redis.c) writes them, and the key of the cluster's flush
 * (one `selorctl flush` for the whole cluster: the shared spool is walked
 * by one node, and a flush asked for on another node meanwhile, or
 * shortly after, is not repeated).  Must not: be used by the node's
 * processes (they go through coord.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord_ctl.h"

int coord_ctl_flush_begin(redisContext *rc, const char *prefix, const char *sid,
                          char *holder, size_t size)
{
    redisReply *r;
    char value[160];
    int taken;

    snprintf(value, sizeof(value), "%s %ld running", sid[0] ? sid : "-", (long)time(NULL));
    r = redisCommand(rc, "SET %sflush %s NX EX %d", prefix, value, COORD_CTL_FLUSH_RUN);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        snprintf(holder, size, "%s", r ? r->str : rc->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    taken = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (taken)
        return 1;
    holder[0] = '\0';
    r = redisCommand(rc, "GET %sflush", prefix);
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(holder, size, "%s", r->str);
    if (r)
        freeReplyObject(r);
    return 0;
}

void coord_ctl_flush_end(redisContext *rc, const char *prefix, const char *sid, int done)
{
    redisReply *r;
    char value[160];

    if (!done) {
        r = redisCommand(rc, "DEL %sflush", prefix);
    } else {
        snprintf(value, sizeof(value), "%s %ld done", sid[0] ? sid : "-", (long)time(NULL));
        r = redisCommand(rc, "SET %sflush %s XX EX %d", prefix, value, COORD_CTL_FLUSH_QUIET);
    }
    if (r)
        freeReplyObject(r);
}

void coord_ctl_holder(redisContext *rc, const char *prefix, const char *qid, char *out,
                      size_t size)
{
    redisReply *r;

    out[0] = '\0';
    if (rc == NULL)
        return;
    r = redisCommand(rc, "GET %slock:%s", prefix, qid);
    if (r && r->type == REDIS_REPLY_STRING)   /* "SID token": coord_redis.c's lock value */
        snprintf(out, size, "%.*s", (int)strcspn(r->str, " "), r->str);
    if (r)
        freeReplyObject(r);
}

/* A registry entry, "state beat inflight version [rules]" (cr_heartbeat). */
static int coord_ctl_node_parse(const char *sid, const char *value, struct coord_ctl_node *n)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->sid, sizeof(n->sid), "%s", sid);
    snprintf(n->rules, sizeof(n->rules), "-");
    return sscanf(value, "%31s %ld %ld %31s %23s", n->state, &n->beat, &n->inflight,
                  n->version, n->rules) >= 4 ? 0 : -1;
}

int coord_ctl_nodes(redisContext *rc, const char *prefix, coord_ctl_node_fn *fn, void *arg)
{
    redisReply *r = redisCommand(rc, "HGETALL %snodes", prefix), *alive;
    struct coord_ctl_node n;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        if (coord_ctl_node_parse(r->element[i]->str, r->element[i + 1]->str, &n) < 0)
            continue;
        alive = redisCommand(rc, "EXISTS %salive:%s", prefix, n.sid);
        n.gone = alive && alive->type == REDIS_REPLY_INTEGER && alive->integer == 0;
        if (alive)
            freeReplyObject(alive);
        fn(&n, arg);
    }
    freeReplyObject(r);
    return 0;
}

int coord_ctl_drain(redisContext *rc, const char *prefix, const char *sid, int drain,
                    char *why, size_t size)
{
    redisReply *r = drain ? redisCommand(rc, "SET %sdrain:%s 1", prefix, sid)
                          : redisCommand(rc, "DEL %sdrain:%s", prefix, sid);
    int bad = r == NULL || r->type == REDIS_REPLY_ERROR;

    if (bad)
        snprintf(why, size, "%s", r ? r->str : rc->errstr);
    if (r)
        freeReplyObject(r);
    return bad ? -1 : 0;
}
