/*
 * rules_eval.c - running the rules of one event.
 *
 * Owns: the semantics of a rule: conditions and actions left to right, an
 * action runs when every condition to its left held, the first false
 * condition ends the rule; rules top to bottom; the first verdict
 * (Accept!, Deny!, Defer!, Close!) ends the event once its rule's remaining
 * actions ran.  Conditions that need an answer (Rev_fail?, Spf_resp, Rbl?,
 * Exec?, Rate?) start a request owned by ctx->own and the run resumes
 * where it stopped when the answer comes; an owner that goes cancels them,
 * so no answer reaches a finished session.  Each DNS lookup is done once a
 * connection (rules_cache).  Must not: decide what a verdict means for SMTP
 * or delivery (the callers do).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "coord.h"
#include "dns.h"
#include "log.h"
#include "metrics.h"
#include "rules_exec.h"
#include "rules_int.h"
#include "spf.h"

#define RULES_ARGV_MAX (RULES_EXEC_ARGS_MAX + 1)



/* metrics.h labels events and verdicts in the rules' own order */
_Static_assert((int)METRICS_EV_LIMIT == (int)RULES_EV_LIMIT &&
               (int)METRICS_EV_RCPT == (int)RULES_EV_RCPT &&
               (int)METRICS_EV_DL_RCPT + 1 == (int)RULES_NEVENTS &&
               (int)METRICS_VD_NONE == (int)RULES_NONE &&
               (int)METRICS_VD_CLOSE == (int)RULES_CLOSE,
               "metrics.h: the rules' events and verdicts changed");

static void rules_loop(struct rules_run *run);

void rules_cache_init(struct rules_cache *c)
{
    memset(c, 0, sizeof(*c));
    c->rev = -1;
    c->spf = -1;
}

/* ---- variables ---- */

static void rules_put_part(struct buf *out, const char *addr, int part)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;

    if (addr == NULL)
        return;
    if (part == 0)
        buf_puts(out, addr);
    else if (part == 1 && at)
        buf_puts(out, at + 1);
    else if (part == 2)
        buf_append(out, addr, at ? (size_t)(at - addr) : strlen(addr));
}

static void rules_put_var(const struct rules_ctx *ctx, char v, struct buf *out)
{
    const struct rules_cache *c = ctx->cache;

    switch (v) {
    case 'H': buf_printf(out, "%ld", ctx->hits ? *ctx->hits : 0); break;
    case 'T': buf_puts(out, ctx->answer ? ctx->answer : ""); break;
    case 'f': rules_put_part(out, ctx->from, 0); break;
    case 'o': rules_put_part(out, ctx->from, 1); break;
    case 'm': rules_put_part(out, ctx->from, 2); break;
    case 'r': rules_put_part(out, ctx->rcpt, 0); break;
    case 'c': rules_put_part(out, ctx->rcpt, 1); break;
    case 'p': rules_put_part(out, ctx->rcpt, 2); break;
    case 'd':
    case 'Q': buf_puts(out, ctx->qid ? ctx->qid : ""); break;
    case 'I': buf_puts(out, ctx->ip ? ctx->ip : ""); break;
    case 'N': buf_puts(out, c && c->rdns[0] ? c->rdns : ctx->rdns ? ctx->rdns : ""); break;
    case 'E': buf_puts(out, ctx->helo ? ctx->helo : ""); break;
    case 'U': buf_puts(out, ctx->auth ? ctx->auth : ""); break;
    case 'S': buf_puts(out, c && c->spf >= 0 ? spf_result_name(c->spf) : "none"); break;
    case 'X': buf_puts(out, c ? c->exec_line : ""); break;
    default: buf_putc(out, v); break;
    }
}

void rules_expand(const struct rules_ctx *ctx, const char *text, struct buf *out)
{
    for (const char *p = text; *p; p++) {
        if (*p == '%' && p[1]) {
            rules_put_var(ctx, *++p, out);
            continue;
        }
        buf_putc(out, *p);
    }
}

/*
 * The argument of it, variables inserted (tmp holds the text).  What a
 * variable brings (a program's output line, a name from DNS) never
 * carries a control character into a reply, a header or a log line.
 */
static const char *rules_arg(const struct rules_run *run, const struct rules_item *it,
                             struct buf *tmp)
{
    if (!it->has_vars)
        return it->arg;
    buf_reset(tmp);
    rules_expand(run->ctx, it->arg, tmp);
    for (size_t i = 0; i < tmp->len; i++)
        if ((unsigned char)tmp->data[i] < 0x20 && tmp->data[i] != '\t')
            tmp->data[i] = '?';
    return buf_cstr(tmp);
}

