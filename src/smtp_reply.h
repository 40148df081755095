/*
 * smtp_reply.h - SMTP reply lines built from the Msg_* options.
 *
 * Owns: the shape of a reply: the code from the Msg_* text, an RFC 3463
 * enhanced status code (only after EHLO, and only when the text has none),
 * then the text.  Must not: choose which Msg_* answers what (smtp_server.c).
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

#endif
