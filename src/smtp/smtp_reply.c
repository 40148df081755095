/*
 * smtp_reply.c - reply lines from Msg_* texts, and reading a server's
 * replies (see smtp_reply.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int smtp_reply_code(const char *msg)
{
    if (!isdigit((unsigned char)msg[0]) || !isdigit((unsigned char)msg[1]) ||
        !isdigit((unsigned char)msg[2]))
        return 0;
    return (msg[0] - '0') * 100 + (msg[1] - '0') * 10 + (msg[2] - '0');
}

/* The length of the run of 1 to 3 digits at t; 0 when there is none or more. */
static size_t smtp_reply_digits(const char *t)
{
    size_t n = strspn(t, "0123456789");

    return n <= 3 ? n : 0;
}

/* "5.1.1 " or "2.0.0" (RFC 3463: class 2, 4 or 5) at the start of a text. */
static int smtp_reply_has_enhanced(const char *t)
{
    size_t n;

    if ((t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
        return 0;
    t += 2;
    if ((n = smtp_reply_digits(t)) == 0 || t[n] != '.')
        return 0;
    t += n + 1;
    if ((n = smtp_reply_digits(t)) == 0)
        return 0;
    return t[n] == ' ' || t[n] == '\0';
}

void smtp_reply_msg(struct buf *out, const char *msg, const char *detail,
                    int enhanced, const char *prefix, const char *suffix)
{
    const char *text = msg + 3;

    while (*text == ' ')
        text++;
    buf_append(out, msg, 3);
    buf_putc(out, ' ');
    if (enhanced && detail && !smtp_reply_has_enhanced(text))
        buf_printf(out, "%c.%s ", msg[0], detail);
    if (prefix && prefix[0])
        buf_printf(out, "%s%s", prefix, text[0] ? " " : "");
    buf_puts(out, text);
    if (suffix && suffix[0])
        buf_printf(out, "%s%s", text[0] || (prefix && prefix[0]) ? " " : "",
                   suffix);
    while (out->len && out->data[out->len - 1] == ' ')
        out->len--;
    buf_puts(out, "\r\n");
}

int smtp_reply_parse_line(struct smtp_reply_in *r, const char *p, size_t n, size_t max)
{
    int code;

    if (n > max)
        return -2;
    if (n < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
        p[2] < '0' || p[2] > '9' || (n > 3 && p[3] != ' ' && p[3] != '-'))
        return -1;
    code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (r->lines > 0 && code != r->code)
        return -1;
    r->code = code;
    if (r->lines++ > 0 && buf_putc(&r->text, '\n') < 0)
        return -2;
    if (n > 4 && buf_append(&r->text, p + 4, n - 4) < 0)
        return -2;
    return n == 3 || p[3] == ' ';
}

void smtp_reply_in_reset(struct smtp_reply_in *r)
{
    buf_reset(&r->text);
    r->lines = 0;
}
