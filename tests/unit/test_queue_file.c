/*
 * test_queue_file.c - the l file format (src/spool/queue_file.c): format then
 * parse gives the same envelope, and the parser refuses anything it does
 * not fully understand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "queue_file.h"

/* A complete, valid file with two recipients. */
static const char good[] =
    "SELOR-L 3\n"
    "id 1700000000_000001_42_7\n"
    "sid mx1\n"
    "created 1700000000\n"
    "size 1234\n"
    "from alice@example.com\n"
    "client 192.0.2.1 client.example helo.example\n"
    "auth -\n"
    "body 8BITMIME\n"
    "token 99\n"
    "flags 4\n"
    "attempts 2\n"
    "next 1700000600\n"
    "hits 0\n"
    "rcpt P 0 0 bob@example.org - - -\n"
    "rcpt D 1 0 carol@example.net rfc822;carol@example.net 250%202.0.0%20Ok alias:pgsql\n"
    "end 2\n";

/* An envelope with every field set, some to awkward values. */
static void fill(struct queue_file *qf)
{
    struct qf_rcpt *r;

    qf_init(qf);
    qf->id = qf_str(qf, "1700000000_123456_4242_999999");
    qf->sid = qf_str(qf, "node one");
    qf->created = 1700000000;
    qf->size = 10485760;
    qf->from = qf_str(qf, "");  /* the null sender */
    qf->client_ip = qf_str(qf, "2001:db8::1");
    qf->client_name = qf_str(qf, "-");  /* a field that is "-" itself */
    qf->helo = qf_str(qf, "[192.0.2.1] %41 50%\t\r\n\x01\x7f\xc3\xa9 end");
    qf->auth = qf_str(qf, "user name");
    qf->body = qf_str(qf, "7BIT");
    qf->token = UINT64_MAX;
    qf->flags = QF_F_HOLD | QF_F_BOUNCE | QF_F_QLIMIT;
    qf->attempts = 1000000;
    qf->next = 1LL << 40;
    r = qf_add_rcpt(qf, "bob@example.org", "");
    r->state = QF_PENDING;
    r = qf_add_rcpt(qf, "\"odd user\"@example.org", "rfc822;x+20y@example.org");
    r->state = QF_DELIVERED;
    r->attempts = 3;
    r->next = 1700000001;
    r->answer = qf_str(qf, "250 2.0.0 Ok: queued as ABC");
    r->via = qf_str(qf, "alias:my module");
    r = qf_add_rcpt(qf, "c@example.com", "-");
    r->state = QF_FAILED;
    r->answer = qf_str(qf, "550 5.1.1 <c@example.com>: no such user\r\n--");
    r = qf_add_rcpt(qf, "d@example.com", "%");
    r->state = QF_REPORTED;
    r->attempts = 1000000;
    r->answer = qf_str(qf, "-");
}

static void assert_same(const struct queue_file *a, const struct queue_file *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->sid, b->sid);
    assert_int_equal(a->created, b->created);
    assert_int_equal(a->size, b->size);
    assert_string_equal(a->from, b->from);
    assert_string_equal(a->client_ip, b->client_ip);
    assert_string_equal(a->client_name, b->client_name);
    assert_string_equal(a->helo, b->helo);
    assert_string_equal(a->auth, b->auth);
    assert_string_equal(a->body, b->body);
    assert_true(a->token == b->token);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->next, b->next);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
        assert_int_equal(a->rcpt[i].attempts, b->rcpt[i].attempts);
        assert_int_equal(a->rcpt[i].next, b->rcpt[i].next);
        assert_string_equal(a->rcpt[i].addr, b->rcpt[i].addr);
        assert_string_equal(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
        assert_string_equal(a->rcpt[i].via, b->rcpt[i].via);
        assert_string_equal(a->rcpt[i].answer, b->rcpt[i].answer);
    }
}

