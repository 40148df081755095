/*
 * srs_tool.c - src/core/srs.c from the command line, for the system tests
 * (tests/system/test_srs_interop.py) that hold it against postsrsd.
 *
 *   srs_tool forward KEY SHIFT SENDER DOMAIN NOW
 *   srs_tool reverse KEY SHIFT ADDR NOW
 *
 * Prints the result's name and, when there is one, the address, on one
 * line: "SRS_FWD_OK SRS0=...@domain", "SRS_EXPIRED".  Exit status 0 when
 * the call succeeded, 1 when it gave another result, 2 on bad usage.
 * Must not: be installed or linked into selor or selorctl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srs.h"

static const char *const fwd_names[] = {
    "SRS_FWD_OK", "SRS_FWD_KEEP", "SRS_FWD_INVALID", "SRS_FWD_TOO_LONG",
    "SRS_FWD_NO_ROOM", "SRS_FWD_INTERNAL",
};
static const char *const rev_names[] = {
    "SRS_NOT_SRS", "SRS_OK", "SRS_BAD_HASH", "SRS_EXPIRED", "SRS_SYNTAX",
    "SRS_NO_ROOM",
};

static int usage(void)
{
    fprintf(stderr, "usage: srs_tool forward KEY SHIFT SENDER DOMAIN NOW\n"
                    "       srs_tool reverse KEY SHIFT ADDR NOW\n");
    return 2;
}

/* A decimal number in [0, max], or -1. */
static long long number(const char *s, long long max)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    char out[1024];
    long long shift, now;

    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "forward") == 0 && argc == 7) {
        if ((shift = number(argv[3], 255)) < 0 || (now = number(argv[6], 1LL << 40)) < 0)
            return usage();
        enum srs_fwd r = srs_forward(argv[2], (uint8_t)shift, argv[4], argv[5],
                                     (time_t)now, out, sizeof out);
        printf("%s%s%s\n", fwd_names[r], r == SRS_FWD_OK ? " " : "",
               r == SRS_FWD_OK ? out : "");
        return r == SRS_FWD_OK ? 0 : 1;
    }
    if (strcmp(argv[1], "reverse") == 0 && argc == 6) {
        if ((shift = number(argv[3], 255)) < 0 || (now = number(argv[5], 1LL << 40)) < 0)
            return usage();
        enum srs_status s = srs_reverse(argv[2], (uint8_t)shift, argv[4],
                                        (time_t)now, out, sizeof out);
        printf("%s%s%s\n", rev_names[s], s == SRS_OK ? " " : "",
               s == SRS_OK ? out : "");
        return s == SRS_OK ? 0 : 1;
    }
    return usage();
}
