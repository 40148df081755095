/*
 * dns.c - c-ares on the libuv loop (see dns.h).
 *
 * c-ares tells us, through its socket-state callback, which sockets it
 * wants watched; each gets a uv_poll handle that feeds ares_process_fd.
 * One timer follows ares_timeout() so retries and timeouts happen without
 * anyone waiting.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "dns.h"
#include "mem.h"
#include "net.h"

#define DNS_TIMEOUT_MS 3000
#define DNS_TRIES 2

struct dns_sock {
    struct dns *d;
    uv_poll_t poll;
    ares_socket_t fd;
    struct dns_sock *next;
};

struct dns {
    uv_loop_t *loop;
    ares_channel ch;
    uv_timer_t timer;
    struct dns_sock *socks;
    int open_handles;
    int closing;
};

/* One query: c-ares holds it until its callback, owner or not.  c-ares
 * cannot cancel one query of a channel, so a cancelled query just has its
 * answer dropped. */
struct dns_query {
    struct async_req req;
    struct dns *d;
    void (*fn)(void);  /* one of dns_*_fn, by kind */
    void *arg;
};

const char *dns_strstatus(int status)
{
    switch (status) {
    case DNS_OK: return "ok";
    case DNS_NXDOMAIN: return "no such domain";
    case DNS_NODATA: return "no records";
    default: return "temporary DNS failure";
    }
}

static int dns_map_status(int status)
{
    switch (status) {
    case ARES_SUCCESS: return DNS_OK;
    case ARES_ENOTFOUND: return DNS_NXDOMAIN;
    case ARES_ENODATA: return DNS_NODATA;
    default: return DNS_TEMPFAIL;
    }
}

/* ---- loop integration ---- */

static void dns_handle_closed(uv_handle_t *h)
{
    struct dns *d;

    if (h->type == UV_POLL) {
        struct dns_sock *s = h->data;
        d = s->d;
        mem_free(s);
    } else {
        d = h->data;
    }
    if (--d->open_handles == 0 && d->closing)
        mem_free(d);
}

static void dns_arm_timer(struct dns *d);

static void dns_on_poll(uv_poll_t *p, int status, int events)
{
    struct dns_sock *s = p->data;
    struct dns *d = s->d;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

    if (status < 0 || (events & UV_READABLE))
        rfd = s->fd;
    if (status < 0 || (events & UV_WRITABLE))
        wfd = s->fd;
    ares_process_fd(d->ch, rfd, wfd);
    dns_arm_timer(d);
}

static void dns_on_timer(uv_timer_t *t)
{
    struct dns *d = t->data;

    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_arm_timer(d);
}