/* Parses text (exact-size heap copy, no NUL after it); returns 0 or -1. */
static int parse(struct queue_file *qf, const char *text, size_t len,
                 char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    int r;

    assert_non_null(copy);
    memcpy(copy, text, len);
    err[0] = '\0';
    r = qf_parse(qf, copy, len, err, errlen);
    free(copy);
    return r;
}

/* The text must be refused, with an error mentioning why (may be NULL). */
static void expect_refused_n(const char *text, size_t len, const char *why)
{
    struct queue_file qf;
    char err[256];

    if (parse(&qf, text, len, err, sizeof(err)) == 0) {
        qf_free(&qf);
        fail_msg("accepted:\n%.*s", (int)len, text);
    }
    assert_true(err[0] != '\0');
    if (why && strstr(err, why) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, why);
    assert_null(qf.rcpt);  /* freed on failure */
    assert_int_equal(qf.nrcpt, 0);
}

static void expect_refused(const char *text, const char *why)
{
    expect_refused_n(text, strlen(text), why);
}

/* good with the line starting with `key ` replaced (NULL: removed). */
static char *good_with(const char *key, const char *line)
{
    static char out[2048];
    const char *p = good;
    size_t k = strlen(key), o = 0;

    while (*p) {
        const char *nl = strchr(p, '\n') + 1;
        if (strncmp(p, key, k) == 0 && p[k] == ' ') {
            if (line)
                o += (size_t)snprintf(out + o, sizeof(out) - o, "%s\n", line);
        } else {
            memcpy(out + o, p, (size_t)(nl - p));
            o += (size_t)(nl - p);
        }
        p = nl;
    }
    out[o] = '\0';
    return out;
}

/* good with extra inserted before the first line starting with `key `. */
static char *good_insert(const char *key, const char *extra)
{
    static char out[2048];
    char find[64];
    const char *at;

    snprintf(find, sizeof(find), "\n%s ", key);
    at = strstr(good, find);
    assert_non_null(at);
    at++;
    snprintf(out, sizeof(out), "%.*s%s\n%s", (int)(at - good), good, extra, at);
    return out;
}

static void test_init(void **state)
{
    struct queue_file qf;

    (void)state;
    qf_init(&qf);
    assert_string_equal(qf.id, "");
    assert_string_equal(qf.sid, "");
    assert_string_equal(qf.from, "");
    assert_string_equal(qf.client_ip, "");
    assert_string_equal(qf.client_name, "");
    assert_string_equal(qf.helo, "");
    assert_string_equal(qf.auth, "");
    assert_string_equal(qf.body, "7BIT");
    assert_int_equal(qf.nrcpt, 0);
    assert_null(qf.rcpt);
    qf_free(&qf);
}

static void test_add_rcpt(void **state)
{
    struct queue_file qf;
    char addr[32];

    (void)state;
    qf_init(&qf);
    for (int i = 0; i < 100; i++) {
        snprintf(addr, sizeof(addr), "user%d@example.org", i);
        struct qf_rcpt *r = qf_add_rcpt(&qf, addr, i % 2 ? "rfc822;x@y" : NULL);
        assert_int_equal(r->state, QF_PENDING);
        assert_int_equal(r->attempts, 0);
        assert_int_equal(r->next, 0);
        assert_string_equal(r->answer, "");
    }
    assert_int_equal(qf.nrcpt, 100);
    assert_string_equal(qf.rcpt[57].addr, "user57@example.org");
    assert_string_equal(qf.rcpt[57].orcpt, "rfc822;x@y");
    assert_string_equal(qf.rcpt[58].orcpt, "");
    qf_free(&qf);
    assert_null(qf.rcpt);
    assert_int_equal(qf.nrcpt, 0);
}

