/*
 * rules_parse.c - a rules file's text into conditions and actions.
 *
 * Owns: the syntax (docs/rules.md): one rule a line, `#` comments and blank
 * lines ignored; a rule is a chain of `Name?` conditions (`!Name?` negates;
 * `Spf_resp` is also accepted without `?`, as the original writes it) and
 * `Name!` actions, each with at most one "argument" (\" and \\ escaped);
 * keywords are case-sensitive.  Every argument is checked here, against the
 * events that use the file, so a mistake is a FILE:LINE:COLUMN error at
 * load time, never a surprise at the first matching mail.  Must not:
 * evaluate anything or open files (rules_set.c reads them).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "mem.h"
#include "rules_exec.h"
#include "rules_int.h"
#include "spf.h"

#define EV(e) RULES_EVBIT(RULES_EV_##e)
#define SESSION (EV(LIMIT) | EV(CONNECTION) | EV(HELO) | EV(AUTH) | EV(FROM) | EV(RCPT) | \
                 EV(LRCPT_REFUSED) | EV(DATA_CMD) | EV(DATA))
#define DELIVERY (EV(QSTART) | EV(QEND) | EV(ERROR_REPORT) | EV(DL_RCPT))
#define ALL (SESSION | DELIVERY)
#define TXN (EV(FROM) | EV(RCPT) | EV(LRCPT_REFUSED) | EV(DATA_CMD) | EV(DATA))
#define AFTER_HELO (EV(HELO) | EV(AUTH) | TXN)

static const struct rules_keyword rules_keywords[] = {
    {"From", RULES_C_FROM, 0, 1, TXN | DELIVERY},
    {"To", RULES_C_TO, 0, 1, EV(RCPT) | EV(LRCPT_REFUSED) | EV(DATA_CMD) | EV(DATA) | DELIVERY},
    {"Ip", RULES_C_IP, 0, 1, ALL},
    {"Rev_fail", RULES_C_REV_FAIL, 0, 0, SESSION},
    {"Itest", RULES_C_ITEST, 0, 1, ALL},
    {"Spf_resp", RULES_C_SPF, 0, 1, TXN},
    {"Helo", RULES_C_HELO, 0, 1, AFTER_HELO | DELIVERY},
    {"Auth", RULES_C_AUTH, 0, 2, EV(AUTH) | TXN | DELIVERY},
    {"Tls", RULES_C_TLS, 0, 0, SESSION & ~EV(LIMIT)},
    {"Local", RULES_C_LOCAL, 0, 0, EV(RCPT) | EV(LRCPT_REFUSED)},
    {"Size", RULES_C_SIZE, 0, 1, TXN | DELIVERY},
    {"Rbl", RULES_C_RBL, 0, 1, SESSION},
    {"Exec", RULES_C_EXEC, 0, 1, ALL},
    {"Rate", RULES_C_RATE, 0, 1, ALL},
    {"Add_hits", RULES_A_ADD_HITS, 1, 1, ALL},
    {"Accept", RULES_A_ACCEPT, 1, 0, EV(LIMIT) | EV(FROM) | EV(RCPT)},
    {"Close", RULES_A_CLOSE, 1, 0, SESSION},
    {"Cp", RULES_A_CP, 1, 1, EV(FROM) | EV(RCPT) | EV(DATA_CMD) | EV(DATA)},
    {"Def", RULES_A_DEF, 1, 1, ALL},
    {"Deny", RULES_A_DENY, 1, 0, SESSION | EV(QSTART) | EV(ERROR_REPORT) | EV(DL_RCPT)},
    {"Reply", RULES_A_REPLY, 1, 1, SESSION | EV(QSTART) | EV(DL_RCPT)},
    {"Data_reply", RULES_A_DATA_REPLY, 1, 1, EV(FROM) | EV(RCPT) | EV(DATA_CMD) | EV(DATA)},
    {"Resolve", RULES_A_RESOLVE, 1, 0, EV(LIMIT) | EV(CONNECTION) | EV(HELO)},
    {"Qlimit", RULES_A_QLIMIT, 1, 0, TXN},
    {"Defer", RULES_A_DEFER, 1, 0, SESSION | EV(QSTART) | EV(DL_RCPT)},
    {"Log", RULES_A_LOG, 1, 1, ALL},
    {"Header", RULES_A_HEADER, 1, 1, EV(FROM) | EV(RCPT) | EV(DATA_CMD) | EV(DATA)},
    {"Delay", RULES_A_DELAY, 1, 1, SESSION},
    {"Exec", RULES_A_EXEC, 1, 1, ALL},
};

const struct rules_keyword *rules_keyword_find(const char *name, int action)
{
    for (size_t i = 0; i < sizeof(rules_keywords) / sizeof(rules_keywords[0]); i++)
        if (rules_keywords[i].action == action && strcmp(rules_keywords[i].name, name) == 0)
            return &rules_keywords[i];
    return NULL;
}

int rules_vars_check(const char *text)
{
    for (const char *p = strchr(text, '%'); p; p = strchr(p + 2, '%')) {
        if (p[1] == '\0' || strchr("HTfomrcpdINEUSQX%", p[1]) == NULL)
            return p[1] ? p[1] : '%';
    }
    return 0;
}

/* ---- one line ---- */

