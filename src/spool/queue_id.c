/*
 * queue_id.c - cluster-unique queue IDs (see queue_id.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "queue_id.h"

unsigned long queue_id_node(const char *sid)
{
    unsigned long h = 2166136261u;
    size_t n = strlen(sid);

    if (n > 0 && n <= 6 && strspn(sid, "0123456789") == n)
        return strtoul(sid, NULL, 10);
    for (const char *p = sid; *p; p++) {
        h ^= (unsigned char)*p;
        h = (h * 16777619u) & 0xffffffffu;
    }
    return n ? h % 1000000 : 0;
}

void queue_id_init(struct queue_id_gen *g, const char *sid)
{
    g->node = queue_id_node(sid);
    g->pid = (long)getpid();
    g->last_sec = g->last_usec = 0;
}

void queue_id_next(struct queue_id_gen *g, char out[QUEUE_ID_MAX])
{
    struct timeval tv;
    long sec, usec;

    gettimeofday(&tv, NULL);
    sec = (long)tv.tv_sec;
    usec = (long)tv.tv_usec;
    if (sec < g->last_sec || (sec == g->last_sec && usec <= g->last_usec)) {
        sec = g->last_sec;
        usec = g->last_usec + 1;
        if (usec >= 1000000) {
            sec++;
            usec = 0;
        }
    }
    g->last_sec = sec;
    g->last_usec = usec;
    snprintf(out, QUEUE_ID_MAX, "%ld_%06ld_%ld_%lu", sec, usec, g->pid, g->node);
}

int queue_id_valid(const char *s)
{
    int groups = 0, digits = 0;
    size_t n = 0;

    for (; *s; s++, n++) {
        if (isdigit((unsigned char)*s)) {
            digits++;
        } else if (*s == '_' && digits > 0) {
            groups++;
            digits = 0;
        } else {
            return 0;
        }
    }
    return digits > 0 && groups >= 1 && n < QUEUE_ID_MAX;
}

long queue_id_time(const char *id)
{
    return strtol(id, NULL, 10);
}

int queue_id_origin(const char *id, long *pid, unsigned long *node)
{
    long sec, usec;
    int n = 0;

    if (sscanf(id, "%ld_%ld_%ld_%lu%n", &sec, &usec, pid, node, &n) != 4 ||
        id[n] != '\0')
        return -1;
    return 0;
}
