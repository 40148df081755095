/*
 * fuzz_queue_file.c - the l file (src/spool/queue_file.h, docs/spool.md).
 *
 * Every input is used twice.
 * 1. As the text of an l file, through qf_parse.  Invariants: it succeeds
 *    or fails with "line N: why" (N within the file; 0 only for a NUL
 *    byte) and no allocation left; on success the envelope is complete
 *    (every recipient in state P, D, F or R with an address, numbers in
 *    their documented ranges), and qf_format then qf_parse gives the same
 *    envelope and, formatted again, the identical text.
 * 2. As values for an envelope built with the API (qf_init, qf_str,
 *    qf_add_rcpt): byte 0 chooses whether values stay in the documented
 *    domain (numbers in range, state P/D/F/R, at least one recipient with
 *    an address, setting names of letters, digits, _ and .; hits in range
 *    always); strings are NUL-separated and hold anything else
 *    (spaces, newlines, %, "-", control and 8-bit bytes).  qf_format
 *    percent-encodes every field, so in the domain qf_parse must accept the
 *    text and restore every field exactly; outside it, qf_parse may refuse
 *    (with a reason), but whatever it accepts it restores exactly.
 */
#include <limits.h>

#include "fuzz_util.h"
#include "buf.h"
#include "queue_file.h"

#define MAX_TIME (1LL << 40)

static void check_envelope(const struct queue_file *qf)
{
    CHECK(qf->nrcpt >= 1 && qf->nrcpt <= qf->rcpt_alloc);
    CHECK(qf->id && qf->sid && qf->from && qf->client_ip && qf->client_name &&
          qf->helo && qf->auth && qf->body);
    CHECK(qf->created >= 0 && qf->created <= MAX_TIME);
    CHECK(qf->size >= 0 && qf->size <= MAX_TIME);
    CHECK(qf->attempts >= 0 && qf->attempts <= 1000000);
    CHECK(qf->next >= 0 && qf->next <= MAX_TIME);
    CHECK(qf->hits >= -QF_HITS_MAX && qf->hits <= QF_HITS_MAX);
    CHECK(qf->nsettings <= QF_MAX_SETTINGS);
    for (size_t i = 0; i < qf->nsettings; i++) {
        CHECK(qf_setting_name_ok(qf->settings[i].name) && qf->settings[i].value);
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(qf->settings[k].name, qf->settings[i].name) != 0);
    }
    for (size_t i = 0; i < qf->nrcpt; i++) {
        const struct qf_rcpt *r = &qf->rcpt[i];
        CHECK(r->state == QF_PENDING || r->state == QF_DELIVERED ||
              r->state == QF_FAILED || r->state == QF_REPORTED);
        CHECK(r->addr && r->addr[0] && r->orcpt && r->answer);
        CHECK(r->attempts >= 0 && r->attempts <= 1000000);
        CHECK(r->next >= 0 && r->next <= MAX_TIME);
    }
}

static void check_equal(const struct queue_file *a, const struct queue_file *b)
{
    CHECK(strcmp(a->id, b->id) == 0 && strcmp(a->sid, b->sid) == 0);
    CHECK(a->created == b->created && a->size == b->size);
    CHECK(strcmp(a->from, b->from) == 0);
    CHECK(strcmp(a->client_ip, b->client_ip) == 0);
    CHECK(strcmp(a->client_name, b->client_name) == 0);
    CHECK(strcmp(a->helo, b->helo) == 0 && strcmp(a->auth, b->auth) == 0);
    CHECK(strcmp(a->body, b->body) == 0);
    CHECK(a->token == b->token && a->flags == b->flags);
    CHECK(a->attempts == b->attempts && a->next == b->next);
    CHECK(a->hits == b->hits && a->nsettings == b->nsettings);
    for (size_t i = 0; i < a->nsettings; i++)
        CHECK(strcmp(a->settings[i].name, b->settings[i].name) == 0 &&
              strcmp(a->settings[i].value, b->settings[i].value) == 0);
    CHECK(a->nrcpt == b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        const struct qf_rcpt *x = &a->rcpt[i], *y = &b->rcpt[i];
        CHECK(x->state == y->state && x->attempts == y->attempts && x->next == y->next);
        CHECK(strcmp(x->addr, y->addr) == 0 && strcmp(x->orcpt, y->orcpt) == 0);
        CHECK(strcmp(x->answer, y->answer) == 0);
    }
}

/* "line N: why" with N in range; returns N. */
static long check_error(const char *err, const char *text, size_t len)
{
    size_t lines = 1;
    char *end;
    long n;

    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    CHECK(strncmp(err, "line ", 5) == 0);
    n = strtol(err + 5, &end, 10);
    CHECK(end > err + 5 && strncmp(end, ": ", 2) == 0 && end[2] != '\0');
    CHECK(n >= 0 && (size_t)n <= lines);
    CHECK(n > 0 || memchr(text, '\0', len) != NULL);
    return n;
}

