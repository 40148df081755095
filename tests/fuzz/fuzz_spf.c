/*
 * fuzz_spf.c - the pure parts of SPF (src/core/spf_parse.h, spf.h): the
 * record grammar, macro expansion and the Received-SPF header field, all
 * fed what a DNS answer or an SMTP client chooses.
 *
 * Input: a flags byte (bit 0: an IPv6 client), 16 bytes of client address,
 * then NUL-separated strings: the record (or an explanation), the sender,
 * the HELO name.
 *
 * Invariants:
 *  - a record that parses is an SPF record (spf_is_record); it has at most
 *    SPF_MAX_TERMS terms, each domain-spec, redirect= and exp= lies inside
 *    the record's text and is a valid macro-string, CIDR lengths are at
 *    most 32 / 128.
 *  - every expansion of a domain-spec that succeeds is at most
 *    SPF_NAME_MAX bytes and stays within its buffer's limit; a string that
 *    spf_macro_valid refuses never expands.
 *  - the input expanded as an explanation stays within its limit.
 *  - the header field is printable ASCII, its only CR and LF are CRLF
 *    followed by a space (a fold) and the CRLF at its end, lines under 998.
 *  - spf_result_parse takes back each spf_result_name.
 */
#include <arpa/inet.h>

#include "buf.h"
#include "fuzz_util.h"
#include "spf.h"
#include "spf_parse.h"

#define EXPAND_LIMIT 8192

static void check_expand(const char *s, size_t n, const struct spf_macro_ctx *m,
                         int explain)
{
    struct buf out = BUF_INIT(EXPAND_LIMIT);
    int r = spf_macro_expand(s, n, m, explain, &out);

    if (!spf_macro_valid(s, n, explain))
        CHECK(r < 0);
    if (r == 0) {
        CHECK(out.len <= EXPAND_LIMIT);
        if (!explain)
            CHECK(out.len <= SPF_NAME_MAX);
    }
    buf_free(&out);
}

static void check_spec(const struct spf_record *r, const char *s, size_t n,
                       const struct spf_macro_ctx *m)
{
    if (s == NULL)
        return;
    CHECK(fuzz_inside(s, n, r->text, strlen(r->text)));
    CHECK(spf_macro_valid(s, n, 0));
    check_expand(s, n, m, 0);
}

static void check_record(const char *txt, const struct spf_macro_ctx *m)
{
    struct spf_record *r = malloc(sizeof(*r));

    if (r == NULL)
        abort();
    if (spf_record_parse(r, txt) == 0) {
        CHECK(spf_is_record(txt));
        CHECK(r->nterms <= SPF_MAX_TERMS);
        for (size_t i = 0; i < r->nterms; i++) {
            const struct spf_term *t = &r->terms[i];
            CHECK(t->cidr4 <= 32 || t->mech == SPF_M_IP6);
            CHECK(t->cidr6 <= 128);
            check_spec(r, t->spec, t->spec_len, m);
        }
        check_spec(r, r->redirect, r->redirect_len, m);
        check_spec(r, r->exp, r->exp_len, m);
    }
    spf_record_free(r);
    free(r);
}

static void check_header(int result, const char *ip, const char *helo, const char *sender)
{
    struct buf b = BUF_INIT(0);
    size_t col = 0;

    spf_received_header(&b, result, ip, helo, sender, "mx.example.org");
    CHECK(b.len >= 2 && b.data[b.len - 2] == '\r' && b.data[b.len - 1] == '\n');
    for (size_t i = 0; i + 2 < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c == '\r') {
            CHECK(b.data[i + 1] == '\n' && b.data[i + 2] == ' ');
            col = 0;
            i++;
            continue;
        }
        CHECK(c >= 0x20 && c < 0x7f);
        CHECK(++col < 998);
    }
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in;
    struct spf_macro_ctx m;
    char ip[64];
    unsigned flags;
    const char *txt, *sender, *helo;

    memset(&m, 0, sizeof(m));
    fuzz_in_init(&in, data, size);
    flags = fuzz_u8(&in);
    m.v6 = flags & 1;
    for (int i = 0; i < 16; i++)
        m.ip[i] = (unsigned char)fuzz_u8(&in);
    txt = fuzz_str(&in);
    sender = fuzz_str(&in);
    helo = fuzz_str(&in);
    m.sender = sender;
    m.local = sender;
    m.sender_dom = helo;
    m.domain = helo;
    m.helo = helo;
    m.receiver = "mx.example.org";
    m.now = 1700000000;
    if (inet_ntop(m.v6 ? AF_INET6 : AF_INET, m.ip, ip, sizeof(ip)) == NULL)
        abort();
    m.ip_text = ip;
    check_record(txt, &m);
    check_expand(txt, strlen(txt), &m, 1);
    check_header((int)(flags >> 1) % 8, ip, helo, sender);
    for (int r = 0; r <= SPF_PERMERROR; r++)
        CHECK(spf_result_parse(spf_result_name(r)) == r);
    fuzz_in_free(&in);
    return 0;
}
