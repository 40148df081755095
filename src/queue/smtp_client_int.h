/*
 * smtp_client_int.h - the outgoing SMTP session as the files that run it
 * see it (smtp_client.c: the dialogue; smtp_client_txn.c: what the server
 * offers, what one transaction starts from, and whether a session may be
 * parked).  Must
 * not: be included outside src/queue/smtp_client*.c.
 */
#ifndef SELOR_SMTP_CLIENT_INT_H
#define SELOR_SMTP_CLIENT_INT_H

#include <uv.h>

#include "async.h"
#include "buf.h"
#include "smtp_client.h"
#include "smtp_reply.h"
#include "stream.h"

#define SC_LINE_MAX 4096             /* a reply line (RFC 5321 says 512) */
#define SC_REPLY_MAX (64 * 1024)     /* a multi-line reply */
#define SC_READ_SIZE 4096            /* one read from the socket */
#define SC_CHUNK (64 * 1024)         /* encoded content per write */
#define SC_QUIT_WAIT_MS 1000         /* the short moment QUIT gets */

enum sc_state {
    SC_S_CONNECT,
    SC_S_GREETING,
    SC_S_EHLO,
    SC_S_HELO,
    SC_S_STARTTLS,
    SC_S_TLS,
    SC_S_MAIL,
    SC_S_RCPT,
    SC_S_DATA,
    SC_S_CONTENT,
    SC_S_LEAVING,
    SC_S_IDLE,
    SC_S_REUSE,
    SC_S_RSET,
    SC_S_DRAIN,
    SC_S_CLOSED,
};

/* What each recipient's RCPT got. */
enum sc_rcpt {
    SC_R_UNASKED,   /* no reply yet: gets the session's end */
    SC_R_ACCEPTED,  /* gets the final reply (or the error that broke us) */
    SC_R_REFUSED,   /* keeps its RCPT reply */
};

struct smtp_client {
    struct async_req req;       /* for the owner: done reaches it */
    struct stream io;           /* the connection, plain or TLS */
    uv_timer_t timer;
    uv_connect_t connect;
    const struct smtp_client_msg *msg;   /* NULL while parked */
    smtp_client_done_fn *done;
    void *arg;
    smtp_client_gone_fn *gone;  /* parked: the cache's */
    void *gone_arg;
    long timeout_ms;            /* each reply (msg's, kept while parked) */
    long transactions;          /* begun on this connection */
    int dirty;                  /* the last transaction ended midway: RSET */
    enum smtp_client_stage drain_stage;   /* DRAIN: the result to give */
    int drain_code;
    char drain_text[SMTP_CLIENT_ANSWER_MAX];
    enum sc_state state;
    char peer[80];              /* "1.2.3.4:25", "[::1]:25" for messages */
    int handles_open;
    int finished;               /* the result was given, or cancelled */
    int quit_sent;
    int size_offered;           /* SIZE in the EHLO reply: send SIZE= */
    int starttls_offered;       /* STARTTLS in the EHLO reply */
    int unanswered;             /* commands (and greeting) owed a reply */
    int deferred;               /* a failure found before connecting */
    int deferred_code;
    char deferred_text[SMTP_CLIENT_ANSWER_MAX];
    size_t rcpt_next;           /* whose RCPT reply comes next */
    size_t accepted;
    size_t last_refused;
    long long encoded_size;     /* content as sent, without the final "." */
    size_t content_pos;         /* msg->content encoded and queued so far */
    int content_done;           /* everything up to "." is queued */
    int writes_pending;
    struct buf in;              /* read, not yet parsed (a partial line) */
    struct smtp_reply_in rin;   /* the reply being read */
    unsigned char *rstate;      /* enum sc_rcpt per recipient */
    struct smtp_client_result res;
    char rbuf[SC_READ_SIZE];
    char pbuf[SC_READ_SIZE];    /* plaintext out of TLS */
};

/* smtp_client_txn.c */
/* Fresh per-transaction state for n recipients (the session's stays). */
void smtp_client_txn_reset(struct smtp_client *c, size_t n);
/* The server waits for a command and owes us nothing: it may be parked. */
int smtp_client_can_park(const struct smtp_client *c);
/* A refusal with pipelined replies still owed: read them first (DRAIN). */
int smtp_client_drain_first(const struct smtp_client *c);
/* The EHLO reply in c->rin: what the server offers. */
void smtp_client_parse_ehlo(struct smtp_client *c);

#endif
