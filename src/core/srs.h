/*
 * srs.h - the Sender Rewriting Scheme: building and checking SRS0/SRS1
 * addresses, in the format of libsrs2 and postsrsd (see docs/srs.md).
 *
 * Owns: the address format, the hash (HMAC-SHA1 keyed with Srs_key and
 * Srs_shift), the day stamp and its 21-day validity.  Must not: read the
 * configuration, the clock, the network or any file, or decide when to
 * rewrite (delivery and RCPT do that); every input is an argument.
 */
#ifndef SELOR_SRS_H
#define SELOR_SRS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SRS_HASH_LEN 4        /* characters of hash written (libsrs2's default) */
#define SRS_MAX_AGE_DAYS 21   /* how old a day stamp may be (libsrs2's default) */
#define SRS_FUTURE_DAYS 1     /* how far ahead a stamp may be (clock skew) */
#define SRS_LOCAL_MAX 64      /* RFC 5321 limits a rewritten address must keep */
#define SRS_ADDR_MAX 254

/* What srs_forward did; only SRS_FWD_OK writes out. */
enum srs_fwd {
    SRS_FWD_OK,        /* out holds the rewritten sender */
    SRS_FWD_KEEP,      /* no rewrite needed: null sender, or already ours */
    SRS_FWD_INVALID,   /* no key, no domain, or a sender without local@domain */
    SRS_FWD_TOO_LONG,  /* the result would pass 64 (local part) or 254 */
    SRS_FWD_NO_ROOM,   /* outlen is too small for the result */
    SRS_FWD_INTERNAL,  /* the crypto library failed */
};

/* What srs_reverse found; only SRS_OK writes out. */
enum srs_status {
    SRS_NOT_SRS,    /* the local part does not start with SRS0 or SRS1 */
    SRS_OK,         /* out holds the address one step back */
    SRS_BAD_HASH,   /* forged, or made with another key or shift */
    SRS_EXPIRED,    /* genuine but older than 21 days (or from the future) */
    SRS_SYNTAX,     /* starts like SRS but a field is missing or malformed */
    SRS_NO_ROOM,    /* outlen is too small (never if outlen > strlen(addr)) */
};

/*
 * Rewrites the envelope sender for mail that leaves through
 * forwarder_domain: user@dom becomes SRS0=HHHH=TT=dom=user@forwarder_domain,
 * an SRS0 address of another host becomes SRS1, an SRS1 address gets a new
 * SRS1 hash.  key is Srs_key, shift Srs_shift, now the current time.  On
 * any result but SRS_FWD_OK the caller keeps the original sender.
 */
enum srs_fwd srs_forward(const char *key, uint8_t shift, const char *sender,
                         const char *forwarder_domain, time_t now,
                         char *out, size_t outlen);

/*
 * Checks an SRS address (local@domain, or the local part alone; the domain
 * is not looked at) and gives the address one step back: the original
 * sender for SRS0, the first hop's SRS0 address for SRS1.
 */
enum srs_status srs_reverse(const char *key, uint8_t shift, const char *addr,
                            time_t now, char *out, size_t outlen);

/* 1 if the local part of addr starts like an SRS address (SRS0/SRS1 and a
 * separator, any case): mail to it at a local domain must pass srs_reverse. */
int srs_is_srs(const char *addr);

const char *srs_fwd_str(enum srs_fwd r);
const char *srs_status_str(enum srs_status s);

#endif
