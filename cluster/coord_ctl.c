/*
 * coord_ctl.c - what selorctl asks of the cluster's Redis directly, with
 * a synchronous hiredis connection (selorctl has no event loop).
 *
 * Owns: the key of the cluster's flush (one `selorctl flush` for the whole
 * cluster: the shared spool is walked by one node, and a flush asked for
 * on another node meanwhile, or shortly after, is not repeated).  Must
 * not: be used by the node's processes (they go through coord.h).
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
