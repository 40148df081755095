/*
 * spf.c - check_host() (RFC 7208 4) as a state machine on dns.h.
 *
 * One check is one allocation: the identities, a stack of frames (the top
 * record, then one per include being evaluated) and the mechanism in
 * flight.  At most one DNS query runs at a time, owned by the check's own
 * async_owner: the caller's owner holds only the check's async_req, whose
 * cancel hook cancels that owner and frees the check, so an answer that
 * arrives later is dropped by dns.c and never reaches freed memory.  Every
 * callback ends in a call that may finish (and free) the check, and
 * touches nothing after it.  %{p} is the validated name (7.3), looked for
 * the first time a macro string uses it.  Must not: block, run more than
 * SPF_MAX_LOOKUPS DNS mechanisms, or trust a count or length an answer
 * gives.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "async.h"
#include "buf.h"
#include "dns.h"
#include "mem.h"
#include "spf.h"
#include "spf_parse.h"

#define SPF_MAX_LOOKUPS 10   /* 4.6.4: mechanisms and modifiers doing DNS */
#define SPF_MAX_VOIDS 2      /* 4.6.4: answers with nothing in them */
#define SPF_MAX_NAMES 10     /* 4.6.4: MX or PTR names of one mechanism */
#define SPF_MAX_DEPTH (SPF_MAX_LOOKUPS + 1)
#define SPF_EXPAND_LIMIT 8192  /* a name before 7.3 cuts it */

struct spf_frame {
    struct spf_record *rec;          /* NULL while its TXT lookup runs */
    char domain[SPF_NAME_MAX + 2];
    size_t next;                     /* the term evaluated next */
    const struct spf_term *include;  /* the include waiting for the frame above */
    int redirected;                  /* "none" is then a permerror (6.1) */
};

struct spf_check {
    struct async_req req;            /* in the caller's owner */
    struct async_owner own;          /* the check's DNS queries */
    struct dns *dns;
    spf_done_fn *fn;
    void *arg;
    struct spf_macro_ctx m;
    char ip_text[64], helo[256], sender[512], local[512], sender_dom[512], receiver[256];
    int lookups, voids, depth;
    struct spf_frame frames[SPF_MAX_DEPTH];
    const struct spf_term *term;     /* the mechanism waiting for DNS */
    char names[SPF_MAX_NAMES][256];  /* its MX or PTR names */
    size_t nnames, iname;
    char ptr_target[SPF_NAME_MAX + 2];
    /* %{p} (7.3): the client's validated names, found once, when a macro
     * string first uses it; then the expansion that needed it runs again */
    int p_state;                     /* 0: not asked, 1: asking, 2: known */
    void (*p_then)(struct spf_check *c);
    char p_names[SPF_MAX_NAMES][256];
    size_t np;
    char *exp_text;                  /* the explanation, while %{p} is found */
    struct buf tmp;                  /* expansions, the explanation */
};

static void spf_run(struct spf_check *c);
static void spf_frame_done(struct spf_check *c, int result);

static void spf_free(struct spf_check *c)
{
    async_owner_cancel(&c->own);
    for (int i = 0; i < c->depth; i++) {
        if (c->frames[i].rec) {
            spf_record_free(c->frames[i].rec);
            mem_free(c->frames[i].rec);
        }
    }
    buf_free(&c->tmp);
    mem_free(c->exp_text);
    mem_free(c);
}

static void spf_cancel(struct async_req *r)
{
    spf_free((struct spf_check *)((char *)r - offsetof(struct spf_check, req)));
}

/* The explanation is a domain's text for a client to read: nothing in it
 * may end or bend a reply line. */
static void spf_finish(struct spf_check *c, int result, const char *expl)
{
    char text[SPF_EXP_MAX + 1];
    size_t i;

    for (i = 0; expl[i] && i < SPF_EXP_MAX; i++)
        text[i] = expl[i] >= 0x20 && expl[i] < 0x7f ? expl[i] : '?';
    text[i] = '\0';
    if (async_req_end(&c->req))
        c->fn(c->arg, result, text);
    spf_free(c);
}