/*
 * A program's words: split as written (rules_exec_split), then each word's
 * variables inserted, so what a client sent (an address with a blank or a
 * quote) is always one argument, never several.
 */
static size_t rules_argv(const struct rules_run *run, const char *cmd, char **argv,
                         struct arena *mem)
{
    char buf[RULES_EXEC_CMD_MAX + 1];
    char *words[RULES_ARGV_MAX];
    int n = rules_exec_split(cmd, buf, sizeof(buf), words, RULES_ARGV_MAX);
    struct buf x = BUF_INIT(0);

    for (int i = 0; i < n; i++) {
        buf_reset(&x);
        rules_expand(run->ctx, words[i], &x);
        argv[i] = arena_strdup(mem, buf_cstr(&x));
    }
    argv[n > 0 ? n : 0] = NULL;
    buf_free(&x);
    return n > 0 ? (size_t)n : 0;
}

/* ---- answers that come later ---- */

static void rules_answer(struct rules_run *run, int result)
{
    run->answered = 1;
    run->answer = result;
    if (!run->in_loop)
        rules_loop(run);
}

static void rules_spf_done(void *arg, int result, const char *expl)
{
    struct rules_run *run = arg;
    struct rules_cache *c = run->ctx->cache;

    (void)expl;
    c->spf = result;
    snprintf(c->spf_for, sizeof(c->spf_for), "%s", run->ctx->from ? run->ctx->from : "");
    rules_answer(run, 1);
}

static void rules_rev_confirmed(void *arg, int status, const struct sockaddr_storage *a,
                                size_t n)
{
    struct rules_run *run = arg;
    struct rules_cache *c = run->ctx->cache;
    char ip[64];

    c->rev = 1;
    for (size_t i = 0; status == DNS_OK && i < n && c->rev; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&a[i];
        const void *bin = sa->sa_family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (inet_ntop(sa->sa_family, bin, ip, sizeof(ip)) && strcmp(ip, run->ctx->ip) == 0)
            c->rev = 0;
    }
    if (c->rev == 0)
        snprintf(c->rdns, sizeof(c->rdns), "%s", run->rdns);
    rules_answer(run, 1);
}

static void rules_rev_named(void *arg, int status, const char *name)
{
    struct rules_run *run = arg;

    /* a name that is no domain (DNS labels may hold any byte) is no name:
     * it would reach Received: and the l file */
    if (status != DNS_OK || name == NULL || strlen(name) >= sizeof(run->rdns) ||
        !addr_valid_domain(name, strlen(name))) {
        run->ctx->cache->rev = 1;
        rules_answer(run, 1);
        return;
    }
    snprintf(run->rdns, sizeof(run->rdns), "%s", name);
    dns_addrs(run->ctx->dns, run->ctx->own, run->rdns, rules_rev_confirmed, run);
}

static void rules_rbl_done(void *arg, int status, const struct sockaddr_storage *a,
                           size_t n)
{
    struct rules_run *run = arg;
    struct rules_cache *c = run->ctx->cache;
    int listed = 0;

    /* 127.0.0.0/8 is a listing; 127.255.255.x is the list telling us an
     * error (refused query, over quota): never a listing. */
    for (size_t i = 0; status == DNS_OK && i < n; i++) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a[i];
        uint32_t v;
        if (in->sin_family != AF_INET)
            continue;
        v = ntohl(in->sin_addr.s_addr);
        if ((v >> 24) == 127 && (v >> 8) != 0x7fffff)
            listed = 1;
        else if ((v >> 8) == 0x7fffff)
            log_warn("%s: DNSBL %s answers an error code for %s",
                     run->ctx->cid ? run->ctx->cid : "-", c->rbl[c->nrbl - 1].zone,
                     run->ctx->ip);
    }
    if (status == DNS_TEMPFAIL)
        log_warn("%s: DNSBL %s did not answer for %s", run->ctx->cid ? run->ctx->cid : "-",
                 c->rbl[c->nrbl - 1].zone, run->ctx->ip);
    c->rbl[c->nrbl - 1].listed = listed;
    rules_answer(run, listed);
}

static void rules_exec_done(void *arg, int status, int code, const char *line)
{
    struct rules_run *run = arg;

    snprintf(run->ctx->cache->exec_line, sizeof(run->ctx->cache->exec_line), "%s",
             line ? line : "");
    if (status == RULES_EXEC_TIMEOUT)
        log_warn("%s: Exec? timed out after %lds (the condition is false)",
                 run->ctx->cid ? run->ctx->cid : "-", run->ctx->conf ?
                 run->ctx->conf->Rules_exec_timeout : 0L);
    else if (status != RULES_EXEC_EXITED)
        log_warn("%s: Exec? could not run its program (the condition is false)",
                 run->ctx->cid ? run->ctx->cid : "-");
    rules_answer(run, status == RULES_EXEC_EXITED && code == 0);
}

