/*
 * net.c - address parsing and listening sockets (see net.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

static int net_why(char *why, size_t whylen, const char *fmt, const char *arg)
{
    if (why)
        snprintf(why, whylen, fmt, arg);
    return -1;
}

static int net_valid_host(const char *h)
{
    struct in6_addr a6;

    if (inet_pton(AF_INET6, h, &a6) == 1)
        return 1;
    if (h[0] == '\0' || strlen(h) > 253)
        return 0;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return 0;
    return 1;
}

static int net_parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int net_parse_hostport(const char *s, int default_port, struct net_hostport *out,
                       char *why, size_t whylen)
{
    struct net_hostport hp = {"", default_port};
    const char *colon = strrchr(s, ':'), *host_end;
    struct in6_addr a6;

    while (*s == ' ')
        s++;
    if (s[0] == '[') {
        host_end = strchr(s, ']');
        if (host_end == NULL)
            return net_why(why, whylen, "missing ] in \"%s\"", s);
        if (host_end[1] == ':' && net_parse_port(host_end + 2, &hp.port) < 0)
            return net_why(why, whylen, "bad port in \"%s\"", s);
        if (host_end[1] != ':' && host_end[1] != '\0')
            return net_why(why, whylen, "unexpected text after ] in \"%s\"", s);
        s++;
    } else if (colon && strchr(s, ':') == colon) {
        host_end = colon;
        if (net_parse_port(colon + 1, &hp.port) < 0)
            return net_why(why, whylen, "bad port in \"%s\"", s);
    } else {
        host_end = s + strlen(s);
        if (colon && inet_pton(AF_INET6, s, &a6) != 1)
            return net_why(why, whylen, "bad address \"%s\"", s);
    }
    if ((size_t)(host_end - s) >= sizeof(hp.host))
        return net_why(why, whylen, "host name too long in \"%s\"", s);
    memcpy(hp.host, s, (size_t)(host_end - s));
    hp.host[host_end - s] = '\0';
    if (hp.port == 0)
        return net_why(why, whylen, "no port in \"%s\"", s);
    if (!net_valid_host(hp.host))
        return net_why(why, whylen, "bad host \"%s\"", hp.host);
    if (out)
        *out = hp;
    return 0;
}

static int net_parse_inet_spec(const char *s, struct net_socket_spec *out, char *why,
                               size_t whylen)
{
    struct net_hostport hp;
    char tmp[300];
    const char *at = strchr(s, '@');

    if (at) {   /* sendmail's PORT@HOST */
        if (snprintf(tmp, sizeof(tmp), "[%s]:%.*s", at + 1, (int)(at - s), s) >=
            (int)sizeof(tmp))
            return net_why(why, whylen, "address too long in \"%s\"", s);
        s = tmp;
    }
    if (net_parse_hostport(s, 0, &hp, why, whylen) < 0)
        return -1;
    if (strcmp(hp.host, "localhost") == 0)
        snprintf(hp.host, sizeof(hp.host), "127.0.0.1");
    if (net_sockaddr(hp.host, hp.port, &out->ss, &out->sslen) < 0)
        return net_why(why, whylen, "\"%s\" is not an IP address (or localhost)", hp.host);
    return 0;
}

int net_parse_socket_spec(const char *s, struct net_socket_spec *out, char *why,
                          size_t whylen)
{
    struct net_socket_spec tmp;

    if (out == NULL)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    if (strncmp(s, "inet:", 5) == 0)
        return net_parse_inet_spec(s + 5, out, why, whylen);
    if (strncmp(s, "inet6:", 6) == 0)
        return net_parse_inet_spec(s + 6, out, why, whylen);
    if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0) {
        const char *path = strchr(s, ':') + 1;
        if (path[0] != '/' || strlen(path) >= sizeof(out->path))
            return net_why(why, whylen, "\"%s\": the socket path must be absolute and "
                           "shorter than 108 bytes", s);
        snprintf(out->path, sizeof(out->path), "%s", path);
        return 0;
    }
    return net_why(why, whylen, "\"%s\" is not inet:HOST:PORT or unix:PATH", s);
}

int net_word(const char *s, int i, char *out, size_t size)
{
    for (;;) {
        size_t n;
        s += strspn(s, " \t,");
        if (*s == '\0')
            return -1;
        n = strcspn(s, " \t,");
        if (i-- == 0) {
            if (n >= size)
                return -1;
            memcpy(out, s, n);
            out[n] = '\0';
            return 0;
        }
        s += n;
    }
}

int net_list_item(const char *s, int i, int default_port, struct net_hostport *out)
{
    char item[300];
    const char *p = s, *end;

    for (;;) {
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (i-- == 0)
            break;
        if (*end == '\0')
            return -1;
        p = end + 1;
    }
    while (p < end && *p == ' ')
        p++;
    while (end > p && end[-1] == ' ')
        end--;
    if ((size_t)(end - p) >= sizeof(item))
        return -1;
    memcpy(item, p, (size_t)(end - p));
    item[end - p] = '\0';
    return net_parse_hostport(item, default_port, out, NULL, 0);
}