static struct spf_frame *spf_top(struct spf_check *c)
{
    return &c->frames[c->depth - 1];
}

/* A void answer (4.6.4): 0, or -1 once the check has finished with a
 * permerror for one too many. */
static int spf_void(struct spf_check *c)
{
    if (++c->voids <= SPF_MAX_VOIDS)
        return 0;
    spf_finish(c, SPF_PERMERROR, "");
    return -1;
}

/* ---- %{p}: the validated name (5.5, 7.3) ---- */

static void spf_on_p_addr(void *arg, int status, const struct sockaddr_storage *a,
                          size_t n);
static int spf_addr_match(struct spf_check *c, const struct sockaddr_storage *a, size_t n,
                          unsigned cidr4, unsigned cidr6);
static int spf_ptr_under(const char *name, const char *target);

static void spf_p_next(struct spf_check *c)
{
    if (c->iname == c->nnames) {
        c->p_state = 2;
        c->p_then(c);
        return;
    }
    dns_addrs_family(c->dns, &c->own, c->names[c->iname++], c->m.v6 ? AF_INET6 : AF_INET,
                     spf_on_p_addr, c);
}

/* A name whose addresses do not come is not validated; no error. */
static void spf_on_p_addr(void *arg, int status, const struct sockaddr_storage *a,
                          size_t n)
{
    struct spf_check *c = arg;

    if (status == DNS_OK && spf_addr_match(c, a, n, 32, 128))
        memcpy(c->p_names[c->np++], c->names[c->iname - 1], sizeof(c->p_names[0]));
    spf_p_next(c);
}

static void spf_on_p_ptr(void *arg, int status, const char *const *names, size_t n)
{
    struct spf_check *c = arg;

    c->nnames = c->iname = 0;
    for (size_t i = 0; i < n && i < SPF_MAX_NAMES; i++) {
        if (spf_name_ok(names[i]))
            snprintf(c->names[c->nnames++], sizeof(c->names[0]), "%s", names[i]);
    }
    spf_p_next(c);
}

/* 1 when s (n bytes) uses %{p} and the validated names are not known yet:
 * they are looked for, then `then` runs again.  The lookups are few (one
 * PTR, SPF_MAX_NAMES addresses, once per check) and count in no limit. */
static int spf_wants_p(struct spf_check *c, const char *s, size_t n,
                       void (*then)(struct spf_check *c))
{
    int uses = 0;

    for (size_t i = 0; i + 2 < n && !uses; i++)
        uses = s[i] == '%' && s[i + 1] == '{' && (s[i + 2] == 'p' || s[i + 2] == 'P');
    if (!uses || c->p_state == 2)
        return 0;
    c->p_state = 1;
    c->p_then = then;
    dns_ptr_names(c->dns, &c->own, c->ip_text, spf_on_p_ptr, c);
    return 1;
}

/* 7.3: the domain itself if validated, else one of its subdomains, else
 * any validated name. */
static void spf_set_domain(struct spf_check *c, const char *domain)
{
    const char *p = c->np ? c->p_names[0] : NULL;

    c->m.domain = domain;
    for (size_t i = c->np; i-- > 0;) {
        if (strcasecmp(c->p_names[i], domain) == 0) {
            p = c->p_names[i];
            break;
        }
        if (spf_ptr_under(c->p_names[i], domain))
            p = c->p_names[i];
    }
    c->m.p = p;
}

/* Expands a domain-spec (or takes the frame's domain) into out, a name that
 * can be looked up.  -1: the check has finished with a permerror. */
