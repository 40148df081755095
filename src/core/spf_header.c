/*
 * spf_header.c - SPF results by name and the Received-SPF header field
 * (RFC 7208 9.1).
 *
 * The HELO name and the sender are the client's words: they go into the
 * header as quoted strings, cut and cleaned, so no client can end the
 * field, start another or pass the line length.  Must not: evaluate
 * anything (spf.c does).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "spf.h"

#define SPF_HDR_VALUE_MAX 320   /* bytes of one client value kept */
#define SPF_HDR_FOLD 78         /* RFC 5322 2.1.1: lines SHOULD stay under */

static const char *const spf_names[] = {
    "pass", "none", "softfail", "fail", "temperror", "neutral", "permerror",
};

#define SPF_NRESULTS (sizeof(spf_names) / sizeof(spf_names[0]))

const char *spf_result_name(int r)
{
    return r >= 0 && (size_t)r < SPF_NRESULTS ? spf_names[r] : "unknown";
}

int spf_result_parse(const char *s)
{
    if (s[0] >= '0' && s[0] < (char)('0' + SPF_NRESULTS) && s[1] == '\0')
        return s[0] - '0';
    for (size_t i = 0; i < SPF_NRESULTS; i++) {
        if (strcasecmp(s, spf_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* A client's byte in a header: printable ASCII, or '?'. */
static char spf_hdr_char(char c)
{
    return c >= 0x20 && c < 0x7f ? c : '?';
}

/* Text inside a comment: parentheses and backslashes quoted. */
static void spf_put_ctext(struct buf *b, const char *s)
{
    for (size_t i = 0; s[i] && i < SPF_HDR_VALUE_MAX; i++) {
        char c = spf_hdr_char(s[i]);
        if (c == '(' || c == ')' || c == '\\')
            buf_putc(b, '\\');
        buf_putc(b, c);
    }
}

static int spf_is_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5322 dot-atom: atoms of atext joined by single dots. */
static int spf_is_dot_atom(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > SPF_HDR_VALUE_MAX || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' ? s[i + 1] == '.' : !spf_is_atext(s[i]))
            return 0;
    }
    return 1;
}

static void spf_put_pair(struct buf *b, const char *key, const char *v)
{
    buf_printf(b, " %s=", key);
    if (spf_is_dot_atom(v)) {
        buf_puts(b, v);
    } else {
        buf_putc(b, '"');
        for (size_t i = 0; v[i] && i < SPF_HDR_VALUE_MAX; i++) {
            char c = spf_hdr_char(v[i]);
            if (c == '"' || c == '\\')
                buf_putc(b, '\\');
            buf_putc(b, c);
        }
        buf_putc(b, '"');
    }
    buf_putc(b, ';');
}

/* "(receiver: <text before> who <text after> ip <end>)" by result. */
static void spf_comment(struct buf *b, int result, const char *ip, const char *who,
                        const char *receiver)
{
    static const char *const text[][3] = {
        [SPF_PASS] = { "domain of ", " designates ", " as permitted sender" },
        [SPF_NONE] = { "domain of ", " gives no SPF record for ", "" },
        [SPF_SOFTFAIL] = { "transitioning domain of ", " does not designate ",
                           " as permitted sender" },
        [SPF_FAIL] = { "domain of ", " does not designate ", " as permitted sender" },
        [SPF_TEMPERROR] = { "temporary error checking domain of ", " for ", "" },
        [SPF_NEUTRAL] = { "domain of ", " neither permits nor denies ", "" },
        [SPF_PERMERROR] = { "permanent error in the SPF record of ", " for ", "" },
    };

    buf_puts(b, " (");
    spf_put_ctext(b, receiver);
    buf_printf(b, ": %s", text[result][0]);
    spf_put_ctext(b, who);
    buf_puts(b, text[result][1]);
    spf_put_ctext(b, ip);
    buf_printf(b, "%s)", text[result][2]);
}

/* Copies the one-line field to out with CRLF SP before words that would
 * pass SPF_HDR_FOLD (RFC 5322 folding: unfolding gives the line back). */
static void spf_fold(struct buf *out, const char *s)
{
    size_t col = 0;

    while (*s) {
        const char *sp = strchr(s + 1, ' ');
        size_t w = sp ? (size_t)(sp - s) : strlen(s);
        if (col > 0 && s[0] == ' ' && col + w > SPF_HDR_FOLD) {
            buf_puts(out, "\r\n");
            col = 0;
        }
        buf_append(out, s, w);
        col += w;
        s += w;
    }
    buf_puts(out, "\r\n");
}

void spf_received_header(struct buf *out, int result, const char *ip, const char *helo,
                         const char *sender, const char *receiver)
{
    struct buf line = BUF_INIT(0);
    char who[SPF_HDR_VALUE_MAX + 16];
    unsigned char addr[16];

    if (result < 0 || (size_t)result >= SPF_NRESULTS)
        result = SPF_PERMERROR;
    if (sender[0])
        snprintf(who, sizeof(who), "%s", sender);
    else
        snprintf(who, sizeof(who), "postmaster@%.*s", SPF_HDR_VALUE_MAX, helo);
    buf_printf(&line, "Received-SPF: %s", spf_names[result]);
    if (inet_pton(AF_INET, ip, addr) != 1 && inet_pton(AF_INET6, ip, addr) != 1)
        ip = "unknown";
    spf_comment(&line, result, ip, who, receiver);
    spf_put_pair(&line, "receiver", receiver);
    spf_put_pair(&line, "client-ip", ip);
    spf_put_pair(&line, "envelope-from", who);
    spf_put_pair(&line, "helo", helo);
    spf_put_pair(&line, "identity", "mailfrom");
    spf_fold(out, buf_cstr(&line));
    buf_free(&line);
}
