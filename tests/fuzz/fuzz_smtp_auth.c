/*
 * fuzz_smtp_auth.c - decoding AUTH responses (src/smtp/smtp_cmd.h:
 * smtp_cmd_b64_decode, smtp_cmd_plain_split), what smtp_auth.c does with
 * every line a client sends during an AUTH exchange.
 *
 * Input: the bytes of one response line, as the client sent it (without
 * CR LF); also taken as an already decoded PLAIN message.
 *
 * Invariants:
 *  - decoding succeeds exactly when a reference check (written here, in
 *    the plainest way) says the text is padded base64; the output is then
 *    n / 4 * 3 minus the padding bytes, and encoding it again (here) and
 *    decoding that gives the same bytes back.
 *  - with a smaller output limit, decoding fails exactly when the output
 *    would not fit, and never writes past the limit (ASan sees it: the
 *    output buffer is exactly the limit).
 *  - the PLAIN split succeeds exactly when the message has two NULs and a
 *    non-empty authcid and password; its three parts lie inside the
 *    message, hold no NUL and put together with NULs give the message.
 *  - round trip: the message, base64-encoded and decoded, splits the same.
 */
#include "fuzz_util.h"
#include "smtp_cmd.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *p, size_t n, size_t *outlen)
{
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0;

    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    *outlen = o;
    return out;
}

/* Padded base64: -1 if not, else the decoded length. */
static long reference_length(const char *t, size_t n)
{
    size_t pad = 0;

    if (n % 4)
        return -1;
    if (n >= 1 && t[n - 1] == '=')
        pad++;
    if (n >= 2 && t[n - 2] == '=' && pad)
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!memchr(b64_alphabet, t[i], 64))
            return -1;
    return (long)(n / 4 * 3 - pad);
}

static void check_decode(const char *text, size_t n)
{
    long want = reference_length(text, n);
    unsigned char *out = malloc(n + 1), *again;
    size_t outlen = 99, elen, alen;
    char *enc;
    int r = smtp_cmd_b64_decode(text, n, out, n, &outlen);

    if (out == NULL)
        abort();
    CHECK((r == 0) == (want >= 0));
    if (r < 0) {
        free(out);
        return;
    }
    CHECK((long)outlen == want);
    enc = b64_encode(out, outlen, &elen);
    CHECK(elen == n);
    again = malloc(outlen + 1);
    if (again == NULL)
        abort();
    CHECK(smtp_cmd_b64_decode(enc, elen, again, outlen, &alen) == 0);
    CHECK(alen == outlen && memcmp(again, out, outlen) == 0);
    /* A tighter limit: fails exactly when the output does not fit. */
    for (size_t max = outlen > 3 ? outlen - 3 : 0; max <= outlen; max++) {
        unsigned char *tight = malloc(max ? max : 1);
        if (tight == NULL)
            abort();
        r = smtp_cmd_b64_decode(text, n, tight, max, &alen);
        CHECK((r == 0) == (max == outlen));
        free(tight);
    }
    free(again);
    free(enc);
    free(out);
}

static void check_split(const unsigned char *m, size_t n)
{
    struct smtp_plain p;
    size_t nuls = 0;
    const unsigned char *first = memchr(m, '\0', n);
    int r = smtp_cmd_plain_split(m, n, &p);

    for (size_t i = 0; i < n; i++)
        nuls += m[i] == '\0';
    if (r < 0) {
        CHECK(nuls != 2 || m[n - 1] == '\0' || first[1] == '\0');
        return;
    }
    CHECK(nuls == 2);
    CHECK(p.authcid_len > 0 && p.password_len > 0);
    CHECK(p.authzid == m);
    CHECK(p.authzid_len + 1 + p.authcid_len + 1 + p.password_len == n);
    CHECK(p.authcid == m + p.authzid_len + 1);
    CHECK(p.password == p.authcid + p.authcid_len + 1);
    CHECK(!memchr(p.authzid, '\0', p.authzid_len));
    CHECK(!memchr(p.authcid, '\0', p.authcid_len));
    CHECK(!memchr(p.password, '\0', p.password_len));
}

static void check_round_trip(const unsigned char *m, size_t n)
{
    size_t elen, dlen;
    char *enc = b64_encode(m, n, &elen);
    unsigned char *dec = malloc(n + 1);
    struct smtp_plain a, b;
    int ra, rb;

    if (dec == NULL)
        abort();
    CHECK(smtp_cmd_b64_decode(enc, elen, dec, n, &dlen) == 0);
    CHECK(dlen == n && memcmp(dec, m, n) == 0);
    ra = smtp_cmd_plain_split(m, n, &a);
    rb = smtp_cmd_plain_split(dec, dlen, &b);
    CHECK(ra == rb);
    if (ra == 0) {
        CHECK(a.authzid_len == b.authzid_len && a.authcid_len == b.authcid_len &&
              a.password_len == b.password_len);
        CHECK(memcmp(a.authcid, b.authcid, a.authcid_len) == 0);
        CHECK(memcmp(a.password, b.password, a.password_len) == 0);
    }
    free(dec);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly size bytes: ASan sees a read past the line. */
    char *line = malloc(size ? size : 1);

    if (line == NULL)
        abort();
    memcpy(line, data, size);
    check_decode(line, size);
    check_split((const unsigned char *)line, size);
    check_round_trip((const unsigned char *)line, size);
    free(line);
    return 0;
}
