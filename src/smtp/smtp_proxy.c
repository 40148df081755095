/*
 * smtp_proxy.c - reading a PROXY protocol header, v1 and v2 (see
 * smtp_proxy.h; the format is HAProxy's doc/proxy-protocol.txt).
 *
 * Owns: the header's syntax and its bounds.  Pure: looks only at the bytes
 * it is given, never past them, and keeps nothing between calls (the
 * caller passes everything received so far each time, which a header's
 * few bytes make cheap).  Must not: do I/O, allocate, log, or decide whom
 * to trust (smtp_server.c does, from Proxy_protocol).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "net.h"
#include "smtp_proxy.h"

#define V1_MIN 15                   /* "PROXY UNKNOWN\r\n", the shortest */
#define V1_FIELDS 6                 /* PROXY proto src dst sport dport */

#define V2_VERSION 2
#define V2_CMD_LOCAL 0
#define V2_CMD_PROXY 1
#define V2_TCP4 0x11                /* AF_INET << 4 | STREAM */
#define V2_TCP6 0x21                /* AF_INET6 << 4 | STREAM */
#define V2_ADDRS4 12                /* two IPv4 addresses, two ports */
#define V2_ADDRS6 36                /* two IPv6 addresses, two ports */
#define V2_TLV_HEAD 3               /* type, length (2 bytes) */

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static enum smtp_proxy_status proxy_error(struct smtp_proxy_result *r, const char *why)
{
    r->status = SMTP_PROXY_ERROR;
    r->why = why;
    return r->status;
}

static enum smtp_proxy_status proxy_more(struct smtp_proxy_result *r, size_t need)
{
    r->status = SMTP_PROXY_NEED_MORE;
    r->need = need > 0 ? need : 1;
    return r->status;
}

/* Both ends from their bytes (network order), shown as net_ntop shows a
 * peer, so that the client's address reads the same proxied or not. */
static enum smtp_proxy_status proxy_addrs(struct smtp_proxy_result *r, int family,
                                          const void *src, const void *dst, int sport,
                                          int dport)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    const void *a[2] = {src, dst};
    char *out[2] = {r->src, r->dst};

    for (int i = 0; i < 2; i++) {
        memset(&ss, 0, sizeof(ss));
        ss.ss_family = (sa_family_t)family;
        if (family == AF_INET)
            memcpy(&s4->sin_addr, a[i], 4);
        else
            memcpy(&s6->sin6_addr, a[i], 16);
        net_ntop((struct sockaddr *)&ss, out[i], SMTP_PROXY_IP_MAX, NULL);
    }
    r->family = family;
    r->src_port = sport;
    r->dst_port = dport;
    return r->status = SMTP_PROXY_DONE;
}

/* ---- version 1: "PROXY TCP4 192.0.2.1 198.51.100.2 51234 25\r\n" ---- */

/* A port: decimal, 0 to 65535, no leading zero (the spec's form). */
static int v1_port(const char *s, int *port)
{
    size_t n = strlen(s);
    long v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* Splits line (modified) at single spaces: an empty field is an error. */
static int v1_split(char *line, char *f[V1_FIELDS])
{
    int k = 0;

    for (char *p = line;; p++) {
        char *sp = strchr(p, ' ');

        if (k == V1_FIELDS || *p == '\0' || *p == ' ')
            return -1;
        f[k++] = p;
        if (sp == NULL)
            return k == V1_FIELDS ? 0 : -1;
        *sp = '\0';
        p = sp;
    }
}

/* The line without its CR LF: printable ASCII only (checked before). */
static enum smtp_proxy_status v1_line(const char *d, size_t n, struct smtp_proxy_result *r)
{
    char line[SMTP_PROXY_V1_MAX], *f[V1_FIELDS];
    unsigned char src[16], dst[16];
    int family, sport, dport;

    memcpy(line, d, n);
    line[n] = '\0';
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
        r->local = 1;   /* whatever follows UNKNOWN is ignored (the spec) */
        return r->status = SMTP_PROXY_DONE;
    }
    if (v1_split(line, f) < 0)
        return proxy_error(r, "v1: not six fields separated by single spaces");
    if (strcmp(f[1], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(f[1], "TCP6") == 0)
        family = AF_INET6;
    else
        return proxy_error(r, "v1: unknown protocol");
    if (inet_pton(family, f[2], src) != 1 || inet_pton(family, f[3], dst) != 1)
        return proxy_error(r, "v1: bad address");
    if (v1_port(f[4], &sport) < 0 || v1_port(f[5], &dport) < 0)
        return proxy_error(r, "v1: bad port");
    return proxy_addrs(r, family, src, dst, sport, dport);
}

/* What follows "PROXY " may still become one of the protocols. */
static int v1_proto_possible(const char *p, size_t m)
{
    static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};

    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
        if (memcmp(p, protos[i], min_size(m, strlen(protos[i]))) == 0)
            return 1;
    return 0;
}

