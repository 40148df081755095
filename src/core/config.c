/*
 * config.c - parser and checks for selor.conf (see config.h).
 *
 * Grammar, one option a line:
 *     Name <number> | Name "text"      # comment
 * Names are case-sensitive; text is in double quotes, with \" and \\ as the
 * only escapes; a number is a decimal integer with an optional sign.  Blank
 * lines and lines starting with # are ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "mem.h"
#include "net.h"

#define CONF_LINE_MAX 8192

struct config *selor_conf;

static const struct config_option_info conf_table[CONF_COUNT] = {
#define CONF_NUM(f, n, d, lo, hi, fl) {n, 0, d, lo, hi, NULL, fl},
#define CONF_TEXT(f, n, d, fl) {n, 1, 0, 0, 0, d, fl},
#include "config_options.h"
};

static const struct {
    const char *alias, *canonical;
} conf_aliases[] = {
#define CONF_NUM(f, n, d, lo, hi, fl)
#define CONF_TEXT(f, n, d, fl)
#define CONF_ALIAS(a, c) {a, c},
#include "config_options.h"
};

/* Field addresses by index, so the parser can store without a switch. */
static long *conf_num_field(struct config *c, int idx)
{
    switch (idx) {
#define CONF_NUM(f, n, d, lo, hi, fl) case CONF_IDX_##f: return &c->f;
#define CONF_TEXT(f, n, d, fl)
#include "config_options.h"
    default: return NULL;
    }
}

static const char **conf_text_field(struct config *c, int idx)
{
    switch (idx) {
#define CONF_NUM(f, n, d, lo, hi, fl)
#define CONF_TEXT(f, n, d, fl) case CONF_IDX_##f: return &c->f;
#include "config_options.h"
    default: return NULL;
    }
}

const struct config_option_info *config_option(int idx)
{
    return idx >= 0 && idx < CONF_COUNT ? &conf_table[idx] : NULL;
}

int config_option_index(const char *name)
{
    for (int i = 0; i < CONF_COUNT; i++)
        if (strcmp(conf_table[i].name, name) == 0)
            return i;
    for (size_t i = 0; i < sizeof(conf_aliases) / sizeof(conf_aliases[0]); i++)
        if (strcmp(conf_aliases[i].alias, name) == 0)
            return config_option_index(conf_aliases[i].canonical);
    return -1;
}

/* Edit distance where a change of letter case costs nothing. */
static size_t conf_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] +
                (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t best = prev[j] + 1 < cur[j - 1] + 1 ? prev[j] + 1 : cur[j - 1] + 1;
            cur[j] = sub < best ? sub : best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

const char *config_suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, limit = strlen(name) / 3 + 1;

    if (limit < 2)
        limit = 2;
    for (int i = 0; i < CONF_COUNT; i++) {
        size_t d = conf_distance(name, conf_table[i].name);
        if (d < best_d) {
            best_d = d;
            best = conf_table[i].name;
        }
    }
    return best_d <= limit ? best : NULL;
}

static void conf_set_defaults(struct config *c)
{
    for (int i = 0; i < CONF_COUNT; i++) {
        if (conf_table[i].is_text)
            *conf_text_field(c, i) = conf_table[i].text_default;
        else
            *conf_num_field(c, i) = conf_table[i].num_default;
    }
}

static struct config *conf_new(const char *path)
{
    struct config *c = mem_zalloc(sizeof(*c));

    arena_init(&c->mem, 4096);
    c->path = arena_strdup(&c->mem, path);
    conf_set_defaults(c);
    return c;
}

struct config *config_defaults(void)
{
    return conf_new("(built-in defaults)");
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    if (c->base)
        log_panic("config_free on an overlay");
    mem_free(c->modules);
    mem_free(c->extra);
    arena_clear(&c->mem);
    mem_free(c);
}

/* Parser state for one file. */
struct conf_parser {
    struct config *c;
    struct buf *err, *warn;
    int line;
};

