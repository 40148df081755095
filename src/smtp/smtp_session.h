/*
 * smtp_session.h - one SMTP session, as the two files that run it see it
 * (internal to the SMTP server; the worker sees only smtp_server.h).
 *
 * smtp_server.c owns the session's life: the state machine (every change
 * in smtp_session_set_state, checked against the table of allowed
 * transitions and logged), the socket, timers, the WAIT continuation,
 * the connection checks before the greeting, and closing.  smtp_policy.c
 * owns what each command does and answers.  Every asynchronous request a
 * session makes (coordination, DNS, account lookups, the spool) belongs to
 * its owner `own`: entering CLOSING or closing cancels them all, so no
 * answer can reach a session that is going or gone.  Must not: be included
 * outside the SMTP server.
 */
#ifndef SELOR_SMTP_SESSION_H
#define SELOR_SMTP_SESSION_H

#include <stddef.h>
#include <uv.h>

#include "arena.h"
#include "async.h"
#include "buf.h"
#include "queue_id.h"
#include "rules.h"
#include "smtp_cmd.h"
#include "smtp_data.h"
#include "strset.h"
#include "stream.h"

struct config;
struct smtp_worker;
struct spool_msg;
struct accounts_result;
struct smtp_session;
struct smtp_milters;

#define SMTP_MAX_TARGETS 10000        /* recipients of one message after aliases */
#define SMTP_SOFT_ERRORS 10           /* from here each error reply waits a second */
#define SMTP_MAX_ERRORS 20            /* refused commands before we hang up */
#define SMTP_ERROR_DELAY 1            /* seconds, past SMTP_SOFT_ERRORS */
#define SMTP_MILTERS_MAX 8            /* milters in Milters */
#define SMTP_MILTER_REJECT "550 5.7.1 Command rejected"
#define SMTP_MILTER_TEMPFAIL "451 4.7.1 Service unavailable - try again later"

enum smtp_state {
    SMTP_S_CONNECT,   /* limits and reverse DNS checked; no greeting yet */
    SMTP_S_COMMAND,   /* reading and answering commands */
    SMTP_S_WAIT,      /* a command waits (an answer, a delay); input is buffered */
    SMTP_S_DATA,      /* content goes through the DATA parser to the spool */
    SMTP_S_COMMIT,    /* the spool makes the message durable */
    SMTP_S_CLOSING,   /* the last reply is being written */
    SMTP_S_CLOSED,    /* handles closing; the session is freed after */
    SMTP_S_PROXY,     /* a balancer's PROXY header is read (Proxy_protocol);
                         entered from CONNECT before any check, left for it */
    SMTP_NSTATES
};

struct smtp_rcpt {
    const char *addr;   /* final recipient */
    const char *orcpt;  /* as the client gave it */
    const char *via;    /* how it came to be one (accounts_result.via) */
};

/* One mail transaction: MAIL to the end of DATA (or RSET). */
struct smtp_txn {
    int active;
    const char *from;
    const char *body;
    struct smtp_rcpt *rcpt;
    size_t nrcpt, rcpt_alloc;
    struct strset rcpt_set;    /* their addresses, for duplicates */
    unsigned rcpt_cmds;        /* accepted RCPT commands (Max_rcpts) */
    int qlimit;                /* goes to the qlimit queue (Qlimit!) */
    const char *data_reply;    /* Data_reply!: the answer at the end of data */
    const char *headers[RULES_MAX_HEADERS];   /* Header! fields */
    size_t nheaders;
    size_t nheaders_written;   /* those in the content (Event.data's come after) */
    size_t rcpt_mark;          /* recipients before the RCPT under way */
    const char *hold;          /* queued held (a milter's quarantine): why */
    struct smtp_data data;
    struct spool_msg *msg;
    char qid[QUEUE_ID_MAX];
    struct arena mem;          /* accepted addresses only: a refusal costs nothing */
};

