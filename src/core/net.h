/*
 * net.h - socket address helpers: parsing "host[:port]" lists, numeric
 * addresses to sockaddr and back, listening sockets.
 *
 * Owns: the textual forms of addresses in selor.conf.  Must not: resolve
 * names (that is dns.c, asynchronously) or perform I/O beyond creating a
 * listening socket.
 */
#ifndef SELOR_NET_H
#define SELOR_NET_H

#include <stddef.h>
#include <sys/socket.h>

struct net_hostport {
    char host[256];  /* IP literal or name, without brackets */
    int port;
};

/* "1.2.3.4", "1.2.3.4:25", "[::1]:25", "::1", "name:port"; out may be NULL. */
int net_parse_hostport(const char *s, int default_port, struct net_hostport *out,
                       char *why, size_t whylen);
/* Comma-separated list of the above; checks every element. */
int net_parse_list(const char *s, int default_port, char *why, size_t whylen);
/* Splits element i (0-based) of a comma list; -1 past the end. */
int net_list_item(const char *s, int i, int default_port, struct net_hostport *out);

/*
 * A filter's socket as milter configurations write it: "inet:HOST:PORT"
 * (also "inet:PORT@HOST", "inet6:[ADDR]:PORT"), with an IP literal or
 * localhost; "unix:PATH" or "local:PATH".  Fills ss (len) for inet, path
 * for unix (one of them, the other empty); -1 with why otherwise.
 */
struct net_socket_spec {
    struct sockaddr_storage ss;
    socklen_t sslen;             /* 0: a unix socket */
    char path[108];
};
int net_parse_socket_spec(const char *s, struct net_socket_spec *out, char *why,
                          size_t whylen);
/* The i-th word (0-based) of a list separated by spaces or commas, into
 * out; -1 past the end or when a word does not fit. */
int net_word(const char *s, int i, char *out, size_t size);

/* Numeric IP and port to sockaddr; -1 if ip is not an IP literal. */
int net_sockaddr(const char *ip, int port, struct sockaddr_storage *ss,
                 socklen_t *len);
/* sockaddr to "1.2.3.4" (IPv4-mapped IPv6 shown as IPv4) and port. */
void net_ntop(const struct sockaddr *sa, char *ip, size_t iplen, int *port);

/*
 * Lists of networks (Proxy_protocol): "10.0.0.0/8 192.0.2.7, 2001:db8::/32",
 * IPv4 and IPv6, a network or one address, separated by blanks or commas.
 * A network with bits set past its prefix ("10.0.0.1/8") is refused as a
 * likely typo.  An element is at most NET_NETWORK_MAX characters.
 */
#define NET_NETWORK_MAX 64
/* 0, or -1 with what is wrong (the element named) in why. */
int net_networks_check(const char *list, char *why, size_t whylen);
/* Whether ip (numeric, as net_ntop writes it) is in one of the networks;
 * an element that does not parse matches nothing. */
int net_networks_match(const char *list, const char *ip);

/*
 * Creates a listening TCP socket on ip:port ("" = every address, IPv6
 * dual-stack when the host has IPv6).  reuseport lets several processes
 * bind the same address.  Returns the fd or -1 with errno set.
 */
int net_listen(const char *ip, int port, int reuseport, int backlog);

#endif
