/*
 * test_srs.c - SRS0/SRS1 addresses (src/core/srs.c).
 *
 * The known-answer vectors were made by postsrsd 1.10 (Debian's package,
 * built on libsrs2's code) under faketime at the time given; they pin the
 * claim that Selor with Srs_shift 0 and postsrsd with the same secret
 * understand each other.  Inputs to srs_reverse are copied into heap blocks
 * of exactly their length, so AddressSanitizer catches a read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srs.h"

#define DAY 86400
/* 2027-01-15 12:00:00 UTC: day 20833, stamp "LB". */
#define T_LB ((time_t)1800014400)
/* 2026-11-29 10:00:00 UTC: day 20786, stamp "JS". */
#define T_JS ((time_t)1795946400)

/* More than 64 bytes (HMAC hashes such a key first) and not ASCII only. */
#define LONG_KEY "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK" \
                 "long-secret-\xc3\x9c" "-with-spaces and more text to pass 64 bytes" \
                 "zzzzzzzzzzzzzzzzzzzz"

static char out[1024];

static enum srs_fwd fwd(const char *key, uint8_t shift, const char *sender,
                        const char *domain, time_t now)
{
    memset(out, 0, sizeof out);
    return srs_forward(key, shift, sender, domain, now, out, sizeof out);
}

static enum srs_status rev(const char *key, uint8_t shift, const char *addr,
                           time_t now)
{
    size_t n = strlen(addr) + 1;
    char *copy = malloc(n);
    enum srs_status s;

    assert_non_null(copy);
    memcpy(copy, addr, n);
    memset(out, 0, sizeof out);
    s = srs_reverse(key, shift, copy, now, out, sizeof out);
    free(copy);
    return s;
}

static void expect_fwd(const char *key, uint8_t shift, const char *sender,
                       const char *domain, time_t now, const char *want)
{
    enum srs_fwd r = fwd(key, shift, sender, domain, now);

    if (r != SRS_FWD_OK)
        fail_msg("forward %s: %s", sender, srs_fwd_str(r));
    assert_string_equal(out, want);
}

static void expect_rev(const char *key, uint8_t shift, const char *addr,
                       time_t now, const char *want)
{
    enum srs_status s = rev(key, shift, addr, now);

    if (s != SRS_OK)
        fail_msg("reverse %s: %s", addr, srs_status_str(s));
    assert_string_equal(out, want);
}

static void expect_rev_st(const char *key, uint8_t shift, const char *addr,
                          time_t now, enum srs_status want)
{
    enum srs_status s = rev(key, shift, addr, now);

    if (s != want)
        fail_msg("reverse %s: %s, expected %s", addr, srs_status_str(s),
                 srs_status_str(want));
}

/* postsrsd -s (secret) -d fwd.test, at T_LB. */
static void test_kat_forward(void **state)
{
    expect_fwd("secret", 0, "user@example.org", "fwd.test", T_LB,
               "SRS0=M4nH=LB=example.org=user@fwd.test");
    expect_fwd("secret", 0, "User.Name+tag@Example.ORG", "fwd.test", T_LB,
               "SRS0=BWPr=LB=Example.ORG=User.Name+tag@fwd.test");
    expect_fwd("secret", 0, "bob=x@o.example", "fwd.test", T_LB,
               "SRS0=axfp=LB=o.example=bob=x@fwd.test");
    /* An SRS0 of another host (made with another key) becomes SRS1. */
    expect_fwd("secret", 0, "SRS0=UmcG=LB=origin.example=alice@hop1.test",
               "fwd.test", T_LB,
               "SRS1=9xOv=hop1.test==UmcG=LB=origin.example=alice@fwd.test");
    expect_fwd("secret", 0, "srs0+abcd=AB=x.org=u@hop1.test", "fwd.test", T_LB,
               "SRS1=KKhK=hop1.test=+abcd=AB=x.org=u@fwd.test");
    /* An SRS1 gets our hash over the first hop and its part. */
    expect_fwd("secret", 0,
               "SRS1=abcd=hop1.test==UmcG=LB=origin.example=alice@hop2.test",
               "fwd.test", T_LB,
               "SRS1=9xOv=hop1.test==UmcG=LB=origin.example=alice@fwd.test");
    expect_fwd("secret", 0, "SRS1+abcd=hop1.test=-Zzzz=LB=o.example=bob@hop2.test",
               "fwd.test", T_LB,
               "SRS1=JVg3=hop1.test=-Zzzz=LB=o.example=bob@fwd.test");
    /* postsrsd -s (LONG_KEY) -d selor.example, at T_JS. */
    expect_fwd(LONG_KEY, 0, "someone@gmail.example", "selor.example", T_JS,
               "SRS0=2o3X=JS=gmail.example=someone@selor.example");
    expect_fwd(LONG_KEY, 0, "SRS0=Ab12=Q7=src.example=jo@hop.example",
               "selor.example", T_JS,
               "SRS1=NBMZ=hop.example==Ab12=Q7=src.example=jo@selor.example");
}

