/*
 * addr.h - mail addresses: RFC 5321 syntax, limits and normal form.
 *
 * Owns: what a valid mailbox and domain look like, and the lengths that
 * bound them (local part 64, domain 255, path 256).  Must not: decide
 * whether an address is local or exists (accounts.c does that).
 */
#ifndef SELOR_ADDR_H
#define SELOR_ADDR_H

#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256

enum addr_err {
    ADDR_OK = 0,
    ADDR_ESYNTAX,   /* not an address */
    ADDR_EDOMAIN,   /* the domain part is not a domain */
    ADDR_ETOOLONG,  /* past a length limit */
    ADDR_E8BIT,     /* non-ASCII (SMTPUTF8 is not offered) */
};

struct addr {
    char local[ADDR_LOCAL_MAX + 1];    /* as given (quoted form kept) */
    char domain[ADDR_DOMAIN_MAX + 1];  /* lower case; "" for a bare name */
};

/*
 * Parses a mailbox "local@domain" or a bare local part (s need not be
 * NUL-terminated).  A leading source route "@a,@b:" is dropped.
 */
enum addr_err addr_parse(const char *s, size_t n, struct addr *out);
/* 1 if d (n bytes) is a syntactically valid domain or address literal. */
int addr_valid_domain(const char *d, size_t n);
/* "local@domain", or "local" when there is no domain; out >= ADDR_PATH_MAX+2. */
void addr_format(const struct addr *a, char *out, size_t outlen);
/* Lower-cases ASCII in place. */
void addr_lower(char *s);
const char *addr_strerror(enum addr_err e);

#endif
