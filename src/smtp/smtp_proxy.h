/*
 * smtp_proxy.h - the PROXY protocol header a load balancer (HAProxy) puts
 * in front of a connection, versions 1 (a text line) and 2 (binary), as
 * HAProxy's doc/proxy-protocol.txt defines them.
 *
 * Owns: deciding, from the bytes received so far, whether they begin with
 * a complete, valid header, and what it says (the client's address and
 * port, and the address it connected to).  Pure: no I/O, no allocation, no
 * logging; it never reads past the n bytes it is given.  Must not: decide
 * who may send a header (Proxy_protocol, smtp_server.c) or touch a session.
 */
#ifndef SELOR_SMTP_PROXY_H
#define SELOR_SMTP_PROXY_H

#include <stddef.h>

#define SMTP_PROXY_V1_MAX 107          /* the spec's longest line, CR LF included */
#define SMTP_PROXY_V2_FIXED 16         /* signature, version and command, family, length */
#define SMTP_PROXY_V2_BODY_MAX 1536    /* ours: addresses and TLVs of a v2 header */
#define SMTP_PROXY_MAX (SMTP_PROXY_V2_FIXED + SMTP_PROXY_V2_BODY_MAX)
#define SMTP_PROXY_IP_MAX 46           /* INET6_ADDRSTRLEN */

enum smtp_proxy_status {
    SMTP_PROXY_NEED_MORE,   /* a valid beginning: read more (at least `need` bytes) */
    SMTP_PROXY_ERROR,       /* no valid header: `why` says what is wrong */
    SMTP_PROXY_DONE,        /* a complete header of `len` bytes */
};

struct smtp_proxy_result {
    enum smtp_proxy_status status;
    size_t len;             /* DONE: the header's length; what follows is the client's */
    size_t need;            /* NEED_MORE: the header is at least this many bytes longer */
    int version;            /* 1 or 2, once known */
    int local;              /* DONE: no addresses (v1 UNKNOWN, v2 LOCAL): keep the peer's */
    int family;             /* DONE, not local: AF_INET or AF_INET6 */
    char src[SMTP_PROXY_IP_MAX];    /* DONE, not local: numeric, as net_ntop shows them */
    char dst[SMTP_PROXY_IP_MAX];
    int src_port, dst_port;
    const char *why;        /* ERROR: a fixed text */
};

/*
 * Looks at the first n bytes received on a connection.  NEED_MORE while
 * they are a valid beginning of a header shorter than the bounds (v1: 107
 * bytes; v2: 16 + 1536); ERROR as soon as they cannot begin one; DONE with
 * the header's length and addresses (bytes after it are not looked at).
 */
void smtp_proxy_parse(const char *data, size_t n, struct smtp_proxy_result *r);

#endif