static int spf_target(struct spf_check *c, const char *spec, size_t n, char *out)
{
    struct spf_frame *f = spf_top(c);

    spf_set_domain(c, f->domain);
    if (spec == NULL) {
        snprintf(out, SPF_NAME_MAX + 2, "%s", f->domain);
        return 0;
    }
    if (spf_macro_expand(spec, n, &c->m, 0, &c->tmp) < 0 ||
        !spf_name_ok(buf_cstr(&c->tmp))) {
        spf_finish(c, SPF_PERMERROR, "");
        return -1;
    }
    snprintf(out, SPF_NAME_MAX + 2, "%s", buf_cstr(&c->tmp));
    return 0;
}

/* ---- frames: one record each ---- */

static void spf_on_txt(void *arg, int status, const char *const *txt, size_t n)
{
    struct spf_check *c = arg;
    struct spf_frame *f = spf_top(c);
    const char *found = NULL;

    if (status == DNS_TEMPFAIL) {
        spf_finish(c, SPF_TEMPERROR, "");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!spf_is_record(txt[i]))
            continue;
        if (found) {                  /* 4.5: more than one record */
            spf_finish(c, SPF_PERMERROR, "");
            return;
        }
        found = txt[i];
    }
    if (found == NULL) {
        spf_frame_done(c, SPF_NONE);
        return;
    }
    f->rec = mem_zalloc(sizeof(*f->rec));
    if (spf_record_parse(f->rec, found) < 0) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    spf_run(c);
}

/* Evaluates the record of domain in the top frame (a new one, or the one a
 * redirect replaces). */
static void spf_frame_start(struct spf_check *c, const char *domain)
{
    struct spf_frame *f = spf_top(c);

    if (f->rec) {
        spf_record_free(f->rec);
        mem_free(f->rec);
        f->rec = NULL;
    }
    snprintf(f->domain, sizeof(f->domain), "%s", domain);
    f->next = 0;
    f->include = NULL;
    dns_txt(c->dns, &c->own, f->domain, spf_on_txt, c);
}

static void spf_push(struct spf_check *c, const char *domain)
{
    memset(&c->frames[c->depth++], 0, sizeof(c->frames[0]));
    spf_frame_start(c, domain);
}

/* The explanation's text, expanded (6.2: if it cannot be, there is none). */
static void spf_exp_text(struct spf_check *c)
{
    const char *t = c->exp_text;

    if (spf_wants_p(c, t, strlen(t), spf_exp_text))
        return;
    spf_set_domain(c, spf_top(c)->domain);
    if (spf_macro_expand(t, strlen(t), &c->m, 1, &c->tmp) < 0)
        buf_reset(&c->tmp);
    spf_finish(c, SPF_FAIL, buf_cstr(&c->tmp));
}

static void spf_on_exp(void *arg, int status, const char *const *txt, size_t n)
{
    struct spf_check *c = arg;

    /* 6.2: anything but one record gives no explanation */
    if (status != DNS_OK || n != 1) {
        spf_finish(c, SPF_FAIL, "");
        return;
    }
    c->exp_text = mem_strdup(txt[0]);
    spf_exp_text(c);
}

/* The top record failed the client: its exp= (not an include's) explains. */
static void spf_explain(struct spf_check *c)
{
    struct spf_record *r = spf_top(c)->rec;
    char name[SPF_NAME_MAX + 2];

    if (spf_wants_p(c, r->exp, r->exp_len, spf_explain))
        return;
    spf_set_domain(c, spf_top(c)->domain);
    if (spf_macro_expand(r->exp, r->exp_len, &c->m, 0, &c->tmp) < 0 ||
        !spf_name_ok(buf_cstr(&c->tmp))) {
        spf_finish(c, SPF_FAIL, "");
        return;
    }
    snprintf(name, sizeof(name), "%s", buf_cstr(&c->tmp));
    dns_txt(c->dns, &c->own, name, spf_on_exp, c);
}

