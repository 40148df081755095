/*
 * deliver_smtp.h - delivery of one message to the recipients of one domain
 * over SMTP.
 *
 * Owns: the route (Relay_host, or the domain's MX records in preference
 * order, or its own address records when it has no MX; a null MX refuses
 * mail), trying the addresses of each host in turn while the failure is
 * one of connection (refused, timeout, greeting or HELO refused), the
 * Tarpit_limit batches with Tarpit_sleep between them, and turning the SMTP
 * client's answers into a result per recipient; with Smtp_reuse_time and
 * Smtp_reuse_max, asking the cache (smtp_cache.h) for an idle session to
 * the address it would connect to, parking the session after a healthy
 * transaction, and replacing a cached session found dead, once, by a
 * fresh connection to the same address; with Smtp_dest_conns, waiting in
 * the cache's line (at most Connect_timeout) instead of connecting beyond
 * the destination's bound.  Must not: touch the spool or decide retry
 * times (delivery.c does).
 */
#ifndef SELOR_DELIVER_SMTP_H
#define SELOR_DELIVER_SMTP_H

#include <stddef.h>
#include <uv.h>

struct async_owner;
struct dns;
struct config;

enum deliver_status {
    DELIVER_OK,        /* delivered */
    DELIVER_TEMP,      /* try again later */
    DELIVER_PERM,      /* failed for good */
};

#define DELIVER_ANSWER_MAX 512

struct deliver_rcpt_result {
    int status;                       /* enum deliver_status */
    char answer[DELIVER_ANSWER_MAX];  /* the reply or local reason */
    char host[300];                   /* "mx.example.com[192.0.2.1]:25" that answered */
};

struct deliver_smtp_req {
    const struct config *conf;
    struct dns *dns;
    const struct stream_tls *tls;     /* for Tls_delivery */
    struct smtp_cache *cache;         /* idle sessions to reuse (NULL: none) */
    const char *domain;               /* lower case */
    const char *from;                 /* "" for the null sender */
    const char *const *rcpts;
    size_t nrcpt;
    const char *content;              /* the c file (LF line ends) */
    size_t len;
    int body_8bit;
};

struct deliver_smtp;
/* results[i] belongs to rcpts[i]; valid during the callback only. */
typedef void deliver_smtp_done_fn(void *arg, const struct deliver_rcpt_result *results,
                                  size_t n);

/* For owner o (async.h).  req (and what it points to) must stay valid until
 * done or the owner's cancel; done never runs before this returns. */
struct deliver_smtp *deliver_smtp_start(uv_loop_t *loop, struct async_owner *o,
                                        const struct deliver_smtp_req *req,
                                        deliver_smtp_done_fn *done, void *arg);
/* Stops it (its DNS queries and SMTP session too); done will not be called. */
void deliver_smtp_cancel(struct deliver_smtp *d);
/* A server may already have taken the message (a transaction's content
 * was sent): stopping now could deliver it twice. */
int deliver_smtp_committed(const struct deliver_smtp *d);

#endif
