/*
 * config_reload.c - selor.conf read again while the node runs (SIGHUP,
 * selorctl reload).
 *
 * Owns: which options take effect live and which keep their value until a
 * restart (config_reload_live), merging a freshly loaded file into a new
 * generation that keeps the running values of the latter, and the report
 * of what changed.  A file that fails to load changes nothing.  Must not:
 * signal processes, reload certificates or rules (the master and the
 * processes' loops do), or free a generation someone holds (config.c's
 * holds do).
 */
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_reload.h"
#include "log.h"
#include "mem.h"

/*
 * What only a restart can change: what the master did once before forking
 * (sockets, user, pid file, spool directories, modules, the coordination
 * backend and its connections, the workers), what the processes built at
 * start (the resolver, the rules watcher and its files, the program pool,
 * the queue's scan timer).  Everything else is read per session or per
 * delivery run, so a new value reaches the next one.
 */
static const char *const config_restart_names[] = {   /* as config_options.h spells them */
    "Port", "Bind_address", "Smtp_workers", "Sid", "User", "Group", "Pid_file",
    "Temp_path", "Queue_path", "Spool_flush", "Module", "Tls_module", "Tls_cafile", "Passwd_file",
    "Redis_server", "Redis_password", "Redis_db", "Redis_prefix", "Lock_lease",
    "Dns_servers", "Rules_exec_max", "Qsleep_time",
    "Event.limit", "Event.connection", "Event.helo", "Event.auth", "Event.from",
    "Event.rcpt", "Event.data_cmd", "Event.data", "Event.qstart_process",
    "Event.qend_process", "Event.error_report", "Event.dl_rcpt", "Event.lrcpt_refused",
    "Modseq_auth", "Modseq_domain", "Modseq_mail", "Modseq_alias",
    "Redis_sentinels", "Redis_master_name", "Agent_port", "Metrics_port",
};

int config_reload_restart_count(void)
{
    return (int)(sizeof(config_restart_names) / sizeof(config_restart_names[0]));
}

int config_reload_live(int idx)
{
    const char *name = config_option(idx)->name;

    for (size_t i = 0; i < sizeof(config_restart_names) / sizeof(config_restart_names[0]); i++)
        if (strcmp(name, config_restart_names[i]) == 0)
            return 0;
    return 1;
}

static int config_modules_differ(const struct config *a, const struct config *b)
{
    if (a->nmodules != b->nmodules)
        return 1;
    for (size_t i = 0; i < a->nmodules; i++)
        if (strcmp(a->modules[i], b->modules[i]) != 0)
            return 1;
    return 0;
}

static int config_extras_differ(const struct config *a, const struct config *b)
{
    if (a->nextra != b->nextra)
        return 1;
    for (size_t i = 0; i < a->nextra; i++)
        if (strcmp(a->extra[i].name, b->extra[i].name) != 0 ||
            strcmp(a->extra[i].value, b->extra[i].value) != 0 ||
            a->extra[i].quoted != b->extra[i].quoted)
            return 1;
    return 0;
}

/* The running Module lines, copied into next (its own memory). */
static void config_keep_modules(struct config *next, const struct config *cur)
{
    mem_free(next->modules);
    next->modules = mem_alloc((cur->nmodules + 1) * sizeof(*next->modules));
    for (size_t i = 0; i < cur->nmodules; i++)
        next->modules[i] = arena_strdup(&next->mem, cur->modules[i]);
    next->nmodules = cur->nmodules;
}

/* The running modules' options (a module reads them when it starts). */
static void config_keep_extras(struct config *next, const struct config *cur)
{
    mem_free(next->extra);
    next->extra = mem_alloc((cur->nextra + 1) * sizeof(*next->extra));
    for (size_t i = 0; i < cur->nextra; i++) {
        next->extra[i] = cur->extra[i];
        next->extra[i].name = arena_strdup(&next->mem, cur->extra[i].name);
        next->extra[i].value = arena_strdup(&next->mem, cur->extra[i].value);
    }
    next->nextra = cur->nextra;
}

/* Each option that differs: changed (live) or kept (a restart is due). */
static void config_merge(struct config *next, const struct config *cur, struct buf *report,
                         int *nchanged)
{
    char ta[32], tb[32];

    for (int i = 0; i < CONF_COUNT; i++) {
        const char *name = config_option(i)->name;
        const char *was = config_value_text(cur, i, ta, sizeof(ta));
        const char *now = config_value_text(next, i, tb, sizeof(tb));
        int differs = strcmp(was, now) != 0 ||
                      (i == CONF_IDX_Module && config_modules_differ(cur, next));

        if (!differs)
            continue;
        if (config_reload_live(i)) {
            buf_printf(report, "changed %s\n", name);
            (*nchanged)++;
            continue;
        }
        buf_printf(report, "restart %s:%d: %s changed: needs a restart (the running value "
                   "stays until then)\n", next->path, next->line[i], name);
        if (i == CONF_IDX_Module)
            config_keep_modules(next, cur);
        else
            config_copy_value(next, cur, i);
    }
    if (config_extras_differ(cur, next)) {
        buf_printf(report, "restart %s: the modules' options changed: they need a restart "
                   "(the running values stay until then)\n", next->path);
        config_keep_extras(next, cur);
    }
}

int config_reload(config_claim_fn *claim, void *claim_arg, struct buf *err,
                  struct buf *report)
{
    const struct config *cur = selor_conf;
    struct buf warn = BUF_INIT(0);
    struct config *next;
    int nchanged = 0;

    if (cur == NULL || cur->file == NULL) {
        buf_printf(err, "the node was started without a configuration file");
        return -1;
    }
    next = config_load_in(cur->file, cur->dir, err, &warn);
    buf_free(&warn);   /* said at start, or by selor -t */
    if (next == NULL)
        return -1;
    if (claim && config_check_extras(next, claim, claim_arg, err) < 0) {
        config_free(next);
        return -1;
    }
    config_merge(next, cur, report, &nchanged);
    if (nchanged == 0) {
        config_free(next);
        return 1;
    }
    config_replace(next);
    log_reopen("reload");   /* the log options may have changed */
    return 0;
}

void config_reload_quiet(config_claim_fn *claim, void *claim_arg)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);

    config_reload(claim, claim_arg, &err, &report);
    buf_free(&err);
    buf_free(&report);
}