/* Where an AUTH exchange is (smtp_auth.c). */
enum smtp_auth_step {
    SMTP_AUTH_NONE,        /* no exchange: lines are commands */
    SMTP_AUTH_PLAIN,       /* "334 " sent: the PLAIN response comes next */
    SMTP_AUTH_USER,        /* LOGIN: the user name comes next */
    SMTP_AUTH_PASS,        /* LOGIN: the password comes next */
    SMTP_AUTH_CHECK,       /* the lockout and the modules are asked (WAIT) */
};

#define SMTP_AUTH_FIELD_MAX 256   /* a login or a password, NUL included */

struct smtp_auth_state {
    enum smtp_auth_step step;
    const char *mech;                  /* "PLAIN" or "LOGIN": the exchange's, then
                                          the login's ({auth_type} for milters) */
    unsigned fails;                    /* failed logins (Auth_tolerance) */
    char login[SMTP_AUTH_FIELD_MAX];
    char password[SMTP_AUTH_FIELD_MAX];   /* wiped as soon as it was handed on */
    /* Held while the password waits in here for the lockout's answer: a
     * session that goes meanwhile wipes it (the request's cancel hook). */
    struct async_req holding;
};

/* The session's side of the rules engine (smtp_rules.c). */
struct smtp_rules_state {
    struct rules_set *set;      /* the generation the session started with */
    struct rules_cache cache;   /* lookups done once a connection */
    struct rules_ctx ctx;
    struct rules_run run;
    long hits;                  /* Add_hits!: the connection's score (RSET keeps it) */
    int denied;                 /* Deny! at connection: 503 to all but QUIT */
    enum rules_event ev;        /* the event that runs */
    const char *rcpt;           /* rcpt, lrcpt_refused: the recipient */
    int local;                  /* ... and whether it is one of ours */
    long size;                  /* SIZE declared, then the message's size */
    char msgfile[4200];         /* Event.data: the content, whole, for programs */
    void (*next)(struct smtp_session *s);   /* what the command does after it */
    struct config *ov;          /* the connection's overlay (connection, helo, auth) */
    struct config *txn_ov;      /* a transaction's: a copy of ov made at MAIL, which
                                   the transaction's Def!s change (s->conf meanwhile) */
    struct arena mem;           /* the overlay's values, the copies' addresses */
};

struct smtp_session {
    struct stream io;           /* the connection, plain or TLS */
    uv_timer_t timer;           /* idle timeout, the delay of a held reply, or
                                   the PROXY header's time limit */
    struct smtp_worker *w;
    const struct config *conf;  /* what the session reads: gen or an overlay of it */
    const struct config *gen;   /* the generation held since the connection came */
    struct async_owner own;     /* every request this session started */
    struct smtp_session *prev, *next;
    enum smtp_state state;
    const char *wait_for;       /* WAIT: what for (logged) */
    char cid[32];
    char ip[64];                /* the client: the PROXY header's, when one came */
    char proxy[64];             /* the balancer that sent it ("" none) */
    int balancer_own;            /* a v2 LOCAL header: the balancer's health check */
    char rdns[256];
    char helo[256];
    char auth[256];             /* authenticated user ("" none) */
    int greeted, esmtp;
    int tls;                    /* the session runs under TLS (the transport sets it) */
    int reading, handles_open;
    int processing, process_again;   /* smtp_session_process is running */
    int skip_line;              /* discarding an over-long command line */
    int shutdown;               /* the worker is stopping */
    unsigned msgs, errors;
    struct buf in, out, chunk;
    size_t out_pending;         /* bytes handed to uv_write, not yet done */
    struct smtp_path pending_path;   /* RCPT waiting for its lookup */
    struct accounts_result *kept;    /* RCPT: the lookup's answer, while rules run */
    const char *kept_addr;
    int auth_status;                 /* AUTH: the modules' answer, while rules run */
    struct smtp_auth_state authx;    /* the AUTH exchange (smtp_auth.c) */
    char held_reply[512];            /* a reply held back by a delay */
    struct smtp_txn txn;
    struct smtp_rules_state rules;
    struct buf announce;        /* "queue id\n" accepted, announced at close */
    struct smtp_milters *milters;    /* smtp_milter.c; NULL until a MAIL needs one */
};