/* Formats qf, parses the text back (must succeed when must_parse) and
 * checks it is the same envelope and formats to the same text. */
static void round_trip(const struct queue_file *qf, int must_parse)
{
    struct buf t1 = BUF_INIT(0), t2 = BUF_INIT(0);
    struct queue_file back;
    char err[256] = "";

    qf_format(qf, &t1);
    CHECK(t1.len > 0 && t1.data[t1.len - 1] == '\n');
    CHECK(memchr(t1.data, '\0', t1.len) == NULL);
    if (qf_parse(&back, t1.data, t1.len, err, sizeof(err)) < 0) {
        check_error(err, t1.data, t1.len);
        if (must_parse) {
            fuzz_dump("formatted", t1.data, t1.len);
            fprintf(stderr, "qf_parse: %s\n", err);
            CHECK(!"qf_parse refuses what qf_format wrote");
        }
        buf_free(&t1);
        return;
    }
    check_envelope(&back);
    check_equal(qf, &back);
    qf_format(&back, &t2);
    CHECK(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0);
    qf_free(&back);
    buf_free(&t1);
    buf_free(&t2);
}

static void parse_input(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1), err[256] = "", small[16];
    struct queue_file qf;

    if (text == NULL)
        abort();
    memcpy(text, data, size);
    if (qf_parse(&qf, text, size, err, sizeof(err)) == 0) {
        check_envelope(&qf);
        round_trip(&qf, 1);
        qf_free(&qf);
    } else {
        check_error(err, text, size);
        CHECK(qf.nrcpt == 0 && qf.rcpt == NULL);
        /* A short error buffer is cut, never overrun. */
        CHECK(qf_parse(&qf, text, size, small, 1 + size % sizeof(small)) < 0);
        CHECK(strlen(small) < 1 + size % sizeof(small));
    }
    free(text);
}

static long long pick(struct fuzz_in *f, int in_domain, long long max)
{
    unsigned long long v = fuzz_uint(f, 8);

    return in_domain ? (long long)(v % ((unsigned long long)max + 1)) : (long long)v;
}

static void build_from_input(const uint8_t *data, size_t size)
{
    struct fuzz_in f;
    struct queue_file qf;
    int in_domain;
    size_t nrcpt;

    fuzz_in_init(&f, data, size);
    in_domain = !(fuzz_u8(&f) & 1);
    qf_init(&qf);
    qf.id = qf_str(&qf, fuzz_str(&f));
    qf.sid = qf_str(&qf, fuzz_str(&f));
    qf.from = qf_str(&qf, fuzz_str(&f));
    qf.client_ip = qf_str(&qf, fuzz_str(&f));
    qf.client_name = qf_str(&qf, fuzz_str(&f));
    qf.helo = qf_str(&qf, fuzz_str(&f));
    qf.auth = qf_str(&qf, fuzz_str(&f));
    qf.body = qf_str(&qf, fuzz_str(&f));
    qf.created = (long)pick(&f, in_domain, MAX_TIME);
    qf.size = (long)pick(&f, in_domain, MAX_TIME);
    qf.token = fuzz_uint(&f, 8);
    qf.flags = (unsigned)fuzz_uint(&f, 4);
    qf.attempts = (int)pick(&f, in_domain, 1000000);
    qf.next = (long)pick(&f, in_domain, MAX_TIME);
    qf.hits = (long)(pick(&f, 1, 2 * QF_HITS_MAX) - QF_HITS_MAX);
    for (size_t i = fuzz_u8(&f) % 4; i > 0; i--) {
        const char *name = fuzz_str(&f), *value = fuzz_str(&f);
        qf_add_setting(&qf, in_domain && !qf_setting_name_ok(name) ? "Dlocal" : name,
                       value);
    }
    nrcpt = fuzz_u8(&f) % 8 + (size_t)in_domain;
    for (size_t i = 0; i < nrcpt; i++) {
        unsigned st = fuzz_u8(&f);
        const char *addr = fuzz_str(&f), *orcpt = fuzz_str(&f);
        struct qf_rcpt *r;

        if (in_domain && addr[0] == '\0')
            addr = "postmaster";
        r = qf_add_rcpt(&qf, addr, orcpt);
        r->state = in_domain ? "PDFR"[st % 4] : (char)st;
        r->attempts = (int)pick(&f, in_domain, 1000000);
        r->next = (long)pick(&f, in_domain, MAX_TIME);
        r->answer = qf_str(&qf, fuzz_str(&f));
    }
    round_trip(&qf, in_domain);
    qf_free(&qf);
    fuzz_in_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_input(data, size);
    build_from_input(data, size);
    return 0;
}
