/*
 * bounce.c - delivery status notifications (see bounce.h, docs/bounces.md).
 *
 * Owns: the bytes of a report: the header, the three MIME parts (human
 * text from the Report_file template, message/delivery-status per RFC 3464,
 * text/rfc822-headers per RFC 6522) and the rules that keep them valid:
 * every line under 1000 bytes, the header in printable ASCII, the boundary
 * absent from every part.  Much of what goes in comes from outside (the
 * sender's address, answers of remote servers, the original header
 * section), so nothing of it is copied into a header field or the status
 * part without being flattened to one line of ASCII first: a remote server
 * must not be able to add a header line (or a MIME part) to our report.
 * Must not: queue or send the report, decide whom it goes to, or read the
 * Report_file (the caller passes its text).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bounce.h"
#include "buf.h"
#include "log.h"

#define BOUNCE_LINE_MAX 998        /* RFC 5322 2.1.1, without the CR LF */
#define BOUNCE_FOLD_AT 78          /* header lines are folded past this (2.1.1 SHOULD) */
#define BOUNCE_VALUE_MAX 900       /* bytes kept of one untrusted value (answers...) */
#define BOUNCE_HEADERS_MAX (64 * 1024)  /* original header bytes attached */
#define BOUNCE_QP_LINE 76          /* RFC 2045 6.7: encoded line length */
#define BOUNCE_EW_CHUNK 45         /* bytes an encoded-word: 60 base64, 72 in all */
#define BOUNCE_BOUNDARY_MAX 60     /* RFC 2046 allows 70; room for our suffix */

static const char bounce_default_subject[] = "[Mail delivery error]";

/* The built-in report text; conf/error_report.txt ships the same words. */
static const char bounce_builtin_text[] =
    "This is the mail delivery system at %h.\n"
    "\n"
    "I am sorry to have to tell you that your message could not be\n"
    "delivered to some or all of its recipients. Delivery to the\n"
    "recipients below has been given up for good: the message will not\n"
    "be tried again for them, so please do not wait for it to arrive.\n"
    "\n"
    "  Sender:    <%s>\n"
    "  Received:  %t\n"
    "  Queue ID:  %d\n"
    "\n"
    "The %n failed recipient(s), each with the reason given by the server\n"
    "that refused the message (or by this system):\n"
    "\n"
    "  %r\n"
    "\n"
    "Please check the addresses for typing mistakes. If the reason is not\n"
    "clear, or you believe this report is wrong, write to the postmaster\n"
    "of this server, <%p>, and include this report:\n"
    "the queue ID above lets them find your message in the logs.\n"
    "\n"
    "The header of your original message is attached below.\n";

static const char *bounce_str(const char *s)
{
    return s ? s : "";
}

/* ---- making outside text safe ---- */

/*
 * Appends s as one line: line breaks and every other control character
 * become a space (runs collapse into one, ends are trimmed), so "CR LF
 * Bcc: x" cannot start a line of its own.  Non-ASCII characters become one
 * '?' each unless keep8.  At most max bytes: a longer text is cut and ends
 * in "...".
 */
static void bounce_flat(struct buf *out, const char *s, size_t max, int keep8)
{
    const unsigned char *p = (const unsigned char *)bounce_str(s);
    size_t start = out->len;
    int space = 1, prev8 = 0;

    for (; *p; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            if (!space)
                buf_putc(out, ' ');
            space = 1;
            prev8 = 0;
            continue;
        }
        space = 0;
        if (*p >= 0x80 && !keep8) {
            /* One '?' a character: the continuation bytes of a UTF-8
             * sequence add nothing. */
            if (!prev8 || (*p & 0xc0) != 0x80)
                buf_putc(out, '?');
            prev8 = 1;
            continue;
        }
        prev8 = 0;
        buf_putc(out, (char)*p);
        if (out->len - start > max)
            break;  /* to be cut below: no need to copy the rest */
    }
    while (out->len > start && out->data[out->len - 1] == ' ')
        out->len--;
    if (max >= 3 && out->len - start > max) {
        out->len = start + max - 3;
        /* Not inside a UTF-8 character (keep8). */
        while (out->len > start && ((unsigned char)out->data[out->len] & 0xc0) == 0x80)
            out->len--;
        while (out->len > start && out->data[out->len - 1] == ' ')
            out->len--;
        buf_puts(out, "...");
    }
}

static int bounce_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): only then may 8-bit text be labelled utf-8. */
static int bounce_is_utf8(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i], need;
        unsigned long cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, cp = c & 0x07;
        else
            return 0;
        if (n - i <= need)
            return 0;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Characters of a dot-atom (RFC 5322 3.2.3) and of a domain literal: what an
 * address we write in angle brackets may hold. */
static int bounce_addr_char(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~.@[]", c));
}

