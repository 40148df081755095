/*
 * rules_int.h - what the files of the rules engine share: the compiled form
 * of a rules file (internal to src/rules/; others see rules.h).
 */
#ifndef SELOR_RULES_INT_H
#define SELOR_RULES_INT_H

#include <stdint.h>
#include <sys/stat.h>

#include "rules.h"

enum rules_op {
    /* conditions */
    RULES_C_FROM, RULES_C_TO, RULES_C_IP, RULES_C_REV_FAIL, RULES_C_ITEST, RULES_C_SPF,
    RULES_C_HELO, RULES_C_AUTH, RULES_C_TLS, RULES_C_LOCAL, RULES_C_SIZE, RULES_C_RBL,
    RULES_C_EXEC, RULES_C_RATE,
    /* actions */
    RULES_A_ADD_HITS, RULES_A_ACCEPT, RULES_A_CLOSE, RULES_A_CP, RULES_A_DEF, RULES_A_DENY,
    RULES_A_REPLY, RULES_A_DATA_REPLY, RULES_A_RESOLVE, RULES_A_QLIMIT, RULES_A_DEFER,
    RULES_A_LOG, RULES_A_HEADER, RULES_A_DELAY, RULES_A_EXEC,
    RULES_NOPS
};

#define RULES_EVBIT(e) (1u << (e))

struct rules_keyword {
    const char *name;   /* without its ? or ! */
    int op;
    int action;
    int arg;            /* 0: none, 1: required, 2: optional */
    unsigned events;    /* where it may be used: RULES_EVBIT mask */
};

struct rules_item {
    int op, action, negate;
    int line, col;
    const char *arg;            /* unquoted, as written (NULL: none) */
    int has_vars;               /* arg holds %X variables */
    int needs_spf;              /* arg holds %S */
    union {
        struct { int idx; const char *value; } def;
        struct { uint8_t addr[16]; int family, bits; } ip;
        const char *prefix;     /* Ip? "200.200.200." */
        long num;
        struct { const char *key; long limit, window; } rate;
    } u;
    int ip_prefix;              /* Ip? is a textual prefix */
};

struct rules_rule {
    struct rules_item *items;
    size_t nitems;
    int line;
    const char *text;           /* the line, for traces */
};

struct rules_file {
    const char *spec;           /* the option value that names it */
    const char *path;           /* NULL: an inline rule */
    struct rules_rule *rules;
    size_t nrules;
    unsigned events;            /* the events whose option names it */
    unsigned refs;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    uint64_t hash;
    int64_t bad_mtime_ns;       /* a broken edit already reported (this process) */
    off_t bad_size;
    struct arena mem;
};

const struct rules_keyword *rules_keyword_find(const char *name, int action);
/* Parses text (a file's content, or one inline rule) for the events in
 * mask; NULL with "FILE:LINE:COLUMN: message" in err. */
struct rules_file *rules_parse(const char *spec, const char *path, const char *text,
                               size_t len, unsigned events, struct buf *err);
void rules_file_free(struct rules_file *f);
/* Checks that every %X of text is a known variable; the bad letter or 0. */
int rules_vars_check(const char *text);

/* rules_match.c */
int rules_match_addr(const char *pattern, const char *addr);
int rules_match_glob(const char *pattern, const char *text);
int rules_ip_parse(const char *text, struct rules_item *it);
int rules_ip_match(const struct rules_item *it, const char *ip);
/* "%H>2" after expansion: 1 true, 0 false, -1 not a comparison. */
int rules_itest(const char *expr);
int rules_itest_check(const char *text);

#endif
