/*
 * fuzz_smtp_proxy.c - the PROXY protocol header (src/smtp/smtp_proxy.h),
 * as a balancer's peer may send it, whole or in pieces.
 *
 * Input: the bytes received on a connection, as they are.
 * Invariants, on an exactly-sized copy (ASan sees any read past it):
 *   - ERROR has a reason; NEED_MORE asks for at least one byte and only
 *     while the input is shorter than a header may be (v1: 107 bytes,
 *     v2: 16 + 1536);
 *   - DONE: the header's length is within the input and the bounds of its
 *     version; v1 ends in CR LF, v2 starts with the signature and its
 *     length field adds up; a header with addresses gives numeric ones
 *     that net_sockaddr takes back, and ports 0..65535;
 *   - what follows a header is not looked at: the header alone, and the
 *     header followed by other bytes, give the same answer;
 *   - every prefix of the input is answered consistently with the whole:
 *     a prefix of a complete header needs more, never more bytes than the
 *     header still lacks; once a prefix is an error, so is the whole.
 */
#include "fuzz_util.h"
#include "net.h"
#include "smtp_proxy.h"

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void parse_copy(const uint8_t *data, size_t n, struct smtp_proxy_result *r)
{
    char *copy = malloc(n ? n : 1);

    if (copy == NULL)
        abort();
    if (n)
        memcpy(copy, data, n);
    smtp_proxy_parse(copy, n, r);
    free(copy);
}

static void check_addr(const char *ip, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;

    CHECK(memchr(ip, '\0', SMTP_PROXY_IP_MAX) != NULL);
    CHECK(net_sockaddr(ip, port, &ss, &len) == 0);
    CHECK(port >= 0 && port <= 65535);
}

static void check_done(const uint8_t *data, size_t n, const struct smtp_proxy_result *r)
{
    CHECK(r->len > 0 && r->len <= n);
    if (r->version == 1) {
        CHECK(r->len <= SMTP_PROXY_V1_MAX);
        CHECK(memcmp(data, "PROXY ", 6) == 0);
        CHECK(data[r->len - 2] == '\r' && data[r->len - 1] == '\n');
        CHECK(memchr(data, '\n', r->len - 1) == NULL);
    } else {
        CHECK(r->version == 2);
        CHECK(r->len >= SMTP_PROXY_V2_FIXED && r->len <= SMTP_PROXY_MAX);
        CHECK(memcmp(data, SIG, sizeof(SIG)) == 0);
        CHECK(r->len == SMTP_PROXY_V2_FIXED + ((size_t)data[14] << 8 | data[15]));
    }
    if (!r->local) {
        CHECK(r->family == AF_INET || r->family == AF_INET6);
        check_addr(r->src, r->src_port);
        check_addr(r->dst, r->dst_port);
    }
}

static int same(const struct smtp_proxy_result *a, const struct smtp_proxy_result *b)
{
    return a->status == b->status && a->len == b->len && a->local == b->local &&
           a->version == b->version && a->family == b->family &&
           strcmp(a->src, b->src) == 0 && strcmp(a->dst, b->dst) == 0 &&
           a->src_port == b->src_port && a->dst_port == b->dst_port;
}

/* Prefixes, up to a bound (a header is at most SMTP_PROXY_MAX bytes):
 * every one of the first 128 and the last 4, a sample between, so that
 * an input costs little more than its length. */
static void check_prefixes(const uint8_t *data, size_t n,
                           const struct smtp_proxy_result *whole)
{
    size_t upto = whole->status == SMTP_PROXY_DONE ? whole->len : n, step;
    struct smtp_proxy_result r;
    int failed = 0;

    if (upto > SMTP_PROXY_MAX + 1)
        upto = SMTP_PROXY_MAX + 1;
    step = upto > 256 ? upto / 64 : 1;
    for (size_t k = 0; k < upto; k++) {
        if (k >= 128 && k + 4 < upto && k % step != 0)
            continue;
        parse_copy(data, k, &r);
        if (whole->status == SMTP_PROXY_DONE) {
            CHECK(r.status == SMTP_PROXY_NEED_MORE);
            CHECK(r.need <= whole->len - k);
        }
        if (r.status == SMTP_PROXY_ERROR)
            failed = 1;
        if (failed)
            CHECK(r.status == SMTP_PROXY_ERROR);
    }
    if (failed)
        CHECK(whole->status == SMTP_PROXY_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_proxy_result r, alone;

    parse_copy(data, size, &r);
    switch (r.status) {
    case SMTP_PROXY_ERROR:
        CHECK(r.why != NULL && r.why[0] != '\0');
        break;
    case SMTP_PROXY_NEED_MORE:
        CHECK(r.need >= 1);
        CHECK(size < SMTP_PROXY_MAX);
        CHECK(size + r.need <= SMTP_PROXY_MAX);
        if (size > 0 && data[0] == 'P')
            CHECK(size + r.need <= SMTP_PROXY_V1_MAX);
        break;
    case SMTP_PROXY_DONE:
        check_done(data, size, &r);
        parse_copy(data, r.len, &alone);
        if (!same(&r, &alone)) {
            fuzz_dump("input", data, size);
            CHECK(!"a header followed by bytes reads differently alone");
        }
        break;
    default:
        CHECK(!"unknown status");
    }
    check_prefixes(data, size, &r);
    return 0;
}
