/*
 * smtp_milter_pkt.h - the packets an SMTP session sends its milters: each
 * step's command with the macros that go before it.
 *
 * Owns: what a milter is told of the session (which macros at which step,
 * their values, the connect data, a header field, a body chunk in the
 * wire's form).  Must not: send anything, or decide when a step is sent
 * (smtp_milter.c does both).
 */
#ifndef SELOR_SMTP_MILTER_PKT_H
#define SELOR_SMTP_MILTER_PKT_H

#include <stddef.h>

#include "buf.h"

struct smtp_session;
struct milter_head_field;

/* The macros of the step whose command is cmd (rcpt: RCPT's address);
 * nothing when the step has none to give. */
void smtp_milter_pkt_macros(struct buf *b, const struct smtp_session *s, int cmd,
                            const char *rcpt);
/* Macros, then connect: the client's name (or [IP]), family, port, IP. */
void smtp_milter_pkt_connect(struct buf *b, const struct smtp_session *s);
/* Macros, then MAIL or RCPT with <addr> and an ESMTP argument (or NULL). */
void smtp_milter_pkt_addr(struct buf *b, const struct smtp_session *s, int cmd,
                          const char *addr, const char *arg);
void smtp_milter_pkt_header(struct buf *b, const struct milter_head_field *f, int leadspc);
/* A body chunk from the spool's form: every line end CR LF. */
void smtp_milter_pkt_body(struct buf *b, const char *p, size_t n);

#endif
