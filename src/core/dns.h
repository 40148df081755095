/*
 * dns.h - asynchronous DNS lookups (c-ares driven by the libuv loop).
 *
 * Owns: the resolver of one process: servers from Dns_servers (or the
 * system's), MX lookups ordered by preference with equal preferences
 * shuffled, address lookups (A and AAAA, or one family), reverse lookups,
 * TXT records.  Queries never
 * block the loop.  Each query belongs to an owner (async.h): when the
 * owner cancels, the answer is dropped.  A callback may run before the call
 * that started the query returns (an answer c-ares has at once).  Must
 * not: decide what a DNS answer means for mail (the callers do: no MX means
 * "use the A/AAAA records", NXDOMAIN is permanent).
 */
#ifndef SELOR_DNS_H
#define SELOR_DNS_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN,  /* the name does not exist: permanent */
    DNS_NODATA,    /* the name exists, no record of that type */
    DNS_TEMPFAIL,  /* timeout, server failure, refused: try again later */
};

#define DNS_MAX_MX 32
#define DNS_MAX_ADDRS 16
/* dns_txt / dns_ptr_names: records kept, and bytes kept of one record (its
 * strings joined); what passes is cut, since answers are the peer's. */
#define DNS_MAX_STRS 32
#define DNS_MAX_TXT 8192
/* dns_addrs_family: addresses kept of one answer. */
#define DNS_MAX_FAMILY_ADDRS 64

struct dns_mx {
    char host[256];
    int pref;
};

struct async_owner;
struct dns;

typedef void dns_mx_fn(void *arg, int status, const struct dns_mx *mx, size_t n);
typedef void dns_addr_fn(void *arg, int status, const struct sockaddr_storage *a,
                         size_t n);
typedef void dns_name_fn(void *arg, int status, const char *name);
/* n NUL-terminated strings; n == 0 unless status is DNS_OK. */
typedef void dns_strs_fn(void *arg, int status, const char *const *s, size_t n);

/* servers: "ip[:port],..." or "" for the system's resolver; NULL on error. */
struct dns *dns_new(uv_loop_t *loop, const char *servers, char *err, size_t errlen);
/* Ends every query still pending (no answer is delivered); frees the
 * resolver when its handles are closed. */
void dns_free(struct dns *d);

void dns_mx(struct dns *d, struct async_owner *o, const char *domain, dns_mx_fn *fn,
            void *arg);
void dns_addrs(struct dns *d, struct async_owner *o, const char *host, dns_addr_fn *fn,
               void *arg);
void dns_ptr(struct dns *d, struct async_owner *o, const char *ip, dns_name_fn *fn,
             void *arg);
/* The TXT records of name, each one's strings joined without separator. */
void dns_txt(struct dns *d, struct async_owner *o, const char *name, dns_strs_fn *fn,
             void *arg);
/* Only the A (family AF_INET) or only the AAAA (AF_INET6) records of host,
 * from DNS alone. */
void dns_addrs_family(struct dns *d, struct async_owner *o, const char *host, int family,
                      dns_addr_fn *fn, void *arg);
/* Every PTR name of ip (dns_ptr gives one). */
void dns_ptr_names(struct dns *d, struct async_owner *o, const char *ip, dns_strs_fn *fn,
                   void *arg);
const char *dns_strstatus(int status);

#endif