static void dns_arm_timer(struct dns *d)
{
    struct timeval tv, *tvp;

    if (d->closing)
        return;
    tvp = ares_timeout(d->ch, NULL, &tv);
    if (tvp == NULL) {
        uv_timer_stop(&d->timer);
        return;
    }
    uv_timer_start(&d->timer, dns_on_timer,
                   (uint64_t)tvp->tv_sec * 1000 + (uint64_t)tvp->tv_usec / 1000 + 1, 0);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_sock **pp, *s;
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

    for (pp = &d->socks; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
        ;
    s = *pp;
    if (events == 0) {
        if (s) {
            *pp = s->next;
            uv_close((uv_handle_t *)&s->poll, dns_handle_closed);
        }
        return;
    }
    if (s == NULL) {
        s = mem_zalloc(sizeof(*s));
        s->d = d;
        s->fd = fd;
        if (uv_poll_init_socket(d->loop, &s->poll, fd) < 0) {
            mem_free(s);
            return;
        }
        s->poll.data = s;
        s->next = d->socks;
        d->socks = s;
        d->open_handles++;
    }
    uv_poll_start(&s->poll, events, dns_on_poll);
}

/* ---- resolver ---- */

/* Dns_servers in the form c-ares takes: "ip:port,[ip6]:port", no blanks. */
static void dns_servers_csv(const char *servers, char *out, size_t size)
{
    struct net_hostport hp;
    size_t n = 0;

    out[0] = '\0';
    for (int i = 0; servers && servers[0] && net_list_item(servers, i, 53, &hp) == 0; i++) {
        int k = snprintf(out + n, size - n, "%s%s%s%s:%d", n ? "," : "",
                         strchr(hp.host, ':') ? "[" : "", hp.host,
                         strchr(hp.host, ':') ? "]" : "", hp.port);
        if (k < 0 || (size_t)k >= size - n)
            break;
        n += (size_t)k;
    }
}

struct dns *dns_new(uv_loop_t *loop, const char *servers, char *err, size_t errlen)
{
    char csv[1024];
    struct dns *d = mem_zalloc(sizeof(*d));
    struct ares_options o;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES, r;

    memset(&o, 0, sizeof(o));
    o.sock_state_cb = dns_sock_state;
    o.sock_state_cb_data = d;
    o.timeout = DNS_TIMEOUT_MS;
    o.tries = DNS_TRIES;
    if (servers && servers[0]) {
        o.lookups = (char *)"b";  /* only DNS: tests and clusters see one truth */
        mask |= ARES_OPT_LOOKUPS;
    }
    d->loop = loop;
    dns_servers_csv(servers, csv, sizeof(csv));
    if ((r = ares_init_options(&d->ch, &o, mask)) != ARES_SUCCESS ||
        (csv[0] && (r = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS)) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(r));
        if (d->ch)
            ares_destroy(d->ch);
        mem_free(d);
        return NULL;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->open_handles = 1;
    return d;
}

void dns_free(struct dns *d)
{
    if (d == NULL)
        return;
    d->closing = 1;
    ares_destroy(d->ch);  /* pending callbacks run with ARES_EDESTRUCTION */
    uv_close((uv_handle_t *)&d->timer, dns_handle_closed);
}

static struct dns_query *dns_query_new(struct dns *d, struct async_owner *o,
                                       void (*fn)(void), void *arg)
{
    struct dns_query *q = mem_zalloc(sizeof(*q));

    q->d = d;
    q->fn = fn;
    q->arg = arg;
    async_req_start(&q->req, o, NULL, 0);
    return q;
}

/* The answer is there: 1 when its owner still wants it.  A channel being
 * destroyed answers everything with ARES_EDESTRUCTION: nobody wants that. */
static int dns_query_end(struct dns_query *q, int status)
{
    int deliver = async_req_end(&q->req);

    return deliver && status != ARES_EDESTRUCTION;
}

static int dns_mx_cmp(const void *a, const void *b)
{
    return ((const struct dns_mx *)a)->pref - ((const struct dns_mx *)b)->pref;
}

/* Equal preferences are tried in random order (RFC 5321 5.1). */
static void dns_mx_shuffle(struct dns_mx *mx, size_t n)
{
    size_t i = 0;

    qsort(mx, n, sizeof(*mx), dns_mx_cmp);
    while (i < n) {
        size_t j = i;
        while (j < n && mx[j].pref == mx[i].pref)
            j++;
        for (size_t k = j - 1; k > i; k--) {
            size_t r = i + (size_t)random() % (k - i + 1);
            struct dns_mx t = mx[k];
            mx[k] = mx[r];
            mx[r] = t;
        }
        i = j;
    }
}

static void dns_mx_done(void *arg, int status, int timeouts, unsigned char *abuf,
                        int alen)
{
    struct dns_query *q = arg;
    struct ares_mx_reply *reply = NULL, *r;
    struct dns_mx mx[DNS_MAX_MX];
    size_t n = 0;
    int st = dns_map_status(status);

    if (status == ARES_SUCCESS)
        st = dns_map_status(ares_parse_mx_reply(abuf, alen, &reply));
    for (r = reply; r && n < DNS_MAX_MX; r = r->next) {
        snprintf(mx[n].host, sizeof(mx[n].host), "%s", r->host);
        mx[n++].pref = r->priority;
    }
    if (reply)
        ares_free_data(reply);
    if (st == DNS_OK && n == 0)
        st = DNS_NODATA;
    dns_mx_shuffle(mx, n);
    if (dns_query_end(q, status))
        ((dns_mx_fn *)q->fn)(q->arg, st, mx, n);
    mem_free(q);
}

void dns_mx(struct dns *d, struct async_owner *o, const char *domain, dns_mx_fn *fn,
            void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);

    ares_query(d->ch, domain, C_IN, T_MX, dns_mx_done, q);
    dns_arm_timer(d);
}

static void dns_addr_done(void *arg, int status, int timeouts,
                          struct ares_addrinfo *res)
{
    struct dns_query *q = arg;
    struct sockaddr_storage a[DNS_MAX_ADDRS];
    struct ares_addrinfo_node *node;
    size_t n = 0;
    int st = dns_map_status(status);

