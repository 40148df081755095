/*
 * spf_parse.h - the pure parts of SPF (RFC 7208): a record's terms, macro
 * expansion, address matching.  No DNS, no loop, no allocation outside the
 * record and the caller's buffer: what spf.c needs, and what a fuzzer can
 * drive.  Must not: look anything up (the engine does) or log.
 */
#ifndef SELOR_SPF_PARSE_H
#define SELOR_SPF_PARSE_H

#include <stddef.h>
#include <time.h>

struct buf;

/* Bytes of a record that are parsed: more is a permerror (a TXT answer is
 * cut at DNS_MAX_TXT, which is larger). */
#define SPF_RECORD_MAX 4096
/* Terms of one record: each costs memory, not DNS (ip4 lists are long). */
#define SPF_MAX_TERMS 512
/* A name after expansion (RFC 7208 7.3: longer ones lose labels on the left). */
#define SPF_NAME_MAX 253
/* An explanation after expansion. */
#define SPF_EXP_MAX 1024

enum spf_mech { SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4,
                SPF_M_IP6, SPF_M_EXISTS };

struct spf_term {
    unsigned char qual;       /* enum spf_result given on a match */
    unsigned char mech;       /* enum spf_mech */
    unsigned char cidr4, cidr6;
    const char *spec;         /* domain-spec in the record, or NULL */
    size_t spec_len;
    unsigned char net[16];    /* ip4 (4 bytes) / ip6 */
};

struct spf_record {
    char text[SPF_RECORD_MAX + 1];
    struct spf_term *terms;   /* mem.h; spf_record_free */
    size_t nterms;
    const char *redirect, *exp;   /* macro strings, or NULL */
    size_t redirect_len, exp_len;
};

/* 1 if txt is an SPF record: "v=spf1" (any case) alone or before a space. */
int spf_is_record(const char *txt);
/* 0, or -1 when the record breaks the grammar (permerror). */
int spf_record_parse(struct spf_record *r, const char *txt);
void spf_record_free(struct spf_record *r);

/* What macros expand to (RFC 7208 7.2). */
struct spf_macro_ctx {
    const char *sender;       /* <sender> */
    const char *local;        /* its local part ("postmaster" when none) */
    const char *sender_dom;   /* its domain */
    const char *domain;       /* <domain> being checked */
    const char *helo;
    const char *receiver;
    const char *ip_text;      /* %{c} */
    const char *p;            /* %{p}: a validated name; NULL: "unknown" */
    unsigned char ip[16];
    int v6;
    time_t now;
};

/*
 * Expands s (n bytes) into out (reset first).  explain: an explanation
 * string, where spaces and the c, r, t macros are allowed.  A name is cut
 * to SPF_NAME_MAX by dropping labels on the left.  0, or -1 on a syntax
 * error or an output past its limit.
 */
int spf_macro_expand(const char *s, size_t n, const struct spf_macro_ctx *m, int explain,
                     struct buf *out);
/* 1 if s (n bytes) is a valid macro-string (the letters a name may use). */
int spf_macro_valid(const char *s, size_t n, int explain);
/* 1 if name can be looked up: labels of 1..63 bytes, at most SPF_NAME_MAX. */
int spf_name_ok(const char *name);
/* 1 if the first bits of a and b (len bytes each) agree. */
int spf_prefix_match(const unsigned char *a, const unsigned char *b, size_t len,
                     unsigned bits);
/* The client address: 16 bytes (v6) or 4 (v4; a v4-mapped v6 counts as v4).
 * 0, or -1 if it is neither. */
int spf_parse_ip(const char *text, unsigned char ip[16], int *v6);

#endif
