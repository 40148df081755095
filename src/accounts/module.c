/*
 * module.c - module loader and host functions (see module.h).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "config.h"
#include "log.h"
#include "module.h"

static const char *module_option(const char *name)
{
    const struct config *c = selor_conf;
    const struct config_extra *e;
    int idx = config_option_index(name);

    if (c == NULL)
        return NULL;
    if (idx >= 0 && config_option(idx)->is_text) {
#define CONF_NUM(f, n, d, lo, hi, fl)
#define CONF_TEXT(f, n, d, fl) if (idx == CONF_IDX_##f) return c->f;
#include "config_options.h"
    }
    if (idx >= 0)
        return NULL;  /* numeric core options are not offered as text */
    e = config_extra_find(c, name);
    return e ? e->value : NULL;
}

static void module_option_where(const char *name, char *out, size_t outlen)
{
    const struct config *c = selor_conf;
    const struct config_extra *e;
    int idx = config_option_index(name), line = 0;

    if (c == NULL) {
        snprintf(out, outlen, "?");
        return;
    }
    if (idx >= 0)
        line = c->line[idx];
    else if ((e = config_extra_find(c, name)) != NULL)
        line = e->line;
    snprintf(out, outlen, "%s:%d", c->path, line);
}

static const struct selor_host module_host_table = {
    SELOR_MODULE_ABI,
    module_option,
    module_option_where,
    log_warn,
    log_info,
    accounts_lookup_alloc,
};

const struct selor_host *module_host(void)
{
    return &module_host_table;
}

/* The module's own options in selor.conf, checked before it reads them. */
static int module_check_types(const struct selor_module *mod, struct buf *err)
{
    const struct config *c = selor_conf;

    for (const struct selor_module_option *o = mod->options; o && o->name; o++) {
        const struct config_extra *e = config_extra_find(c, o->name);
        if (e && e->quoted != o->is_text) {
            buf_printf(err, "%s:%d: %s takes %s", c->path, e->line, o->name,
                       o->is_text ? "a text in double quotes" : "a number");
            return -1;
        }
    }
    return 0;
}

static int module_load_one(struct module_set *set, const char *path,
                           struct buf *err)
{
    struct module_inst *mi = &set->m[set->n];
    const struct selor_module *mod;
    char why[256] = "";

    mi->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (mi->dl == NULL) {
        buf_printf(err, "cannot load module %s: %s", path, dlerror());
        return -1;
    }
    mod = dlsym(mi->dl, "selor_module");
    if (mod == NULL || mod->abi != SELOR_MODULE_ABI) {
        buf_printf(err, "module %s: %s (Selor speaks ABI %d)", path,
                   mod ? "wrong ABI version" : "no selor_module symbol",
                   SELOR_MODULE_ABI);
        return -1;
    }
    if (module_find(set, mod->name)) {
        buf_printf(err, "module %s: a module named %s is already loaded", path,
                   mod->name);
        return -1;
    }
    mi->mod = mod;
    mi->path = path;
    if (module_check_types(mod, err) < 0)
        return -1;
    if (mod->init && mod->init(&module_host_table, &mi->state, why, sizeof(why)) < 0) {
        buf_printf(err, "module %s: %s", mod->name, why);
        return -1;
    }
    set->n++;
    return 0;
}

int module_load_all(struct module_set *set, struct buf *err)
{
    const struct config *c = selor_conf;

    set->n = 0;
    for (size_t i = 0; i < c->nmodules; i++) {
        if (set->n == MODULE_MAX) {
            buf_printf(err, "too many modules (at most %d)", MODULE_MAX);
            return -1;
        }
        if (module_load_one(set, c->modules[i], err) < 0)
            return -1;
    }
    return 0;
}

int module_load_tls(struct module_set *set, struct stream_tls *tls, struct buf *err)
{
    const struct config *c = selor_conf;
    const struct module_inst *mi;

    tls->ops = NULL;
    tls->state = NULL;
    if (!c->Tls_module[0])
        return 0;
    if (set->n == MODULE_MAX) {
        buf_printf(err, "too many modules (at most %d)", MODULE_MAX);
        return -1;
    }
    if (module_load_one(set, c->Tls_module, err) < 0)
        return -1;
    mi = &set->m[set->n - 1];
    if (mi->mod->tls == NULL) {
        buf_printf(err, "%s:%d: Tls_module: %s is not a TLS module", c->path,
                   c->line[CONF_IDX_Tls_module], c->Tls_module);
        return -1;
    }
    tls->ops = mi->mod->tls;
    tls->state = mi->state;
    return 0;
}

int module_claims_option(const char *name, int quoted, void *arg)
{
    const struct module_set *set = arg;

    for (size_t i = 0; i < set->n; i++) {
        const struct selor_module_option *o = set->m[i].mod->options;
        for (; o && o->name; o++)
            if (strcmp(o->name, name) == 0)
                return o->is_text == quoted ? 1 : -1;
    }
    return 0;
}

void module_attach_all(struct module_set *set, uv_loop_t *loop)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct selor_module *mod = set->m[i].mod;
        if (mod->attach && mod->attach(set->m[i].state, loop) < 0)
            log_fatal("module %s cannot start", mod->name);
    }
}

void module_detach_all(struct module_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->m[i].mod->detach)
            set->m[i].mod->detach(set->m[i].state);
}

const struct module_inst *module_find(const struct module_set *set,
                                      const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->m[i].mod && strcmp(set->m[i].mod->name, name) == 0)
            return &set->m[i];
    return NULL;
}
