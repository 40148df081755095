/*
 * fuzz_addr.c - mail address syntax (src/core/addr.h).
 *
 * Input: the text of an address as a client writes it inside <...>
 * ("u@example.org", "\"a b\"@x.example", "@r1,@r2:u@[192.0.2.1]", "u").
 * It goes through addr_parse, and through addr_valid_domain as a domain.
 *
 * Invariants, when addr_parse says ADDR_OK:
 *  - local 1..64 bytes, domain <= 255, the domain in lower case;
 *  - no byte below 0x21 or above 0x7e anywhere (a space only inside a
 *    quoted local part), and no NUL inside what was parsed: the input,
 *    after an optional source route "@...:", is exactly local "@" domain
 *    (a trailing root dot aside), byte for byte;
 *  - addr_format then addr_parse is a fixed point;
 *  - addr_valid_domain accepts the domain (in either case).
 * For the input as a domain: addr_valid_domain and addr_parse("x@" input)
 * agree, and a valid domain comes back lower-cased, without its root dot.
 * On ADDR_EDOMAIN the domain kept for the reply is printable.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz_util.h"
#include "addr.h"

static int is_upper_anywhere(const char *s)
{
    for (; *s; s++)
        if (isupper((unsigned char)*s))
            return 1;
    return 0;
}

static void check_ok(const char *in, size_t n, const struct addr *a)
{
    size_t ln = strlen(a->local), dn = strlen(a->domain), tail, dot = 0, pre;
    int quoted = a->local[0] == '"';
    char text[ADDR_PATH_MAX + 2], up[ADDR_DOMAIN_MAX + 1];
    struct addr again;

    CHECK(ln >= 1 && ln <= ADDR_LOCAL_MAX);
    CHECK(dn <= ADDR_DOMAIN_MAX);
    CHECK(!is_upper_anywhere(a->domain));
    for (size_t i = 0; i < ln; i++) {
        unsigned char c = (unsigned char)a->local[i];
        CHECK((c > 0x20 || (c == 0x20 && quoted)) && c < 0x7f);
    }
    for (size_t i = 0; i < dn; i++) {
        unsigned char c = (unsigned char)a->domain[i];
        if (c <= 0x20 || c >= 0x7f) {
            fuzz_dump("domain", a->domain, dn);
            CHECK(!"control, space or 8-bit byte in a parsed domain");
        }
    }

    /* The whole input is accounted for: [route] local [@ domain [.]]. */
    tail = ln + (dn ? dn + 1 : 0);
    if (dn && a->domain[0] != '[' && n > tail && in[n - 1] == '.')
        dot = 1;
    if (tail + dot > n) {
        fuzz_dump("input", in, n);
        fuzz_dump("domain", a->domain, dn);
        CHECK(!"the parsed address is longer than its input");
    }
    pre = n - tail - dot;
    if (memcmp(in + pre, a->local, ln) != 0 ||
        (dn && (in[pre + ln] != '@' ||
                strncasecmp(in + pre + ln + 1, a->domain, dn) != 0))) {
        fuzz_dump("input", in, n);
        fuzz_dump("local", a->local, ln);
        fuzz_dump("domain", a->domain, dn);
        CHECK(!"the parsed address is not the input (NUL or bytes dropped?)");
    }
    if (pre > 0)
        CHECK(in[0] == '@' && in[pre - 1] == ':');

    addr_format(a, text, sizeof(text));
    CHECK(strlen(text) == tail);
    CHECK(addr_parse(text, strlen(text), &again) == ADDR_OK);
    CHECK(strcmp(again.local, a->local) == 0);
    CHECK(strcmp(again.domain, a->domain) == 0);

    if (dn) {
        CHECK(addr_valid_domain(a->domain, dn) == 1);
        for (size_t i = 0; i <= dn; i++)
            up[i] = (char)toupper((unsigned char)a->domain[i]);
        CHECK(addr_valid_domain(up, dn) == 1);
    }
}

/* addr_valid_domain on the input, and addr_parse of "x@" input. */
static void check_domain(const char *in, size_t n)
{
    int valid = addr_valid_domain(in, n);
    char *text;
    struct addr a;
    enum addr_err r;

    CHECK(valid == 0 || valid == 1);
    if (n + 2 > ADDR_PATH_MAX)
        return;
    text = malloc(n + 2);
    if (text == NULL)
        abort();
    memcpy(text, "x@", 2);
    memcpy(text + 2, in, n);
    r = addr_parse(text, n + 2, &a);
    if (valid) {
        size_t dn = n - (in[0] != '[' && in[n - 1] == '.');
        if (r != ADDR_OK) {
            fuzz_dump("domain", in, n);
            CHECK(!"addr_valid_domain accepts a domain addr_parse refuses");
        }
        CHECK(strcmp(a.local, "x") == 0);
        if (strlen(a.domain) != dn) {
            fuzz_dump("domain", in, n);
            CHECK(!"a valid domain does not come back whole (NUL inside?)");
        }
        CHECK(strncasecmp(a.domain, in, dn) == 0);
        check_ok(text, n + 2, &a);
    } else {
        /* Refused as a domain: never an address, whatever the reason. */
        CHECK(r != ADDR_OK);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);  /* exactly size bytes, for ASan */
    struct addr a;
    enum addr_err r;

    if (in == NULL)
        abort();
    memcpy(in, data, size);
    memset(&a, 0x55, sizeof(a));
    r = addr_parse(in, size, &a);
    CHECK(r >= ADDR_OK && r <= ADDR_E8BIT);
    CHECK(addr_strerror(r) != NULL && strcmp(addr_strerror(r), "?") != 0);
    if (r == ADDR_OK) {
        check_ok(in, size, &a);
    } else if (r == ADDR_EDOMAIN) {
        size_t dn = strnlen(a.domain, sizeof(a.domain));
        CHECK(dn <= ADDR_DOMAIN_MAX);
        for (size_t i = 0; i < dn; i++)
            CHECK((unsigned char)a.domain[i] > 0x20 && (unsigned char)a.domain[i] < 0x7f);
    }
    if (size > 0)
        check_domain(in, size);
    free(in);
    return 0;
}