/* The top frame has its result: the check's, or its include's (5.2). */
static void spf_frame_done(struct spf_check *c, int result)
{
    struct spf_frame *f = spf_top(c);

    if (result == SPF_NONE && f->redirected)
        result = SPF_PERMERROR;
    if (c->depth == 1) {
        if (result == SPF_FAIL && f->rec && f->rec->exp)
            spf_explain(c);
        else
            spf_finish(c, result, "");
        return;
    }
    if (result == SPF_NONE || result == SPF_PERMERROR) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    if (f->rec) {
        spf_record_free(f->rec);
        mem_free(f->rec);
    }
    c->depth--;
    if (result == SPF_PASS)
        spf_frame_done(c, spf_top(c)->include->qual);
    else
        spf_run(c);
}

/* ---- mechanisms that ask DNS ---- */

/* The address bytes of a, if it is of the client's family. */
static const unsigned char *spf_sa_bytes(const struct spf_check *c,
                                         const struct sockaddr_storage *a)
{
    if (!c->m.v6 && a->ss_family == AF_INET)
        return (const unsigned char *)&((const struct sockaddr_in *)a)->sin_addr;
    if (c->m.v6 && a->ss_family == AF_INET6)
        return ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
    return NULL;
}

static int spf_addr_match(struct spf_check *c, const struct sockaddr_storage *a, size_t n,
                          unsigned cidr4, unsigned cidr6)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *b = spf_sa_bytes(c, &a[i]);
        if (b && spf_prefix_match(c->m.ip, b, c->m.v6 ? 16 : 4, c->m.v6 ? cidr6 : cidr4))
            return 1;
    }
    return 0;
}

/* a, exists: one address lookup of the target. */
static void spf_on_a(void *arg, int status, const struct sockaddr_storage *a, size_t n)
{
    struct spf_check *c = arg;
    const struct spf_term *t = c->term;

    if (status == DNS_TEMPFAIL) {
        spf_finish(c, SPF_TEMPERROR, "");
        return;
    }
    if (status != DNS_OK && spf_void(c) < 0)
        return;
    if (status == DNS_OK &&
        (t->mech == SPF_M_EXISTS || spf_addr_match(c, a, n, t->cidr4, t->cidr6)))
        spf_frame_done(c, t->qual);
    else
        spf_run(c);
}

static void spf_on_mx_addr(void *arg, int status, const struct sockaddr_storage *a,
                           size_t n);

static void spf_mx_next(struct spf_check *c)
{
    if (c->iname == c->nnames) {
        spf_run(c);
        return;
    }
    dns_addrs_family(c->dns, &c->own, c->names[c->iname++], c->m.v6 ? AF_INET6 : AF_INET,
                     spf_on_mx_addr, c);
}

static void spf_on_mx_addr(void *arg, int status, const struct sockaddr_storage *a,
                           size_t n)
{
    struct spf_check *c = arg;

    if (status == DNS_TEMPFAIL)
        spf_finish(c, SPF_TEMPERROR, "");
    else if (status == DNS_OK && spf_addr_match(c, a, n, c->term->cidr4, c->term->cidr6))
        spf_frame_done(c, c->term->qual);
    else
        spf_mx_next(c);
}

static void spf_on_mx(void *arg, int status, const struct dns_mx *mx, size_t n)
{
    struct spf_check *c = arg;

    if (status == DNS_TEMPFAIL) {
        spf_finish(c, SPF_TEMPERROR, "");
        return;
    }
    if (status != DNS_OK) {
        if (spf_void(c) == 0)
            spf_run(c);
        return;
    }
    if (n > SPF_MAX_NAMES) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    c->nnames = c->iname = 0;
    for (size_t i = 0; i < n; i++) {
        if (spf_name_ok(mx[i].host))   /* a null MX "." names no host */
            snprintf(c->names[c->nnames++], sizeof(c->names[0]), "%s", mx[i].host);
    }
    spf_mx_next(c);
}

/* 5.5: name is target or below it. */
static int spf_ptr_under(const char *name, const char *target)
{
    size_t n = strlen(name), t = strlen(target);

    if (n && name[n - 1] == '.')
        n--;
    if (t && target[t - 1] == '.')
        t--;
    if (t > n || strncasecmp(name + n - t, target, t) != 0)
        return 0;
    return t == n || name[n - t - 1] == '.';
}

