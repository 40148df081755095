/*
 * fuzz_bounce.c - delivery reports (src/queue/bounce.h).
 *
 * Input (struct fuzz_in: bytes, numbers, NUL-separated strings):
 *   ctl byte: bit 0 a template from the input (else the built-in text),
 *   bit 1 no original header, bit 2 headers cut by bounce_header_len;
 *   the number of recipients (0..5), arrival and now (4 bytes each);
 *   strings: Server_name, Report_from, Subject, Postmaster, sender, queue
 *   ID, boundary, template; per recipient: addr, orcpt, answer, remote
 *   MTA, status; the rest (any bytes, NULs too): the original message.
 *
 * Invariants (bounce.h, RFC 2045/2046/3464/5322):
 *  - the report is ASCII with LF line ends: no CR, no NUL, nothing 8-bit;
 *    every line at most 998 bytes; QP bodies' lines at most 76;
 *  - the header is fields and folded lines of printable ASCII, with From,
 *    To, Subject, Date, Message-ID, MIME-Version, Auto-Submitted and a
 *    multipart/report; report-type=delivery-status Content-Type whose
 *    boundary B is 1..70 bchars;
 *  - the body holds "--B" as a whole line 2 times (3 with the header part),
 *    each followed by its part's header, ends with the line "--B--", and
 *    no other line contains "--B";
 *  - the status part has per recipient one Final-Recipient, one "Action:
 *    failed" and one Status of the form c.d{1,3}.d{1,3} with c 4 or 5;
 *  - bounce_status_code: "c.d{1,3}.d{1,3}" of at most 15 bytes, c 5 when
 *    permanent else 4; bounce_header_len <= len, at a line start, and not
 *    past the first empty line.
 */
#include <ctype.h>

#include "fuzz_util.h"
#include "bounce.h"
#include "buf.h"

static int is_code(const char *s, size_t n)
{
    size_t a, b;

    if (n < 5 || n > 15 || (s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    for (a = 0; 2 + a < n && isdigit((unsigned char)s[2 + a]); a++)
        ;
    if (a < 1 || a > 3 || 2 + a >= n || s[2 + a] != '.')
        return 0;
    for (b = 0; 3 + a + b < n && isdigit((unsigned char)s[3 + a + b]); b++)
        ;
    return b >= 1 && b <= 3 && 3 + a + b == n;
}

static void check_header_len(const char *c, size_t n)
{
    size_t r = bounce_header_len(c, n), empty = n;

    CHECK(r <= n);
    CHECK(r == n || r == 0 || c[r - 1] == '\n');
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || c[i - 1] == '\n') &&
            (c[i] == '\n' || (c[i] == '\r' && i + 1 < n && c[i + 1] == '\n'))) {
            empty = i;
            break;
        }
    CHECK(r <= empty);
}

/* The value of header field name (unfolded), or NULL. */
static char *header_field(const char *h, size_t n, const char *name)
{
    size_t nl = strlen(name);

    for (size_t i = 0; i < n;) {
        const char *e = memchr(h + i, '\n', n - i);
        size_t len = e ? (size_t)(e - h - i) : n - i;
        if (len > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':') {
            struct buf v = BUF_INIT(0);
            size_t j = i + nl + 1;
            for (; j < n && !(h[j] == '\n' && (j + 1 >= n || (h[j + 1] != ' ' && h[j + 1] != '\t'))); j++)
                if (h[j] != '\n')
                    buf_putc(&v, h[j]);
            buf_cstr(&v);
            return v.data;
        }
        i += len + 1;
    }
    return NULL;
}

