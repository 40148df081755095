/*
 * smtp_client_txn.c - what each transaction of an outgoing SMTP session
 * starts from, and whether a session may be parked for the next one (see
 * smtp_client_int.h).  Must not: send, read, or touch the handles
 * (smtp_client.c does).
 */
#include <stddef.h>

#include "mem.h"
#include "smtp_client_int.h"

void smtp_client_txn_reset(struct smtp_client *c, size_t n)
{
    struct smtp_client_result *r = &c->res;

    c->finished = 0;
    c->rcpt_next = c->accepted = c->last_refused = 0;
    c->encoded_size = 0;
    c->content_pos = 0;
    c->content_done = 0;
    mem_free(c->rstate);
    mem_free(r->rcpt_code);
    mem_free(r->rcpt_answer);
    c->rstate = mem_zalloc(n + 1);
    r->rcpt_code = mem_zalloc((n + 1) * sizeof(*r->rcpt_code));
    r->rcpt_answer = mem_zalloc((n + 1) * sizeof(*r->rcpt_answer));
    r->nrcpt = n;
    r->stage = SMTP_CLIENT_CONNECT;
    r->ok = r->code = 0;
    r->answer[0] = '\0';
    r->tls_failed = r->lost = r->reusable = 0;
    r->reused = c->transactions++ > 0;
}

int smtp_client_can_park(const struct smtp_client *c)
{
    return c->state >= SC_S_MAIL && c->state <= SC_S_CONTENT && !c->finished &&
           c->msg->keep && c->unanswered == 0 && !c->quit_sent && !c->deferred;
}

long smtp_client_transactions(const struct smtp_client *c)
{
    return c->transactions;
}