int net_parse_list(const char *s, int default_port, char *why, size_t whylen)
{
    struct net_hostport hp;
    char item[300];
    const char *p = s, *end;

    do {
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        while (p < end && *p == ' ')
            p++;
        snprintf(item, sizeof(item), "%.*s", (int)(end - p), p);
        if (net_parse_hostport(item, default_port, &hp, why, whylen) < 0)
            return -1;
        p = end + 1;
    } while (*end);
    return 0;
}

int net_sockaddr(const char *ip, int port, struct sockaddr_storage *ss,
                 socklen_t *len)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*s6);
        return 0;
    }
    return -1;
}

void net_ntop(const struct sockaddr *sa, char *ip, size_t iplen, int *port)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    int p = 0;

    snprintf(ip, iplen, "?");
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)iplen);
        p = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)iplen);
        p = ntohs(s6->sin6_port);
    }
    if (port)
        *port = p;
}

/* ---- lists of networks ---- */

struct net_network {
    int family;
    unsigned char addr[16];
    int bits;
};

/* An element: "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n". */
static int net_network_parse(const char *s, size_t n, struct net_network *nw,
                             char *why, size_t whylen)
{
    char text[NET_NETWORK_MAX + 1], *slash, *end;
    long bits;
    int max;

    if (n > NET_NETWORK_MAX)
        return net_why(why, whylen, "network too long: \"%.64s...\"", s);
    memcpy(text, s, n);
    text[n] = '\0';
    slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    memset(nw, 0, sizeof(*nw));
    if (inet_pton(AF_INET, text, nw->addr) == 1)
        nw->family = AF_INET;
    else if (inet_pton(AF_INET6, text, nw->addr) == 1)
        nw->family = AF_INET6;
    else
        return net_why(why, whylen, "bad network \"%s\"", text);
    max = nw->family == AF_INET ? 32 : 128;
    nw->bits = max;
    if (slash) {
        bits = strtol(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end != '\0' || bits > max) {
            *slash = '/';
            return net_why(why, whylen, "bad prefix length in \"%s\"", text);
        }
        nw->bits = (int)bits;
    }
    for (int i = nw->bits; i < max; i++)
        if (nw->addr[i / 8] & (0x80 >> (i % 8))) {
            if (slash)
                *slash = '/';
            return net_why(why, whylen, "\"%s\" has bits set past its prefix", text);
        }
    return 0;
}

/* The next element of a list from *p on (its start and length); 0 at the end. */
static int net_network_next(const char **p, const char **item, size_t *n)
{
    static const char seps[] = " \t,";
    const char *s = *p + strspn(*p, seps);

    if (*s == '\0')
        return 0;
    *item = s;
    *n = strcspn(s, seps);
    *p = s + *n;
    return 1;
}

int net_networks_check(const char *list, char *why, size_t whylen)
{
    struct net_network nw;
    const char *p = list, *item;
    size_t n;

    while (net_network_next(&p, &item, &n))
        if (net_network_parse(item, n, &nw, why, whylen) < 0)
            return -1;
    return 0;
}

static int net_network_has(const struct net_network *nw, int family,
                           const unsigned char *a)
{
    int whole = nw->bits / 8, rest = nw->bits % 8;

    if (family != nw->family || memcmp(a, nw->addr, (size_t)whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ nw->addr[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

int net_networks_match(const char *list, const char *ip)
{
    struct net_network nw;
    unsigned char a[16];
    const char *p = list, *item;
    int family = AF_INET;
    size_t n;

    if (inet_pton(AF_INET, ip, a) != 1) {
        if (inet_pton(AF_INET6, ip, a) != 1)
            return 0;
        family = AF_INET6;
    }
    while (net_network_next(&p, &item, &n))
        if (net_network_parse(item, n, &nw, NULL, 0) == 0 &&
            net_network_has(&nw, family, a))
            return 1;
    return 0;
}

static int net_listen_on(const struct sockaddr_storage *ss, socklen_t len,
                         int reuseport, int backlog)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1, off = 0, saved;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (bind(fd, (const struct sockaddr *)ss, len) == 0 && listen(fd, backlog) == 0)
        return fd;
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int net_listen(const char *ip, int port, int reuseport, int backlog)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (ip && ip[0]) {
        if (net_sockaddr(ip, port, &ss, &len) < 0) {
            errno = EINVAL;
            return -1;
        }
        return net_listen_on(&ss, len, reuseport, backlog);
    }
    net_sockaddr("::", port, &ss, &len);
    fd = net_listen_on(&ss, len, reuseport, backlog);
    if (fd >= 0 || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL))
        return fd;
    net_sockaddr("0.0.0.0", port, &ss, &len);
    return net_listen_on(&ss, len, reuseport, backlog);
}
