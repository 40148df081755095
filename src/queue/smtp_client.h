/*
 * smtp_client.h - one outgoing SMTP session to one address (RFC 5321,
 * client side), event-driven on a libuv loop.
 *
 * Owns: connecting (with a connect timeout), the greeting, EHLO with a HELO
 * fallback, reading the extensions (PIPELINING, SIZE, 8BITMIME), one mail
 * transaction (MAIL, every RCPT, DATA; pipelined when the server offers
 * PIPELINING), sending the content with CR LF line ends and dot-stuffing,
 * QUIT, and a result for every recipient.  A session left healthy after a
 * transaction may be parked idle instead of saying QUIT, and later carry
 * another transaction (RSET when the last ended midway, then MAIL): the
 * keeping of parked sessions is smtp_cache.c's.  Several clients run at
 * once on one loop.  Must not: choose where to connect (deliver_smtp.c resolves MX
 * and picks addresses), retry, or touch the spool.
 */
#ifndef SELOR_SMTP_CLIENT_H
#define SELOR_SMTP_CLIENT_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#define SMTP_CLIENT_ANSWER_MAX 512

struct stream_tls;

struct smtp_client_msg {
    const char *helo_name;       /* our name in EHLO/HELO (Server_name) */
    const char *from;            /* envelope sender; "" = null sender <> */
    const char *const *rcpts;    /* envelope recipients */
    size_t nrcpt;
    const char *content;         /* the c file: LF line ends */
    size_t len;
    int body_8bit;               /* send BODY=8BITMIME when offered */
    long connect_timeout_ms;     /* Connect_timeout */
    long timeout_ms;             /* each reply (Timeout) */
    int tls;                     /* Tls_delivery: 0 never, 1 when offered, 2 required */
    const char *tls_host;        /* the name the certificate must carry (2) */
    const struct stream_tls *tls_engine;   /* Tls_module's (NULL: none) */
    int keep;                    /* the caller may park the session afterwards */
};

/* How far the session got. */
enum smtp_client_stage {
    SMTP_CLIENT_CONNECT,   /* no connection (refused, unreachable, timeout) */
    SMTP_CLIENT_GREETING,  /* connected; greeting not 2xx, or lost before it */
    SMTP_CLIENT_HELO,      /* EHLO and HELO refused, or lost */
    SMTP_CLIENT_MAIL,      /* MAIL refused, or lost before its reply */
    SMTP_CLIENT_RCPT,      /* replies to RCPT being read */
    SMTP_CLIENT_DATA,      /* DATA sent, or content sent and final reply awaited */
    SMTP_CLIENT_DONE,      /* the final reply to the content was read */
};

struct smtp_client_result {
    enum smtp_client_stage stage;  /* where the session ended */
    int ok;                        /* the transaction completed (stage DONE) */
    /*
     * The reply (or local error text, e.g. "connection refused", "timeout
     * waiting for greeting") that ended the session early, with its code
     * (0 for a local error).  When ok, the final reply to the content.
     */
    int code;
    char answer[SMTP_CLIENT_ANSWER_MAX];
    /*
     * Per recipient, in the order given: the reply code and text that
     * decided it.  A recipient whose RCPT was accepted gets the final reply
     * to the content (or, if the session broke after RCPT, code 0 and the
     * error); one refused at RCPT gets that reply.  Recipients never asked
     * about (session ended before RCPT) have code 0 and the session error.
     */
    int *rcpt_code;
    char (*rcpt_answer)[SMTP_CLIENT_ANSWER_MAX];
    size_t nrcpt;
    /* What the server offered (for the caller's logs and decisions). */
    int esmtp, pipelining, eightbit;
    long long size_limit;          /* SIZE n (0 = none given) */
    /* TLS: the protocol and cipher ("" in clear), the certificate
     * verified, or the handshake failed (Tls_delivery 1 retries in clear). */
    char tls_version[16], tls_cipher[64];
    int tls_verified, tls_failed;
    /* Reuse: the connection carried a transaction before this one; the
     * server closed it or it broke (EOF, read or write error); it is
     * healthy and waits for a command (msg->keep: smtp_client_park may
     * keep it, in done only). */
    int reused, lost, reusable;
};

struct async_owner;
struct smtp_client;
typedef void smtp_client_done_fn(void *arg, const struct smtp_client_result *r);

/*
 * Starts a session to addr for owner o (async.h).  msg and everything it
 * points to must stay valid until done is called or the owner cancels.
 * done is called exactly once, never before smtp_client_start returns,
 * unless the owner cancelled first.  The result is valid only during the
 * callback.  After done the session may still say QUIT on its own.
 */
struct smtp_client *smtp_client_start(uv_loop_t *loop, struct async_owner *o,
                                      const struct sockaddr *addr,
                                      const struct smtp_client_msg *msg,
                                      smtp_client_done_fn *done, void *arg);
/*
 * In done only, when the result says reusable: the session is not QUIT
 * but kept idle for owner o (its cache) at most idle_ms.  gone(arg) runs
 * when it ends on its own (the idle time is over: QUIT; the server closed
 * it or spoke), unless o cancelled it first (QUIT, then close).
 */
typedef void smtp_client_gone_fn(void *arg);
void smtp_client_park(struct smtp_client *c, struct async_owner *o, long idle_ms,
                      smtp_client_gone_fn *gone, void *arg);
/*
 * A parked session carries a new transaction for owner o: as
 * smtp_client_start, but on the open connection (the helo name, TLS and
 * what the server offered stay those of the session; the timeouts come
 * from msg).  done never runs before this returns.
 */
void smtp_client_reuse(struct smtp_client *c, struct async_owner *o,
                       const struct smtp_client_msg *msg, smtp_client_done_fn *done,
                       void *arg);
/* Transactions begun on this connection (the current one included). */
long smtp_client_transactions(const struct smtp_client *c);
/* Stops the session (QUIT is not waited for); done will not be called. */
void smtp_client_cancel(struct smtp_client *c);
/* The final "." is on its way: the server may take the message whatever
 * happens to us now. */
int smtp_client_content_sent(const struct smtp_client *c);

/*
 * Content in SMTP form: LF, CR LF and bare CR line ends become CR LF (no CR
 * goes out outside CR LF), a line that starts with "." gets another, and
 * the content ends with CR LF (added if missing) before the terminating ".".
 * Appends to out; exposed for tests.
 */
struct buf;
void smtp_client_encode(const char *content, size_t len, struct buf *out);

#endif
