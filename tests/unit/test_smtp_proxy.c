/*
 * test_smtp_proxy.c - the PROXY protocol header (src/smtp/smtp_proxy.c)
 * and the lists of networks that may send one (net_networks_*, net.c).
 *
 * Every input is parsed from an exactly-sized heap copy, so that ASan
 * sees any read past the bytes given.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "net.h"
#include "smtp_proxy.h"

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void parse(const void *data, size_t n, struct smtp_proxy_result *r)
{
    char *copy = malloc(n ? n : 1);

    assert_non_null(copy);
    memcpy(copy, data, n);
    smtp_proxy_parse(copy, n, r);
    free(copy);
}

/* Every proper prefix of a complete header needs more, and never more
 * than the header still lacks. */
static void check_prefixes(const void *data, size_t len)
{
    struct smtp_proxy_result r;

    for (size_t k = 0; k < len; k++) {
        parse(data, k, &r);
        if (r.status != SMTP_PROXY_NEED_MORE)
            fail_msg("prefix of %zu/%zu bytes: status %d (%s)", k, len, r.status,
                     r.why ? r.why : "-");
        assert_true(r.need >= 1 && r.need <= len - k);
    }
}

static void expect_done(const void *data, size_t n, size_t len, int local,
                        const char *src, int sport, const char *dst, int dport)
{
    struct smtp_proxy_result r;

    parse(data, n, &r);
    if (r.status != SMTP_PROXY_DONE)
        fail_msg("status %d (%s)", r.status, r.why ? r.why : "-");
    assert_int_equal(r.len, len);
    assert_int_equal(r.local, local);
    if (!local) {
        assert_string_equal(r.src, src);
        assert_string_equal(r.dst, dst);
        assert_int_equal(r.src_port, sport);
        assert_int_equal(r.dst_port, dport);
    }
    check_prefixes(data, len);
}

static void expect_error(const void *data, size_t n, const char *why)
{
    struct smtp_proxy_result r;

    parse(data, n, &r);
    if (r.status != SMTP_PROXY_ERROR)
        fail_msg("status %d, want an error (%s)", r.status, why);
    assert_non_null(r.why);
    if (why && strstr(r.why, why) == NULL)
        fail_msg("why \"%s\", want \"%s\"", r.why, why);
}

static void expect_more(const void *data, size_t n)
{
    struct smtp_proxy_result r;

    parse(data, n, &r);
    if (r.status != SMTP_PROXY_NEED_MORE)
        fail_msg("status %d (%s), want more", r.status, r.why ? r.why : "-");
    assert_true(r.need >= 1);
}

#define S(text) text, sizeof(text) - 1

/* ---- version 1 ---- */

static void test_v1_tcp4(void **state)
{
    static const char h[] = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 25\r\n";

    (void)state;
    expect_done(S(h), sizeof(h) - 1, 0, "192.0.2.1", 51234, "198.51.100.2", 25);
    expect_done(S("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"), 44, 0,
                "0.0.0.0", 0, "255.255.255.255", 65535);
}

static void test_v1_tcp6(void **state)
{
    static const char h[] = "PROXY TCP6 2001:db8::1 2001:DB8::25 65535 587\r\n";
    static const char mapped[] = "PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n";

    (void)state;
    expect_done(S(h), sizeof(h) - 1, 0, "2001:db8::1", 65535, "2001:db8::25", 587);
    /* an IPv4-mapped client reads as net_ntop shows such a peer */
    expect_done(S(mapped), sizeof(mapped) - 1, 0, "192.0.2.9", 1, "::1", 2);
}

static void test_v1_unknown(void **state)
{
    (void)state;
    expect_done(S("PROXY UNKNOWN\r\n"), 15, 1, NULL, 0, NULL, 0);
    expect_done(S("PROXY UNKNOWN ffff::1 ffff::2  anything at all\r\n"), 48, 1,
                NULL, 0, NULL, 0);
    expect_error(S("PROXY UNKNOWNX\r\n"), "v1");
}