/* What the milters said to the last step (smtp_milter.c). */
enum { SMTP_MILTER_GO, SMTP_MILTER_REFUSE };
struct smtp_milter_outcome {
    int verdict;             /* SMTP_MILTER_REFUSE: answer reply */
    char reply[512];         /* "550 5.7.1 ..." */
    int discard;             /* accept the message and drop it */
    int hold;                /* queue it held (quarantine) */
    char hold_reason[300];
};

/* ---- smtp_server.c: life, state, I/O ---- */

/* The one place the state changes: checked, logged (why may be NULL). */
void smtp_session_set_state(struct smtp_session *s, enum smtp_state st, const char *why);
/* Appends a Msg_* reply (see smtp_reply_msg) and logs it. */
void smtp_session_reply(struct smtp_session *s, const char *msg, const char *detail,
                        const char *prefix, const char *suffix);
/* A reply whose text is fixed by the protocol (docs/smtp.md lists them). */
void smtp_session_reply_raw(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A Refused_log line: what was refused, and with which reply. */
void smtp_session_refused(struct smtp_session *s, const char *what, const char *msg);
/* The final reply: after it is written the connection closes. */
void smtp_session_hangup(struct smtp_session *s, const char *msg, const char *detail,
                         const char *why);
/* A command waits for an answer (what: for the log); input is buffered. */
void smtp_session_wait(struct smtp_session *s, const char *what);
/*
 * The answer came and its reply is in `out` from reply_start on: back to
 * reading commands, after `delay` seconds during which that reply is held
 * back (a timer, never a sleep).
 */
void smtp_session_resume(struct smtp_session *s, size_t reply_start, long delay);
/* Handles buffered input, writes replies, decides about reading. */
void smtp_session_process(struct smtp_session *s);
/* Tells the queue about an accepted message (Immed_delivery). */
void smtp_session_announce(struct smtp_session *s, const char *id);
/* STARTTLS was answered with 220 (in `out`): that reply goes out in
 * clear, input the client sent with the command is thrown away, and from
 * now on the connection is TLS (RFC 3207). */
void smtp_session_starttls(struct smtp_session *s);
/* TLS can be offered: a module is loaded, with a certificate. */
int smtp_session_tls_available(const struct smtp_session *s);

/* ---- smtp_policy.c: what the commands do ---- */

/* One complete command line (without its line end). */
void smtp_policy_command(struct smtp_session *s, const char *line, size_t n);
/* A command line over 512 bytes ended. */
void smtp_policy_line_too_long(struct smtp_session *s);
/* A rules verdict (Deny!, Defer!, Close!) against the command: 1 when it
 * answered (deny_msg unless Reply! gave one), 0 when the command goes on. */
int smtp_policy_verdict(struct smtp_session *s, const char *deny_msg, const char *what);
/* Cp! of the last event: a copy of the message for each address. */
void smtp_policy_add_copies(struct smtp_session *s);

/* ---- smtp_message.c: DATA, the content, the commit ---- */

/* The DATA command. */
void smtp_message_data(struct smtp_session *s);
/* Feeds buffered input to the DATA parser; 0 when it needs more input. */
int smtp_message_input(struct smtp_session *s);
/* Ends the transaction; a message not yet committed is dropped. */
void smtp_policy_txn_reset(struct smtp_session *s);
/* The transaction's memory goes (the session closes). */
void smtp_policy_txn_free(struct smtp_session *s);
/* Recipients a milter adds (no relay check: the filter is trusted) or
 * removes; -1 when the message has its maximum. */
int smtp_policy_add_rcpt(struct smtp_session *s, const char *addr, const char *via);
void smtp_policy_del_rcpt(struct smtp_session *s, const char *addr);
/* A refused command (counted as an error; see smtp_policy.c), for the
 * other command files: msg is a Msg_* option or a fixed "NNN text". */
void smtp_policy_refuse(struct smtp_session *s, const char *msg, const char *detail,
                        long delay);

/* ---- smtp_rules.c: the events of a session ---- */

/* The session starts: its generation of rules, its overlay. */
void smtp_rules_init(struct smtp_session *s);
void smtp_rules_free(struct smtp_session *s);
/*
 * Runs the rules of ev (as the session's Event.* option names them) and
 * then next(s), with the outcome in s->rules.run.out (empty when the event
 * has no rules).  A rule that waits for an answer puts the session in WAIT
 * (unless it is before the greeting or at the end of data); next runs when
 * it is there, unless the session went meanwhile.
 */
void smtp_rules_event(struct smtp_session *s, enum rules_event ev,
                      void (*next)(struct smtp_session *s));
/* A transaction begins (MAIL) or ends: Def!s of its events last until its
 * end, those of the connection's events for the connection. */
void smtp_rules_txn_begin(struct smtp_session *s);
void smtp_rules_txn_end(struct smtp_session *s);
/* The outcome of the last event. */
const struct rules_outcome *smtp_rules_outcome(const struct smtp_session *s);
/* A verdict's reply: Reply! when given, else dflt (a Msg_* value). */
const char *smtp_rules_reply(const struct smtp_session *s, const char *dflt);

/* ---- smtp_milter.c: the milters of a session ---- */

/* Milters are configured in the session's view (asked at MAIL). */
int smtp_milter_active(const struct smtp_session *s);
/* This transaction runs through milters (MAIL asked them). */
int smtp_milter_on(const struct smtp_session *s);
/*
 * The steps: each runs the milters in order, then next(s) with the result
 * in smtp_milter_outcome (the session waits meanwhile, as for rules).
 * mail opens the connections the transaction's Milters name; eom needs the
 * content whole in file and sends the header section captured before.
 */
void smtp_milter_mail(struct smtp_session *s, void (*next)(struct smtp_session *s));
void smtp_milter_rcpt(struct smtp_session *s, const char *rcpt,
                      void (*next)(struct smtp_session *s));
void smtp_milter_data(struct smtp_session *s, void (*next)(struct smtp_session *s));
void smtp_milter_eom(struct smtp_session *s, const char *file,
                     void (*next)(struct smtp_session *s));
/* Content as it goes to the spool: its header section is kept. */
void smtp_milter_capture(struct smtp_session *s, const char *p, size_t n);
const struct smtp_milter_outcome *smtp_milter_outcome(const struct smtp_session *s);
/* The transaction ended (the milters get abort if they were in it). */
void smtp_milter_txn_end(struct smtp_session *s);
/* HELO/EHLO or STARTTLS: the connections go (the next MAIL opens them
 * and replays connect and helo with what is new). */
void smtp_milter_reset(struct smtp_session *s);
/* The session closes: the connections go; _free: its memory, once no
 * request uses it. */
void smtp_milter_close(struct smtp_session *s);
void smtp_milter_free(struct smtp_session *s);

/* ---- smtp_auth.c: AUTH (RFC 4954) ---- */

/* Whether this session may offer AUTH: under TLS, or Auth_plaintext 1. */
int smtp_auth_offered(const struct smtp_session *s);
/* The AUTH command. */
void smtp_auth_command(struct smtp_session *s, const struct smtp_cmd *c);
/* An exchange waits for the client's next line: that line is no command. */
int smtp_auth_expects_line(const struct smtp_session *s);
/* The client's next line of the exchange (without its line end). */
void smtp_auth_line(struct smtp_session *s, const char *line, size_t n);
/* That line was over 512 bytes. */
void smtp_auth_line_too_long(struct smtp_session *s);
/*
 * What of a received line may be logged: the continuation lines of an
 * exchange become "(AUTH response)", an AUTH command loses its initial
 * response.  Returns the text, and its length in *n.
 */
const char *smtp_auth_loggable(const struct smtp_session *s, const char *line, size_t *n);

#endif