/* Appends the n bytes at s that bounce_addr_char allows. */
static void bounce_addr_chars(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (bounce_addr_char((unsigned char)s[i]))
            buf_putc(out, s[i]);
}

/*
 * Appends s reduced to letters, digits, '-' and '_' (and single inner dots
 * when dots): for the parts of our Message-ID and the default boundary.
 */
static void bounce_atom(struct buf *out, const char *s, int dots)
{
    size_t start = out->len;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (isalnum(c) || c == '-' || c == '_')
            buf_putc(out, (char)c);
        else if (c == '.' && dots && out->len > start &&
                 out->data[out->len - 1] != '.')
            buf_putc(out, '.');
    }
    while (out->len > start && out->data[out->len - 1] == '.')
        out->len--;
}

/* ---- header fields ---- */

/*
 * Appends "Name: value" and its line end.  value is one line of printable
 * ASCII (see bounce_flat).  The field is folded before a space once a line
 * would pass 78 bytes (RFC 5322 2.2.3); a single word that would pass 998
 * is broken, which adds a space where it is unfolded: the only way to keep
 * the line limit, and acceptable for the diagnostic texts where it happens.
 */
static void bounce_field(struct buf *out, const char *name, const char *value, size_t n)
{
    size_t col = strlen(name) + 2, i = 0;

    buf_printf(out, "%s: ", name);
    while (i < n) {
        size_t j = i + (value[i] == ' ');

        while (j < n && value[j] != ' ')
            j++;
        if (i > 0 && col + (j - i) > BOUNCE_FOLD_AT) {
            buf_putc(out, '\n');
            col = 0;
        }
        while (col + (j - i) > BOUNCE_LINE_MAX) {
            size_t room = BOUNCE_LINE_MAX - col;

            buf_append(out, value + i, room);
            buf_puts(out, "\n ");
            i += room;
            col = 1;
        }
        buf_append(out, value + i, j - i);
        col += j - i;
        i = j;
    }
    buf_putc(out, '\n');
}

/* A field whose value is prefix then s made safe (bounce_flat, ASCII). */
static void bounce_field_flat(struct buf *out, const char *name, const char *prefix,
                              const char *s)
{
    struct buf v = BUF_INIT(0);

    buf_puts(&v, prefix);
    bounce_flat(&v, s, BOUNCE_VALUE_MAX, 0);
    bounce_field(out, name, buf_cstr(&v), v.len);
    buf_free(&v);
}

static void bounce_base64(struct buf *out, const unsigned char *s, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (size_t i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)s[i] << 16;
        size_t left = n - i;

        if (left > 1)
            v |= (unsigned long)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        buf_putc(out, b64[v >> 18 & 63]);
        buf_putc(out, b64[v >> 12 & 63]);
        buf_putc(out, left > 1 ? b64[v >> 6 & 63] : '=');
        buf_putc(out, left > 2 ? b64[v & 63] : '=');
    }
}

/*
 * UTF-8 text as RFC 2047 encoded-words separated by spaces (which a reader
 * drops between encoded-words, so the text comes back unchanged).  Chunks
 * end on character boundaries, as 2047 section 5 requires.
 */
static void bounce_encoded_words(struct buf *out, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k = n - i > BOUNCE_EW_CHUNK ? BOUNCE_EW_CHUNK : n - i;

        while (k > 1 && i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80)
            k--;
        if (i > 0)
            buf_putc(out, ' ');
        buf_puts(out, "=?utf-8?B?");
        bounce_base64(out, (const unsigned char *)s + i, k);
        buf_puts(out, "?=");
        i += k;
    }
}

/*
 * s (configured text such as Subject_error_msg, perhaps in UTF-8) made
 * safe for a header: ASCII as it is, UTF-8 as encoded-words, anything else
 * with its 8-bit characters replaced.  Returns 1 when encoded.
 */
static int bounce_header_text(struct buf *out, const char *s)
{
    struct buf v = BUF_INIT(0);
    int encoded = 0;

    bounce_flat(&v, s, BOUNCE_VALUE_MAX, 1);
    if (bounce_is_ascii(buf_cstr(&v), v.len)) {
        buf_append(out, v.data, v.len);
    } else if (bounce_is_utf8(v.data, v.len)) {
        bounce_encoded_words(out, v.data, v.len);
        encoded = 1;
    } else {
        bounce_flat(out, s, BOUNCE_VALUE_MAX, 0);
    }
    buf_free(&v);
    return encoded;
}

/* A display name (RFC 5322 3.2.5 phrase): atoms as they are, a quoted
 * string when the name holds specials, encoded-words when not ASCII. */
