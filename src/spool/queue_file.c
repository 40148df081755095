/*
 * queue_file.c - l file text format (see queue_file.h, docs/spool.md).
 *
 * A file is lines "key field field ...", fields separated by one space and
 * percent-encoded (%, space, control and non-ASCII bytes as %XX; an empty
 * field is "-", a field that is "-" itself is "%2D").  It starts with
 * "SELOR-L 3" and ends with "end N", N the number of rcpt lines.  Versions
 * 1 (no "via" field in rcpt lines) and 2 (no "hits" and "set" records) are
 * still read, so files written before an upgrade are delivered.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "queue_file.h"

#define QF_MAX_FIELDS 9
#define QF_MAX_RCPT 1000000

void qf_init(struct queue_file *qf)
{
    memset(qf, 0, sizeof(*qf));
    arena_init(&qf->mem, 2048);
    qf->id = qf->sid = qf->from = qf->client_ip = qf->client_name = "";
    qf->helo = qf->auth = "";
    qf->body = "7BIT";
}

void qf_free(struct queue_file *qf)
{
    mem_free(qf->settings);
    qf->settings = NULL;
    qf->nsettings = qf->settings_alloc = 0;
    mem_free(qf->rcpt);
    arena_clear(&qf->mem);
    qf->rcpt = NULL;
    qf->nrcpt = qf->rcpt_alloc = 0;
}

const char *qf_str(struct queue_file *qf, const char *s)
{
    return arena_strdup(&qf->mem, s ? s : "");
}

struct qf_rcpt *qf_add_rcpt(struct queue_file *qf, const char *addr,
                            const char *orcpt)
{
    struct qf_rcpt *r;

    if (qf->nrcpt == qf->rcpt_alloc) {
        qf->rcpt_alloc = qf->rcpt_alloc ? qf->rcpt_alloc * 2 : 4;
        qf->rcpt = mem_realloc(qf->rcpt, qf->rcpt_alloc * sizeof(*qf->rcpt));
    }
    r = &qf->rcpt[qf->nrcpt++];
    memset(r, 0, sizeof(*r));
    r->state = QF_PENDING;
    r->addr = qf_str(qf, addr);
    r->orcpt = qf_str(qf, orcpt);
    r->answer = "";
    r->via = "";
    return r;
}

int qf_setting_name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.')
            return 0;
    return 1;
}

void qf_add_setting(struct queue_file *qf, const char *name, const char *value)
{
    struct qf_setting *st;

    for (size_t i = 0; i < qf->nsettings; i++)
        if (strcmp(qf->settings[i].name, name) == 0) {
            qf->settings[i].value = qf_str(qf, value);
            return;
        }
    if (qf->nsettings == qf->settings_alloc) {
        qf->settings_alloc = qf->settings_alloc ? qf->settings_alloc * 2 : 4;
        qf->settings = mem_realloc(qf->settings, qf->settings_alloc * sizeof(*qf->settings));
    }
    st = &qf->settings[qf->nsettings++];
    st->name = qf_str(qf, name);
    st->value = qf_str(qf, value);
}

/* ---- writing ---- */

static void qf_put_field(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    buf_putc(out, ' ');
    if (s[0] == '\0') {
        buf_putc(out, '-');
        return;
    }
    if (strcmp(s, "-") == 0) {
        buf_puts(out, "%2D");
        return;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '%') {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 3);
        } else {
            buf_putc(out, (char)c);
        }
    }
}

static void qf_put(struct buf *out, const char *key, int n, ...)
{
    va_list ap;

    buf_puts(out, key);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        qf_put_field(out, va_arg(ap, const char *));
    va_end(ap);
    buf_putc(out, '\n');
}

static const char *qf_num(char *tmp, size_t size, long long v)
{
    snprintf(tmp, size, "%lld", v);
    return tmp;
}

