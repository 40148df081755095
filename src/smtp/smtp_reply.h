/*
 * smtp_reply.h - SMTP replies: ours, built from the Msg_* options, and
 * theirs, read line by line by the SMTP client.
 *
 * Owns: the shape of a reply: the code from the Msg_* text, an RFC 3463
 * enhanced status code (only after EHLO, and only when the text has none),
 * then the text; and the syntax of a (multi-line) reply read from a server.
 * Pure functions over bytes.  Must not: choose which Msg_* answers what
 * (smtp_server.c) or what a remote reply means for delivery (smtp_client.c).
 */
#ifndef SELOR_SMTP_REPLY_H
#define SELOR_SMTP_REPLY_H

#include "buf.h"

/*
 * Appends one reply line for msg ("550 No such user") to out.  detail is
 * the enhanced code without its class ("1.1" gives 5.1.1 for a 5xx);
 * prefix goes before the text (the queue ID of Msg_mail_accepted), suffix
 * after it (the domain of Msg_invalid_domain); both may be NULL.
 */
void smtp_reply_msg(struct buf *out, const char *msg, const char *detail,
                    int enhanced, const char *prefix, const char *suffix);
/* The reply code of a Msg_* text (its first three digits). */
int smtp_reply_code(const char *msg);

/* A reply being read: its code, its line count and its texts, '\n' apart. */
struct smtp_reply_in {
    int code;
    int lines;
    struct buf text;     /* the owner gives it a limit */
};

/*
 * One reply line without its line end.  1 when it completes the reply, 0
 * when more lines follow, -1 when malformed (code not 2xx-5xx, wrong
 * separator, a code that changes between lines), -2 when the line is over
 * max bytes or the text passes its buffer's limit.
 */
int smtp_reply_parse_line(struct smtp_reply_in *r, const char *p, size_t n, size_t max);
/* Ready for the next reply (the text buffer is kept). */
void smtp_reply_in_reset(struct smtp_reply_in *r);

#endif