static void bounce_phrase(struct buf *out, const char *name)
{
    struct buf v = BUF_INIT(0);
    const char *p;

    if (bounce_header_text(&v, name)) {
        buf_append(out, v.data, v.len);
        buf_free(&v);
        return;
    }
    for (p = buf_cstr(&v); *p; p++)
        if (*p != ' ' && !isalnum((unsigned char)*p) &&
            !strchr("!#$%&'*+-/=?^_`{|}~", *p))
            break;
    if (*p == '\0') {
        buf_append(out, v.data, v.len);
    } else {
        buf_putc(out, '"');
        for (p = v.data; *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_putc(out, '\\');
            buf_putc(out, *p);
        }
        buf_putc(out, '"');
    }
    buf_free(&v);
}

/* The domain our own names fall back to: Server_name, or "localhost". */
static void bounce_host(struct buf *out, const struct bounce_info *bi)
{
    size_t start = out->len;

    bounce_atom(out, bounce_str(bi->server_name), 1);
    if (out->len == start)
        buf_puts(out, "localhost");
}

/* Whether s (n bytes) is a dot-atom (RFC 5322 3.2.3). */
static int bounce_is_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '.' ? s[i + 1] == '.'
                     : !(isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c)))
            return 0;
    }
    return 1;
}

/*
 * An address (the sender's, or Report_from's) as a well-formed addr-spec: the
 * local part as a dot-atom, or else as a quoted string (how the client
 * must have written it); the domain reduced to the characters a domain or
 * a domain literal may hold.  Whatever the text, it stays inside one
 * "<...>" of the header.
 */
static void bounce_addr_spec(struct buf *out, const char *addr)
{
    struct buf v = BUF_INIT(0), local = BUF_INIT(0);
    const char *s, *at;
    size_t n;

    bounce_flat(&v, addr, BOUNCE_VALUE_MAX, 0);
    s = buf_cstr(&v);
    at = strrchr(s, '@');
    n = at ? (size_t)(at - s) : v.len;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        for (size_t i = 1; i < n - 1; i++) {
            if (s[i] == '\\' && i + 1 < n - 1)
                i++;
            buf_putc(&local, s[i]);
        }
    } else {
        buf_append(&local, s, n);
    }
    if (bounce_is_dot_atom(buf_cstr(&local), local.len)) {
        buf_append(out, local.data, local.len);
    } else {
        buf_putc(out, '"');
        for (size_t i = 0; i < local.len; i++) {
            if (local.data[i] == '"' || local.data[i] == '\\')
                buf_putc(out, '\\');
            buf_putc(out, local.data[i]);
        }
        buf_putc(out, '"');
    }
    if (at) {
        buf_putc(out, '@');
        for (s = at + 1; *s; s++)
            if (*s != '@' && bounce_addr_char((unsigned char)*s))
                buf_putc(out, *s);
    }
    buf_free(&v);
    buf_free(&local);
}

/*
 * Splits Report_from into a display name and an address.  It may be
 * "Name <addr>", "<addr>", "<addr" (the reference default, whose '>' is
 * missing), a bare address, or an address with a comment around it; in
 * the last two the address is the word holding an '@'.
 */
static void bounce_from_parts(const char *rf, struct buf *name, struct buf *addr)
{
    const char *lt = strchr(rf, '<'), *p, *w, *at = NULL;
    size_t n;

    if (lt) {
        const char *gt = strchr(lt + 1, '>');

        buf_append(name, rf, (size_t)(lt - rf));
        if (gt)
            buf_puts(name, gt + 1);
        n = gt ? (size_t)(gt - lt - 1) : strlen(lt + 1);
        bounce_addr_chars(addr, lt + 1, n);
        return;
    }
    for (p = rf; *p; p = w) {
        p += strspn(p, " \t");
        w = p + strcspn(p, " \t");
        if (w > p && memchr(p, '@', (size_t)(w - p)) && !at) {
            at = p;
            bounce_addr_chars(addr, p, (size_t)(w - p));
        } else {
            buf_append(name, p, (size_t)(w - p));
            buf_putc(name, ' ');
        }
    }
    if (!at && strcspn(rf + strspn(rf, " \t"), " \t") ==
                   strlen(rf + strspn(rf, " \t"))) {
        /* One word without '@' ("MAILER-DAEMON"): a local part. */
        buf_reset(name);
        bounce_addr_chars(addr, rf, strlen(rf));
    }
}

/*
 * From: Report_from made into a well-formed mailbox.  What is missing is
 * added: the name "Mail Delivery System", the local part MAILER-DAEMON, the
 * domain.  The domain "localhost" (the reference default) is replaced with
 * Server_name: a report from localhost cannot be answered and is scored as
 * forged by many receivers.
 */