static void test_parse_good(void **state)
{
    struct queue_file qf;
    char err[128];

    (void)state;
    assert_int_equal(parse(&qf, good, strlen(good), err, sizeof(err)), 0);
    assert_string_equal(qf.id, "1700000000_000001_42_7");
    assert_string_equal(qf.sid, "mx1");
    assert_int_equal(qf.created, 1700000000);
    assert_int_equal(qf.size, 1234);
    assert_string_equal(qf.from, "alice@example.com");
    assert_string_equal(qf.client_ip, "192.0.2.1");
    assert_string_equal(qf.client_name, "client.example");
    assert_string_equal(qf.helo, "helo.example");
    assert_string_equal(qf.auth, "");
    assert_string_equal(qf.body, "8BITMIME");
    assert_true(qf.token == 99);
    assert_int_equal(qf.flags, QF_F_QLIMIT);
    assert_int_equal(qf.attempts, 2);
    assert_int_equal(qf.next, 1700000600);
    assert_int_equal(qf.nrcpt, 2);
    assert_int_equal(qf.rcpt[0].state, QF_PENDING);
    assert_string_equal(qf.rcpt[0].addr, "bob@example.org");
    assert_string_equal(qf.rcpt[0].orcpt, "");
    assert_string_equal(qf.rcpt[0].answer, "");
    assert_int_equal(qf.rcpt[1].state, QF_DELIVERED);
    assert_int_equal(qf.rcpt[1].attempts, 1);
    assert_string_equal(qf.rcpt[1].orcpt, "rfc822;carol@example.net");
    assert_string_equal(qf.rcpt[1].answer, "250 2.0.0 Ok");
    assert_string_equal(qf.rcpt[0].via, "");
    assert_string_equal(qf.rcpt[1].via, "alias:pgsql");
    qf_free(&qf);
}

/* Version 1 (written before the via field) is still read. */
static void test_parse_version1(void **state)
{
    static const char v1[] =
        "SELOR-L 1\nid 1\nsid -\ncreated 1\nsize 0\nfrom -\nclient - - -\n"
        "auth -\nbody 7BIT\ntoken 0\nflags 0\nattempts 0\nnext 0\n"
        "rcpt P 0 0 bob@example.org - -\nend 1\n";
    struct queue_file qf;
    char err[128];

    (void)state;
    assert_int_equal(parse(&qf, v1, strlen(v1), err, sizeof(err)), 0);
    assert_string_equal(qf.rcpt[0].addr, "bob@example.org");
    assert_string_equal(qf.rcpt[0].via, "");
    qf_free(&qf);
    /* a version 2 rcpt line in a version 1 file */
    expect_refused("SELOR-L 1\nid 1\nsid -\ncreated 1\nsize 0\nfrom -\nclient - - -\n"
                   "auth -\nbody 7BIT\ntoken 0\nflags 0\nattempts 0\nnext 0\n"
                   "rcpt P 0 0 b@x - - -\nend 1\n", "bad rcpt record");
}

/* The writer's exact text for a simple envelope. */
static void test_format_text(void **state)
{
    struct queue_file qf;
    struct buf out = BUF_INIT(0);
    struct qf_rcpt *r;

    (void)state;
    qf_init(&qf);
    qf.id = qf_str(&qf, "1700000000_000001_42_7");
    qf.sid = qf_str(&qf, "mx1");
    qf.created = 1700000000;
    qf.size = 1234;
    qf.from = qf_str(&qf, "alice@example.com");
    qf.client_ip = qf_str(&qf, "192.0.2.1");
    qf.client_name = qf_str(&qf, "client.example");
    qf.helo = qf_str(&qf, "helo.example");
    qf.body = qf_str(&qf, "8BITMIME");
    qf.token = 99;
    qf.flags = QF_F_QLIMIT;
    qf.attempts = 2;
    qf.next = 1700000600;
    qf_add_rcpt(&qf, "bob@example.org", "");
    r = qf_add_rcpt(&qf, "carol@example.net", "rfc822;carol@example.net");
    r->state = QF_DELIVERED;
    r->attempts = 1;
    r->answer = qf_str(&qf, "250 2.0.0 Ok");
    r->via = qf_str(&qf, "alias:pgsql");
    qf_format(&qf, &out);
    assert_string_equal(buf_cstr(&out), good);
    buf_free(&out);
    qf_free(&qf);
}