static void rules_rate_done(void *arg, int status)
{
    struct rules_run *run = arg;

    if (status == COORD_DOWN)
        log_warn("%s: Rate?: the coordination backend cannot count now (the condition "
                 "is false)", run->ctx->cid ? run->ctx->cid : "-");
    rules_answer(run, status == COORD_LIMIT);
}

/* ---- conditions ---- */

static int rules_cond_spf(struct rules_run *run, const struct rules_item *it)
{
    struct rules_ctx *ctx = run->ctx;
    struct rules_cache *c = ctx->cache;
    const char *from = ctx->from ? ctx->from : "";

    if (c->spf >= 0 && strcmp(c->spf_for, from) == 0)
        return it ? c->spf == it->u.num : 1;
    spf_check(ctx->dns, ctx->own, ctx->ip, ctx->helo ? ctx->helo : "", from,
              ctx->receiver ? ctx->receiver : "", rules_spf_done, run);
    return -1;
}

static int rules_cond_rbl(struct rules_run *run, const struct rules_item *it)
{
    struct rules_cache *c = run->ctx->cache;
    char q[400];
    unsigned char a[16];
    size_t n = 0;

    for (size_t i = 0; i < c->nrbl; i++)
        if (strcasecmp(c->rbl[i].zone, it->arg) == 0)
            return c->rbl[i].listed;
    if (inet_pton(AF_INET, run->ctx->ip, a) == 1) {
        n = (size_t)snprintf(q, sizeof(q), "%u.%u.%u.%u.", a[3], a[2], a[1], a[0]);
    } else if (inet_pton(AF_INET6, run->ctx->ip, a) == 1) {
        for (int i = 15; i >= 0; i--)
            n += (size_t)snprintf(q + n, sizeof(q) - n, "%x.%x.", a[i] & 15, a[i] >> 4);
    } else {
        return 0;
    }
    snprintf(q + n, sizeof(q) - n, "%s", it->arg);
    if (c->nrbl == RULES_CACHE_RBL)     /* the oldest answer goes */
        memmove(&c->rbl[0], &c->rbl[1], (--c->nrbl) * sizeof(c->rbl[0]));
    snprintf(c->rbl[c->nrbl].zone, sizeof(c->rbl[0].zone), "%s", it->arg);
    c->rbl[c->nrbl++].listed = 0;
    dns_addrs(run->ctx->dns, run->ctx->own, q, rules_rbl_done, run);
    return -1;
}

static int rules_cond_exec(struct rules_run *run, const struct rules_item *it)
{
    struct rules_ctx *ctx = run->ctx;
    char *argv[RULES_ARGV_MAX];
    long timeout = ctx->conf ? ctx->conf->Rules_exec_timeout : 30;

    if (rules_argv(run, it->arg, argv, ctx->mem) == 0)
        return 0;
    if (rules_exec_startv(ctx->exec, ctx->own, (const char *const *)argv, ctx->msgfile,
                          timeout * 1000, rules_exec_done, run) < 0) {
        log_warn("%s: Exec? %s: too many programs running (the condition is false)",
                 ctx->cid ? ctx->cid : "-", argv[0]);
        return 0;
    }
    return -1;
}

static int rules_cond_rate(struct rules_run *run, const struct rules_item *it)
{
    struct buf key = BUF_INIT(0);

    if (run->ctx->coord == NULL) {   /* a dry run counts nothing */
        if (run->ctx->trace)
            buf_printf(run->ctx->trace, "  (Rate? is false in a dry run: nothing is counted)\n");
        return 0;
    }
    rules_expand(run->ctx, it->u.rate.key, &key);
    coord_rate(run->ctx->coord, run->ctx->own, buf_cstr(&key), it->u.rate.limit,
               it->u.rate.window, rules_rate_done, run);
    buf_free(&key);
    return -1;
}

static int rules_any_rcpt(const struct rules_ctx *ctx, const char *pattern)
{
    if (ctx->rcpt)
        return rules_match_addr(pattern, ctx->rcpt);
    for (size_t i = 0; i < ctx->nrcpts; i++)
        if (rules_match_addr(pattern, ctx->rcpts[i]))
            return 1;
    return 0;
}