static void bounce_from(struct buf *out, const struct bounce_info *bi)
{
    struct buf name = BUF_INIT(0), addr = BUF_INIT(0), v = BUF_INIT(0);
    char *at;

    bounce_from_parts(bounce_str(bi->report_from), &name, &addr);
    /* Quotes and a comment's parentheses are ours to write, not the name's. */
    for (size_t i = 0; i < name.len; i++)
        if (name.data[i] == '"' || name.data[i] == '(' || name.data[i] == ')')
            name.data[i] = ' ';
    at = strrchr(buf_cstr(&addr), '@');
    if (addr.len == 0 || at == addr.data) {
        buf_reset(&addr);
        buf_puts(&addr, "MAILER-DAEMON");
        at = NULL;
    }
    if (at && (at[1] == '\0' || strcasecmp(at + 1, "localhost") == 0)) {
        addr.len = (size_t)(at - addr.data);
        at = NULL;
    }
    if (!at) {
        buf_putc(&addr, '@');
        bounce_host(&addr, bi);
    }
    bounce_flat(&v, buf_cstr(&name), BOUNCE_VALUE_MAX, 1);
    buf_reset(&name);
    if (v.len == 0)
        buf_puts(&name, "Mail Delivery System");
    else
        bounce_phrase(&name, buf_cstr(&v));
    buf_reset(&v);
    buf_printf(&v, "%s <", buf_cstr(&name));
    bounce_addr_spec(&v, buf_cstr(&addr));
    buf_putc(&v, '>');
    bounce_field(out, "From", v.data, v.len);
    buf_free(&name);
    buf_free(&addr);
    buf_free(&v);
}

/* To: the original sender. */
static void bounce_to(struct buf *out, const struct bounce_info *bi)
{
    struct buf v = BUF_INIT(0);

    if (bounce_str(bi->sender)[0] == '\0') {
        /* Never sent so (the caller does not report to <>); still valid. */
        buf_puts(out, "To: undisclosed-recipients:;\n");
        return;
    }
    buf_putc(&v, '<');
    bounce_addr_spec(&v, bi->sender);
    buf_putc(&v, '>');
    bounce_field(out, "To", v.data, v.len);
    buf_free(&v);
}

/* The length of a "<...>" message identifier at s, or 0 when it does not
 * look like one: only such a value is repeated in In-Reply-To. */
static size_t bounce_msgid_len(const char *s)
{
    size_t n = 1;
    int at = 0;

    if (s[0] != '<')
        return 0;
    for (; s[n] && s[n] != '>'; n++) {
        unsigned char c = (unsigned char)s[n];

        if (c <= ' ' || c >= 0x7f || c == '<' || c == '"' || c == '\\')
            return 0;
        at |= c == '@';
    }
    return s[n] == '>' && at && n > 3 && n < 250 ? n + 1 : 0;
}

/*
 * The original's Message-ID, unfolded and flattened, when the header
 * section has one; so that the report threads with the message (RFC 3834
 * 3.1.5).  Appends nothing when there is none.
 */
static void bounce_orig_msgid(struct buf *out, const char *h, size_t n)
{
    static const char name[] = "message-id:";
    struct buf v = BUF_INIT(0);
    size_t i = 0, len;
    int in = 0;

    while (i < n) {
        const char *p = h + i, *nl = memchr(p, '\n', n - i);
        size_t ll = nl ? (size_t)(nl - p) : n - i;

        if (in) {
            if (ll == 0 || (p[0] != ' ' && p[0] != '\t'))
                break;  /* the field ends where its folded lines do */
            buf_putc(&v, ' ');
            buf_append(&v, p, ll);
        } else if (ll >= sizeof(name) - 1 &&
                   strncasecmp(p, name, sizeof(name) - 1) == 0) {
            in = 1;
            buf_append(&v, p + sizeof(name) - 1, ll - (sizeof(name) - 1));
        }
        i += ll + (nl != NULL);
        if (v.len > BOUNCE_VALUE_MAX)
            break;
    }
    if (in) {
        struct buf f = BUF_INIT(0);
        const char *id;

        bounce_flat(&f, buf_cstr(&v), BOUNCE_VALUE_MAX, 0);
        id = strchr(buf_cstr(&f), '<');
        if (id && (len = bounce_msgid_len(id)) > 0)
            buf_append(out, id, len);
        buf_free(&f);
    }
    buf_free(&v);
}

/* ---- status codes ---- */

/* The length of an RFC 3463 code "c.sss.ddd" (class 2, 4 or 5) at t, or 0;
 * a code must end there (not "5.1.1.2", not "5.1.1x"). */