static void test_v1_followed_by_smtp(void **state)
{
    static const char h[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 25\r\nEHLO x\r\n";
    struct smtp_proxy_result r;

    (void)state;
    parse(S(h), &r);
    assert_int_equal(r.status, SMTP_PROXY_DONE);
    assert_int_equal(r.len, sizeof(h) - 1 - 8);
    assert_memory_equal(h + r.len, "EHLO x\r\n", 8);
    /* what follows may be anything, even bytes no header may hold */
    parse(S("PROXY UNKNOWN\r\n\x16\x03\x01\x00\xff"), &r);
    assert_int_equal(r.status, SMTP_PROXY_DONE);
    assert_int_equal(r.len, 15);
}

static void test_v1_bad(void **state)
{
    (void)state;
    expect_error(S("EHLO client.test\r\n"), "no PROXY header");
    expect_error(S("PROXY\r\n"), "no PROXY header");
    expect_error(S("PROXYTCP4"), "no PROXY header");
    expect_error(S("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), "no PROXY header");
    expect_error(S("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"), "unknown protocol");
    expect_error(S("PROXY UDP4"), "unknown protocol");    /* known at once */
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), "six fields");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), "six fields");
    expect_error(S("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n"), "six fields");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"), "six fields");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"), "control");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX"), "CR without LF");
    expect_error(S("PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n"), "control");
    expect_error(S("PROXY TCP4 1.2.3.\xc3\xa9 1.2.3.4 1 2\r\n"), "8-bit");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\0\r\n"), "control");
    expect_error(S("PROXY TCP4 ::1 1.2.3.4 1 2\r\n"), "bad address");
    expect_error(S("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), "bad address");
    expect_error(S("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n"), "bad address");
    expect_error(S("PROXY TCP4 host.test 1.2.3.4 1 2\r\n"), "bad address");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), "bad port");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 025 2\r\n"), "bad port");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n"), "bad port");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 123456\r\n"), "bad port");
    expect_error(S("PROXY TCP4 1.2.3.4 1.2.3.4 1 x\r\n"), "bad port");
}

/* 107 bytes, CR LF included, and not one more. */
static void test_v1_length(void **state)
{
    char h[300];
    int pad;

    (void)state;
    pad = 107 - (int)strlen("PROXY UNKNOWN \r\n");
    snprintf(h, sizeof(h), "PROXY UNKNOWN %*s\r\n", pad, "x");
    assert_int_equal(strlen(h), 107);
    expect_done(h, 107, 107, 1, NULL, 0, NULL, 0);
    snprintf(h, sizeof(h), "PROXY UNKNOWN %*s\r\n", pad + 1, "x");
    expect_error(h, strlen(h), "over 107");
    expect_error(h, 107, "over 107");        /* the CR is the 107th byte */
    memset(h, 'A', sizeof(h));
    memcpy(h, "PROXY UNKNOWN ", 14);
    expect_more(h, 105);
    expect_error(h, 106, "over 107");       /* no room left for CR LF */
    expect_error(h, 107, "over 107");
    expect_error(h, sizeof(h), "over 107");
}

static void test_v1_truncated(void **state)
{
    static const char h[] = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";

    (void)state;
    check_prefixes(h, sizeof(h) - 1);
    expect_more("", 0);
    expect_more(S("P"));
    expect_more(S("PROXY UNK"));
}

/* ---- version 2 ---- */

/* A v2 header: the signature, ver_cmd, fam, the length, then body. */
static size_t v2(unsigned char *out, int ver_cmd, int fam, const void *body, size_t n)
{
    memcpy(out, SIG, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(n >> 8);
    out[15] = (unsigned char)n;
    memcpy(out + 16, body, n);
    return 16 + n;
}

static const unsigned char ADDR4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xc8, 0x22, 0, 25};