void qf_format(const struct queue_file *qf, struct buf *out)
{
    char a[32], b[32], c[32], st[2] = {0, 0};

    buf_printf(out, "%s %d\n", QF_MAGIC, QF_VERSION);
    qf_put(out, "id", 1, qf->id);
    qf_put(out, "sid", 1, qf->sid);
    qf_put(out, "created", 1, qf_num(a, sizeof(a), qf->created));
    qf_put(out, "size", 1, qf_num(a, sizeof(a), qf->size));
    qf_put(out, "from", 1, qf->from);
    qf_put(out, "client", 3, qf->client_ip, qf->client_name, qf->helo);
    qf_put(out, "auth", 1, qf->auth);
    qf_put(out, "body", 1, qf->body);
    snprintf(a, sizeof(a), "%llu", qf->token);
    qf_put(out, "token", 1, a);
    qf_put(out, "flags", 1, qf_num(a, sizeof(a), qf->flags));
    qf_put(out, "attempts", 1, qf_num(a, sizeof(a), qf->attempts));
    qf_put(out, "next", 1, qf_num(a, sizeof(a), qf->next));
    /* clamped, not refused later: a score must never make mail unreadable */
    qf_put(out, "hits", 1, qf_num(a, sizeof(a), qf->hits > QF_HITS_MAX ? QF_HITS_MAX
                                  : qf->hits < -QF_HITS_MAX ? -QF_HITS_MAX : qf->hits));
    for (size_t i = 0; i < qf->nsettings; i++)
        qf_put(out, "set", 2, qf->settings[i].name, qf->settings[i].value);
    for (size_t i = 0; i < qf->nrcpt; i++) {
        const struct qf_rcpt *r = &qf->rcpt[i];
        st[0] = r->state;
        qf_put(out, "rcpt", 7, st, qf_num(a, sizeof(a), r->attempts),
               qf_num(b, sizeof(b), r->next), r->addr, r->orcpt, r->answer,
               r->via ? r->via : "");
    }
    buf_printf(out, "end %s\n", qf_num(c, sizeof(c), (long long)qf->nrcpt));
}

/* ---- reading ---- */

struct qf_reader {
    struct queue_file *qf;
    char *err;
    size_t errlen;
    int line;
    int version;
};