static size_t bounce_enhanced_len(const char *t)
{
    size_t len = 2, n;

    if ((t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
        return 0;
    n = strspn(t + len, "0123456789");
    if (n == 0 || n > 3 || t[len + n] != '.')
        return 0;
    len += n + 1;
    n = strspn(t + len, "0123456789");
    if (n == 0 || n > 3)
        return 0;
    len += n;
    if (isalnum((unsigned char)t[len]) || t[len] == '.')
        return 0;
    return len;
}

/* Skips an SMTP reply code ("550 ", "550-") at the start of an answer. */
static const char *bounce_skip_reply_code(const char *t, int *code_class)
{
    t += strspn(t, " \t\r\n");
    *code_class = 0;
    if (isdigit((unsigned char)t[0]) && isdigit((unsigned char)t[1]) &&
        isdigit((unsigned char)t[2]) &&
        (t[3] == ' ' || t[3] == '-' || t[3] == '\t' || t[3] == '\0')) {
        *code_class = t[0];
        t += 3;
        if (*t == '-')
            t++;
        t += strspn(t, " \t");
    }
    return t;
}

void bounce_status_code(const char *answer, int permanent, char *out, size_t outlen)
{
    char want = permanent ? '5' : '4';
    int code_class;
    const char *t = bounce_skip_reply_code(bounce_str(answer), &code_class);
    size_t n = bounce_enhanced_len(t);

    if (!out || outlen == 0)
        return;
    if (n && t[0] == want && n < outlen) {
        memcpy(out, t, n);
        out[n] = '\0';
        return;
    }
    snprintf(out, outlen, "%c.0.0", want);
}

/*
 * Whether an answer reports a temporary failure (a 4xx reply, or a 4.x.x
 * code): a recipient given up after Max_attempts keeps the class of its
 * last answer, as RFC 3464 expects of "failed" after persistent transient
 * failures.  Anything else, local reasons included, counts as permanent.
 */
static int bounce_answer_temporary(const char *answer)
{
    int code_class;
    const char *t = bounce_skip_reply_code(bounce_str(answer), &code_class);

    if (code_class)
        return code_class == '4';
    return bounce_enhanced_len(t) > 0 && t[0] == '4';
}

/* The Status of a recipient: the caller's code when it is one (class 4 or
 * 5: the action is "failed"), else one derived from the answer. */
static void bounce_rcpt_status(const struct bounce_rcpt *r, char *out, size_t outlen)
{
    const char *st = bounce_str(r->status);
    size_t n = bounce_enhanced_len(st);

    if (n && n == strlen(st) && st[0] != '2' && n < outlen) {
        memcpy(out, st, n + 1);
        return;
    }
    bounce_status_code(r->answer, !bounce_answer_temporary(r->answer), out, outlen);
}

/* ---- the original header section ---- */

/* Whether the line at p (n bytes, no line end) belongs to a header section:
 * a field ("Name:", obsolete space before the colon allowed) or, after the
 * first line, a folded continuation. */
static int bounce_header_line(const char *p, size_t n, int first)
{
    size_t i = 0;

    if (p[0] == ' ' || p[0] == '\t')
        return !first;
    while (i < n && (unsigned char)p[i] > ' ' && (unsigned char)p[i] < 0x7f &&
           p[i] != ':')
        i++;
    if (i == 0)
        return 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i < n && p[i] == ':';
}

/*
 * Without an empty line the section ends at the first line that is not a
 * field (a message with no separator, or garbage), so a body is not
 * attached as if it were header.
 */
size_t bounce_header_len(const char *content, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *p = content + i, *nl = memchr(p, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - p) : len - i, l = ll;

        if (l && p[l - 1] == '\r')
            l--;
        if (l == 0 || !bounce_header_line(p, l, i == 0))
            return i;
        i += ll + (nl != NULL);
    }
    return len;
}

/* ---- bodies ---- */

/* Whether text may go as it is in a 7bit part: ASCII without NUL or bare
 * CR, lines within the limit (RFC 2045 2.7). */
static int bounce_is_7bit(const char *s, size_t n)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\n') {
            col = 0;
            continue;
        }
        if (c == 0 || c >= 0x80 || c == '\r' || ++col > BOUNCE_LINE_MAX)
            return 0;
    }
    return 1;
}

/* Quoted-printable (RFC 2045 6.7) of text with LF line ends. */
static void bounce_qp(struct buf *out, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        int eol = i + 1 == n || s[i + 1] == '\n';
        char tok[3];
        size_t tl = 1;

        if (c == '\n') {
            buf_putc(out, '\n');
            col = 0;
            continue;
        }
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol)) {
            tok[0] = (char)c;
        } else {
            tok[0] = '=';
            tok[1] = hex[c >> 4];
            tok[2] = hex[c & 15];
            tl = 3;
        }
        /* A soft break "=" takes the 76th column; the last token of a
         * line may use it itself. */
        if (col + tl > BOUNCE_QP_LINE - 1 && !(eol && col + tl <= BOUNCE_QP_LINE)) {
            buf_puts(out, "=\n");
            col = 0;
        }
        buf_append(out, tok, tl);
        col += tl;
    }
}

/*
 * Copies text, breaking each line longer than 998 bytes at its last space
 * within the limit (or, with no space in the second half, at the limit,
 * never inside a UTF-8 character).
 */
