/*
 * accounts.h - what the account modules say about an address or a login.
 *
 * Owns: asking the modules in Modseq_* order and combining their answers:
 * is a domain local, does a mailbox exist, what an alias expands to
 * (Force_alias_seek, Seek_df_alias), does a password match, and what an
 * SRS address of a local domain stands for (Srs_key).  Lookups may
 * finish later (a module can answer asynchronously); the caller is told
 * through a callback and never blocks.  Must not: know any module by name
 * or decide SMTP replies.
 */
#ifndef SELOR_ACCOUNTS_H
#define SELOR_ACCOUNTS_H

#include "buf.h"
#include "selor_module.h"

struct async_owner;
struct config;
struct module_set;

enum accounts_status {
    ACCOUNTS_LOCAL,      /* a local mailbox or alias: see targets */
    ACCOUNTS_REMOTE,     /* not a local domain */
    ACCOUNTS_NOMAILBOX,  /* local domain, no such mailbox or alias */
    ACCOUNTS_AUTH_OK,    /* login accepted */
    ACCOUNTS_AUTH_FAIL,  /* unknown login or wrong password */
    ACCOUNTS_TEMPFAIL,   /* a module could not answer now */
    ACCOUNTS_SRS_INVALID,  /* an SRS address of ours, forged or expired */
};

#define ACCOUNTS_BROADCASTS_MAX 8   /* "@domain" targets of one alias */

struct accounts_result {
    enum accounts_status status;
    int has_mailbox;
    struct selor_mailbox mbox;  /* when has_mailbox (or after AUTH_OK) */
    const char **targets;       /* final recipients */
    const char **via;           /* per target: "mailbox:passwd", "alias:pgsql",
                                   "broadcast:pgsql" (the l file's via) */
    size_t ntargets;
    /* Domains whose every mailbox the alias reaches (Allow_broadcasts):
     * the caller lets only their own senders and logged-in users use them. */
    const char *broadcast[ACCOUNTS_BROADCASTS_MAX];
    size_t nbroadcast;
    const char *error;          /* TEMPFAIL: why */
};

struct accounts_req;
typedef void accounts_fn(void *arg, struct accounts_req *req);

enum accounts_wait { ACCOUNTS_DONE, ACCOUNTS_WAIT };

/*
 * Resolves a recipient "user@domain".  ACCOUNTS_DONE: the answer is ready
 * in *reqp now, fn will not be called, and the caller frees it with
 * accounts_free.  ACCOUNTS_WAIT: *reqp is NULL; fn(arg, req) follows unless
 * the owner cancels first, and req is freed when fn returns.
 */
enum accounts_wait accounts_resolve(const struct module_set *mods,
                                    const struct config *conf, struct async_owner *o,
                                    const char *addr, struct accounts_req **reqp,
                                    accounts_fn *fn, void *arg);
/* Checks a login; same calling convention as accounts_resolve. */
enum accounts_wait accounts_auth(const struct module_set *mods,
                                 const struct config *conf, struct async_owner *o,
                                 const char *user, const char *password,
                                 struct accounts_req **reqp, accounts_fn *fn, void *arg);
const struct accounts_result *accounts_result(const struct accounts_req *req);
/*
 * Whether a sender may use the broadcast targets of a result: always when
 * there are none; else only a logged-in user (auth not empty) or a sender
 * of every domain reached.
 */
int accounts_broadcast_allowed(const struct accounts_result *r, const char *sender,
                               const char *auth);
/* Frees a request answered at once (ACCOUNTS_DONE). */
void accounts_free(struct accounts_req *req);

/* Checks every Modseq_* names loaded modules; -1 with err. */
/* One Modseq_* value (idx): every module it names is loaded; -1 with the
 * reason in why (for Def!s of the rules, checked at start). */
int accounts_check_seq(const struct module_set *mods, int idx, const char *value,
                       struct buf *why);
int accounts_check_config(const struct module_set *mods,
                          const struct config *conf, struct buf *err);
/* host->alloc for modules: memory that lives as long as the request. */
void *accounts_lookup_alloc(struct selor_lookup *lk, size_t size);

#endif