/* 1 true, 0 false, -1 asked (the answer comes through rules_answer). */
static int rules_cond(struct rules_run *run, const struct rules_item *it, struct buf *tmp)
{
    const struct rules_ctx *ctx = run->ctx;

    switch (it->op) {
    case RULES_C_FROM: return rules_match_addr(rules_arg(run, it, tmp), ctx->from);
    case RULES_C_TO: return rules_any_rcpt(ctx, rules_arg(run, it, tmp));
    case RULES_C_IP: return ctx->ip && rules_ip_match(it, ctx->ip);
    case RULES_C_REV_FAIL:
        if (ctx->cache->rev >= 0)
            return ctx->cache->rev;
        dns_ptr(ctx->dns, ctx->own, ctx->ip, rules_rev_named, run);
        return -1;
    case RULES_C_ITEST: {
        int r = rules_itest(rules_arg(run, it, tmp));
        if (r < 0)
            log_warn("%s: Itest? \"%s\" is no comparison of numbers once expanded (\"%s\")",
                     ctx->cid ? ctx->cid : "-", it->arg, buf_cstr(tmp));
        return r > 0;
    }
    case RULES_C_SPF: return rules_cond_spf(run, it);
    case RULES_C_HELO: return ctx->helo && rules_match_glob(rules_arg(run, it, tmp), ctx->helo);
    case RULES_C_AUTH:
        if (it->arg == NULL)
            return ctx->auth && ctx->auth[0];
        return ctx->auth && ctx->auth[0] && rules_match_glob(rules_arg(run, it, tmp), ctx->auth);
    case RULES_C_TLS: return ctx->tls;
    case RULES_C_LOCAL: return ctx->local;
    case RULES_C_SIZE: return ctx->size > it->u.num;
    case RULES_C_RBL: return rules_cond_rbl(run, it);
    case RULES_C_EXEC: return rules_cond_exec(run, it);
    case RULES_C_RATE: return rules_cond_rate(run, it);
    default: return 0;
    }
}

/* ---- actions ---- */

static void rules_set_verdict(struct rules_run *run, enum rules_verdict v)
{
    if (run->out.verdict == RULES_NONE)
        run->out.verdict = v;
    run->stop = 1;
}

static void rules_def(struct rules_run *run, const struct rules_item *it)
{
    struct rules_ctx *ctx = run->ctx;
    struct buf err = BUF_INIT(0);

    if (ctx->conf == NULL || ctx->mem == NULL)
        return;
    if (config_def_set(ctx->conf, ctx->mem, it->u.def.idx, it->u.def.value, &err) < 0)
        log_warn("%s: Def! \"%s\": %s", ctx->cid ? ctx->cid : "-", it->arg, buf_cstr(&err));
    else
        run->out.def_changed = 1;
    buf_free(&err);
}

static void rules_exec_action(struct rules_run *run, const struct rules_item *it)
{
    struct rules_ctx *ctx = run->ctx;
    char *argv[RULES_ARGV_MAX];
    long timeout = ctx->conf ? ctx->conf->Rules_exec_timeout : 30;

    if (rules_argv(run, it->arg, argv, ctx->mem) > 0 &&
        rules_exec_startv(ctx->exec, NULL, (const char *const *)argv, ctx->msgfile,
                          timeout * 1000, NULL, NULL) < 0)
        log_warn("%s: Exec! %s: too many programs running (not run)",
                 ctx->cid ? ctx->cid : "-", argv[0]);
}

static void rules_action(struct rules_run *run, const struct rules_item *it, struct buf *tmp)
{
    struct rules_outcome *o = &run->out;
    struct rules_ctx *ctx = run->ctx;

    switch (it->op) {
    case RULES_A_ADD_HITS: if (ctx->hits) *ctx->hits += it->u.num; break;
    case RULES_A_ACCEPT: rules_set_verdict(run, RULES_ACCEPT); break;
    case RULES_A_DENY: rules_set_verdict(run, RULES_DENY); break;
    case RULES_A_DEFER: rules_set_verdict(run, RULES_DEFER); break;
    case RULES_A_CLOSE: rules_set_verdict(run, RULES_CLOSE); break;
    case RULES_A_CP: {
        const char *a = rules_arg(run, it, tmp);
        struct addr parsed;
        if (addr_parse(a, strlen(a), &parsed) != ADDR_OK || parsed.domain[0] == '\0') {
            log_warn("%s: Cp! \"%s\" is no address once expanded (\"%s\"): no copy",
                     ctx->cid ? ctx->cid : "-", it->arg, a);
            break;
        }
        if (o->ncp < RULES_MAX_CP && ctx->mem)
            o->cp[o->ncp++] = arena_strdup(ctx->mem, a);
        break;
    }
    case RULES_A_DEF: rules_def(run, it); break;
    case RULES_A_REPLY:
        snprintf(o->reply, sizeof(o->reply), "%s", rules_arg(run, it, tmp));
        break;
    case RULES_A_DATA_REPLY:
        snprintf(o->data_reply, sizeof(o->data_reply), "%s", rules_arg(run, it, tmp));
        break;
    case RULES_A_RESOLVE: o->resolve = 1; break;
    case RULES_A_QLIMIT: o->qlimit = 1; break;
    case RULES_A_DELAY: o->delay = it->u.num; break;
    case RULES_A_LOG:
        log_warn("%s %s rules %s:%d: %s", ctx->cid ? ctx->cid : "-", ctx->ip ? ctx->ip : "-",
                 run->file->path ? run->file->path : "inline", it->line,
                 rules_arg(run, it, tmp));
        break;
    case RULES_A_HEADER:
        if (o->nheaders < RULES_MAX_HEADERS && ctx->mem)
            o->headers[o->nheaders++] = arena_strdup(ctx->mem, rules_arg(run, it, tmp));
        break;
    case RULES_A_EXEC: rules_exec_action(run, it); break;
    default: break;
    }
}

