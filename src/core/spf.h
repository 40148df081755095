/*
 * spf.h - Sender Policy Framework (RFC 7208): check_host() on the process's
 * resolver (dns.h), never blocking the loop.
 *
 * Owns: the SPF verdict for a client address, HELO name and envelope
 * sender, with the explanation a failing domain publishes, and the
 * Received-SPF header field that records it.  Must not: decide what a
 * verdict means for the mail (refuse, mark, accept: the caller's policy),
 * or wait for DNS.
 */
#ifndef SELOR_SPF_H
#define SELOR_SPF_H

struct async_owner;
struct buf;
struct dns;

enum spf_result { SPF_PASS = 0, SPF_NONE = 1, SPF_SOFTFAIL = 2, SPF_FAIL = 3,
                  SPF_TEMPERROR = 4, SPF_NEUTRAL = 5, SPF_PERMERROR = 6 };

/* explanation: "" unless the result is SPF_FAIL and the domain gave one. */
typedef void spf_done_fn(void *arg, int result, const char *explanation);

/*
 * ip: the client's address as text (IPv4 or IPv6); helo: its HELO name;
 * sender: the MAIL FROM address, "" for the null sender (then
 * postmaster@helo is checked); receiver: our host name, for %{r}.  The
 * check belongs to o: when o cancels, fn is never called and the check's
 * memory is gone.  fn may run before spf_check returns.
 */
void spf_check(struct dns *dns, struct async_owner *o, const char *ip, const char *helo,
               const char *sender, const char *receiver, spf_done_fn *fn, void *arg);

/* "pass", "none", "softfail", "fail", "temperror", "neutral", "permerror";
 * "unknown" for anything else. */
const char *spf_result_name(int r);
/* "3" or "fail" (any case) -> 3; -1 if s names no result. */
int spf_result_parse(const char *s);

/* Appends the Received-SPF header field (RFC 7208 9.1), CRLF-terminated,
 * folded where long; what the client chose (helo, sender) is quoted or
 * cleaned so it cannot break the header. */
void spf_received_header(struct buf *out, int result, const char *ip, const char *helo,
                         const char *sender, const char *receiver);

#endif