static void spf_on_ptr_addr(void *arg, int status, const struct sockaddr_storage *a,
                            size_t n);

static void spf_ptr_next(struct spf_check *c)
{
    if (c->iname == c->nnames) {
        spf_run(c);
        return;
    }
    dns_addrs_family(c->dns, &c->own, c->names[c->iname++], c->m.v6 ? AF_INET6 : AF_INET,
                     spf_on_ptr_addr, c);
}

/* 5.5: a name whose addresses fail to come is skipped, not an error. */
static void spf_on_ptr_addr(void *arg, int status, const struct sockaddr_storage *a,
                            size_t n)
{
    struct spf_check *c = arg;

    if (status == DNS_OK && spf_addr_match(c, a, n, 32, 128))
        spf_frame_done(c, c->term->qual);
    else
        spf_ptr_next(c);
}

static void spf_on_ptr(void *arg, int status, const char *const *names, size_t n)
{
    struct spf_check *c = arg;

    if ((status == DNS_NXDOMAIN || status == DNS_NODATA) && spf_void(c) < 0)
        return;
    c->nnames = c->iname = 0;
    for (size_t i = 0; i < n && i < SPF_MAX_NAMES; i++) {
        if (spf_name_ok(names[i]) && spf_ptr_under(names[i], c->ptr_target))
            snprintf(c->names[c->nnames++], sizeof(c->names[0]), "%s", names[i]);
    }
    spf_ptr_next(c);
}

/* Starts the DNS part of t.  Returns after the call that may finish c. */
static void spf_ask_target(struct spf_check *c);

static void spf_ask(struct spf_check *c, const struct spf_term *t)
{

    if (++c->lookups > SPF_MAX_LOOKUPS) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    c->term = t;
    spf_ask_target(c);
}

/* The DNS part of c->term, its lookup counted. */
static void spf_ask_target(struct spf_check *c)
{
    const struct spf_term *t = c->term;
    char target[SPF_NAME_MAX + 2];
    int family = c->m.v6 ? AF_INET6 : AF_INET;

    if (spf_wants_p(c, t->spec, t->spec_len, spf_ask_target))
        return;
    if (spf_target(c, t->spec, t->spec_len, target) < 0)
        return;
    switch (t->mech) {
    case SPF_M_INCLUDE:
        spf_top(c)->include = t;
        spf_push(c, target);
        break;
    case SPF_M_A:
        dns_addrs_family(c->dns, &c->own, target, family, spf_on_a, c);
        break;
    case SPF_M_EXISTS:   /* 5.7: always an A lookup */
        dns_addrs_family(c->dns, &c->own, target, AF_INET, spf_on_a, c);
        break;
    case SPF_M_MX:
        dns_mx(c->dns, &c->own, target, spf_on_mx, c);
        break;
    default:             /* SPF_M_PTR */
        memcpy(c->ptr_target, target, sizeof(target));
        dns_ptr_names(c->dns, &c->own, c->ip_text, spf_on_ptr, c);
        break;
    }
}

static int spf_ip_match(const struct spf_check *c, const struct spf_term *t)
{
    if (t->mech == SPF_M_IP4)
        return !c->m.v6 && spf_prefix_match(c->m.ip, t->net, 4, t->cidr4);
    return c->m.v6 && spf_prefix_match(c->m.ip, t->net, 16, t->cidr6);
}

/* The record redirect= names replaces the frame's, its lookup counted. */
static void spf_redirect_target(struct spf_check *c)
{
    struct spf_frame *f = spf_top(c);
    char target[SPF_NAME_MAX + 2];

    if (spf_wants_p(c, f->rec->redirect, f->rec->redirect_len, spf_redirect_target))
        return;
    if (spf_target(c, f->rec->redirect, f->rec->redirect_len, target) < 0)
        return;
    f->redirected = 1;
    spf_frame_start(c, target);
}