/* ---- the walk ---- */

static void rules_traced(struct rules_run *run, const struct rules_rule *r)
{
    run->out.rules_run++;
    if (run->ctx->trace)
        buf_printf(run->ctx->trace, "%s %s:%d: %s\n", rules_event_name(run->ev),
                   run->file->path ? run->file->path : "(inline)", r->line, r->text);
}

/* The next item of the current rule: 1 go on in this rule, 0 the rule
 * ended, -1 a condition waits for its answer. */
static int rules_step(struct rules_run *run, struct buf *tmp)
{
    const struct rules_rule *r = &run->file->rules[run->rule];
    const struct rules_item *it = &r->items[run->item];
    int v;

    if (run->answered && run->waiting_spf) {   /* the %S it needed is known now */
        run->answered = run->waiting_spf = 0;
    } else if (!run->answered && it->needs_spf && rules_cond_spf(run, NULL) < 0) {
        run->waiting_spf = 1;
        return -1;
    }
    if (it->action && it->op == RULES_A_RESOLVE && run->ctx->cache->rev < 0 &&
        run->ctx->dns && !run->answered) {   /* Resolve!: the name, before going on */
        dns_ptr(run->ctx->dns, run->ctx->own, run->ctx->ip, rules_rev_named, run);
        return -1;
    }
    if (it->action) {
        run->answered = 0;
        if (!run->rule_acted)
            rules_traced(run, r);
        run->rule_acted = 1;
        rules_action(run, it, tmp);
        return ++run->item < r->nitems;
    }
    if (run->answered) {
        v = run->answer;
        run->answered = 0;
        if (it->op == RULES_C_SPF)
            v = run->ctx->cache->spf == it->u.num;
        else if (it->op == RULES_C_REV_FAIL)
            v = run->ctx->cache->rev == 1;
    } else if ((v = rules_cond(run, it, tmp)) < 0) {
        return -1;
    }
    if (it->negate)
        v = !v;
    return v && ++run->item < r->nitems;
}

static void rules_loop(struct rules_run *run)
{
    struct buf tmp = BUF_INIT(0);

    run->in_loop = 1;
    while (run->rule < run->file->nrules) {
        int r = rules_step(run, &tmp);
        if (r < 0) {
            if (!run->answered) {
                run->pending = 1;     /* resumed by rules_answer */
                break;
            }
            continue;                 /* answered before the call returned */
        }
        if (r > 0)
            continue;
        if (run->stop)
            break;
        run->rule++;
        run->item = 0;
        run->rule_acted = 0;
    }
    run->in_loop = 0;
    buf_free(&tmp);
    if (run->rule < run->file->nrules && !run->stop && run->pending && !run->answered)
        return;
    metrics_inc2(METRIC_RULES_VERDICTS, run->ev, run->out.verdict);   /* the run is over */
    if (run->pending && run->done) {
        run->pending = 0;
        run->done(run->arg);
    }
}

int rules_run(struct rules_run *run, const struct rules_file *file, enum rules_event ev,
              struct rules_ctx *ctx, rules_done_fn *done, void *arg)
{
    memset(run, 0, sizeof(*run));
    run->file = file;
    run->ev = ev;
    run->ctx = ctx;
    run->done = done;
    run->arg = arg;
    if (file == NULL || file->nrules == 0)
        return 1;
    rules_loop(run);
    return !run->pending;
}