static void test_round_trip(void **state)
{
    struct queue_file a, b;
    struct buf out = BUF_INIT(0);
    char err[128];

    (void)state;
    fill(&a);
    qf_format(&a, &out);
    /* One record a line; nothing unescaped that would break a line. */
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char)out.data[i];
        assert_true(c == '\n' || (c >= 0x20 && c < 0x7f));
    }
    if (parse(&b, out.data, out.len, err, sizeof(err)) != 0)
        fail_msg("own output refused: %s\n%s", err, buf_cstr(&out));
    assert_same(&a, &b);

    /* Format again: the same bytes. */
    struct buf again = BUF_INIT(0);
    qf_format(&b, &again);
    assert_int_equal(again.len, out.len);
    assert_memory_equal(again.data, out.data, out.len);
    buf_free(&again);
    buf_free(&out);
    qf_free(&a);
    qf_free(&b);
}

/* Every byte value 1..255 in a field survives the trip. */
static void test_round_trip_all_bytes(void **state)
{
    struct queue_file a, b;
    struct buf out = BUF_INIT(0);
    char all[256], err[128];

    (void)state;
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    fill(&a);
    a.from = qf_str(&a, all);
    a.rcpt[0].answer = qf_str(&a, all);
    qf_format(&a, &out);
    assert_int_equal(parse(&b, out.data, out.len, err, sizeof(err)), 0);
    assert_same(&a, &b);
    buf_free(&out);
    qf_free(&a);
    qf_free(&b);
}

/* Every proper prefix of a valid file is refused: a torn write never
 * passes for a whole file. */
static void test_truncated(void **state)
{
    struct queue_file a;
    struct buf out = BUF_INIT(0);

    (void)state;
    fill(&a);
    qf_format(&a, &out);
    for (size_t n = 0; n < out.len; n++)
        expect_refused_n(out.data, n, NULL);
    for (size_t n = 0; n < sizeof(good) - 1; n++)
        expect_refused_n(good, n, NULL);
    buf_free(&out);
    qf_free(&a);
}

static void test_end_record(void **state)
{
    (void)state;
    expect_refused(good_with("end", NULL), "without an end record");
    expect_refused(good_with("end", "end 1"), "end says 1");
    expect_refused(good_with("end", "end 3"), "end says 3");
    expect_refused(good_with("end", "end 0"), "end says 0");
    expect_refused(good_with("end", "end -1"), "end");
    expect_refused(good_with("end", "end"), "bad end record");
    expect_refused(good_with("end", "end 2 2"), "bad end record");
    expect_refused(good_with("end", "end 2x"), "end");
    expect_refused(good_with("end", "end 02x"), "end");
    expect_refused(good_with("end", "end 99999999999999999999"), "end");
    expect_refused(good_with("end", "end 2\r"), NULL);
}

static void test_no_recipients(void **state)
{
    char text[2048];

    (void)state;
    snprintf(text, sizeof(text), "%s", good_with("rcpt", NULL));
    /* both rcpt lines are gone; make the count match */
    char *end = strstr(text, "end 2\n");
    assert_non_null(end);
    memcpy(end, "end 0\n", 6);
    expect_refused(text, "no recipients");
}

static void test_data_after_end(void **state)
{
    char text[2048];

    (void)state;
    snprintf(text, sizeof(text), "%sx", good);
    expect_refused(text, "data after the end record");
    snprintf(text, sizeof(text), "%s\n", good);
    expect_refused(text, "data after the end record");
    snprintf(text, sizeof(text), "%send 2\n", good);
    expect_refused(text, "data after the end record");
}

