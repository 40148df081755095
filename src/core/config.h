/*
 * config.h - the loaded configuration: every selor.conf option, typed.
 *
 * Owns: parsing selor.conf, the defaults of the original reference, value
 * checks with FILE:LINE errors, and the option table (config_options.h).
 * The loaded configuration is the one process-wide piece of mutable state:
 * it is written while loading and when a process learns its role after
 * fork, and read-only after that.  Must not: open sockets, start processes
 * or know what an option does beyond its type and range.
 */
#ifndef SELOR_CONFIG_H
#define SELOR_CONFIG_H

#include <stddef.h>

#include "arena.h"
#include "buf.h"
#include "log.h"

enum config_flag {
    CONF_F_DEF = 1,  /* may be changed per connection by Def! */
    CONF_F_NEW = 2,  /* added by Selor, not in the original reference */
    CONF_F_LIST = 4, /* may repeat, every value kept */
    CONF_F_PATH = 8, /* a path: made absolute against the start directory */
};

enum config_index {
#define CONF_NUM(f, n, d, lo, hi, fl) CONF_IDX_##f,
#define CONF_TEXT(f, n, d, fl) CONF_IDX_##f,
#include "config_options.h"
    CONF_COUNT
};

/* A line whose option the core does not know; a module may claim it. */
struct config_extra {
    const char *name;
    const char *value;  /* text without quotes, or the number as written */
    int quoted;
    int line;
};

struct config {
#define CONF_NUM(f, n, d, lo, hi, fl) long f;
#define CONF_TEXT(f, n, d, fl) const char *f;
#include "config_options.h"
    const char *path;         /* as given (for messages) */
    const char *file;         /* absolute (a reload runs after chdir "/"); NULL: defaults */
    const char *dir;          /* where relative paths start: the start directory */
    int line[CONF_COUNT];     /* where each option was set; 0 = default */
    const char **modules;     /* every Module value, in file order */
    size_t nmodules;
    struct config_extra *extra;
    size_t nextra;
    int tz_set;               /* Timezone given: use tz_offset */
    long tz_offset;           /* seconds east of UTC */
    const struct config *base;  /* an overlay: the generation it copies (else NULL) */
    int refs;                 /* holders of a generation (config_hold) */
    int reloaded;             /* made by a reload: freed with its last holder
                                 (the first generation never is) */
    struct arena mem;         /* the generation's strings (unused in an overlay) */
};

/* The loaded configuration (see the header comment). */
extern struct config *selor_conf;

struct config_option_info {
    const char *name;
    int is_text;
    long num_default, min, max;
    const char *text_default;
    unsigned flags;
};

/*
 * Reads and checks path.  On error returns NULL and leaves "FILE:LINE:
 * message" in err.  Warnings that do not stop the load (an option set twice)
 * go to warn, one per line.
 */
struct config *config_load(const char *path, struct buf *err, struct buf *warn);
/* The same, relative paths taken from dir (NULL: kept relative). */
struct config *config_load_in(const char *path, const char *dir, struct buf *err,
                              struct buf *warn);
/* The embedded defaults, for a node started without a file. */
struct config *config_defaults(void);
void config_free(struct config *c);

/*
 * Fails with a FILE:LINE error for an extra no module claimed.  The claim
 * function answers 1 (claimed), 0 (unknown) or -1 (claimed, but the value
 * is of the wrong type: a number where text in quotes is wanted or back).
 */
typedef int config_claim_fn(const char *name, int quoted, void *arg);
int config_check_extras(const struct config *c, config_claim_fn *claim,
                        void *arg, struct buf *err);
const struct config_extra *config_extra_find(const struct config *c,
                                             const char *name);

/*
 * Def!: a connection's or a message's view of the options.  An overlay is
 * a copy of a generation's values in the owner's arena (strings shared, so
 * cheap), which Def! then changes; everything the owner does reads it, so
 * per-connection values reach every check and, through the l file,
 * delivery.  An overlay is never given to config_free: it goes with mem.
 */
struct config *config_overlay(const struct config *base, struct arena *mem);
/*
 * Splits a Def! argument, "Name value" (a text value in single quotes, a
 * number bare), and checks it: the option must exist and be changeable per
 * connection (CONF_F_DEF), the value of its type and range.  *idx and the
 * unquoted value on success; -1 with the reason in err.
 */
int config_def_parse(const char *def, int *idx, struct buf *value, struct buf *err);
/* Sets option idx of an overlay to a checked value (from config_def_parse
 * or an l file); -1 with the reason in err when the value is not valid. */
int config_def_set(struct config *ov, struct arena *mem, int idx, const char *value,
                   struct buf *err);
/* The value of option idx as text ("123" or the string), for the l file. */
const char *config_value_text(const struct config *c, int idx, char *tmp, size_t size);
/* Whether option idx differs between an overlay and its generation. */
int config_differs(const struct config *c, int idx);

/*
 * Generations (a reload makes a new one): sessions and delivery runs hold
 * the generation they started with, so everything they read, overlays
 * included, stays valid until they end.  config_hold/config_release take
 * a generation or an overlay of one.  config_replace makes next the
 * current one (selor_conf); the one it replaces is freed with its last
 * holder, except the first, which the modules, the coordination and the
 * rules watcher keep for the process's life.
 */
const struct config *config_hold(const struct config *c);
void config_release(const struct config *c);
void config_replace(struct config *next);
/* Option idx of src into dst, a generation (a text copied into its memory). */
void config_copy_value(struct config *dst, const struct config *src, int idx);

/* Option table access (for docs checks, Def! and error messages). */
const struct config_option_info *config_option(int idx);
int config_option_index(const char *name);  /* canonical or alias; -1 */
/* Closest known name to a misspelt one, or NULL when nothing is close. */
const char *config_suggest(const char *name);

/* The node's control socket (selorctl): Pid_file with .ctl for .pid. */
void config_ctl_path(const struct config *c, char *out, size_t size);

/*
 * A value for option idx as a Def! gives it, checked as the file's is for
 * the options with a syntax of their own (Milters, Milter_default_action;
 * the others pass): 0, or -1 with why.
 */
int config_value_check(int idx, const char *value, char *why, size_t whylen);

#endif
