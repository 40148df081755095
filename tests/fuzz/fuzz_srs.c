/*
 * fuzz_srs.c - the Sender Rewriting Scheme (src/core/srs.h): building an
 * SRS sender for a forward, and checking the SRS address a report comes
 * back to (an address any client can send to).
 *
 * Input: a shift byte, 3 bytes of day number, then NUL-separated strings:
 * the key, an address, a forwarder domain.
 *
 * Invariants:
 *  - srs_reverse of the address never writes past its output (ASan sees
 *    it: the output is exactly the limit given) and, on SRS_OK, gives a
 *    non-empty address shorter than the input; with a larger buffer the
 *    answer is the same; an address srs_is_srs does not take is NOT_SRS.
 *  - srs_forward of the address as a sender: on SRS_FWD_OK the result
 *    keeps SMTP's limits (64 bytes of local part, 254 in all), is taken by
 *    srs_is_srs, ends in "@" and the forwarder domain, and srs_reverse
 *    takes it back (SRS_OK) on the same day and 21 days later, to the
 *    sender itself (case aside) when that was no SRS address; it is
 *    refused 22 days later and under another shift.
 */
#include <strings.h>

#include "fuzz_util.h"
#include "srs.h"

static void check_reverse(const char *key, uint8_t shift, const char *addr, time_t now)
{
    size_t n = strlen(addr);
    char *small = malloc(n + 1), big[2048];
    enum srs_status a, b;

    if (small == NULL)
        abort();
    a = srs_reverse(key, shift, addr, now, small, n + 1);
    b = srs_reverse(key, shift, addr, now, big, sizeof(big));
    CHECK(a == b || (n + 1 > sizeof(big) && b == SRS_NO_ROOM));
    if (!srs_is_srs(addr))
        CHECK(a == SRS_NOT_SRS);
    if (a == SRS_OK) {
        CHECK(small[0] != '\0' && strlen(small) < n);
        CHECK(strcmp(small, big) == 0);
    }
    free(small);
}

static void check_forward(const char *key, uint8_t shift, const char *sender,
                          const char *domain, time_t now)
{
    char out[SRS_ADDR_MAX + 1], back[SRS_ADDR_MAX + 1];
    const char *at;
    size_t dn = strlen(domain);

    if (srs_forward(key, shift, sender, domain, now, out, sizeof(out)) != SRS_FWD_OK)
        return;
    at = strrchr(out, '@');
    CHECK(at != NULL && (size_t)(at - out) <= SRS_LOCAL_MAX);
    CHECK(strlen(out) <= SRS_ADDR_MAX);
    CHECK(srs_is_srs(out));
    CHECK(strcmp(at + 1, domain) == 0 && strlen(at + 1) == dn);
    CHECK(srs_reverse(key, shift, out, now, back, sizeof(back)) == SRS_OK);
    if (!srs_is_srs(sender))
        CHECK(strcasecmp(back, sender) == 0);
    CHECK(srs_reverse(key, shift, out, now + 21 * 86400, back, sizeof(back)) == SRS_OK);
    if (strncasecmp(out, "SRS0", 4) == 0) {   /* SRS1 carries no stamp */
        CHECK(srs_reverse(key, shift, out, now + 22 * 86400, back, sizeof(back)) ==
              SRS_EXPIRED);
        CHECK(srs_reverse(key, (uint8_t)(shift + 1), out, now, back, sizeof(back)) ==
              SRS_BAD_HASH);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in;
    uint8_t shift;
    time_t now;
    const char *key, *addr, *domain;

    fuzz_in_init(&in, data, size);
    shift = (uint8_t)fuzz_u8(&in);
    /* any day in the years around now, at any second of it */
    now = (time_t)(fuzz_uint(&in, 3) % 40000) * 86400 + 43200;
    key = fuzz_str(&in);
    addr = fuzz_str(&in);
    domain = fuzz_str(&in);
    check_reverse(key, shift, addr, now);
    check_forward(key, shift, addr, domain, now);
    fuzz_in_free(&in);
    return 0;
}