/* postsrsd's reverse table at T_LB. */
static void test_kat_reverse(void **state)
{
    expect_rev("secret", 0, "SRS0=M4nH=LB=example.org=user@fwd.test", T_LB,
               "user@example.org");
    expect_rev("secret", 0, "srs0=m4nh=lb=EXAMPLE.ORG=USER@fwd.test", T_LB,
               "USER@EXAMPLE.ORG");
    expect_rev("secret", 0, "SRS1=KKhK=hop1.test=+abcd=AB=x.org=u@fwd.test",
               T_LB, "SRS0+abcd=AB=x.org=u@hop1.test");
    expect_rev("secret", 0, "SRS0=M4nH=LB=example.org=user", T_LB,
               "user@example.org");
    expect_rev_st("secret", 0, "SRS0=M4nX=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev(LONG_KEY, 0, "SRS0=2o3X=JS=gmail.example=someone@selor.example",
               T_JS, "someone@gmail.example");
}

/* Forwards and returns what was written (static, one per slot). */
static const char *fwd_ok(int slot, const char *key, uint8_t shift,
                          const char *sender, const char *domain, time_t now)
{
    static char keep[4][sizeof out];
    enum srs_fwd r = fwd(key, shift, sender, domain, now);

    if (r != SRS_FWD_OK)
        fail_msg("forward %s: %s", sender, srs_fwd_str(r));
    snprintf(keep[slot], sizeof keep[slot], "%s", out);
    return keep[slot];
}

static void test_round_trip_srs0(void **state)
{
    const char *a = fwd_ok(0, "k1", 0, "jane.doe@example.net", "alias.test", T_JS);

    assert_true(strncmp(a, "SRS0=", 5) == 0);
    assert_non_null(strstr(a, "=JS=example.net=jane.doe@alias.test"));
    expect_rev("k1", 0, a, T_JS, "jane.doe@example.net");
    expect_rev("k1", 0, a, T_JS + 5 * DAY, "jane.doe@example.net");
}

/* hop1 (key k1) forwards to us (key k2), we forward again: SRS1.  Its
 * bounce comes to us, we send it to hop1, hop1 to the sender. */
static void test_round_trip_srs1(void **state)
{
    const char *h1 = fwd_ok(0, "k1", 0, "jane@example.net", "hop1.test", T_JS);
    const char *us = fwd_ok(1, "k2", 0, h1, "us.test", T_JS);
    const char *h3;

    assert_true(strncmp(us, "SRS1=", 5) == 0);
    assert_true(strstr(us, "=hop1.test==") != NULL);
    expect_rev("k2", 0, us, T_JS, h1);
    expect_rev("k1", 0, h1, T_JS, "jane@example.net");
    /* Another forwarder after us re-signs the SRS1 for itself; the bounce
     * then goes straight back to hop1 (SRS1 does not chain). */
    h3 = fwd_ok(2, "k3", 0, us, "hop3.test", T_JS);
    assert_true(strncmp(h3, "SRS1=", 5) == 0);
    assert_string_not_equal(strchr(h3, '=') + 5, strchr(us, '=') + 5);
    expect_rev("k3", 0, h3, T_JS, h1);
    expect_rev_st("k2", 0, h3, T_JS, SRS_BAD_HASH);
    /* An SRS1 is not timed: only the first hop's SRS0 is. */
    expect_rev("k2", 0, us, T_JS + 100 * DAY, h1);
}