/* 6.1: after every mechanism, redirect= (a new record in this frame). */
static void spf_redirect(struct spf_check *c)
{
    if (++c->lookups > SPF_MAX_LOOKUPS) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    spf_redirect_target(c);
}

/* Evaluates the top frame's terms from where it stopped, until one needs
 * DNS or one matches. */
static void spf_run(struct spf_check *c)
{
    struct spf_frame *f = spf_top(c);

    while (f->next < f->rec->nterms) {
        const struct spf_term *t = &f->rec->terms[f->next++];
        if (t->mech == SPF_M_ALL || ((t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6) &&
                                     spf_ip_match(c, t))) {
            spf_frame_done(c, t->qual);
            return;
        }
        if (t->mech != SPF_M_IP4 && t->mech != SPF_M_IP6) {
            spf_ask(c, t);
            return;
        }
    }
    if (f->rec->redirect)
        spf_redirect(c);
    else
        spf_frame_done(c, SPF_NEUTRAL);
}

/* ---- the check ---- */

/* 4.3: a name worth a TXT lookup; anything else is "none". */
static int spf_domain_ok(const char *d)
{
    const char *dot = strchr(d, '.');

    if (!spf_name_ok(d) || dot == NULL || dot[1] == '\0')
        return 0;
    for (; *d; d++) {
        if (!isalnum((unsigned char)*d) && !strchr("-_.", *d))
            return 0;
    }
    return 1;
}

/* The identities, bounded; 0, or -1 when one is too long to be real. */
static int spf_identities(struct spf_check *c, const char *ip, const char *helo,
                          const char *sender, const char *receiver)
{
    const char *at;

    if (strlen(ip) >= sizeof(c->ip_text) || strlen(helo) >= sizeof(c->helo) ||
        strlen(sender) >= sizeof(c->sender) || strlen(receiver) >= sizeof(c->receiver))
        return -1;
    strcpy(c->ip_text, ip);
    strcpy(c->helo, helo);
    strcpy(c->receiver, receiver);
    if (sender[0] == '\0')   /* 2.4: the null sender is postmaster@helo */
        snprintf(c->sender, sizeof(c->sender), "postmaster@%s", helo);
    else
        strcpy(c->sender, sender);
    at = strrchr(c->sender, '@');
    if (at == NULL || at == c->sender || (size_t)(at - c->sender) >= sizeof(c->local))
        snprintf(c->local, sizeof(c->local), "postmaster");
    else
        snprintf(c->local, sizeof(c->local), "%.*s", (int)(at - c->sender), c->sender);
    snprintf(c->sender_dom, sizeof(c->sender_dom), "%s", at ? at + 1 : c->sender);
    return 0;
}

void spf_check(struct dns *dns, struct async_owner *o, const char *ip, const char *helo,
               const char *sender, const char *receiver, spf_done_fn *fn, void *arg)
{
    struct spf_check *c = mem_zalloc(sizeof(*c));
    int bad;

    c->dns = dns;
    c->fn = fn;
    c->arg = arg;
    async_owner_init(&c->own);
    buf_init(&c->tmp, SPF_EXPAND_LIMIT);
    async_req_start(&c->req, o, spf_cancel, 0);
    bad = spf_identities(c, ip, helo ? helo : "", sender ? sender : "",
                         receiver ? receiver : "");
    if (bad || spf_parse_ip(c->ip_text, c->m.ip, &c->m.v6) < 0) {
        spf_finish(c, SPF_PERMERROR, "");
        return;
    }
    c->m.sender = c->sender;
    c->m.local = c->local;
    c->m.sender_dom = c->sender_dom;
    c->m.helo = c->helo;
    c->m.receiver = c->receiver;
    c->m.ip_text = c->ip_text;
    c->m.now = time(NULL);
    if (!spf_domain_ok(c->sender_dom)) {
        spf_finish(c, SPF_NONE, "");
        return;
    }
    spf_push(c, c->sender_dom);
}