static void bounce_wrap(struct buf *out, const char *s, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(s, '\n', n);
        size_t len = nl ? (size_t)(nl - s) : n;

        while (len > BOUNCE_LINE_MAX) {
            size_t cut = BOUNCE_LINE_MAX, skip;

            while (cut > BOUNCE_LINE_MAX / 2 && s[cut] != ' ')
                cut--;
            if (s[cut] != ' ') {
                cut = BOUNCE_LINE_MAX;
                while (cut > 1 && ((unsigned char)s[cut] & 0xc0) == 0x80)
                    cut--;
            }
            skip = s[cut] == ' ';
            buf_append(out, s, cut);
            buf_putc(out, '\n');
            s += cut + skip;
            n -= cut + skip;
            len -= cut + skip;
        }
        buf_append(out, s, len);
        if (nl) {
            buf_putc(out, '\n');
            len++;
        }
        s += len;
        n -= len;
    }
}

/* %r: "<addr>: answer" a recipient, lines after the first indented like
 * the first (indent: the blanks before %r on its line). */
static void bounce_rcpt_lines(struct buf *out, const struct bounce_info *bi,
                              const char *indent, size_t indent_len)
{
    for (size_t i = 0; i < bi->nrcpt; i++) {
        const struct bounce_rcpt *r = &bi->rcpts[i];

        if (i > 0) {
            buf_putc(out, '\n');
            buf_append(out, indent, indent_len);
        }
        buf_putc(out, '<');
        bounce_flat(out, r->addr, BOUNCE_VALUE_MAX, 0);
        buf_putc(out, '>');
        if (bounce_str(r->answer)[0]) {
            buf_puts(out, ": ");
            bounce_flat(out, r->answer, BOUNCE_VALUE_MAX, 0);
        }
    }
}

/* The blanks from the start of the current line of out, when nothing else
 * precedes the cursor on it; their length, else 0. */
static size_t bounce_indent(const struct buf *out, size_t line_start)
{
    for (size_t i = line_start; i < out->len; i++)
        if (out->data[i] != ' ' && out->data[i] != '\t')
            return 0;
    return out->len - line_start;
}

/*
 * The template with its variables replaced (bounce.h lists them); an
 * unknown %X stays as written.  The template is trusted (the operator's
 * file) but the values are not, so each is flattened to ASCII.  CR LF line
 * ends become LF and other control characters but TAB are dropped.
 */
static void bounce_expand(struct buf *out, const struct bounce_info *bi,
                          const char *tpl, const char *arrival)
{
    size_t line_start = out->len, ind;
    const char *p;

    for (p = tpl; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (c != '%' || p[1] == '\0') {
            if (c == '\n')
                line_start = out->len + 1;
            if (c >= ' ' || c == '\n' || c == '\t')
                if (c != 0x7f)
                    buf_putc(out, (char)c);
            continue;
        }
        switch (*++p) {
        case 's':
            if (bounce_str(bi->sender)[0])
                bounce_flat(out, bi->sender, BOUNCE_VALUE_MAX, 0);
            break;
        case 'd':
            bounce_flat(out, bi->queue_id, BOUNCE_VALUE_MAX, 0);
            break;
        case 'h':
            bounce_flat(out, bi->server_name, BOUNCE_VALUE_MAX, 0);
            break;
        case 't':
            buf_puts(out, arrival);
            break;
        case 'p':
            bounce_flat(out, bi->postmaster, BOUNCE_VALUE_MAX, 0);
            break;
        case 'n':
            buf_printf(out, "%zu", bi->nrcpt);
            break;
        case 'r':
            ind = bounce_indent(out, line_start);
            {
                /* The indent is copied: out may move as it grows. */
                char copy[64];

                if (ind >= sizeof(copy))
                    ind = 0;
                if (ind)
                    memcpy(copy, out->data + out->len - ind, ind);
                bounce_rcpt_lines(out, bi, copy, ind);
            }
            break;
        case '%':
            buf_putc(out, '%');
            break;
        default:
            buf_putc(out, '%');
            p--;  /* the next character is copied as it is */
            break;
        }
    }
}

/*
 * Part 1's body and its MIME header lines.  ASCII goes as us-ascii 7bit;
 * a template in UTF-8 as utf-8 quoted-printable (no 8-bit byte reaches a
 * relay that does not offer 8BITMIME); other 8-bit bytes become '?', as
 * their charset is unknown.
 */
