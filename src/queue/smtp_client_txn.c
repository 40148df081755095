/*
 * smtp_client_txn.c - the state of an outgoing SMTP session between
 * commands (see smtp_client_int.h): what the server offers (its EHLO
 * reply), what each transaction starts from, and whether a session may
 * be parked for the next one.  Must not: send, read, or touch the handles
 * (smtp_client.c does).
 */
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

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

int smtp_client_drain_first(const struct smtp_client *c)
{
    return (c->state == SC_S_MAIL || c->state == SC_S_RCPT) && !c->finished &&
           c->msg->keep && c->res.pipelining && c->unanswered > 0 && !c->quit_sent;
}

/* One EHLO line after the first: "KEYWORD [params]", case-insensitive. */
static void sc_ehlo_keyword(struct smtp_client *c, const char *p, size_t n)
{
    size_t k = 0;

    while (k < n && p[k] != ' ')
        k++;
    if (k == 10 && strncasecmp(p, "PIPELINING", k) == 0) {
        c->res.pipelining = 1;
    } else if (k == 8 && strncasecmp(p, "STARTTLS", k) == 0) {
        c->starttls_offered = 1;
    } else if (k == 8 && strncasecmp(p, "8BITMIME", k) == 0) {
        c->res.eightbit = 1;
    } else if (k == 4 && strncasecmp(p, "SIZE", k) == 0) {
        long long v = 0;

        for (size_t i = k + 1; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            v = v > (LLONG_MAX - 9) / 10 ? LLONG_MAX : v * 10 + (p[i] - '0');
        c->res.size_limit = v;
        c->size_offered = 1;
    }
}

void smtp_client_parse_ehlo(struct smtp_client *c)
{
    const char *p = c->rin.text.data, *end = p + c->rin.text.len, *nl;

    c->res.esmtp = 1;
    for (int line = 0; p && p < end; line++, p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if (line > 0)  /* the first line is the server's name */
            sc_ehlo_keyword(c, p, (size_t)(nl - p));
    }
}