static const unsigned char ADDR6[36] = {
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25,
    0xff, 0xff, 0x02, 0x4b};

static void test_v2_inet(void **state)
{
    unsigned char h[64];
    size_t n = v2(h, 0x21, 0x11, ADDR4, sizeof(ADDR4));

    (void)state;
    expect_done(h, n, 28, 0, "192.0.2.1", 51234, "198.51.100.2", 25);
}

static void test_v2_inet6(void **state)
{
    unsigned char h[64];
    size_t n = v2(h, 0x21, 0x21, ADDR6, sizeof(ADDR6));

    (void)state;
    expect_done(h, n, 52, 0, "2001:db8::1", 65535, "2001:db8::25", 587);
}

static void test_v2_local(void **state)
{
    unsigned char h[64];
    size_t n = v2(h, 0x20, 0x00, "", 0);

    (void)state;
    expect_done(h, n, 16, 1, NULL, 0, NULL, 0);
    /* LOCAL skips its block whatever the family says (the spec) */
    n = v2(h, 0x20, 0x11, ADDR4, sizeof(ADDR4));
    expect_done(h, n, 28, 1, NULL, 0, NULL, 0);
    n = v2(h, 0x20, 0x31, "\x01\x02\x03", 3);
    expect_done(h, n, 19, 1, NULL, 0, NULL, 0);
}

static void test_v2_tlvs(void **state)
{
    unsigned char body[64], h[128];
    size_t n;

    (void)state;
    memcpy(body, ADDR4, 12);
    /* ALPN "smtp", an empty NOOP, an SSL TLV with a sub-TLV */
    memcpy(body + 12, "\x01\x00\x04smtp" "\x04\x00\x00" "\x20\x00\x08\x01\x00\x00\x00\x00"
           "\x21\x00\x00", 7 + 3 + 11);
    n = v2(h, 0x21, 0x11, body, 12 + 21);
    expect_done(h, n, 16 + 33, 0, "192.0.2.1", 51234, "198.51.100.2", 25);
    /* a value that runs past the header's length */
    body[12 + 2] = 0x40;
    n = v2(h, 0x21, 0x11, body, 12 + 21);
    expect_error(h, n, "TLV");
    /* known as soon as the TLV's own length is there */
    expect_error(h, 16 + 12 + 3, "TLV");
    expect_more(h, 16 + 12 + 2);
    /* one or two bytes after the last TLV: no room for another */
    body[12 + 2] = 4;
    n = v2(h, 0x21, 0x11, body, 12 + 7 + 2);
    expect_error(h, n, "TLV");
    n = v2(h, 0x21, 0x11, body, 12 + 1);
    expect_error(h, n, "TLV");
}

static void test_v2_followed_by_smtp(void **state)
{
    unsigned char h[64];
    size_t n = v2(h, 0x21, 0x11, ADDR4, sizeof(ADDR4));
    struct smtp_proxy_result r;

    (void)state;
    memcpy(h + n, "EHLO x\r\n", 8);
    parse(h, n + 8, &r);
    assert_int_equal(r.status, SMTP_PROXY_DONE);
    assert_int_equal(r.len, n);
    assert_string_equal(r.src, "192.0.2.1");
}