static void bounce_text_part(struct buf *body, struct buf *mime,
                             const struct bounce_info *bi, const char *arrival)
{
    const char *tpl = bi->template_text ? bi->template_text : bounce_builtin_text;
    struct buf x = BUF_INIT(0), w = BUF_INIT(0);

    bounce_expand(&x, bi, tpl, arrival);
    if (x.len == 0 || x.data[x.len - 1] != '\n')
        buf_putc(&x, '\n');
    bounce_wrap(&w, x.data, x.len);
    if (bounce_is_ascii(w.data, w.len)) {
        buf_append(body, w.data, w.len);
        buf_puts(mime, "Content-Type: text/plain; charset=us-ascii\n");
    } else if (bounce_is_utf8(w.data, w.len)) {
        bounce_qp(body, w.data, w.len);
        buf_puts(mime, "Content-Type: text/plain; charset=utf-8\n"
                       "Content-Transfer-Encoding: quoted-printable\n");
    } else {
        for (size_t i = 0; i < w.len; i++)
            buf_putc(body, (unsigned char)w.data[i] >= 0x80 ? '?' : w.data[i]);
        buf_puts(mime, "Content-Type: text/plain; charset=us-ascii\n");
    }
    buf_free(&x);
    buf_free(&w);
}

/* Part 2: the per-message fields, then a group of fields per recipient,
 * groups separated by an empty line (RFC 3464 2.1). */
static void bounce_status_part(struct buf *out, const struct bounce_info *bi,
                               const char *arrival, const char *now)
{
    bounce_field_flat(out, "Reporting-MTA", "dns; ", bi->server_name);
    bounce_field_flat(out, "X-Selor-Queue-ID", "", bi->queue_id);
    if (bi->arrival > 0)
        bounce_field(out, "Arrival-Date", arrival, strlen(arrival));
    for (size_t i = 0; i < bi->nrcpt; i++) {
        const struct bounce_rcpt *r = &bi->rcpts[i];
        const char *orcpt = bounce_str(r->orcpt), *mta = bounce_str(r->remote_mta);
        int code_class;
        char status[16];

        buf_putc(out, '\n');
        bounce_field_flat(out, "Final-Recipient", "rfc822; ", r->addr);
        if (orcpt[0] && strcasecmp(orcpt, bounce_str(r->addr)) != 0)
            bounce_field_flat(out, "Original-Recipient", "rfc822; ", orcpt);
        buf_puts(out, "Action: failed\n");
        bounce_rcpt_status(r, status, sizeof(status));
        buf_printf(out, "Status: %s\n", status);
        if (mta[0])
            bounce_field_flat(out, "Remote-MTA", "dns; ", mta);
        /* "smtp" says the text is an SMTP reply (RFC 3464 2.3.6), so it is
         * used for an answer that starts with a reply code, whether or not
         * the host is known (the l file does not keep it); our own reasons
         * ("connection refused", an MDA's message) are X-Selor. */
        bounce_skip_reply_code(bounce_str(r->answer), &code_class);
        if (bounce_str(r->answer)[0])
            bounce_field_flat(out, "Diagnostic-Code",
                              code_class ? "smtp; " : "X-Selor; ", r->answer);
        bounce_field(out, "Last-Attempt-Date", now, strlen(now));
    }
}

/*
 * Part 3: the original header section, whole lines up to 64 KiB, as it
 * is when 7bit-clean, else quoted-printable (8-bit headers arrive with
 * 8BITMIME mail; the report must not depend on the relay offering it).
 */
static void bounce_headers_part(struct buf *body, struct buf *mime,
                                const struct bounce_info *bi)
{
    const char *h = bi->headers;
    size_t n = bi->headers_len;

    if (n > BOUNCE_HEADERS_MAX) {
        n = BOUNCE_HEADERS_MAX;
        while (n > 0 && h[n - 1] != '\n')
            n--;
    }
    buf_puts(mime, "Content-Type: text/rfc822-headers\n");
    if (bounce_is_7bit(h, n)) {
        buf_append(body, h, n);
    } else {
        bounce_qp(body, h, n);
        buf_puts(mime, "Content-Transfer-Encoding: quoted-printable\n");
    }
    if (body->len && body->data[body->len - 1] != '\n')
        buf_putc(body, '\n');
}

/* ---- the message ---- */

/*
 * The caller's boundary (RFC 2046 bchars only), or one made of the queue
 * ID; with a suffix when a part holds "--boundary" (a part we quote could
 * carry it by chance or on purpose), until none does.
 */
static void bounce_boundary(struct buf *out, const struct bounce_info *bi,
                            struct buf *const parts[], size_t nparts)
{
    struct buf base = BUF_INIT(0), delim = BUF_INIT(0);
    const char *p;
    unsigned k = 0;

