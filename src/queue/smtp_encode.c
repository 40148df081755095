/*
 * smtp_encode.c - the message content in SMTP form for the outgoing client
 * (see smtp_encode.h).  Owns: line ends and dot-stuffing.  Must not: know
 * sessions, sockets or the spool.
 */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "smtp_client.h"
#include "smtp_encode.h"

/*
 * The line starting at pos: its length without the line end in *textlen;
 * returns where the next line starts.  A line ends at LF, CR LF, or a bare
 * CR: content goes out with CR only in CR LF, so a server that would end
 * data at <CR>.<CR> never sees a line of ours start after a bare CR
 * without its dot-stuffing (SMTP smuggling through Selor).
 */
static size_t se_line(const char *content, size_t len, size_t pos, size_t *textlen)
{
    const char *nl = memchr(content + pos, '\n', len - pos);
    size_t lim = nl ? (size_t)(nl - content) : len;
    const char *cr = memchr(content + pos, '\r', lim - pos);

    if (cr) {
        size_t t = (size_t)(cr - content);
        *textlen = t - pos;
        return t + 1 < len && content[t + 1] == '\n' ? t + 2 : t + 1;
    }
    *textlen = lim - pos;
    return nl ? lim + 1 : len;
}

size_t smtp_encode_some(const char *content, size_t len, size_t pos, struct buf *out,
                        size_t want)
{
    while (pos < len && out->len < want) {
        size_t n, next = se_line(content, len, pos, &n);

        if (content[pos] == '.')
            buf_putc(out, '.');
        buf_append(out, content + pos, n);
        buf_append(out, "\r\n", 2);
        pos = next;
    }
    return pos;
}

long long smtp_encode_size(const char *content, size_t len)
{
    long long size = 0;
    size_t pos = 0;

    while (pos < len) {
        size_t n, next = se_line(content, len, pos, &n);

        size += (long long)n + 2 + (content[pos] == '.');
        pos = next;
    }
    return size;
}

void smtp_client_encode(const char *content, size_t len, struct buf *out)
{
    smtp_encode_some(content, len, 0, out, SIZE_MAX);
}