    for (node = res ? res->nodes : NULL; node && n < DNS_MAX_ADDRS; node = node->ai_next) {
        if (node->ai_addrlen > sizeof(a[0]))
            continue;
        memset(&a[n], 0, sizeof(a[n]));
        memcpy(&a[n++], node->ai_addr, node->ai_addrlen);
    }
    if (res)
        ares_freeaddrinfo(res);
    if (st == DNS_OK && n == 0)
        st = DNS_NODATA;
    if (dns_query_end(q, status))
        ((dns_addr_fn *)q->fn)(q->arg, st, a, n);
    mem_free(q);
}

void dns_addrs(struct dns *d, struct async_owner *o, const char *host, dns_addr_fn *fn,
               void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);
    struct ares_addrinfo_hints hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(d->ch, host, NULL, &hints, dns_addr_done, q);
    dns_arm_timer(d);
}

static void dns_ptr_done(void *arg, int status, int timeouts, struct hostent *h)
{
    struct dns_query *q = arg;
    int st = dns_map_status(status);

    if (st == DNS_OK && (h == NULL || h->h_name == NULL))
        st = DNS_NODATA;
    if (dns_query_end(q, status))
        ((dns_name_fn *)q->fn)(q->arg, st, st == DNS_OK ? h->h_name : NULL);
    mem_free(q);
}

void dns_ptr(struct dns *d, struct async_owner *o, const char *ip, dns_name_fn *fn,
             void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);
    unsigned char addr[16];
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;

    if (inet_pton(family, ip, addr) != 1) {
        dns_ptr_done(q, ARES_ENOTFOUND, 0, NULL);
        return;
    }
    ares_gethostbyaddr(d->ch, addr, family == AF_INET ? 4 : 16, family,
                       dns_ptr_done, q);
    dns_arm_timer(d);
}

/* ---- TXT, one family, every PTR name (SPF, RFC 7208) ---- */

/* A list of strings the answer's parse fills: one allocation each, freed
 * with the list. */
struct dns_strs {
    char *s[DNS_MAX_STRS];
    size_t n;
};

static void dns_strs_free(struct dns_strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        mem_free(l->s[i]);
    l->n = 0;
}

static void dns_strs_deliver(struct dns_query *q, int status, int st, struct dns_strs *l)
{
    if (st == DNS_OK && l->n == 0)
        st = DNS_NODATA;
    if (st != DNS_OK)
        dns_strs_free(l);
    if (dns_query_end(q, status))
        ((dns_strs_fn *)q->fn)(q->arg, st, (const char *const *)l->s, l->n);
    dns_strs_free(l);
    mem_free(q);
}

/* Appends a chunk to the record being built; a NUL inside is made a byte no
 * caller takes as text, so the record cannot end early. */
static void dns_txt_append(char *rec, size_t *len, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n && *len < DNS_MAX_TXT; i++)
        rec[(*len)++] = p[i] ? (char)p[i] : '\x7f';
    rec[*len] = '\0';
}

static void dns_txt_done(void *arg, int status, int timeouts, unsigned char *abuf,
                         int alen)
{
    struct dns_query *q = arg;
    struct ares_txt_ext *reply = NULL, *t;
    struct dns_strs l = { .n = 0 };
    size_t len = 0;
    int st = dns_map_status(status), skip = 0;

    if (status == ARES_SUCCESS)
        st = dns_map_status(ares_parse_txt_reply_ext(abuf, alen, &reply));
    for (t = reply; t && st == DNS_OK; t = t->next) {
        if (t->record_start || l.n == 0) {
            skip = l.n == DNS_MAX_STRS;
            if (skip)
                continue;
            l.s[l.n++] = mem_alloc(DNS_MAX_TXT + 1);
            len = 0;
            l.s[l.n - 1][0] = '\0';
        }
        if (!skip)
            dns_txt_append(l.s[l.n - 1], &len, t->txt, t->length);
    }
    if (reply)
        ares_free_data(reply);
    for (size_t i = 0; i < l.n; i++)   /* most records are short */
        l.s[i] = mem_realloc(l.s[i], strlen(l.s[i]) + 1);
    dns_strs_deliver(q, status, st, &l);
}

void dns_txt(struct dns *d, struct async_owner *o, const char *name, dns_strs_fn *fn,
             void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);

    ares_query(d->ch, name, C_IN, T_TXT, dns_txt_done, q);
    dns_arm_timer(d);
}