static void test_magic_and_version(void **state)
{
    char text[2048];

    (void)state;
    expect_refused("", NULL);
    expect_refused("\n", "not an l file");
    snprintf(text, sizeof(text), "SELOR-L 4%s", strchr(good, '\n'));
    expect_refused(text, "version 4");
    snprintf(text, sizeof(text), "SELOR-L 0%s", strchr(good, '\n'));
    expect_refused(text, "version 0");
    snprintf(text, sizeof(text), "SELOR-L 99999%s", strchr(good, '\n'));
    expect_refused(text, NULL);
    snprintf(text, sizeof(text), "SELOR-L%s", strchr(good, '\n'));
    expect_refused(text, "not an l file");
    snprintf(text, sizeof(text), "SELOR-L 2 x%s", strchr(good, '\n'));
    expect_refused(text, "not an l file");
    snprintf(text, sizeof(text), "SELOR-M 1%s", strchr(good, '\n'));
    expect_refused(text, "not an l file");
    snprintf(text, sizeof(text), "selor-l 1%s", strchr(good, '\n'));
    expect_refused(text, "not an l file");
    snprintf(text, sizeof(text), "SELOR-L one%s", strchr(good, '\n'));
    expect_refused(text, NULL);
    snprintf(text, sizeof(text), "SELOR-L 2\r%s", strchr(good, '\n'));
    expect_refused(text, NULL);
    snprintf(text, sizeof(text), "id x\n%s", good);  /* magic not first */
    expect_refused(text, "not an l file");
}

static void test_unknown_record(void **state)
{
    (void)state;
    expect_refused(good_insert("end", "color blue"), "unknown record \"color\"");
    expect_refused(good_insert("rcpt", "ID x"), "unknown record");
    expect_refused(good_insert("end", ""), "unknown record");
    expect_refused(good_insert("end", " id x"), NULL);
}

