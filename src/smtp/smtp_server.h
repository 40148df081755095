/*
 * smtp_server.h - one SMTP session, from connect to close (RFC 5321).
 *
 * Owns: the session state machine (one enum, every change checked and
 * logged in one place), command handling with pipelining (replies always
 * in order), the limits a client can hit, the relay decision, the Received
 * header, and handing a finished message to the spool.  Two files run a
 * session: smtp_server.c (its life) and smtp_policy.c (its commands); see
 * smtp_session.h.  Must not: block the loop, write the spool itself, or
 * send any reply text that does not come from a Msg_* option (the few
 * fixed texts are listed in docs/smtp.md).
 */
#ifndef SELOR_SMTP_SERVER_H
#define SELOR_SMTP_SERVER_H

#include <uv.h>

struct smtp_worker;

/* Creates a session and accepts a connection from the listener into it. */
int smtp_server_accept(struct smtp_worker *w, uv_stream_t *listener);
/* Stop: reply 421 to idle sessions, let those in a transaction finish. */
void smtp_server_shutdown_all(struct smtp_worker *w);
/* Abort every session at once (the stop grace time has passed). */
void smtp_server_kill_all(struct smtp_worker *w);

#endif
