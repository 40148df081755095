/*
 * selor_slow.c - a test account module that answers late, through the real
 * module ABI (src/accounts/selor_module.h), so the tests can hold a session or a
 * delivery run in the middle of an account lookup.
 *
 * Options: Slow_domains "a.test b.test" (local domains), Slow_delay_ms
 * (how late each answer comes), Slow_others_ms (how late an answer about
 * a key outside Slow_domains comes; default Slow_delay_ms, -1 at once).  DOMAIN: found for a listed domain.
 * MAILBOX: found for every user of a listed domain except those whose
 * local part starts with "nobody".  ALIAS, AUTH: not found (AUTH answers
 * late too, so a session can be held in an AUTH check).  Every answer
 * is given Slow_delay_ms after the lookup, by a timer per request.
 * Owns: nothing but its own timers.  Must not: touch a request after
 * cancel(); include Selor's internal headers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selor_module.h"

struct slow_state {
    const struct selor_host *host;
    char domains[1024];
    long delay_ms, others_ms;
    uv_loop_t *loop;
};

struct slow_req {
    uv_timer_t timer;
    struct selor_lookup *req;
};

static const struct selor_module_option slow_options[] = {
    {"Slow_domains", 1},
    {"Slow_delay_ms", 0},
    {"Slow_others_ms", 0},
    {NULL, 0},
};

static int slow_init(const struct selor_host *host, void **state, char *err, size_t errlen)
{
    struct slow_state *s = calloc(1, sizeof(*s));
    const char *v;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->host = host;
    v = host->option("Slow_domains");
    snprintf(s->domains, sizeof(s->domains), " %s ", v ? v : "");
    v = host->option("Slow_delay_ms");
    s->delay_ms = v ? atol(v) : 1000;
    v = host->option("Slow_others_ms");
    s->others_ms = v ? atol(v) : s->delay_ms;
    *state = s;
    return 0;
}

static int slow_attach(void *state, uv_loop_t *loop)
{
    ((struct slow_state *)state)->loop = loop;
    return 0;
}

/* Pending timers are closed by cancel() (their owners went before). */
static void slow_detach(void *state)
{
    free(state);
}

static int slow_local(const struct slow_state *s, const char *domain)
{
    char key[300];

    snprintf(key, sizeof(key), " %s ", domain);
    return strstr(s->domains, key) != NULL;
}

/* The answer this module gives for req, now. */
static int slow_answer(const struct slow_state *s, struct selor_lookup *req)
{
    const char *at;

    switch (req->kind) {
    case SELOR_LOOKUP_DOMAIN:
        return slow_local(s, req->key) ? SELOR_FOUND : SELOR_NOTFOUND;
    case SELOR_LOOKUP_MAILBOX:
        at = strrchr(req->key, '@');
        if (at == NULL || !slow_local(s, at + 1) || strncmp(req->key, "nobody", 6) == 0)
            return SELOR_NOTFOUND;
        req->mbox.user = req->key;
        req->mbox.home = "";
        req->mbox.uid = req->mbox.gid = -1;
        req->mbox.dlocal = "";
        return SELOR_FOUND;
    default:
        return SELOR_NOTFOUND;
    }
}

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    struct slow_req *r = t->data;
    struct selor_lookup *req = r->req;

    r->req = NULL;
    req->module_data = NULL;
    uv_close((uv_handle_t *)&r->timer, slow_closed);
    req->done(req);
}

static int slow_lookup(void *state, struct selor_lookup *req)
{
    struct slow_state *s = state;
    struct slow_req *r;

    const char *at = strrchr(req->key, '@');
    long delay = slow_local(s, at ? at + 1 : req->key) ? s->delay_ms : s->others_ms;

    req->result = slow_answer(s, req);
    if (s->loop == NULL || delay < 0)
        return req->result;   /* selor -t, tools: at once */
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return SELOR_TEMPFAIL;
    r->req = req;
    uv_timer_init(s->loop, &r->timer);
    r->timer.data = r;
    req->module_data = r;
    uv_timer_start(&r->timer, slow_fire, (uint64_t)delay, 0);
    return SELOR_PENDING;
}

static void slow_cancel(void *state, struct selor_lookup *req)
{
    struct slow_req *r = req->module_data;

    if (r == NULL)
        return;
    req->module_data = NULL;
    r->req = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, slow_closed);
}

extern const struct selor_module selor_module;

const struct selor_module selor_module = {
    .abi = SELOR_MODULE_ABI,
    .name = "slow",
    .version = "test",
    .options = slow_options,
    .init = slow_init,
    .attach = slow_attach,
    .detach = slow_detach,
    .kinds = (1u << SELOR_LOOKUP_DOMAIN) | (1u << SELOR_LOOKUP_MAILBOX) |
             (1u << SELOR_LOOKUP_ALIAS) | (1u << SELOR_LOOKUP_AUTH),
    .lookup = slow_lookup,
    .cancel = slow_cancel,
};
