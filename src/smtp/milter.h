/*
 * milter.h - one connection from an SMTP session to one milter.
 *
 * Owns: the socket (TCP or unix), the negotiation, writing packets,
 * reading the replies, the time limit on every reply (Milter_timeout) and
 * closing.  Each wait is a request of the session's async owner: a session
 * that goes cancels it, the connection is closed then and a late reply is
 * never delivered.  The memory outlives the session until libuv closed
 * the handles (milter_release).  Must not: know what a reply means for the
 * session (smtp_milter.c decides) or block.
 */
#ifndef SELOR_MILTER_H
#define SELOR_MILTER_H

#include <uv.h>

#include "async.h"
#include "buf.h"
#include "milter_proto.h"

struct milter;

/*
 * A reply came (pkt), the packets given without a reply were written
 * (pkt NULL, failed 0), or the connection failed (pkt NULL, failed 1:
 * milter_error says why).  Return 1 to wait for one more reply (the
 * modifications before the final answer at end of message), 0 when done.
 */
typedef int milter_reply_fn(void *arg, const struct milter_pkt *pkt, int failed);

/*
 * Connects to spec (net_parse_socket_spec) and negotiates; cb is called
 * once with the negotiation reply (already checked: milter_neg) or the
 * failure.  NULL with why when spec is not valid.
 */
struct milter *milter_open(uv_loop_t *loop, const char *spec, long timeout_s,
                           struct async_owner *own, milter_reply_fn *cb, void *arg,
                           char *why, size_t whylen);
/*
 * Sends the packets in pkts (emptied); with reply, cb gets the replies
 * (each within the time limit), else cb(arg, NULL, 0) once they are
 * written.  On a failed connection cb gets the failure from the loop.
 */
void milter_send(struct milter *m, struct buf *pkts, int reply, milter_reply_fn *cb,
                 void *arg);
/* Packets that need no answer and no wait (abort): written when possible. */
void milter_post(struct milter *m, struct buf *pkts);
/* What the milter negotiated. */
const struct milter_neg *milter_neg(const struct milter *m);
const char *milter_name(const struct milter *m);
/* Why the connection failed ("" when it did not). */
const char *milter_error(const struct milter *m);
/* 1 while the connection can be used. */
int milter_usable(const struct milter *m);
/* The owner lets go: QUIT when the connection is sound, then closed, and
 * freed once libuv is done with it. */
void milter_release(struct milter *m);

#endif