static void test_case_insensitive(void **state)
{
    expect_rev("secret", 0, "srs0=M4nH=LB=example.org=user@fwd.test", T_LB,
               "user@example.org");
    expect_rev("secret", 0, "Srs0=m4nh=Lb=Example.Org=User@FWD.TEST", T_LB,
               "User@Example.Org");
    expect_rev("secret", 0, "SRS0=M4NH=lb=example.org=user@fwd.test", T_LB,
               "user@example.org");
    /* The separator after the tag may be any of libsrs2's. */
    expect_rev("secret", 0, "SRS0+M4nH=LB=example.org=user@fwd.test", T_LB,
               "user@example.org");
    expect_rev("secret", 0, "SRS0-M4nH=LB=example.org=user@fwd.test", T_LB,
               "user@example.org");
    expect_rev("secret", 0, "srs1=kkhk=HOP1.TEST=+ABCD=AB=X.ORG=U@fwd.test",
               T_LB, "SRS0+ABCD=AB=X.ORG=U@HOP1.TEST");
    /* The key is not case-folded: it is a secret, not an address. */
    expect_rev_st("Secret", 0, "SRS0=M4nH=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
}

static void test_bad_hash(void **state)
{
    expect_rev_st("secret", 0, "SRS0=M4nh=LB=example.org=user@fwd.test", T_LB,
                  SRS_OK);
    expect_rev_st("secret", 0, "SRS0=N4nH=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st("secret", 0, "SRS0=M4nH=LB=example.org=usex@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st("secret", 0, "SRS0=M4nH=LB=example.com=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st("secret", 0, "SRS0=M4nH=LA=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st("other", 0, "SRS0=M4nH=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st("secret", 0, "SRS1=KKhx=hop1.test=+abcd=AB=x.org=u@fwd.test",
                  T_LB, SRS_BAD_HASH);
    expect_rev_st("secret", 0, "SRS1=KKhK=hop2.test=+abcd=AB=x.org=u@fwd.test",
                  T_LB, SRS_BAD_HASH);
    /* A longer hash is compared on its first four characters (libsrs2). */
    expect_rev_st("secret", 0, "SRS0=M4nHxy=LB=example.org=user@fwd.test", T_LB,
                  SRS_OK);
    /* No key: nothing can be verified. */
    expect_rev_st("", 0, "SRS0=M4nH=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
    expect_rev_st(NULL, 0, "SRS0=M4nH=LB=example.org=user@fwd.test", T_LB,
                  SRS_BAD_HASH);
}

static void test_stamp_age(void **state)
{
    const char *a = fwd_ok(0, "k", 0, "u@example.org", "f.test", T_JS);

    expect_rev_st("k", 0, a, T_JS, SRS_OK);
    expect_rev_st("k", 0, a, T_JS + 21 * DAY, SRS_OK);
    expect_rev_st("k", 0, a, T_JS + 22 * DAY, SRS_EXPIRED);
    expect_rev_st("k", 0, a, T_JS + 30 * DAY, SRS_EXPIRED);
    expect_rev_st("k", 0, a, T_JS + 500 * DAY, SRS_EXPIRED);
    /* A full cycle later the stamp means today again (as libsrs2). */
    expect_rev_st("k", 0, a, T_JS + 1024 * DAY, SRS_OK);
}

static void test_stamp_future(void **state)
{
    const char *a = fwd_ok(0, "k", 0, "u@example.org", "f.test", T_JS);

    /* A node whose clock is a day ahead made it. */
    expect_rev_st("k", 0, a, T_JS - DAY, SRS_OK);
    expect_rev_st("k", 0, a, T_JS - 2 * DAY, SRS_EXPIRED);
    expect_rev_st("k", 0, a, T_JS - 10 * DAY, SRS_EXPIRED);
}

static void test_stamp_wrap(void **state)
{
    /* Day 21503 is slot 1023 ("77"); the check runs in the next cycle. */
    time_t made = (time_t)21503 * DAY + 3600;
    const char *a = fwd_ok(0, "k", 0, "u@example.org", "f.test", made);

    assert_non_null(strstr(a, "=77=example.org="));
    expect_rev_st("k", 0, a, made + DAY, SRS_OK);            /* slot 0 */
    expect_rev_st("k", 0, a, made + 21 * DAY, SRS_OK);       /* slot 20 */
    expect_rev_st("k", 0, a, made + 22 * DAY, SRS_EXPIRED);  /* slot 21 */
    /* Made at slot 0 ("AA"), checked the day before by a slow clock. */
    a = fwd_ok(1, "k", 0, "u@example.org", "f.test", made + DAY);
    assert_non_null(strstr(a, "=AA=example.org="));
    expect_rev_st("k", 0, a, made, SRS_OK);
    expect_rev_st("k", 0, a, made - DAY, SRS_EXPIRED);
    /* Before the epoch counts as day 0: no negative slot. */
    a = fwd_ok(2, "k", 0, "u@example.org", "f.test", (time_t)-5);
    assert_non_null(strstr(a, "=AA=example.org="));
}

static void test_syntax(void **state)
{
    static const char *const syntax[] = {
        "SRS0=@x", "SRS0=", "SRS0+", "SRS1=", "SRS1=@x",
        "SRS0==LB=d=u@x", "SRS0=abcd=LB=d=@x", "SRS0=abcd=LB==u@x",
        "SRS0=abcd==d=u@x", "SRS0=abc=LB=d=u@x", "SRS0=abcd=L=d=u@x",
        "SRS0=abcd=L1=d=u@x", "SRS0=abcd=LBC=d=u@x", "SRS0=abcd=L!=d=u@x",
        "SRS0=abcd=LB=d@x", "SRS0=abcd=LB@x", "SRS0=abcd@x", "SRS0=abcd=@x",
        "SRS1=abcd=h@x", "SRS1=abcd=h=@x", "SRS1==h==x@y", "SRS1=abcd==x@y",
        "SRS1=abc=h==x@y", "SRS0-abcd", "srs1+abcd",
    };
    static const char *const not_srs[] = {
        "", "@", "user@example.org", "SRS0", "SRS1@x", "SRS0x=a=b=c=d@x",
        "SRS2=abcd=LB=d=u@x", "SR0=abcd=LB=d=u@x", "xSRS0=abcd=LB=d=u@x",
        "SRS0@x.test", "SRS0.abcd=LB=d=u@x", "u@SRS0=abcd=LB=d=u",
    };

    for (size_t i = 0; i < sizeof syntax / sizeof *syntax; i++)
        expect_rev_st("k", 0, syntax[i], T_JS, SRS_SYNTAX);
    for (size_t i = 0; i < sizeof not_srs / sizeof *not_srs; i++)
        expect_rev_st("k", 0, not_srs[i], T_JS, SRS_NOT_SRS);
    assert_int_equal(srs_reverse("k", 0, NULL, T_JS, out, sizeof out),
                     SRS_NOT_SRS);
}

/* Long and hostile inputs end in an answer, not a crash. */
static void test_overlong(void **state)
{
    size_t n = 5000;
    char *s = malloc(n + 1);

    assert_non_null(s);
    memcpy(s, "SRS0=abcd=LB=", 13);
    memset(s + 13, 'd', n - 13);
    s[n] = '\0';
    expect_rev_st("k", 0, s, T_JS, SRS_SYNTAX);
    s[600] = '=';
    expect_rev_st("k", 0, s, T_JS, SRS_BAD_HASH);
    memset(s, '=', n);
    expect_rev_st("k", 0, s, T_JS, SRS_NOT_SRS);
    memcpy(s, "SRS1=", 5);
    expect_rev_st("k", 0, s, T_JS, SRS_SYNTAX);
    free(s);
}

static void test_shift(void **state)
{
    const char *a0 = fwd_ok(0, "secret", 0, "user@example.org", "fwd.test", T_LB);
    const char *a1 = fwd_ok(1, "secret", 1, "user@example.org", "fwd.test", T_LB);
    const char *a255 = fwd_ok(2, "secret", 255, "user@example.org", "fwd.test", T_LB);

    /* Shift 0 is the bare secret: the postsrsd vector. */
    assert_string_equal(a0, "SRS0=M4nH=LB=example.org=user@fwd.test");
    assert_string_not_equal(a0, a1);
    assert_string_not_equal(a1, a255);
    assert_string_not_equal(a0, a255);
    assert_string_equal(a1 + 9, a0 + 9);   /* only the hash differs */
    expect_rev_st("secret", 1, a1, T_LB, SRS_OK);
    expect_rev_st("secret", 255, a255, T_LB, SRS_OK);
    expect_rev_st("secret", 0, a1, T_LB, SRS_BAD_HASH);
    expect_rev_st("secret", 2, a1, T_LB, SRS_BAD_HASH);
    expect_rev_st("secret", 1, a0, T_LB, SRS_BAD_HASH);
    /* SRS1 hashes too. */
    a1 = fwd_ok(1, "secret", 7, a0, "next.test", T_LB);
    expect_rev("secret", 7, a1, T_LB, a0);
    expect_rev_st("secret", 0, a1, T_LB, SRS_BAD_HASH);
}

static void test_keep(void **state)
{
    strcpy(out, "untouched");
    assert_int_equal(srs_forward("k", 0, "", "f.test", T_JS, out, sizeof out),
                     SRS_FWD_KEEP);
    assert_string_equal(out, "untouched");
    assert_int_equal(srs_forward("k", 0, NULL, "f.test", T_JS, out, sizeof out),
                     SRS_FWD_KEEP);
    assert_int_equal(fwd("k", 0, "user@f.test", "f.test", T_JS), SRS_FWD_KEEP);
    assert_int_equal(fwd("k", 0, "user@F.Test", "f.test", T_JS), SRS_FWD_KEEP);
    /* Our own SRS address coming back through an alias stays as it is. */
    assert_int_equal(fwd("k", 0, fwd_ok(0, "k", 0, "u@x.org", "f.test", T_JS),
                         "f.test", T_JS), SRS_FWD_KEEP);
    /* A subdomain is another domain. */
    assert_int_equal(fwd("k", 0, "user@sub.f.test", "f.test", T_JS), SRS_FWD_OK);
}

static void test_invalid(void **state)
{
    assert_int_equal(fwd("k", 0, "user", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "user@", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("", 0, "user@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd(NULL, 0, "user@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "user@x.org", "", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "user@x.org", NULL, T_JS), SRS_FWD_INVALID);
    /* An SRS1 without its fields cannot be re-signed (libsrs2 neither). */
    assert_int_equal(fwd("k", 0, "SRS1=abcd=hop@x.org", "f.test", T_JS),
                     SRS_FWD_INVALID);
    /* "SRS0=" alone is not SRS (libsrs2: longer than 5): wrapped as SRS0. */
    expect_fwd("k", 0, "SRS0=@x.org", "f.test", T_JS, fwd_ok(0, "k", 0,
               "SRS0=@x.org", "f.test", T_JS));
    assert_true(strncmp(out, "SRS0=", 5) == 0);
    /* Nothing that would make an address no server can parse: a quoted
     * local part, a '=' or '@' in a domain, bytes outside ASCII. */
    assert_int_equal(fwd("k", 0, "\"a@b\"@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "\"a b\"@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "u@x=y.org", "f.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "u@x.org", "f@g.test", T_JS), SRS_FWD_INVALID);
    assert_int_equal(fwd("k", 0, "caf\xc3\xa9@x.org", "f.test", T_JS), SRS_FWD_INVALID);
    /* an address literal is a domain */
    assert_int_equal(fwd("k", 0, "u@[192.0.2.1]", "f.test", T_JS), SRS_FWD_OK);
}

static void test_too_long(void **state)
{
    char sender[300], domain[300];

    /* Local part: 5 + 4 + 1 + 2 + 1 + 10 + 1 + 40 = 64 is the most. */
    snprintf(sender, sizeof sender, "%.40s@abcde.test",
             "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu");
    assert_int_equal(fwd("k", 0, sender, "f.test", T_JS), SRS_FWD_OK);
    assert_int_equal(strchr(out, '@') - out, 64);
    snprintf(sender, sizeof sender, "%.41s@abcde.test",
             "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu");
    assert_int_equal(fwd("k", 0, sender, "f.test", T_JS), SRS_FWD_TOO_LONG);
    /* Whole address: 254 at most.  SRS0=HHHH=TT=a.b=u is 18. */
    memset(domain, 'd', sizeof domain);
    domain[254 - 1 - 18] = '\0';
    assert_int_equal(fwd("k", 0, "u@a.b", domain, T_JS), SRS_FWD_OK);
    assert_int_equal(strlen(out), 254);
    domain[254 - 1 - 18] = 'd';
    domain[254 - 18] = '\0';
    assert_int_equal(fwd("k", 0, "u@a.b", domain, T_JS), SRS_FWD_TOO_LONG);
    /* SRS1 too. */
    snprintf(sender, sizeof sender, "SRS0=abcd=LB=%.60s=u@h.test",
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    assert_int_equal(fwd("k", 0, sender, "f.test", T_JS), SRS_FWD_TOO_LONG);
}

static void test_no_room(void **state)
{
    const char *want = "SRS0=M4nH=LB=example.org=user@fwd.test";
    size_t n = strlen(want) + 1;
    char *buf = malloc(n);
    const char *srs1 = "SRS1=KKhK=hop1.test=+abcd=AB=x.org=u@fwd.test";

    assert_non_null(buf);
    assert_int_equal(srs_forward("secret", 0, "user@example.org", "fwd.test",
                                 T_LB, buf, n - 1), SRS_FWD_NO_ROOM);
    assert_int_equal(srs_forward("secret", 0, "user@example.org", "fwd.test",
                                 T_LB, buf, n), SRS_FWD_OK);
    assert_string_equal(buf, want);
    assert_int_equal(srs_forward("secret", 0, "user@example.org", "fwd.test",
                                 T_LB, NULL, 0), SRS_FWD_NO_ROOM);
    free(buf);
    /* "user@example.org" and its NUL: 17 bytes. */
    buf = malloc(17);
    assert_non_null(buf);
    assert_int_equal(srs_reverse("secret", 0, want, T_LB, buf, 16), SRS_NO_ROOM);
    assert_int_equal(srs_reverse("secret", 0, want, T_LB, buf, 17), SRS_OK);
    assert_string_equal(buf, "user@example.org");
    free(buf);
    /* "SRS0+abcd=AB=x.org=u@hop1.test": 30 and its NUL. */
    buf = malloc(31);
    assert_non_null(buf);
    assert_int_equal(srs_reverse("secret", 0, srs1, T_LB, buf, 30), SRS_NO_ROOM);
    assert_int_equal(srs_reverse("secret", 0, srs1, T_LB, buf, 31), SRS_OK);
    assert_string_equal(buf, "SRS0+abcd=AB=x.org=u@hop1.test");
    free(buf);
}

static void test_is_srs(void **state)
{
    assert_true(srs_is_srs("SRS0=abcd=LB=d=u@x"));
    assert_true(srs_is_srs("srs1+x@y"));
    assert_true(srs_is_srs("Srs0-"));
    assert_true(srs_is_srs("SRS0=@our.domain"));
    assert_false(srs_is_srs("SRS0@x"));
    assert_false(srs_is_srs("SRS2=abcd@x"));
    assert_false(srs_is_srs("user@SRS0=x"));
    assert_false(srs_is_srs(""));
    assert_false(srs_is_srs(NULL));
}

static void test_strings(void **state)
{
    for (int i = SRS_FWD_OK; i <= SRS_FWD_INTERNAL; i++)
        assert_string_not_equal(srs_fwd_str((enum srs_fwd)i), "unknown");
    for (int i = SRS_NOT_SRS; i <= SRS_NO_ROOM; i++)
        assert_string_not_equal(srs_status_str((enum srs_status)i), "unknown");
    assert_non_null(strstr(srs_status_str(SRS_BAD_HASH), "invalid SRS address"));
    assert_string_equal(srs_status_str((enum srs_status)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kat_forward),
        cmocka_unit_test(test_kat_reverse),
        cmocka_unit_test(test_round_trip_srs0),
        cmocka_unit_test(test_round_trip_srs1),
        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_bad_hash),
        cmocka_unit_test(test_stamp_age),
        cmocka_unit_test(test_stamp_future),
        cmocka_unit_test(test_stamp_wrap),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_shift),
        cmocka_unit_test(test_keep),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_no_room),
        cmocka_unit_test(test_is_srs),
        cmocka_unit_test(test_strings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