static void test_repeated_record(void **state)
{
    static const char *lines[] = {
        "id 1_2", "sid x", "created 1", "size 1", "from a@b", "client a b c",
        "auth x", "body 7BIT", "token 1", "flags 0", "attempts 0", "next 0",
        "hits 3",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_refused(good_insert("end", lines[i]), "repeated");
}

static void test_missing_record(void **state)
{
    static const char *keys[] = {
        "id", "sid", "created", "size", "from", "client", "auth", "body",
        "token", "flags", "attempts", "next", "hits",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        expect_refused(good_with(keys[i], NULL), "missing");
}

static void test_field_counts(void **state)
{
    (void)state;
    expect_refused(good_with("id", "id"), "needs 1 field");
    expect_refused(good_with("id", "id a b"), "needs 1 field");
    expect_refused(good_with("client", "client a b"), "needs 3 fields");
    expect_refused(good_with("client", "client a b c d"), "needs 3 fields");
    expect_refused(good_with("id", "id a  b"), "bad field");  /* empty field */
    expect_refused(good_with("id", "id "), "bad field");
    expect_refused(good_with("id", "id a b c d e f g h i"), "too many fields");
}

static void test_bad_escapes(void **state)
{
    (void)state;
    expect_refused(good_with("from", "from a%"), "bad field");
    expect_refused(good_with("from", "from a%4"), "bad field");
    expect_refused(good_with("from", "from a%G0"), "bad field");
    expect_refused(good_with("from", "from a%0G"), "bad field");
    expect_refused(good_with("from", "from a%2d"), "bad field");  /* upper case only */
    expect_refused(good_with("from", "from %%41"), "bad field");
    expect_refused(good_with("from", "from a%00b"), "bad field");  /* cuts the text */
    expect_refused(good_with("rcpt D", "rcpt D 1 0 c%ZZ@x - - -"), "bad field");
    /* bytes the writer always escapes are not taken raw (found by fuzzing) */
    expect_refused(good_with("from", "from a\tb"), "bad field");
    expect_refused(good_with("from", "from a\x1b[2Jb"), "bad field");
    expect_refused(good_with("from", "from caf\xc3\xa9"), "bad field");
}

static void test_escapes_decoded(void **state)
{
    struct queue_file qf;
    char err[128];
    const char *text = good_with("from", "from a%20b%25c%2D%0A");

    (void)state;
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_string_equal(qf.from, "a b%c-\n");
    qf_free(&qf);
    text = good_with("from", "from %2D");
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_string_equal(qf.from, "-");
    qf_free(&qf);
    text = good_with("from", "from --");
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_string_equal(qf.from, "--");
    qf_free(&qf);
}

static void test_bad_numbers(void **state)
{
    (void)state;
    expect_refused(good_with("created", "created x"), "bad number");
    expect_refused(good_with("created", "created 12x"), "bad number");
    expect_refused(good_with("created", "created -1"), "bad number");
    expect_refused(good_with("created", "created -"), "bad number");
    expect_refused(good_with("size", "size 99999999999999999999"), "bad number");
    expect_refused(good_with("size", "size 1099511627777"), "bad number");  /* 2^40+1 */
    expect_refused(good_with("flags", "flags 0x1"), "bad number");
    expect_refused(good_with("next", "next 1.5"), "bad number");
    expect_refused(good_with("attempts", "attempts 4294967297"), "bad number");
    expect_refused(good_with("attempts", "attempts 1000001"), "bad number");
    expect_refused(good_with("flags", "flags 4294967296"), "bad number");
    expect_refused(good_with("size", "size +1523"), "bad number");
    expect_refused(good_with("size", "size %201523"), "bad number");
}

static void test_bad_token(void **state)
{
    (void)state;
    expect_refused(good_with("token", "token abc"), "token");
    expect_refused(good_with("token", "token 12abc"), "token");
    expect_refused(good_with("token", "token -1"), "token");
    expect_refused(good_with("token", "token 18446744073709551616"), "token");
    expect_refused(good_with("token", "token +1"), "token");
    expect_refused(good_with("token", "token 1%20"), "token");
}

static void test_good_numbers(void **state)
{
    struct queue_file qf;
    char err[128];
    const char *text = good_with("token", "token 18446744073709551615");

    (void)state;
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_true(qf.token == UINT64_MAX);
    qf_free(&qf);
    text = good_with("size", "size 1099511627776");  /* 2^40 */
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(qf.size, 1LL << 40);
    qf_free(&qf);
    text = good_with("flags", "flags 4294967295");
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(qf.flags, 4294967295u);
    qf_free(&qf);
    text = good_with("attempts", "attempts 1000000");
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(qf.attempts, 1000000);
    qf_free(&qf);
}

static void test_bad_rcpt(void **state)
{
    (void)state;
    expect_refused(good_with("rcpt P", "rcpt X 0 0 a@b - - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt p 0 0 a@b - - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt PD 0 0 a@b - - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt - 0 0 a@b - - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt P 0 0 a@b - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt P 0 0 a@b - - - -"), "bad rcpt record");
    expect_refused(good_with("rcpt P", "rcpt P x 0 a@b - - -"), "bad number");
    expect_refused(good_with("rcpt P", "rcpt P -1 0 a@b - - -"), "bad number");
    expect_refused(good_with("rcpt P", "rcpt P 1000001 0 a@b - - -"), "bad number");
    expect_refused(good_with("rcpt P", "rcpt P 0 -5 a@b - - -"), "bad number");
    expect_refused(good_with("rcpt P", "rcpt P 0 0 - - - -"), "without address");
    expect_refused(good_with("rcpt P", "rcpt"), "bad rcpt record");
}

static void test_nul_byte(void **state)
{
    char text[2048];
    size_t n = strlen(good);

    (void)state;
    memcpy(text, good, n);
    text[20] = '\0';
    expect_refused_n(text, n, "NUL");
    memcpy(text, good, n);
    text[n - 1] = '\0';  /* in place of the last newline */
    expect_refused_n(text, n, NULL);
}

static void test_crlf_refused(void **state)
{
    char text[2048];
    size_t o = 0;

    (void)state;
    for (const char *p = good; *p; p++) {
        if (*p == '\n')
            text[o++] = '\r';
        text[o++] = *p;
    }
    expect_refused_n(text, o, NULL);
}

/* A tiny error buffer is never overrun. */
static void test_small_error_buffer(void **state)
{
    struct queue_file qf;
    char err[8];

    (void)state;
    for (size_t len = 1; len <= sizeof(err); len++) {
        memset(err, 'x', sizeof(err));
        assert_int_equal(parse(&qf, "junk\n", 5, err, len), -1);
        assert_int_equal(err[len - 1], '\0');
    }
}

/* A parsed file can be freed and the struct parsed into again. */
static void test_reuse(void **state)
{
    struct queue_file qf;
    char err[128];

    (void)state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(parse(&qf, good, strlen(good), err, sizeof(err)), 0);
        assert_int_equal(qf.nrcpt, 2);
        qf_free(&qf);
    }
    assert_int_equal(parse(&qf, "x", 1, err, sizeof(err)), -1);
}

/* Many recipients round-trip (growth of the recipient array). */
static void test_many_recipients(void **state)
{
    struct queue_file a, b;
    struct buf out = BUF_INIT(0);
    char addr[64], err[128];

    (void)state;
    fill(&a);
    for (int i = 0; i < 5000; i++) {
        snprintf(addr, sizeof(addr), "user%d@example.org", i);
        qf_add_rcpt(&a, addr, "")->attempts = i % 7;
    }
    qf_format(&a, &out);
    assert_int_equal(parse(&b, out.data, out.len, err, sizeof(err)), 0);
    assert_same(&a, &b);
    buf_free(&out);
    qf_free(&a);
    qf_free(&b);
}


/* Settings (Def!) and hits: values with spaces, quotes, %, "-", UTF-8 and
 * control bytes come back exactly, in the order set; a name set twice
 * keeps its first place with the last value. */
static void test_settings_round_trip(void **state)
{
    struct queue_file a, b;
    struct buf out = BUF_INIT(0), again = BUF_INIT(0);
    char err[128];

    (void)state;
    fill(&a);
    a.hits = -42;
    qf_add_setting(&a, "Dlocal", "/usr/bin/procmail -d %l 'x y' \"z\"");
    qf_add_setting(&a, "Max_attempts", "1");
    qf_add_setting(&a, "Msg_ok", "250 d\xc3\xa9j\xc3\xa0 vu \xe2\x9c\x93 -");
    qf_add_setting(&a, "Relay_host", "");
    qf_add_setting(&a, "Subject_error_msg", "-");
    qf_add_setting(&a, "Event.limit", "a\tb\nc%41");
    qf_add_setting(&a, "Max_attempts", "2");
    assert_int_equal(a.nsettings, 6);
    assert_string_equal(a.settings[1].value, "2");
    qf_format(&a, &out);
    assert_non_null(strstr(buf_cstr(&out), "\nhits -42\n"));
    assert_non_null(strstr(buf_cstr(&out), "\nset Max_attempts 2\n"));
    assert_non_null(strstr(buf_cstr(&out), "\nset Relay_host -\n"));
    assert_non_null(strstr(buf_cstr(&out), "\nset Subject_error_msg %2D\n"));
    if (parse(&b, out.data, out.len, err, sizeof(err)) != 0)
        fail_msg("own output refused: %s\n%s", err, buf_cstr(&out));
    assert_same(&a, &b);
    assert_int_equal(b.hits, -42);
    assert_int_equal(b.nsettings, a.nsettings);
    for (size_t i = 0; i < a.nsettings; i++) {
        assert_string_equal(a.settings[i].name, b.settings[i].name);
        assert_string_equal(a.settings[i].value, b.settings[i].value);
    }
    qf_format(&b, &again);
    assert_string_equal(buf_cstr(&again), buf_cstr(&out));
    buf_free(&again);
    buf_free(&out);
    qf_free(&a);
    qf_free(&b);
}

/* A score beyond what a reader accepts is clamped, never unreadable. */
static void test_hits_clamped(void **state)
{
    struct queue_file a, b;
    struct buf out = BUF_INIT(0);
    char err[128];

    (void)state;
    fill(&a);
    a.hits = QF_HITS_MAX + 5;
    qf_format(&a, &out);
    assert_int_equal(parse(&b, out.data, out.len, err, sizeof(err)), 0);
    assert_int_equal(b.hits, QF_HITS_MAX);
    qf_free(&b);
    buf_reset(&out);
    a.hits = -QF_HITS_MAX - 5;
    qf_format(&a, &out);
    assert_int_equal(parse(&b, out.data, out.len, err, sizeof(err)), 0);
    assert_int_equal(b.hits, -QF_HITS_MAX);
    qf_free(&b);
    buf_free(&out);
    qf_free(&a);
}

/* Version 2 files (before settings) are still read: no settings, hits 0;
 * a version 2 file carrying v3 records is refused. */
static void test_parse_version2(void **state)
{
    char v2[2048];
    struct queue_file qf;
    char err[128];

    (void)state;
    snprintf(v2, sizeof(v2), "SELOR-L 2%s", strchr(good_with("hits", NULL), '\n'));
    assert_int_equal(parse(&qf, v2, strlen(v2), err, sizeof(err)), 0);
    assert_int_equal(qf.hits, 0);
    assert_int_equal(qf.nsettings, 0);
    assert_null(qf.settings);
    assert_string_equal(qf.rcpt[1].via, "alias:pgsql");
    qf_free(&qf);
    snprintf(v2, sizeof(v2), "SELOR-L 2%s", strchr(good, '\n'));
    expect_refused(v2, "unknown record \"hits\"");
    snprintf(v2, sizeof(v2), "SELOR-L 2%s",
             strchr(good_with("hits", "set Max_attempts 1"), '\n'));
    expect_refused(v2, "unknown record \"set\"");
}

/* A version 3 file with a malformed setting is refused as a whole. */
static void test_bad_settings(void **state)
{
    struct queue_file qf;
    char err[128], text[2048];

    (void)state;
    snprintf(text, sizeof(text), "%s", good_insert("rcpt", "set Dlocal /bin/x%20-d"));
    assert_int_equal(parse(&qf, text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(qf.nsettings, 1);
    assert_string_equal(qf.settings[0].value, "/bin/x -d");
    qf_free(&qf);
    expect_refused(good_insert("rcpt", "set Dlocal"), "bad set record");
    expect_refused(good_insert("rcpt", "set Dlocal a b"), "bad set record");
    expect_refused(good_insert("rcpt", "set"), "bad set record");
    expect_refused(good_insert("rcpt", "set Bad%20name x"), "bad set record");
    expect_refused(good_insert("rcpt", "set Bad/name x"), "bad set record");
    expect_refused(good_insert("rcpt", "set - x"), "bad set record");   /* empty name */
    expect_refused(good_insert("rcpt", "set Dlocal a%ZZ"), "bad field");
    expect_refused(good_insert("rcpt", "set Dlocal a\tb"), "bad field");
    expect_refused(good_insert("rcpt", "set Dlocal x\nset Dlocal y"), "repeated");
    expect_refused(good_with("hits", "hits x"), "bad number");
    expect_refused(good_with("hits", "hits 1000000001"), "bad number");
    expect_refused(good_with("hits", "hits +1"), "bad number");
    expect_refused(good_with("hits", "hits 1 2"), "needs 1 field");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_add_rcpt),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_version1),
        cmocka_unit_test(test_parse_version2),
        cmocka_unit_test(test_settings_round_trip),
        cmocka_unit_test(test_hits_clamped),
        cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_format_text),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_all_bytes),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_end_record),
        cmocka_unit_test(test_no_recipients),
        cmocka_unit_test(test_data_after_end),
        cmocka_unit_test(test_magic_and_version),
        cmocka_unit_test(test_unknown_record),
        cmocka_unit_test(test_repeated_record),
        cmocka_unit_test(test_missing_record),
        cmocka_unit_test(test_field_counts),
        cmocka_unit_test(test_bad_escapes),
        cmocka_unit_test(test_escapes_decoded),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_token),
        cmocka_unit_test(test_good_numbers),
        cmocka_unit_test(test_bad_rcpt),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_crlf_refused),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_many_recipients),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