static int conf_error(struct conf_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int conf_error(struct conf_parser *p, const char *fmt, ...)
{
    va_list ap;

    buf_reset(p->err);
    buf_printf(p->err, "%s:%d: ", p->c->path, p->line);
    va_start(ap, fmt);
    buf_vprintf(p->err, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *conf_skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* After the value only blanks or a comment may follow. */
static int conf_check_rest(struct conf_parser *p, const char *s, const char *name)
{
    s = conf_skip_space(s);
    if (*s != '\0' && *s != '#')
        return conf_error(p, "unexpected text after the value of %s: \"%s\"",
                          name, s);
    return 0;
}

/* Reads "text" with \" and \\ escapes into out. */
static int conf_parse_text(struct conf_parser *p, const char *s,
                           const char *name, struct buf *out)
{
    s++;
    for (;;) {
        if (*s == '\0')
            return conf_error(p, "missing closing quote in the value of %s",
                              name);
        if (*s == '"')
            break;
        if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
            s++;
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return conf_error(p, "control character in the value of %s", name);
        buf_putc(out, *s++);
    }
    return conf_check_rest(p, s + 1, name);
}

/* Reads a bare word (a number, or a forgotten quote) into out. */
static const char *conf_parse_word(const char *s, struct buf *out)
{
    while (*s && *s != ' ' && *s != '\t' && *s != '#')
        buf_putc(out, *s++);
    return s;
}

static int conf_parse_number(const char *word, long *out)
{
    char *end;
    long v;

    if (word[0] == '\0')
        return -1;
    errno = 0;
    v = strtol(word, &end, 10);
    if (errno || *end != '\0' || end == word)
        return -1;
    *out = v;
    return 0;
}

static int conf_store_extra(struct conf_parser *p, const char *name,
                            const char *value, int quoted)
{
    struct config *c = p->c;
    struct config_extra *e;

    c->extra = mem_realloc(c->extra, (c->nextra + 1) * sizeof(*c->extra));
    e = &c->extra[c->nextra++];
    e->name = arena_strdup(&c->mem, name);
    e->value = arena_strdup(&c->mem, value);
    e->quoted = quoted;
    e->line = p->line;
    return 0;
}

/* A relative path is taken from the directory Selor was started in (a
 * reload's load is given it: it runs after the master's chdir "/"). */
static const char *conf_absolute(struct config *c, const char *value)
{
    const char *cwd = c->dir;
    size_t n;
    char *abs;

    if (value[0] == '\0' || value[0] == '/' || cwd == NULL)
        return arena_strdup(&c->mem, value);
    n = strlen(cwd) + strlen(value) + 2;
    abs = arena_alloc(&c->mem, n);
    snprintf(abs, n, "%s/%s", cwd, value[0] == '.' && value[1] == '/' ? value + 2 : value);
    return abs;
}

static int conf_store_text(struct conf_parser *p, int idx, const char *value)
{
    struct config *c = p->c;
    const char *v = conf_table[idx].flags & CONF_F_PATH ? conf_absolute(c, value)
                                                        : arena_strdup(&c->mem, value);

    if (conf_table[idx].flags & CONF_F_LIST) {
        c->modules = mem_realloc(c->modules, (c->nmodules + 1) * sizeof(char *));
        c->modules[c->nmodules++] = v;
    } else {
        *conf_text_field(c, idx) = v;
    }
    return 0;
}

static int conf_store(struct conf_parser *p, int idx, const char *name,
                      const char *value, int quoted)
{
    const struct config_option_info *o = &conf_table[idx];
    long num;

    if (o->is_text && !quoted)
        return conf_error(p, "%s takes a text in double quotes, like %s \"%s\"",
                          name, o->name, value);
    if (!o->is_text && quoted)
        return conf_error(p, "%s takes a number, not a quoted text", name);
    if (p->c->line[idx] && !(o->flags & CONF_F_LIST))
        buf_printf(p->warn, "%s:%d: %s was already set at line %d; the last value is used\n",
                   p->c->path, p->line, o->name, p->c->line[idx]);
    p->c->line[idx] = p->line;
    if (o->is_text)
        return conf_store_text(p, idx, value);
    if (conf_parse_number(value, &num) < 0)
        return conf_error(p, "%s needs a number, got \"%s\"", name, value);
    if (num < o->min || num > o->max)
        return conf_error(p, "%s must be between %ld and %ld, got %ld", name,
                          o->min, o->max, num);
    *conf_num_field(p->c, idx) = num;
    return 0;
}

static int conf_parse_line(struct conf_parser *p, const char *s)
{
    struct buf name = BUF_INIT(0), value = BUF_INIT(0);
    const char *val;
    int quoted, idx, r = 0;

    s = conf_skip_space(s);
    if (*s == '\0' || *s == '#')
        return 0;
    if (!isalpha((unsigned char)*s))
        return conf_error(p, "expected an option name, got \"%s\"", s);
    while (isalnum((unsigned char)*s) || *s == '_' || *s == '.')
        buf_putc(&name, *s++);
    buf_cstr(&name);
    if (*s != ' ' && *s != '\t' && *s != '\0')
        r = conf_error(p, "bad character '%c' in option name %s", *s, name.data);
    s = conf_skip_space(s);
    if (r == 0 && (*s == '\0' || *s == '#'))
        r = conf_error(p, "%s has no value", name.data);
    quoted = *s == '"';
    if (r == 0 && quoted)
        r = conf_parse_text(p, s, name.data, &value);
    else if (r == 0 && conf_check_rest(p, conf_parse_word(s, &value), name.data) < 0)
        r = -1;
    val = buf_cstr(&value);  /* "" for an empty text, where value.data is NULL */
    if (r == 0 && value.len && !quoted && val[0] == '"')
        r = conf_error(p, "missing closing quote in the value of %s", name.data);
    idx = config_option_index(name.data);
    if (r == 0 && idx < 0)
        r = conf_store_extra(p, name.data, val, quoted);
    else if (r == 0)
        r = conf_store(p, idx, name.data, val, quoted);
    buf_free(&name);
    buf_free(&value);
    return r;
}

/* Checks that need more than a type and a range; errors point at the line. */
static int conf_check_reply(struct conf_parser *p, int idx)
{
    const char *v = *conf_text_field(p->c, idx);

    if (strcmp(conf_table[idx].name, "Msg_cannot_connect") == 0 ||
        strcmp(conf_table[idx].name, "Msg_cannot_resolve") == 0)
        return 0;
    if (!(isdigit((unsigned char)v[0]) && v[0] >= '2' && v[0] <= '5' &&
          isdigit((unsigned char)v[1]) && isdigit((unsigned char)v[2]) &&
          (v[3] == ' ' || v[3] == '\0')))
        return conf_error(p, "%s must start with a 3-digit SMTP reply code, got \"%s\"",
                          conf_table[idx].name, v);
    return 0;
}

static int conf_check_timezone(struct conf_parser *p)
{
    const char *tz = p->c->Timezone;
    int h, m;

    if (tz[0] == '\0')
        return 0;
    if (strlen(tz) != 5 || (tz[0] != '+' && tz[0] != '-') ||
        strspn(tz + 1, "0123456789") != 4)
        return conf_error(p, "Timezone must look like \"-0300\", got \"%s\"", tz);
    h = (tz[1] - '0') * 10 + (tz[2] - '0');
    m = (tz[3] - '0') * 10 + (tz[4] - '0');
    if (h > 14 || m > 59)
        return conf_error(p, "Timezone out of range: \"%s\"", tz);
    p->c->tz_set = 1;
    p->c->tz_offset = (tz[0] == '-' ? -1 : 1) * (h * 3600L + m * 60L);
    return 0;
}

/* Redis_sentinels: "host:port" entries between blanks or commas (the
 * coordination backend splits them the same way); Redis_master_name: one
 * word, as Sentinel knows it. */
static int conf_check_sentinels(struct conf_parser *p)
{
    const struct config *c = p->c;
    char item[300], why[160];
    int n = 0;

    p->line = c->line[CONF_IDX_Redis_sentinels];
    for (const char *s = c->Redis_sentinels; *s;) {
        size_t len;
        s += strspn(s, " \t,");
        len = strcspn(s, " \t,");
        if (len == 0)
            break;
        if (len >= sizeof(item))
            return conf_error(p, "Redis_sentinels: an entry is too long");
        memcpy(item, s, len);
        item[len] = '\0';
        if (net_parse_hostport(item, 26379, NULL, why, sizeof(why)) < 0)
            return conf_error(p, "Redis_sentinels: \"%s\": %s", item, why);
        if (++n > 16)
            return conf_error(p, "Redis_sentinels: more than 16 sentinels");
        s += len;
    }
    p->line = c->line[CONF_IDX_Redis_master_name];
    if (c->Redis_master_name[0] == '\0' || strlen(c->Redis_master_name) > 127 ||
        c->Redis_master_name[strcspn(c->Redis_master_name, " \t\r\n")] != '\0')
        return conf_error(p, "Redis_master_name must be one word of at most 127 "
                             "characters");
    return 0;
}

int config_value_check(int idx, const char *value, char *why, size_t whylen)
{
    char word[300], wwhy[200];

    if (idx == CONF_IDX_Milters) {
        for (int i = 0; net_word(value, i, word, sizeof(word)) == 0; i++) {
            if (i >= 8) {
                snprintf(why, whylen, "Milters: more than 8 milters");
                return -1;
            }
            if (net_parse_socket_spec(word, NULL, wwhy, sizeof(wwhy)) < 0) {
                snprintf(why, whylen, "Milters: %s", wwhy);
                return -1;
            }
        }
    } else if (idx == CONF_IDX_Milter_default_action && strcmp(value, "accept") != 0 &&
               strcmp(value, "tempfail") != 0 && strcmp(value, "reject") != 0) {
        snprintf(why, whylen, "Milter_default_action must be accept, tempfail or reject, "
                 "not \"%.100s\"", value);
        return -1;
    } else if (idx == CONF_IDX_Spool_flush && strcmp(value, "auto") != 0 &&
               strcmp(value, "syncfs") != 0 && strcmp(value, "fsync") != 0) {
        snprintf(why, whylen, "Spool_flush must be auto, syncfs or fsync, not \"%.100s\"",
                 value);
        return -1;
    }
    return 0;
}

/* Milters: at most 8 sockets; the default action and Spool_flush one of
 * three words each. */
static int conf_check_words(struct conf_parser *p)
{
    static const int idx[] = {CONF_IDX_Milters, CONF_IDX_Milter_default_action,
                              CONF_IDX_Spool_flush};
    char why[400];

    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        p->line = p->c->line[idx[i]];
        if (config_value_check(idx[i], *conf_text_field(p->c, idx[i]), why, sizeof(why)) < 0)
            return conf_error(p, "%s", why);
    }
    return 0;
}

static int conf_check_addresses(struct conf_parser *p)
{
    struct config *c = p->c;
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct net_hostport hp;
    char why[160];

    p->line = c->line[CONF_IDX_Bind_address];
    if (c->Bind_address[0] && net_sockaddr(c->Bind_address, 1, &ss, &sslen) < 0)
        return conf_error(p, "Bind_address must be an IP address, got \"%s\"",
                          c->Bind_address);
    p->line = c->line[CONF_IDX_Dns_servers];
    if (c->Dns_servers[0] && net_parse_list(c->Dns_servers, 53, why, sizeof(why)) < 0)
        return conf_error(p, "Dns_servers: %s", why);
    for (int i = 0; c->Dns_servers[0] && net_list_item(c->Dns_servers, i, 53, &hp) == 0; i++)
        if (net_sockaddr(hp.host, hp.port, &ss, &sslen) < 0)
            return conf_error(p, "Dns_servers: %s is not an IP address", hp.host);
    p->line = c->line[CONF_IDX_Relay_host];
    if (c->Relay_host[0] && net_parse_hostport(c->Relay_host, 25, NULL, why,
                                               sizeof(why)) < 0)
        return conf_error(p, "Relay_host: %s", why);
    p->line = c->line[CONF_IDX_Redis_server];
    if (c->Redis_server[0] && net_parse_hostport(c->Redis_server, 6379, NULL, why,
                                                 sizeof(why)) < 0)
        return conf_error(p, "Redis_server: %s", why);
    if (conf_check_sentinels(p) < 0)
        return -1;
    p->line = c->line[CONF_IDX_Proxy_protocol];
    if (net_networks_check(c->Proxy_protocol, why, sizeof(why)) < 0)
        return conf_error(p, "Proxy_protocol: %s", why);
    return conf_check_words(p);
}

static int conf_check_paths(struct conf_parser *p)
{
    static const int dirs[] = {CONF_IDX_Queue_path, CONF_IDX_Temp_path};

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        const char *v = *conf_text_field(p->c, dirs[i]);
        p->line = p->c->line[dirs[i]];
        if (v[0] == '\0')
            return conf_error(p, "%s must not be empty", conf_table[dirs[i]].name);
    }
    return 0;
}

static int conf_check(struct conf_parser *p)
{
    for (int i = 0; i < CONF_COUNT; i++) {
        if (strncmp(conf_table[i].name, "Msg_", 4) != 0)
            continue;
        p->line = p->c->line[i];
        if (conf_check_reply(p, i) < 0)
            return -1;
    }
    p->line = p->c->line[CONF_IDX_Timezone];
    if (conf_check_timezone(p) < 0)
        return -1;
    if (conf_check_paths(p) < 0)
        return -1;
    return conf_check_addresses(p);
}

static int conf_read_file(struct conf_parser *p, FILE *f)
{
    char line[CONF_LINE_MAX];

    for (;;) {
        size_t n;

        /* No NUL in the buffer beforehand: the last one ends what fgets read,
         * so a NUL inside the line can be told from the end. */
        memset(line, '\n', sizeof(line));
        if (fgets(line, sizeof(line), f) == NULL)
            break;
        n = (size_t)((char *)memrchr(line, '\0', sizeof(line)) - line);
        p->line++;
        if (n == sizeof(line) - 1 && line[n - 1] != '\n')
            return conf_error(p, "line longer than %d characters", CONF_LINE_MAX - 2);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (memchr(line, '\0', n) != NULL)
            return conf_error(p, "NUL byte in line");
        if (conf_parse_line(p, line) < 0)
            return -1;
    }
    if (ferror(f))
        return conf_error(p, "read error: %s", strerror(errno));
    return 0;
}

struct config *config_load(const char *path, struct buf *err, struct buf *warn)
{
    char cwd[4096];

    return config_load_in(path, getcwd(cwd, sizeof(cwd)), err, warn);
}

struct config *config_load_in(const char *path, const char *dir, struct buf *err,
                              struct buf *warn)
{
    struct conf_parser p = {conf_new(path), err, warn, 0};
    FILE *f = fopen(path, "r");
    int r;

    p.c->dir = dir ? arena_strdup(&p.c->mem, dir) : NULL;
    p.c->file = conf_absolute(p.c, path);

    if (f == NULL) {
        buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
        config_free(p.c);
        return NULL;
    }
    r = conf_read_file(&p, f);
    fclose(f);
    if (r == 0)
        r = conf_check(&p);
    if (r < 0) {
        config_free(p.c);
        return NULL;
    }
    return p.c;
}

int config_check_extras(const struct config *c, config_claim_fn *claim,
                        void *arg, struct buf *err)
{
    for (size_t i = 0; i < c->nextra; i++) {
        const struct config_extra *e = &c->extra[i];
        const char *near;
        int r = claim ? claim(e->name, e->quoted, arg) : 0;
        if (r > 0)
            continue;
        buf_reset(err);
        if (r < 0) {
            buf_printf(err, "%s:%d: %s takes %s", c->path, e->line, e->name,
                       e->quoted ? "a number, not a quoted text"
                                 : "a text in double quotes");
            return -1;
        }
        buf_printf(err, "%s:%d: unknown option %s", c->path, e->line, e->name);
        near = config_suggest(e->name);
        if (near)
            buf_printf(err, " (did you mean %s?)", near);
        return -1;
    }
    return 0;
}

const struct config_extra *config_extra_find(const struct config *c,
                                             const char *name)
{
    const struct config_extra *found = NULL;

    for (size_t i = 0; i < c->nextra; i++)
        if (strcmp(c->extra[i].name, name) == 0)
            found = &c->extra[i];
    return found;
}

void config_ctl_path(const struct config *c, char *out, size_t size)
{
    size_t n = strlen(c->Pid_file);

    if (n > 4 && strcmp(c->Pid_file + n - 4, ".pid") == 0)
        snprintf(out, size, "%.*s.ctl", (int)(n - 4), c->Pid_file);
    else
        snprintf(out, size, "%s.ctl", c->Pid_file);
}

/* ---- generations ---- */

void config_copy_value(struct config *dst, const struct config *src, int idx)
{
    if (conf_table[idx].is_text)
        *conf_text_field(dst, idx) = arena_strdup(&dst->mem, *conf_text_field(
                                                      (struct config *)src, idx));
    else
        *conf_num_field(dst, idx) = *conf_num_field((struct config *)src, idx);
}

const struct config *config_hold(const struct config *c)
{
    struct config *g = (struct config *)(c->base ? c->base : c);

    g->refs++;
    return g;
}

void config_release(const struct config *c)
{
    struct config *g;

    if (c == NULL)
        return;
    g = (struct config *)(c->base ? c->base : c);
    /* a reload's generation, replaced in its turn (selor_conf holds one) */
    if (--g->refs == 0 && g->reloaded)
        config_free(g);
}

void config_replace(struct config *next)
{
    struct config *old = selor_conf;

    next->refs++;            /* selor_conf's own hold */
    next->reloaded = 1;
    selor_conf = next;
    if (old && old->reloaded)  /* the first stays: others kept pointers into it */
        config_release(old);
}

/* ---- Def!: overlays ---- */

struct config *config_overlay(const struct config *base, struct arena *mem)
{
    struct config *ov = arena_alloc(mem, sizeof(*ov));

    memcpy(ov, base, sizeof(*ov));
    memset(&ov->mem, 0, sizeof(ov->mem));
    ov->base = base->base ? base->base : base;
    return ov;
}

static int conf_def_error(struct buf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int conf_def_error(struct buf *err, const char *fmt, ...)
{
    va_list ap;

    buf_reset(err);
    va_start(ap, fmt);
    buf_vprintf(err, fmt, ap);
    va_end(ap);
    return -1;
}

/* What a value must be, beyond its type: the checks of conf_check. */
static int conf_value_check(int idx, const char *v, struct buf *err)
{
    const struct config_option_info *o = &conf_table[idx];
    long num;

    if (!o->is_text) {
        if (conf_parse_number(v, &num) < 0)
            return conf_def_error(err, "%s needs a number, got \"%s\"", o->name, v);
        if (num < o->min || num > o->max)
            return conf_def_error(err, "%s must be between %ld and %ld, got %ld",
                                  o->name, o->min, o->max, num);
        return 0;
    }
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return conf_def_error(err, "control character in the value of %s", o->name);
    if (strncmp(o->name, "Msg_", 4) == 0 && strcmp(o->name, "Msg_cannot_connect") &&
        strcmp(o->name, "Msg_cannot_resolve") &&
        !(v[0] >= '2' && v[0] <= '5' && isdigit((unsigned char)v[1]) &&
          isdigit((unsigned char)v[2]) && (v[3] == ' ' || v[3] == '\0')))
        return conf_def_error(err, "%s must start with a 3-digit SMTP reply code, got \"%s\"",
                              o->name, v);
    if ((idx == CONF_IDX_Queue_path || idx == CONF_IDX_Temp_path) && v[0] != '/')
        return conf_def_error(err, "%s must be an absolute path, got \"%s\"", o->name, v);
    return 0;
}

int config_def_parse(const char *def, int *idx, struct buf *value, struct buf *err)
{
    char name[64];
    size_t n = strcspn(def, " \t");
    const char *v;

    if (n == 0 || n >= sizeof(name))
        return conf_def_error(err, "Def! needs \"Option value\", got \"%s\"", def);
    memcpy(name, def, n);
    name[n] = '\0';
    *idx = config_option_index(name);
    if (*idx < 0) {
        const char *near = config_suggest(name);
        return conf_def_error(err, "unknown option %s%s%s%s", name, near ? " (did you mean " : "",
                              near ? near : "", near ? "?)" : "");
    }
    if (!(conf_table[*idx].flags & CONF_F_DEF))
        return conf_def_error(err, "%s cannot be changed per connection by Def!", name);
    v = conf_skip_space(def + n);
    buf_reset(value);
    if (*v == '\'') {
        const char *end = strchr(v + 1, '\'');
        if (!conf_table[*idx].is_text)
            return conf_def_error(err, "%s takes a number, not a quoted text", name);
        if (end == NULL)
            return conf_def_error(err, "missing closing ' in the value of %s", name);
        buf_append(value, v + 1, (size_t)(end - v - 1));
        v = end + 1;
    } else {
        if (conf_table[*idx].is_text)
            return conf_def_error(err, "%s takes a text in single quotes, like "
                                  "Def! \"%s 'value'\"", name, name);
        v = conf_parse_word(v, value);
    }
    if (*conf_skip_space(v) != '\0')
        return conf_def_error(err, "unexpected text after the value of %s: \"%s\"", name,
                              conf_skip_space(v));
    return conf_value_check(*idx, buf_cstr(value), err);
}

int config_def_set(struct config *ov, struct arena *mem, int idx, const char *value,
                   struct buf *err)
{
    if (ov->base == NULL)
        log_panic("config_def_set on a generation, not an overlay");
    if (idx < 0 || idx >= CONF_COUNT || conf_value_check(idx, value, err) < 0)
        return -1;
    if (idx == CONF_IDX_Timezone && value[0]) {   /* checked before anything changes */
        struct config probe = *ov;
        struct conf_parser p = {&probe, err, NULL, 0};
        probe.Timezone = value;
        if (conf_check_timezone(&p) < 0)
            return -1;
    }
    if (conf_table[idx].is_text) {
        const char **f = conf_text_field(ov, idx);
        if (strcmp(*f, value) != 0)   /* a Def! run again costs nothing */
            *f = arena_strdup(mem, value);
    } else
        conf_parse_number(value, conf_num_field(ov, idx));
    if (idx == CONF_IDX_Timezone) {
        struct conf_parser p = {ov, err, NULL, 0};
        if (conf_check_timezone(&p) < 0)
            return -1;
        if (value[0] == '\0')
            ov->tz_set = 0;
    }
    return 0;
}

const char *config_value_text(const struct config *c, int idx, char *tmp, size_t size)
{
    struct config *cc = (struct config *)c;   /* the accessors are shared with the parser */

    if (conf_table[idx].is_text)
        return *conf_text_field(cc, idx);
    snprintf(tmp, size, "%ld", *conf_num_field(cc, idx));
    return tmp;
}

int config_differs(const struct config *c, int idx)
{
    struct config *a = (struct config *)c, *b = (struct config *)c->base;

    if (b == NULL)
        return 0;
    if (conf_table[idx].is_text)
        return strcmp(*conf_text_field(a, idx), *conf_text_field(b, idx)) != 0;
    return *conf_num_field(a, idx) != *conf_num_field(b, idx);
}
