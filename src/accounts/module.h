/*
 * module.h - loading modules (dlopen) and the host side of their ABI.
 *
 * Owns: finding, loading, checking (ABI version, options) and starting the
 * modules named by Module lines, and the selor_host functions they call.
 * Must not: decide what a lookup result means (accounts.c does).
 */
#ifndef SELOR_MODULE_LOADER_H
#define SELOR_MODULE_LOADER_H

#include <uv.h>

#include "buf.h"
#include "selor_module.h"
#include "stream.h"

#define MODULE_MAX 16

struct module_inst {
    const struct selor_module *mod;
    void *state;
    void *dl;
    const char *path;
};

struct module_set {
    struct module_inst m[MODULE_MAX];
    size_t n;
};

/* Loads and initialises every Module of selor_conf; -1 with err. */
int module_load_all(struct module_set *set, struct buf *err);
/* Loads Tls_module (if set) and gives its engine; -1 with err. */
int module_load_tls(struct module_set *set, struct stream_tls *tls, struct buf *err);
/* config_claim_fn: 1 if a loaded module reads this option (-1: wrong type). */
int module_claims_option(const char *name, int quoted, void *set);
void module_attach_all(struct module_set *set, uv_loop_t *loop);
void module_detach_all(struct module_set *set);
const struct module_inst *module_find(const struct module_set *set,
                                      const char *name);
/* The host table given to modules (lookups allocate through it). */
const struct selor_host *module_host(void);

#endif
