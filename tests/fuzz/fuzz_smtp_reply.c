/*
 * fuzz_smtp_reply.c - SMTP replies (src/smtp/smtp_reply.h), both sides.
 *
 * Input: two control bytes, then text.
 *   [0] max, the longest reply line: 1 + n*4 bytes
 *   [1] the reply buffer's limit: 1 + n*16 bytes
 * Client side: the text is cut into lines at LF (a CR before it dropped),
 * as smtp_client.c does, and each goes to smtp_reply_parse_line; after a
 * complete or a refused reply the reader is reset.
 * Invariants: the result matches a model of the syntax: -2 exactly when
 * the line is over max, or it is well-formed and its text (with the '\n'
 * between lines) would pass the limit; -1 for a malformed line or a code
 * that changes; 1 on "DDD" or "DDD text", 0 on "DDD-text".  The code is
 * 200..599 and the same on every line of a reply; the text is exactly the
 * lines' texts joined by '\n', never over the limit; lines counts them.
 * Server side: a Msg_* text made of a code and the text (control
 * characters but TAB removed, as config.c allows no other), with a prefix
 * and suffix, through smtp_reply_msg, with and without enhanced codes.
 * Invariants: exactly one line "DDD ..." ending in CR LF, no other CR or
 * LF, no space before the CR LF, the enhanced code added only when asked
 * and the text has none, smtp_reply_code gives DDD back.
 */
#include <ctype.h>

#include "fuzz_util.h"
#include "buf.h"
#include "smtp_reply.h"

static void client_side(const char *text, size_t n, size_t max, size_t limit)
{
    struct smtp_reply_in r;
    struct buf model = BUF_INIT(0);
    int code = 0, lines = 0;

    memset(&r, 0, sizeof(r));
    buf_init(&r.text, limit);
    for (size_t i = 0; i < n;) {
        const char *p = text + i, *nl = memchr(p, '\n', n - i);
        size_t len, grow;
        int want, got, well;

        if (nl == NULL)
            break;  /* a partial line waits for more */
        len = (size_t)(nl - p);
        i += len + 1;
        if (len && p[len - 1] == '\r')
            len--;
        well = len >= 3 && p[0] >= '2' && p[0] <= '5' && isdigit((unsigned char)p[1]) &&
               isdigit((unsigned char)p[2]) && (len == 3 || p[3] == ' ' || p[3] == '-');
        if (well && lines > 0 && (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0') != code)
            well = 0;
        grow = (lines > 0) + (len > 4 ? len - 4 : 0);
        if (len > max)
            want = -2;
        else if (!well)
            want = -1;
        else if (model.len + grow > limit)
            want = -2;
        else
            want = len == 3 || p[3] == ' ';
        got = smtp_reply_parse_line(&r, p, len, max);
        if (got != want) {
            fuzz_dump("line", p, len);
            fprintf(stderr, "max %zu limit %zu text %zu: got %d, want %d\n", max,
                    limit, model.len, got, want);
            CHECK(!"smtp_reply_parse_line disagrees with the model");
        }
        CHECK(r.text.len <= limit);
        if (want < 0) {
            smtp_reply_in_reset(&r);
            buf_reset(&model);
            lines = 0;
            CHECK(r.lines == 0 && r.text.len == 0);
            continue;
        }
        if (lines++ > 0)
            buf_putc(&model, '\n');
        else
            code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (len > 4)
            buf_append(&model, p + 4, len - 4);
        CHECK(r.code == code && r.code >= 200 && r.code <= 599);
        CHECK(r.lines == lines);
        CHECK(r.text.len == model.len &&
              (model.len == 0 || memcmp(r.text.data, model.data, model.len) == 0));
        if (want == 1) {
            smtp_reply_in_reset(&r);
            buf_reset(&model);
            lines = 0;
        }
    }
    buf_free(&r.text);
    buf_free(&model);
}

static int has_enhanced(const char *t)
{
    size_t a, b;

    if ((t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
        return 0;
    a = strspn(t + 2, "0123456789");
    if (a < 1 || a > 3 || t[2 + a] != '.')
        return 0;
    b = strspn(t + 3 + a, "0123456789");
    return b >= 1 && b <= 3 && (t[3 + a + b] == ' ' || t[3 + a + b] == '\0');
}

/* A copy of s keeping only what a selor.conf text may hold. */
static char *conf_text(const char *s)
{
    char *d = malloc(strlen(s) + 1), *w = d;

    if (d == NULL)
        abort();
    for (; *s; s++)
        if ((unsigned char)*s >= 0x20 || *s == '\t')
            *w++ = *s;
    *w = '\0';
    return d;
}

static void server_side(struct fuzz_in *f)
{
    static const char *const details[] = {NULL, "0.0", "1.1", "7.1", "3.4"};
    unsigned ctl = fuzz_u8(f);
    char code[4] = {(char)('2' + ctl % 4), (char)('0' + ctl / 4 % 10), (char)('0' + ctl / 40 % 6), 0};
    char *text = conf_text(fuzz_str(f)), *prefix = conf_text(fuzz_str(f));
    char *suffix = conf_text(fuzz_str(f)), *msg = malloc(strlen(text) + 5);
    const char *detail = details[fuzz_u8(f) % 5], *t;

    if (msg == NULL)
        abort();
    sprintf(msg, "%s%s%s", code, text[0] ? " " : "", text);
    CHECK(smtp_reply_code(msg) == atoi(code));
    for (int enhanced = 0; enhanced <= 1; enhanced++) {
        struct buf out = BUF_INIT(0);
        const char *body;

        smtp_reply_msg(&out, msg, detail, enhanced, prefix, suffix);
        buf_cstr(&out);
        CHECK(out.len >= 5 && memcmp(out.data, code, 3) == 0);
        CHECK(out.data[out.len - 2] == '\r' && out.data[out.len - 1] == '\n');
        CHECK(out.len == 5 || out.data[3] == ' ');
        CHECK(out.len == 5 || out.data[out.len - 3] != ' ');
        for (size_t i = 0; i + 2 < out.len; i++)
            CHECK(out.data[i] != '\r' && out.data[i] != '\n');
        body = out.data + 4;
        for (t = text; *t == ' '; t++)
            ;
        if (enhanced && detail && !has_enhanced(t)) {
            CHECK(body[0] == code[0] && body[1] == '.');
            CHECK(strncmp(body + 2, detail, strlen(detail)) == 0);
        } else if (out.len > 5 && !prefix[0] && t[0] && t[0] != ' ') {
            CHECK(body[0] == t[0]);  /* the text comes first */
        }
        buf_free(&out);
    }
    free(text);
    free(prefix);
    free(suffix);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in f;
    char *copy;

    if (size < 2)
        return 0;
    copy = malloc(size - 2 ? size - 2 : 1);  /* exactly the text, for ASan */
    if (copy == NULL)
        abort();
    memcpy(copy, data + 2, size - 2);
    client_side(copy, size - 2, 1 + (size_t)data[0] * 4, 1 + (size_t)data[1] * 16);
    free(copy);
    fuzz_in_init(&f, data + 2, size - 2);
    server_side(&f);
    fuzz_in_free(&f);
    return 0;
}
