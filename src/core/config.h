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
    const char *path;
    int line[CONF_COUNT];     /* where each option was set; 0 = default */
    const char **modules;     /* every Module value, in file order */
    size_t nmodules;
    struct config_extra *extra;
    size_t nextra;
    int tz_set;               /* Timezone given: use tz_offset */
    long tz_offset;           /* seconds east of UTC */
    struct log_sinks logs;    /* open log files of this process */
    struct arena mem;
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

/* Option table access (for docs checks, Def! and error messages). */
const struct config_option_info *config_option(int idx);
int config_option_index(const char *name);  /* canonical or alias; -1 */
/* Closest known name to a misspelt one, or NULL when nothing is close. */
const char *config_suggest(const char *name);

/* Directory of a queue: "main" is Queue_path, "qlimit" Queue_path/qlimit. */
void config_queue_dir(const struct config *c, const char *queue, char *out, size_t size);
/* The node's control socket (selorctl): Pid_file with .ctl for .pid. */
void config_ctl_path(const struct config *c, char *out, size_t size);

#endif