static enum smtp_proxy_status proxy_v1(const char *d, size_t n, struct smtp_proxy_result *r)
{
    size_t lim = min_size(n, SMTP_PROXY_V1_MAX);

    r->version = 1;
    if (memcmp(d, "PROXY ", min_size(n, 6)) != 0)
        return proxy_error(r, "no PROXY header");
    if (n > 6 && !v1_proto_possible(d + 6, lim - 6))
        return proxy_error(r, "v1: unknown protocol");
    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)d[i];

        if (c == '\r') {
            if (i + 2 > SMTP_PROXY_V1_MAX)
                return proxy_error(r, "v1: header over 107 bytes");
            if (i + 1 == n)
                return proxy_more(r, 1);
            if (d[i + 1] != '\n')
                return proxy_error(r, "v1: CR without LF");
            r->len = i + 2;
            return v1_line(d, i, r);
        }
        if (c < 0x20 || c > 0x7e)
            return proxy_error(r, "v1: control or 8-bit byte");
    }
    if (n >= SMTP_PROXY_V1_MAX - 1)     /* no room left for CR LF */
        return proxy_error(r, "v1: header over 107 bytes");
    return proxy_more(r, n < V1_MIN - 2 ? V1_MIN - n : 2);
}

/* ---- version 2: 16 bytes, then addresses and TLVs ---- */

/* The TLVs from pos to end, as far as n bytes show them: each must end
 * inside the header.  Their content is not used. */
static int v2_tlvs(const unsigned char *d, size_t n, size_t pos, size_t end)
{
    size_t seen = min_size(n, end);

    while (pos + V2_TLV_HEAD <= seen)
        pos += V2_TLV_HEAD + ((size_t)d[pos + 1] << 8 | d[pos + 2]);
    if (pos > end)
        return -1;      /* a value runs past the header */
    if (pos < end && pos + V2_TLV_HEAD > end)
        return -1;      /* one or two bytes left: no room for a TLV */
    return 0;
}

static enum smtp_proxy_status v2_proxy(const unsigned char *d, struct smtp_proxy_result *r)
{
    const unsigned char *a = d + SMTP_PROXY_V2_FIXED;

    if (d[13] == V2_TCP4)
        return proxy_addrs(r, AF_INET, a, a + 4, a[8] << 8 | a[9], a[10] << 8 | a[11]);
    return proxy_addrs(r, AF_INET6, a, a + 16, a[32] << 8 | a[33], a[34] << 8 | a[35]);
}

static enum smtp_proxy_status proxy_v2(const unsigned char *d, size_t n, struct smtp_proxy_result *r)
{
    size_t body, addrs, end;
    int cmd;

    r->version = 2;
    if (memcmp(d, v2_sig, min_size(n, sizeof(v2_sig))) != 0)
        return proxy_error(r, "v2: bad signature");
    if (n <= 12)
        return proxy_more(r, SMTP_PROXY_V2_FIXED - n);
    if (d[12] >> 4 != V2_VERSION)
        return proxy_error(r, "v2: version is not 2");
    cmd = d[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return proxy_error(r, "v2: unknown command");
    if (n <= 13)
        return proxy_more(r, SMTP_PROXY_V2_FIXED - n);
    /* LOCAL (a balancer's own health check) ignores the family (the spec) */
    if (cmd == V2_CMD_PROXY && d[13] != V2_TCP4 && d[13] != V2_TCP6)
        return proxy_error(r, "v2: not TCP over IPv4 or IPv6");
    if (n < SMTP_PROXY_V2_FIXED)
        return proxy_more(r, SMTP_PROXY_V2_FIXED - n);
    body = (size_t)d[14] << 8 | d[15];
    if (body > SMTP_PROXY_V2_BODY_MAX)
        return proxy_error(r, "v2: header over 1552 bytes");
    addrs = cmd == V2_CMD_LOCAL ? 0 : d[13] == V2_TCP4 ? V2_ADDRS4 : V2_ADDRS6;
    if (body < addrs)
        return proxy_error(r, "v2: length shorter than its addresses");
    end = SMTP_PROXY_V2_FIXED + body;
    if (cmd == V2_CMD_PROXY && v2_tlvs(d, n, SMTP_PROXY_V2_FIXED + addrs, end) < 0)
        return proxy_error(r, "v2: a TLV runs past the header");
    if (n < end)
        return proxy_more(r, end - n);
    r->len = end;
    if (cmd == V2_CMD_LOCAL) {
        r->local = 1;
        return r->status = SMTP_PROXY_DONE;
    }
    return v2_proxy(d, r);
}

void smtp_proxy_parse(const char *data, size_t n, struct smtp_proxy_result *r)
{
    memset(r, 0, sizeof(*r));
    if (n == 0)
        proxy_more(r, V1_MIN);
    else if (data[0] == 'P')
        proxy_v1(data, n, r);
    else if (data[0] == '\r')
        proxy_v2((const unsigned char *)data, n, r);
    else
        proxy_error(r, "no PROXY header");
}