struct rules_parser {
    struct rules_file *f;
    struct buf *err;
    unsigned events;
    int line;
    const char *start;          /* the line, for columns */
};

static int rules_error(struct rules_parser *p, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int rules_error(struct rules_parser *p, const char *at, const char *fmt, ...)
{
    va_list ap;

    buf_reset(p->err);
    buf_printf(p->err, "%s:%d:%d: ", p->f->path ? p->f->path : "(inline rule)", p->line,
               (int)(at - p->start) + 1);
    va_start(ap, fmt);
    buf_vprintf(p->err, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *rules_event_list(unsigned mask, char *out, size_t size)
{
    size_t n = 0;

    out[0] = '\0';
    for (int e = 0; e < RULES_NEVENTS && n < size; e++)
        if (mask & RULES_EVBIT(e))
            n += (size_t)snprintf(out + n, size - n, "%s%s", n ? " " : "",
                                  rules_event_name(e));
    return out;
}

/* Reads "text" (with \" and \\) at s into out; the end, or NULL. */
static const char *rules_quoted(struct rules_parser *p, const char *s, struct buf *out)
{
    const char *open = s++;

    for (;;) {
        if (*s == '\0') {
            rules_error(p, open, "missing closing quote");
            return NULL;
        }
        if (*s == '"')
            return s + 1;
        if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
            s++;
        if ((unsigned char)*s < 0x20 && *s != '\t') {
            rules_error(p, s, "control character in an argument");
            return NULL;
        }
        buf_putc(out, *s++);
    }
}

static int rules_number(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (*s == '\0')
        return -1;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int rules_reply_ok(const char *s)
{
    return s[0] >= '2' && s[0] <= '5' && isdigit((unsigned char)s[1]) &&
           isdigit((unsigned char)s[2]) && (s[3] == ' ' || s[3] == '\0');
}

/* Checks of arguments the evaluator then trusts. */
static int rules_check_def(struct rules_parser *p, struct rules_item *it, const char *at)
{
    struct buf value = BUF_INIT(0), why = BUF_INIT(0);
    int r = config_def_parse(it->arg, &it->u.def.idx, &value, &why);

    if (r < 0)
        rules_error(p, at, "Def!: %s", buf_cstr(&why));
    else
        it->u.def.value = arena_strdup(&p->f->mem, buf_cstr(&value));
    buf_free(&value);
    buf_free(&why);
    return r;
}

static int rules_check_rate(struct rules_parser *p, struct rules_item *it, const char *at)
{
    const char *sp = strrchr(it->arg, ' ');
    char *slash, *end;

    if (sp == NULL || sp == it->arg)
        return rules_error(p, at, "Rate? needs \"key N/seconds\", e.g. \"%%U 100/3600\"");
    it->u.rate.key = arena_strndup(&p->f->mem, it->arg, (size_t)(sp - it->arg));
    it->u.rate.limit = strtol(sp + 1, &slash, 10);
    if (*slash != '/' || it->u.rate.limit < 0 || it->u.rate.limit > 100000000)
        return rules_error(p, at, "Rate? needs \"key N/seconds\", e.g. \"%%U 100/3600\"");
    it->u.rate.window = strtol(slash + 1, &end, 10);
    if (*end != '\0' || it->u.rate.window < 1 || it->u.rate.window > 86400 * 31)
        return rules_error(p, at, "Rate?: the window must be 1 to 2678400 seconds");
    return 0;
}

static int rules_check_header(struct rules_parser *p, const char *arg, const char *at)
{
    const char *colon = strchr(arg, ':');

    if (colon == NULL || colon == arg)
        return rules_error(p, at, "Header! needs \"Name: value\"");
    for (const char *c = arg; c < colon; c++)
        if ((unsigned char)*c <= 32 || (unsigned char)*c >= 127)
            return rules_error(p, at, "Header!: bad character in the field name");
    return 0;
}

static int rules_check_arg(struct rules_parser *p, struct rules_item *it, const char *at)
{
    char why[160];
    int bad = rules_vars_check(it->arg);

    if (bad)
        return rules_error(p, at, "unknown variable %%%c", bad);
    it->has_vars = strchr(it->arg, '%') != NULL;
    it->needs_spf = strstr(it->arg, "%S") != NULL;
    switch (it->op) {
    case RULES_C_IP:
        if (rules_ip_parse(it->arg, it) < 0)
            return rules_error(p, at, "Ip? needs an address, a network (10.0.0.0/8) or "
                               "a prefix ending in a dot, got \"%s\"", it->arg);
        return 0;
    case RULES_C_ITEST:
        return rules_itest_check(it->arg) < 0
                   ? rules_error(p, at, "Itest? needs \"A op B\" with op one of "
                                 "< > = <= >= !=, got \"%s\"", it->arg) : 0;
    case RULES_C_SPF:
        it->u.num = spf_result_parse(it->arg);
        return it->u.num < 0 ? rules_error(p, at, "Spf_resp needs 0 to 6 or a result name "
                                           "(pass none softfail fail temperror neutral "
                                           "permerror), got \"%s\"", it->arg) : 0;
    case RULES_C_SIZE:
        return rules_number(it->arg, 0, 1L << 40, &it->u.num) < 0
                   ? rules_error(p, at, "Size? needs a number of bytes") : 0;
    case RULES_C_RBL:
        return addr_valid_domain(it->arg, strlen(it->arg)) ? 0
                   : rules_error(p, at, "Rbl? needs a DNS zone, got \"%s\"", it->arg);
    case RULES_C_RATE:
        return rules_check_rate(p, it, at);
    case RULES_C_EXEC:
    case RULES_A_EXEC:
        return rules_exec_check(it->arg, why, sizeof(why)) < 0
                   ? rules_error(p, at, "%s", why) : 0;
    case RULES_A_ADD_HITS:
        return rules_number(it->arg, -1000000, 1000000, &it->u.num) < 0
                   ? rules_error(p, at, "Add_hits! needs a whole number") : 0;
    case RULES_A_DELAY:
        return rules_number(it->arg, 0, 3600, &it->u.num) < 0
                   ? rules_error(p, at, "Delay! needs 0 to 3600 seconds") : 0;
    case RULES_A_REPLY:
    case RULES_A_DATA_REPLY:
        return rules_reply_ok(it->arg) ? 0
                   : rules_error(p, at, "a reply starts with a 3-digit code 200 to 599");
    case RULES_A_DEF:
        return rules_check_def(p, it, at);
    case RULES_A_HEADER:
        return rules_check_header(p, it->arg, at);
    case RULES_A_CP: {
        struct addr a;
        return it->has_vars || addr_parse(it->arg, strlen(it->arg), &a) == ADDR_OK
                   ? 0 : rules_error(p, at, "Cp! needs an address, got \"%s\"", it->arg);
    }
    default:
        return 0;
    }
}

/* A keyword at s: name, ? or !, and an optional argument. */
static const char *rules_item(struct rules_parser *p, const char *s, struct rules_rule *r)
{
    const char *at = s, *name_start;
    char name[32];
    size_t n;
    struct rules_item *it;
    const struct rules_keyword *kw;
    struct buf arg = BUF_INIT(0);
    int negate = 0, action;
    char evs[512], evs2[512];

    if (*s == '!' && isalpha((unsigned char)s[1]))
        negate = 1, s++;
    name_start = s;
    while (isalnum((unsigned char)*s) || *s == '_')
        s++;
    n = (size_t)(s - name_start);
    if (n == 0 || n >= sizeof(name)) {
        rules_error(p, at, "expected a condition (Name?) or an action (Name!)");
        return NULL;
    }
    memcpy(name, name_start, n);
    name[n] = '\0';
    action = *s == '!';
    if (*s == '?' || *s == '!')
        s++;
    else if (strcmp(name, "Spf_resp") != 0) {
        rules_error(p, at, "%s needs ? (a condition) or ! (an action)", name);
        return NULL;
    }
    kw = rules_keyword_find(name, action);
    if (kw == NULL) {
        rules_error(p, at, "unknown %s %s%c", action ? "action" : "condition", name,
                    action ? '!' : '?');
        return NULL;
    }
    if (negate && action) {
        rules_error(p, at, "an action cannot be negated");
        return NULL;
    }
    if ((kw->events & p->events) != p->events) {
        rules_error(p, at, "%s%c cannot be used in %s (it can in: %s)", name,
                    action ? '!' : '?',
                    rules_event_list(p->events & ~kw->events, evs, sizeof(evs)),
                    rules_event_list(kw->events, evs2, sizeof(evs2)));
        return NULL;
    }
    {   /* an argument may follow after blanks; else the blanks are the caller's */
        const char *q = s;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '"')
            s = q;
    }
    if (r->nitems >= RULES_MAX_ITEMS) {
        rules_error(p, at, "more than %d conditions and actions in one rule", RULES_MAX_ITEMS);
        return NULL;
    }
    it = &r->items[r->nitems++];
    memset(it, 0, sizeof(*it));
    it->op = kw->op;
    it->action = action;
    it->negate = negate;
    it->line = p->line;
    it->col = (int)(at - p->start) + 1;
    if (*s == '"') {
        const char *arg_at = s;
        s = kw->arg == 0 ? NULL : rules_quoted(p, s, &arg);
        if (kw->arg == 0)
            rules_error(p, arg_at, "%s%c takes no argument", name, action ? '!' : '?');
        if (s != NULL) {
            it->arg = arena_strdup(&p->f->mem, buf_cstr(&arg));
            if (rules_check_arg(p, it, arg_at) < 0)
                s = NULL;
        }
    } else if (kw->arg == 1) {
        rules_error(p, s, "%s%c needs an argument in double quotes", name, action ? '!' : '?');
        s = NULL;
    }
    buf_free(&arg);
    return s;
}

static int rules_line(struct rules_parser *p, const char *s)
{
    struct rules_item items[RULES_MAX_ITEMS];
    struct rules_rule r = {items, 0, p->line, NULL};
    struct rules_file *f = p->f;

    p->start = s;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0' || *s == '#')
        return 0;
    r.text = arena_strdup(&f->mem, s);
    while (*s && *s != '#') {
        s = rules_item(p, s, &r);
        if (s == NULL)
            return -1;
        if (*s && *s != ' ' && *s != '\t' && *s != '#')
            return rules_error(p, s, "expected a blank between conditions and actions");
        while (*s == ' ' || *s == '\t')
            s++;
    }
    if (f->nrules >= RULES_MAX_RULES)
        return rules_error(p, p->start, "more than %d rules in one file", RULES_MAX_RULES);
    if (f->nrules % 64 == 0)
        f->rules = mem_realloc(f->rules, (f->nrules + 64) * sizeof(*f->rules));
    r.items = arena_alloc(&f->mem, r.nitems * sizeof(*r.items));
    memcpy(r.items, items, r.nitems * sizeof(*r.items));
    f->rules[f->nrules++] = r;
    return 0;
}

struct rules_file *rules_parse(const char *spec, const char *path, const char *text,
                               size_t len, unsigned events, struct buf *err)
{
    struct rules_file *f = mem_zalloc(sizeof(*f));
    struct rules_parser p = {f, err, events, 0, text};
    char line[RULES_LINE_MAX];

    arena_init(&f->mem, 4096);
    f->spec = arena_strdup(&f->mem, spec);
    f->path = path ? arena_strdup(&f->mem, path) : NULL;
    f->events = events;
    for (size_t i = 0; i < len; ) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t raw = nl ? (size_t)(nl - text) - i : len - i, n = raw;
        p.line++;
        p.start = text + i;
        if (n >= sizeof(line) - 1 || memchr(text + i, '\0', n)) {
            rules_error(&p, text + i, n >= sizeof(line) - 1 ? "line too long"
                                                            : "NUL byte in line");
            goto fail;
        }
        memcpy(line, text + i, n);
        while (n && line[n - 1] == '\r')
            n--;
        line[n] = '\0';
        if (rules_line(&p, line) < 0)
            goto fail;
        i += raw + 1;
    }
    return f;
fail:
    rules_file_free(f);
    return NULL;
}

void rules_file_free(struct rules_file *f)
{
    if (f == NULL)
        return;
    mem_free(f->rules);
    arena_clear(&f->mem);
    mem_free(f);
}
