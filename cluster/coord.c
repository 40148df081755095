/*
 * coord.c - backend choice and the calls of the coordination interface
 * (see coord.h).
 */
#include "config.h"
#include "coord.h"

struct coord *coord_create(const struct config *conf, struct buf *err)
{
    if (conf->Redis_server[0]) {
        buf_printf(err, "%s:%d: Redis_server is set, but this build has no "
                   "Redis coordination backend yet",
                   conf->path, conf->line[CONF_IDX_Redis_server]);
        return NULL;
    }
    return coord_embedded_create(conf, err);
}

int coord_attach(struct coord *c, uv_loop_t *loop)
{
    return c->ops->attach ? c->ops->attach(c, loop) : 0;
}

void coord_detach(struct coord *c)
{
    if (c->ops->detach)
        c->ops->detach(c);
}

void coord_destroy(struct coord *c)
{
    if (c)
        c->ops->destroy(c);
}

void coord_conn_check(struct coord *c, const char *ip, coord_conn_fn *fn,
                      void *arg)
{
    c->ops->conn_check(c, ip, fn, arg);
}