/* The addresses of an A or AAAA answer, as sockaddrs with port 0. */
static size_t dns_family_parse(int type, unsigned char *abuf, int alen,
                               struct sockaddr_storage *a, int *st)
{
    struct ares_addrttl v4[DNS_MAX_FAMILY_ADDRS];
    struct ares_addr6ttl v6[DNS_MAX_FAMILY_ADDRS];
    int n = DNS_MAX_FAMILY_ADDRS, r;

    if (type == T_A)
        r = ares_parse_a_reply(abuf, alen, NULL, v4, &n);
    else
        r = ares_parse_aaaa_reply(abuf, alen, NULL, v6, &n);
    *st = dns_map_status(r);
    if (r != ARES_SUCCESS)
        return 0;
    for (int i = 0; i < n; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        if (type == T_A) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&a[i];
            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, &v4[i].ipaddr, 4);
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a[i];
            s6->sin6_family = AF_INET6;
            memcpy(&s6->sin6_addr, &v6[i].ip6addr, 16);
        }
    }
    return (size_t)n;
}

static void dns_family_done(void *arg, int status, int timeouts, unsigned char *abuf,
                            int alen, int type)
{
    struct dns_query *q = arg;
    struct sockaddr_storage *a = mem_alloc(DNS_MAX_FAMILY_ADDRS * sizeof(*a));
    size_t n = 0;
    int st = dns_map_status(status);

    if (status == ARES_SUCCESS)
        n = dns_family_parse(type, abuf, alen, a, &st);
    if (st == DNS_OK && n == 0)
        st = DNS_NODATA;
    if (dns_query_end(q, status))
        ((dns_addr_fn *)q->fn)(q->arg, st, a, n);
    mem_free(a);
    mem_free(q);
}

static void dns_a_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    dns_family_done(arg, status, timeouts, abuf, alen, T_A);
}

static void dns_aaaa_done(void *arg, int status, int timeouts, unsigned char *abuf,
                          int alen)
{
    dns_family_done(arg, status, timeouts, abuf, alen, T_AAAA);
}

void dns_addrs_family(struct dns *d, struct async_owner *o, const char *host, int family,
                      dns_addr_fn *fn, void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);

    if (family == AF_INET6)
        ares_query(d->ch, host, C_IN, T_AAAA, dns_aaaa_done, q);
    else
        ares_query(d->ch, host, C_IN, T_A, dns_a_done, q);
    dns_arm_timer(d);
}

static void dns_ptr_names_done(void *arg, int status, int timeouts, unsigned char *abuf,
                               int alen)
{
    struct dns_query *q = arg;
    static const unsigned char any[16];  /* only copied into h, never read */
    struct hostent *h = NULL;
    struct dns_strs l = { .n = 0 };
    int st = dns_map_status(status);

    if (status == ARES_SUCCESS)
        st = dns_map_status(ares_parse_ptr_reply(abuf, alen, any, 16, AF_INET6, &h));
    if (st == DNS_OK && h && h->h_name)
        l.s[l.n++] = mem_strdup(h->h_name);
    /* c-ares gives the other PTR names as aliases */
    for (size_t i = 0; st == DNS_OK && h && h->h_aliases && h->h_aliases[i] &&
                       l.n < DNS_MAX_STRS; i++)
        l.s[l.n++] = mem_strdup(h->h_aliases[i]);
    if (h)
        ares_free_hostent(h);
    dns_strs_deliver(q, status, st, &l);
}

/* The reverse name of an address: "4.3.2.1.in-addr.arpa", nibbles for v6. */
static int dns_reverse_name(const char *ip, char *out, size_t size)
{
    unsigned char a[16];
    size_t n = 0;

    if (inet_pton(AF_INET, ip, a) == 1) {
        snprintf(out, size, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, a) != 1 || size < 73)
        return -1;
    for (int i = 15; i >= 0; i--)
        n += (size_t)snprintf(out + n, size - n, "%x.%x.", a[i] & 15, a[i] >> 4);
    snprintf(out + n, size - n, "ip6.arpa");
    return 0;
}

void dns_ptr_names(struct dns *d, struct async_owner *o, const char *ip, dns_strs_fn *fn,
                   void *arg)
{
    struct dns_query *q = dns_query_new(d, o, (void (*)(void))fn, arg);
    char name[80];

    if (dns_reverse_name(ip, name, sizeof(name)) < 0) {
        dns_ptr_names_done(q, ARES_ENOTFOUND, 0, NULL, 0);
        return;
    }
    ares_query(d->ch, name, C_IN, T_PTR, dns_ptr_names_done, q);
    dns_arm_timer(d);
}