static int qf_fail(struct qf_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int qf_fail(struct qf_reader *r, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(r->err, r->errlen, "line %d: ", r->line);

    va_start(ap, fmt);
    if (k > 0 && (size_t)k < r->errlen)
        vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static int qf_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one field in place; -1 on a bad escape, or on a byte the
 * writer would have escaped (a file we did not write is not guessed at). */
static int qf_decode(char *f)
{
    char *w = f;

    if (strcmp(f, "-") == 0) {
        f[0] = '\0';
        return 0;
    }
    for (char *p = f; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return -1;
        if (*p != '%') {
            *w++ = *p;
            continue;
        }
        int hi = qf_hexval(p[1]), lo = hi < 0 ? -1 : qf_hexval(p[2]);
        if (lo < 0 || hi + lo == 0)  /* %00 would cut the field short */
            return -1;
        *w++ = (char)(hi * 16 + lo);
        p += 2;
    }
    *w = '\0';
    return 0;
}

static int qf_split(struct qf_reader *r, char *line, char **f, int max)
{
    int n = 0;

    for (char *p = line; p; ) {
        if (n == max)
            return qf_fail(r, "too many fields");
        f[n++] = p;
        p = strchr(p, ' ');
        if (p)
            *p++ = '\0';
    }
    for (int i = 1; i < n; i++)
        if (f[i][0] == '\0' || qf_decode(f[i]) < 0)
            return qf_fail(r, "bad field %d", i);
    return n;
}

static int qf_long(struct qf_reader *r, const char *s, long long min,
                   long long max, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    /* digits only (a sign for negatives): strtoll would take " +1" too */
    if (errno || *end || end == s || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) ||
        *out < min || *out > max)
        return qf_fail(r, "bad number \"%s\"", s);
    return 0;
}

static int qf_parse_rcpt(struct qf_reader *r, char **f, int n)
{
    struct queue_file *qf = r->qf;
    struct qf_rcpt *rc;
    long long att, next;

    if (n != (r->version == 1 ? 7 : 8) || strlen(f[1]) != 1 || !strchr("PDFR", f[1][0]))
        return qf_fail(r, "bad rcpt record");
    if (qf_long(r, f[2], 0, 1000000, &att) < 0 || qf_long(r, f[3], 0, 1LL << 40, &next) < 0)
        return -1;
    if (f[4][0] == '\0')
        return qf_fail(r, "rcpt without address");
    if (qf->nrcpt >= QF_MAX_RCPT)
        return qf_fail(r, "too many recipients");
    rc = qf_add_rcpt(qf, f[4], f[5]);
    rc->state = f[1][0];
    rc->attempts = (int)att;
    rc->next = (long)next;
    rc->answer = qf_str(qf, f[6]);
    if (r->version > 1)
        rc->via = qf_str(qf, f[7]);
    return 0;
}

/* "set NAME VALUE": version 3; a name once, as the writer never repeats one. */
static int qf_parse_set(struct qf_reader *r, char **f, int n)
{
    struct queue_file *qf = r->qf;

    if (r->version < 3)
        return qf_fail(r, "unknown record \"set\"");
    if (n != 3 || !qf_setting_name_ok(f[1]))
        return qf_fail(r, "bad set record");
    for (size_t i = 0; i < qf->nsettings; i++)
        if (strcmp(qf->settings[i].name, f[1]) == 0)
            return qf_fail(r, "setting %s repeated", f[1]);
    if (qf->nsettings >= QF_MAX_SETTINGS)
        return qf_fail(r, "too many settings");
    qf_add_setting(qf, f[1], f[2]);
    return 0;
}

/* Fields of known header records: key, field count, smallest and largest
 * number, first version that has it. */
static int qf_parse_record(struct qf_reader *r, char **f, int n, unsigned *seen)
{
    struct queue_file *qf = r->qf;
    static const struct {
        const char *key;
        int fields;
        long long min, max;
        int since;
    } recs[] = {
        {"id", 2, 0, 0, 1}, {"sid", 2, 0, 0, 1}, {"created", 2, 0, 1LL << 40, 1},
        {"size", 2, 0, 1LL << 40, 1}, {"from", 2, 0, 0, 1}, {"client", 4, 0, 0, 1},
        {"auth", 2, 0, 0, 1}, {"body", 2, 0, 0, 1}, {"token", 2, 0, 0, 1},
        {"flags", 2, 0, UINT_MAX, 1}, {"attempts", 2, 0, 1000000, 1},
        {"next", 2, 0, 1LL << 40, 1}, {"hits", 2, -QF_HITS_MAX, QF_HITS_MAX, 3},
    };
    char *end;
    long long v;
    size_t k;

    if (strcmp(f[0], "rcpt") == 0)
        return qf_parse_rcpt(r, f, n);
    if (strcmp(f[0], "set") == 0)
        return qf_parse_set(r, f, n);
    for (k = 0; k < sizeof(recs) / sizeof(recs[0]); k++)
        if (strcmp(f[0], recs[k].key) == 0 && r->version >= recs[k].since)
            break;
    if (k == sizeof(recs) / sizeof(recs[0]))
        return qf_fail(r, "unknown record \"%s\"", f[0]);
    if (n != recs[k].fields)
        return qf_fail(r, "record %s needs %d fields", f[0], recs[k].fields - 1);
    if (*seen & (1u << k))
        return qf_fail(r, "record %s repeated", f[0]);
    *seen |= 1u << k;
    switch (k) {
    case 0: qf->id = qf_str(qf, f[1]); return 0;
    case 1: qf->sid = qf_str(qf, f[1]); return 0;
    case 4: qf->from = qf_str(qf, f[1]); return 0;
    case 5:
        qf->client_ip = qf_str(qf, f[1]);
        qf->client_name = qf_str(qf, f[2]);
        qf->helo = qf_str(qf, f[3]);
        return 0;
    case 6: qf->auth = qf_str(qf, f[1]); return 0;
    case 7: qf->body = qf_str(qf, f[1]); return 0;
    case 8:
        errno = 0;
        qf->token = strtoull(f[1], &end, 10);
        return errno || *end || !isdigit((unsigned char)f[1][0])
                   ? qf_fail(r, "bad token \"%s\"", f[1]) : 0;
    default: break;
    }
    if (qf_long(r, f[1], recs[k].min, recs[k].max, &v) < 0)
        return -1;
    if (k == 2) qf->created = (long)v;
    if (k == 3) qf->size = (long)v;
    if (k == 9) qf->flags = (unsigned)v;
    if (k == 10) qf->attempts = (int)v;
    if (k == 11) qf->next = (long)v;
    if (k == 12) qf->hits = (long)v;
    return 0;
}

static int qf_parse_magic(struct qf_reader *r, char *line)
{
    char *f[QF_MAX_FIELDS];
    long long v;
    int n = qf_split(r, line, f, QF_MAX_FIELDS);

    if (n != 2 || strcmp(f[0], QF_MAGIC) != 0)
        return qf_fail(r, "not an l file");
    if (qf_long(r, f[1], 0, 1000, &v) < 0)
        return -1;
    if (v < 1 || v > QF_VERSION)
        return qf_fail(r, "l file version %lld is not known to this reader", v);
    r->version = (int)v;
    return 0;
}

static int qf_parse_end(struct qf_reader *r, char **f, int n, unsigned seen)
{
    long long count;

    if (n != 2 || qf_long(r, f[1], 0, QF_MAX_RCPT, &count) < 0)
        return qf_fail(r, "bad end record");
    if ((size_t)count != r->qf->nrcpt)
        return qf_fail(r, "end says %lld recipients, file has %zu", count,
                       r->qf->nrcpt);
    /* every record of the file's version, "hits" from version 3 on */
    if ((seen & 0xfffu) != 0xfffu || (r->version >= 3 && !(seen & 0x1000u)))
        return qf_fail(r, "a required record is missing");
    if (r->qf->nrcpt == 0)
        return qf_fail(r, "no recipients");
    return 1;
}

int qf_parse(struct queue_file *qf, const char *text, size_t len, char *err,
             size_t errlen)
{
    struct qf_reader r = {qf, err, errlen, 0, 0};
    char *copy = mem_strndup(text, len), *line = copy, *nl, *f[QF_MAX_FIELDS];
    unsigned seen = 0;
    int rc = -1, n;

    qf_init(qf);
    if (strlen(copy) != len) {
        qf_fail(&r, "NUL byte in file");
        goto out;
    }
    for (;;) {
        r.line++;
        nl = strchr(line, '\n');
        if (nl == NULL) {
            qf_fail(&r, "file ends without an end record");
            goto out;
        }
        *nl = '\0';
        if (r.line == 1) {
            if (qf_parse_magic(&r, line) < 0)
                goto out;
        } else if ((n = qf_split(&r, line, f, QF_MAX_FIELDS)) < 0) {
            goto out;
        } else if (strcmp(f[0], "end") == 0) {
            if (qf_parse_end(&r, f, n, seen) < 0)
                goto out;
            if (nl[1] != '\0') {
                qf_fail(&r, "data after the end record");
                goto out;
            }
            rc = 0;
            goto out;
        } else if (qf_parse_record(&r, f, n, &seen) < 0) {
            goto out;
        }
        line = nl + 1;
    }
out:
    mem_free(copy);
    if (rc < 0)
        qf_free(qf);
    return rc;
}