static void check_report(const char *m, size_t n, size_t nrcpt, int with_headers)
{
    const char *body, *p;
    char *ct, *b, *q, delim[80], close_[84];
    size_t hlen, dl, lines = 0, delims = 0, part = 0;
    size_t actions = 0, statuses = 0, finals = 0;
    int qp = 0, in_mime = 0;

    CHECK(n > 0 && m[n - 1] == '\n');
    for (size_t i = 0, col = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        CHECK(c != '\r' && c != '\0' && c < 0x80);
        col = c == '\n' ? 0 : col + 1;
        CHECK(col <= 998);
    }
    body = strstr(m, "\n\n");
    CHECK(body != NULL);
    hlen = (size_t)(body - m) + 1;
    body += 2;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)m[i];
        CHECK(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f));
        if (i == 0 || m[i - 1] == '\n')
            CHECK(c == ' ' || c == '\t' || (c > 0x20 && c < 0x7f && c != ':'));
    }
    static const char *const need[] = {"From", "To", "Subject", "Date", "Message-ID",
                                       "MIME-Version", "Auto-Submitted"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        char *v = header_field(m, hlen, need[i]);
        CHECK(v != NULL);
        free(v);
    }
    ct = header_field(m, hlen, "Content-Type");
    CHECK(ct && strstr(ct, "multipart/report; report-type=delivery-status; boundary=\""));
    b = strstr(ct, "boundary=\"") + 10;
    CHECK((q = strchr(b, '"')) != NULL && q > b && q - b <= 70);
    for (p = b; p < q; p++)
        CHECK(isalnum((unsigned char)*p) || strchr("'()+_,-./:=?", *p));
    dl = (size_t)snprintf(delim, sizeof(delim), "--%.*s", (int)(q - b), b);
    snprintf(close_, sizeof(close_), "%s--", delim);
    free(ct);

    for (p = body; p < m + n; lines++) {
        const char *e = memchr(p, '\n', (size_t)(m + n - p));
        size_t len = (size_t)(e - p);
        if (memmem(p, len, delim, dl)) {
            if (len == dl) {
                delims++;
                part++;
                qp = 0;
                in_mime = 1;
                CHECK(strncmp(e + 1, "Content-Description: ", 21) == 0);
            } else {
                CHECK(len == dl + 2 && memcmp(p, close_, len) == 0);
                CHECK(e + 1 == m + n);  /* the last line */
            }
        } else if (part == 2) {
            actions += len == 14 && memcmp(p, "Action: failed", 14) == 0;
            finals += strncmp(p, "Final-Recipient: rfc822;", 24) == 0;
            if (strncmp(p, "Status: ", 8) == 0) {
                CHECK(is_code(p + 8, len - 8));
                statuses++;
            }
        } else if (in_mime) {
            qp |= len == 43 && memcmp(p, "Content-Transfer-Encoding: quoted-printable", 43) == 0;
            in_mime = len > 0;
        } else if (qp) {
            CHECK(len <= 76);
        }
        p = e + 1;
    }
    CHECK(delims == 2 + (size_t)with_headers);
    CHECK(n >= dl + 4 && memcmp(m + n - dl - 3, close_, dl + 2) == 0);
    CHECK(actions == nrcpt && statuses == nrcpt && finals == nrcpt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in f;
    struct bounce_info bi;
    struct bounce_rcpt rc[5];
    struct buf out = BUF_INIT(0);
    unsigned ctl;
    const char *tpl, *rest;
    char *orig;
    size_t nrest;

    fuzz_in_init(&f, data, size);
    ctl = fuzz_u8(&f);
    memset(&bi, 0, sizeof(bi));
    bi.nrcpt = fuzz_u8(&f) % 6;
    bi.arrival = (long)fuzz_uint(&f, 4);
    bi.now = (long)fuzz_uint(&f, 4);
    bi.server_name = fuzz_str(&f);
    bi.report_from = fuzz_str(&f);
    bi.subject = fuzz_str(&f);
    bi.postmaster = fuzz_str(&f);
    bi.sender = fuzz_str(&f);
    bi.queue_id = fuzz_str(&f);
    bi.boundary = fuzz_str(&f);
    tpl = fuzz_str(&f);
    bi.template_text = ctl & 1 ? tpl : NULL;
    for (size_t i = 0; i < bi.nrcpt; i++) {
        rc[i].addr = fuzz_str(&f);
        rc[i].orcpt = fuzz_str(&f);
        rc[i].answer = fuzz_str(&f);
        rc[i].remote_mta = fuzz_str(&f);
        rc[i].status = fuzz_str(&f);
    }
    bi.rcpts = rc;
    rest = fuzz_rest(&f, &nrest);
    orig = malloc(nrest ? nrest : 1);  /* exactly the bytes, for ASan */
    if (orig == NULL)
        abort();
    memcpy(orig, rest, nrest);
    check_header_len(orig, nrest);
    if (!(ctl & 2)) {
        bi.headers = orig;
        bi.headers_len = ctl & 4 ? bounce_header_len(orig, nrest) : nrest;
    }

    bounce_format(&bi, &out);
    check_report(buf_cstr(&out), out.len, bi.nrcpt, bi.headers && bi.headers_len > 0);

    for (size_t i = 0; i < bi.nrcpt; i++)
        for (int perm = 0; perm <= 1; perm++) {
            char code[16];
            memset(code, 0x55, sizeof(code));
            bounce_status_code(rc[i].answer, perm, code, sizeof(code));
            CHECK(memchr(code, '\0', sizeof(code)) != NULL);
            CHECK(is_code(code, strlen(code)) && code[0] == (perm ? '5' : '4'));
        }
    buf_free(&out);
    free(orig);
    fuzz_in_free(&f);
    return 0;
}