static void test_v2_bad(void **state)
{
    static const unsigned char zeros[1600];
    unsigned char h[2048], bad[16];
    size_t n;

    (void)state;
    memcpy(bad, SIG, 12);
    bad[7] = 'X';
    expect_error(bad, 12, "signature");
    expect_error(bad, 8, "signature");
    expect_more(bad, 7);                     /* still a valid beginning */
    n = v2(h, 0x11, 0x11, ADDR4, 12);
    expect_error(h, n, "version");
    expect_error(h, 13, "version");          /* known from byte 13 on */
    n = v2(h, 0x31, 0x11, ADDR4, 12);
    expect_error(h, n, "version");
    n = v2(h, 0x22, 0x11, ADDR4, 12);
    expect_error(h, n, "command");
    n = v2(h, 0x2f, 0x11, ADDR4, 12);
    expect_error(h, 13, "command");
    n = v2(h, 0x21, 0x00, ADDR4, 12);        /* UNSPEC */
    expect_error(h, n, "not TCP");
    n = v2(h, 0x21, 0x12, ADDR4, 12);        /* UDP */
    expect_error(h, n, "not TCP");
    n = v2(h, 0x21, 0x31, ADDR4, 12);        /* UNIX */
    expect_error(h, n, "not TCP");
    expect_error(h, 14, "not TCP");
    n = v2(h, 0x21, 0x22, ADDR6, 36);        /* UDP over IPv6 */
    expect_error(h, n, "not TCP");
    n = v2(h, 0x21, 0x11, ADDR4, 11);        /* shorter than its addresses */
    expect_error(h, n, "shorter");
    n = v2(h, 0x21, 0x21, ADDR4, 12);
    expect_error(h, n, "shorter");
    n = v2(h, 0x20, 0x00, zeros, 1537);      /* over our bound */
    expect_error(h, 16, "over");
    n = v2(h, 0x20, 0x00, zeros, 1536);      /* at it */
    expect_done(h, n, 1552, 1, NULL, 0, NULL, 0);
    h[14] = 0xff;
    h[15] = 0xff;
    expect_error(h, 16, "over");
}

static void test_v2_truncated(void **state)
{
    unsigned char body[64], h[128];
    size_t n;

    (void)state;
    n = v2(h, 0x21, 0x21, ADDR6, 36);
    check_prefixes(h, n);
    memcpy(body, ADDR4, 12);
    memcpy(body + 12, "\x01\x00\x04smtp", 7);
    n = v2(h, 0x21, 0x11, body, 19);
    check_prefixes(h, n);
    /* a truncated header says exactly how much it lacks once its length is known */
    {
        struct smtp_proxy_result r;

        parse(h, 20, &r);
        assert_int_equal(r.status, SMTP_PROXY_NEED_MORE);
        assert_int_equal(r.need, n - 20);
    }
}

static void test_garbage(void **state)
{
    (void)state;
    expect_error(S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), "no PROXY header");
    expect_error(S("\0\0\0\0"), "no PROXY header");
    expect_error(S("GET / HTTP/1.0\r\n"), "no PROXY header");
    expect_more(S("\r\n"));                    /* a v2 signature may follow */
    expect_error(S("\r\nX"), "signature");
    expect_error(S("\rPROXY"), "signature");
}

/* ---- the networks of Proxy_protocol ---- */