    for (p = bounce_str(bi->boundary); *p && base.len < BOUNCE_BOUNDARY_MAX; p++)
        if (isalnum((unsigned char)*p) || strchr("'()+_,-./:=?", *p))
            buf_putc(&base, *p);
    if (base.len == 0) {
        buf_puts(&base, "selor-report-");
        bounce_atom(&base, bounce_str(bi->queue_id), 0);
        buf_printf(&base, "-%ld", bi->now);
        /* RFC 2046 allows 70; a long ID must not make the boundary line
         * long or fold the Content-Type (the loop below keeps it unique) */
        if (base.len > BOUNCE_BOUNDARY_MAX)
            base.len = BOUNCE_BOUNDARY_MAX;
    }
    for (;;) {
        size_t i;

        buf_reset(&delim);
        buf_printf(&delim, "--%s", buf_cstr(&base));
        if (k)
            buf_printf(&delim, "=_%u", k);
        for (i = 0; i < nparts; i++)
            if (parts[i]->len &&
                memmem(parts[i]->data, parts[i]->len, delim.data, delim.len))
                break;
        if (i == nparts)
            break;
        k++;
    }
    buf_append(out, delim.data + 2, delim.len - 2);
    buf_free(&base);
    buf_free(&delim);
}

static void bounce_header(struct buf *out, const struct bounce_info *bi,
                          const char *now, const char *boundary)
{
    struct buf v = BUF_INIT(0);

    bounce_from(out, bi);
    bounce_to(out, bi);
    if (bounce_str(bi->subject)[0])
        bounce_header_text(&v, bi->subject);
    if (v.len == 0)
        buf_puts(&v, bounce_default_subject);
    bounce_field(out, "Subject", v.data, v.len);
    buf_printf(out, "Date: %s\n", now);
    buf_reset(&v);
    buf_putc(&v, '<');
    bounce_atom(&v, bounce_str(bi->queue_id), 0);
    if (v.len == 1)
        buf_puts(&v, "report");
    buf_printf(&v, ".%ld.bounce@", bi->now);
    bounce_host(&v, bi);
    buf_putc(&v, '>');
    bounce_field(out, "Message-ID", v.data, v.len);
    buf_reset(&v);
    if (bi->headers)
        bounce_orig_msgid(&v, bi->headers,
                          bi->headers_len < BOUNCE_HEADERS_MAX ? bi->headers_len
                                                               : BOUNCE_HEADERS_MAX);
    if (v.len) {
        bounce_field(out, "In-Reply-To", v.data, v.len);
        bounce_field(out, "References", v.data, v.len);
    }
    buf_puts(out, "Auto-Submitted: auto-replied\n");
    buf_puts(out, "MIME-Version: 1.0\n");
    buf_reset(&v);
    buf_printf(&v, "multipart/report; report-type=delivery-status; boundary=\"%s\"",
               boundary);
    bounce_field(out, "Content-Type", v.data, v.len);
    buf_free(&v);
}

void bounce_format(const struct bounce_info *bi, struct buf *out)
{
    struct buf hdr = BUF_INIT(0), b = BUF_INIT(0), msg = BUF_INIT(0);
    struct buf text = BUF_INIT(0), text_mime = BUF_INIT(0), status = BUF_INIT(0);
    struct buf heads = BUF_INIT(0), heads_mime = BUF_INIT(0);
    struct buf *const parts[] = { &text, &status, &heads };
    char now[64], arrival[64];
    int with_headers = bi->headers && bi->headers_len > 0;

    log_format_rfc5322(now, sizeof(now), bi->now);
    if (bi->arrival > 0)
        log_format_rfc5322(arrival, sizeof(arrival), bi->arrival);
    else
        snprintf(arrival, sizeof(arrival), "(unknown)");
    bounce_text_part(&text, &text_mime, bi, arrival);
    bounce_status_part(&status, bi, arrival, now);
    if (with_headers)
        bounce_headers_part(&heads, &heads_mime, bi);
    bounce_boundary(&b, bi, parts, 3);
    bounce_header(&hdr, bi, now, buf_cstr(&b));

    buf_append(&msg, hdr.data, hdr.len);
    buf_puts(&msg, "\nThis is a MIME-encapsulated message: a delivery status "
                   "report (RFC 3464).\n");
    buf_printf(&msg, "\n--%s\nContent-Description: Notification\n", b.data);
    buf_append(&msg, text_mime.data, text_mime.len);
    buf_putc(&msg, '\n');
    buf_append(&msg, text.data, text.len);
    buf_printf(&msg, "\n--%s\nContent-Description: Delivery report\n"
                     "Content-Type: message/delivery-status\n\n", b.data);
    buf_append(&msg, status.data, status.len);
    if (with_headers) {
        buf_printf(&msg, "\n--%s\nContent-Description: Undelivered message header\n",
                   b.data);
        buf_append(&msg, heads_mime.data, heads_mime.len);
        buf_putc(&msg, '\n');
        buf_append(&msg, heads.data, heads.len);
    }
    buf_printf(&msg, "\n--%s--\n", b.data);

    /* All or nothing: a report cut by out's limit would be a broken one. */
    buf_append(out, msg.data, msg.len);
    buf_free(&hdr);
    buf_free(&b);
    buf_free(&msg);
    buf_free(&text);
    buf_free(&text_mime);
    buf_free(&status);
    buf_free(&heads);
    buf_free(&heads_mime);
}