static void test_networks_check(void **state)
{
    char why[160];

    (void)state;
    assert_int_equal(net_networks_check("", why, sizeof(why)), 0);
    assert_int_equal(net_networks_check("  , ,", why, sizeof(why)), 0);
    assert_int_equal(net_networks_check("10.0.0.0/8 192.0.2.7,2001:db8::/32 , ::1",
                                        why, sizeof(why)), 0);
    assert_int_equal(net_networks_check("0.0.0.0/0 ::/0 1.2.3.4/32 ::1/128", why,
                                        sizeof(why)), 0);
    assert_int_equal(net_networks_check("10.0.0.0/8 mx.example.com", why, sizeof(why)), -1);
    assert_string_equal(why, "bad network \"mx.example.com\"");
    assert_int_equal(net_networks_check("10.0.0.0/33", why, sizeof(why)), -1);
    assert_string_equal(why, "bad prefix length in \"10.0.0.0/33\"");
    assert_int_equal(net_networks_check("::/129", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("10.0.0.0/", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("10.0.0.0/-1", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("10.0.0.0/8x", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("10.0.0.1/8", why, sizeof(why)), -1);
    assert_string_equal(why, "\"10.0.0.1/8\" has bits set past its prefix");
    assert_int_equal(net_networks_check("2001:db8::1/32", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("10.0.0/8", why, sizeof(why)), -1);
    assert_int_equal(net_networks_check("fe80::1%eth0", why, sizeof(why)), -1);
    {
        char longer[200];

        memset(longer, '1', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        assert_int_equal(net_networks_check(longer, why, sizeof(why)), -1);
    }
}

static void test_networks_match(void **state)
{
    const char *list = "10.0.0.0/8, 192.0.2.7 198.51.100.128/25 2001:db8:8000::/33";

    (void)state;
    assert_true(net_networks_match(list, "10.1.2.3"));
    assert_true(net_networks_match(list, "192.0.2.7"));
    assert_false(net_networks_match(list, "192.0.2.8"));
    assert_true(net_networks_match(list, "198.51.100.128"));
    assert_true(net_networks_match(list, "198.51.100.255"));
    assert_false(net_networks_match(list, "198.51.100.127"));
    assert_false(net_networks_match(list, "11.0.0.1"));
    assert_true(net_networks_match(list, "2001:db8:8000::1"));
    assert_true(net_networks_match(list, "2001:db8:ffff::1"));
    assert_false(net_networks_match(list, "2001:db8:7fff::1"));
    assert_false(net_networks_match(list, "::ffff:10.0.0.1"));
    assert_false(net_networks_match(list, "?"));
    assert_false(net_networks_match("", "10.0.0.1"));
    assert_true(net_networks_match("0.0.0.0/0", "203.0.113.9"));
    assert_false(net_networks_match("0.0.0.0/0", "::1"));
    assert_true(net_networks_match("::/0", "::1"));
    assert_true(net_networks_match("127.0.0.0/8", "127.0.0.1"));
    assert_true(net_networks_match("bogus 127.0.0.1", "127.0.0.1"));
}

/* selor.conf: a bad network stops the load, with FILE:LINE; no Def!. */
static void test_config_check(void **state)
{
    char path[] = "/tmp/selor-proxy-conf-XXXXXX", want[200];
    static const char *const bad[] = {
        "Port 25\nProxy_protocol \"10.0.0.0/8 mx.example.com\"\n",
        "Port 25\nProxy_protocol \"10.0.0.1/8\"\n",
        "Port 25\nProxy_protocol \"::/200\"\n",
    };
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    struct config *c;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    {
        static const char good[] = "Proxy_protocol \"10.0.0.0/8, 192.0.2.7 ::1\"\n";

        assert_int_equal(write(fd, good, sizeof(good) - 1), (ssize_t)sizeof(good) - 1);
    }
    close(fd);
    c = config_load(path, &err, &warn);
    if (c == NULL)
        fail_msg("refused: %s", buf_cstr(&err));
    assert_string_equal(c->Proxy_protocol, "10.0.0.0/8, 192.0.2.7 ::1");
    {
        struct buf v = BUF_INIT(0), e = BUF_INIT(0);
        int idx;

        /* who may claim another address is the node's, not a rule's */
        assert_int_equal(config_def_parse("Proxy_protocol '0.0.0.0/0'", &idx, &v, &e), -1);
        buf_free(&v);
        buf_free(&e);
    }
    config_free(c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        buf_reset(&err);
        assert_null(config_load(path, &err, &warn));
        snprintf(want, sizeof(want), "%s:2: Proxy_protocol: ", path);
        if (strstr(buf_cstr(&err), want) == NULL)
            fail_msg("error \"%s\", want \"%s...\"", buf_cstr(&err), want);
    }
    unlink(path);
    buf_free(&err);
    buf_free(&warn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_followed_by_smtp),
        cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v1_length),
        cmocka_unit_test(test_v1_truncated),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_followed_by_smtp),
        cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_v2_truncated),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_networks_check),
        cmocka_unit_test(test_networks_match),
        cmocka_unit_test(test_config_check),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
