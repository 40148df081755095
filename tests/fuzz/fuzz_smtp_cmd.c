/*
 * fuzz_smtp_cmd.c - SMTP command line syntax (src/smtp/smtp_cmd.h).
 *
 * Input: one command line without its CR LF, as smtp_server.c passes it
 * ("MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME").  It goes through
 * smtp_cmd_parse; its argument, and the whole line, through smtp_cmd_path
 * with "FROM:" and "TO:", strict and not; each path's parameters through
 * the smtp_cmd_next_param loop.
 *
 * Invariants:
 *  - arg/arglen lie inside the line (or are "" and 0); a known verb is
 *    the line's first four letters followed by a space or the end; the
 *    argument has no leading space and no trailing space or tab.
 *  - a path: params lie inside the text; a null path has no address; an
 *    address keeps the addr.h limits (local <= 64, domain <= 255, lower
 *    case) and, formatted with addr_format, parses again to itself.
 *  - strict and loose agree whenever strict does not ask for brackets.
 *  - the parameter loop ends within paramslen + 1 calls, every 1 moves the
 *    cursor forward without passing the end; keys are 1..31 upper-case
 *    alnum or '-' starting alnum, values printable without space or '='
 *    and under 256 bytes, and the text consumed spells KEY[=VALUE].
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz_util.h"
#include "addr.h"
#include "smtp_cmd.h"

static void check_addr(const struct addr *a)
{
    char text[ADDR_PATH_MAX + 2];
    struct addr again;
    size_t ln = strlen(a->local), dn = strlen(a->domain);

    CHECK(ln > 0 && ln <= ADDR_LOCAL_MAX);
    CHECK(dn <= ADDR_DOMAIN_MAX);
    for (size_t i = 0; i < dn; i++)
        CHECK(!isupper((unsigned char)a->domain[i]));
    addr_format(a, text, sizeof(text));
    CHECK(strlen(text) == ln + (dn ? dn + 1 : 0));
    if (addr_parse(text, strlen(text), &again) != ADDR_OK) {
        fuzz_dump("formatted", text, strlen(text));
        CHECK(!"a parsed address does not parse again once formatted");
    }
    CHECK(strcmp(again.local, a->local) == 0);
    CHECK(strcmp(again.domain, a->domain) == 0);
}

static void check_params(const char *params, size_t n)
{
    const char *p = params, *end = params + n, *prev = params;
    struct smtp_param prm;
    size_t calls = 0;
    int r;

    while ((r = smtp_cmd_next_param(&p, end, &prm)) == 1) {
        const char *q;
        size_t kl = strlen(prm.key), vl = strlen(prm.value);

        CHECK(++calls <= n + 1);
        CHECK(p > prev && p <= end);  /* always forward, never past the end */
        CHECK(kl >= 1 && kl < sizeof(prm.key));
        CHECK(isalnum((unsigned char)prm.key[0]));
        for (size_t i = 0; i < kl; i++)
            CHECK(isdigit((unsigned char)prm.key[i]) ||
                  isupper((unsigned char)prm.key[i]) || prm.key[i] == '-');
        CHECK(vl < sizeof(prm.value));
        for (size_t i = 0; i < vl; i++)
            CHECK((unsigned char)prm.value[i] > 0x20 &&
                  (unsigned char)prm.value[i] < 0x7f && prm.value[i] != '=');
        /* The text just consumed ends with KEY or KEY=VALUE. */
        q = p - (vl ? vl + 1 : 0) - kl;
        CHECK(q >= prev);
        CHECK(strncasecmp(q, prm.key, kl) == 0);
        if (vl) {
            CHECK(q[kl] == '=');
            CHECK(memcmp(q + kl + 1, prm.value, vl) == 0);
        }
        CHECK(p == end || *p == ' ');
        prev = p;
    }
    CHECK(calls <= n + 1);
    if (r == 0)
        for (const char *s = p; s < end; s++)
            CHECK(*s == ' ');
    else
        CHECK(r == -1);
}

static void check_path(const char *text, size_t n, const char *kw)
{
    struct smtp_path strict, loose;
    enum smtp_path_err rs = smtp_cmd_path(text, n, kw, 1, &strict);
    enum smtp_path_err rl = smtp_cmd_path(text, n, kw, 0, &loose);

    CHECK(rs <= SMTP_PATH_8BIT && rl <= SMTP_PATH_8BIT);
    CHECK(rl != SMTP_PATH_BRACKETS);
    if (rs != SMTP_PATH_BRACKETS) {
        CHECK(rs == rl);
        if (rs == SMTP_PATH_OK) {
            CHECK(strict.null == loose.null);
            CHECK(strcmp(strict.addr.local, loose.addr.local) == 0);
            CHECK(strcmp(strict.addr.domain, loose.addr.domain) == 0);
            CHECK(strict.params == loose.params && strict.paramslen == loose.paramslen);
        }
    }
    if (rl != SMTP_PATH_OK)
        return;
    CHECK(n >= strlen(kw) && strncasecmp(text, kw, strlen(kw)) == 0);
    CHECK(fuzz_inside(loose.params, loose.paramslen, text, n));
    CHECK(loose.paramslen == 0 || loose.params[0] != ' ');
    if (loose.null)
        CHECK(loose.addr.local[0] == '\0' && loose.addr.domain[0] == '\0');
    else
        check_addr(&loose.addr);
    check_params(loose.params, loose.paramslen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: ASan sees any read past the line. */
    char *line = malloc(size ? size : 1);
    struct smtp_cmd cmd;

    if (line == NULL)
        abort();
    memcpy(line, data, size);
    smtp_cmd_parse(line, size, &cmd);
    CHECK(cmd.verb >= SMTP_UNKNOWN && cmd.verb <= SMTP_AUTH);
    CHECK(cmd.arg != NULL);
    if (cmd.arglen > 0) {
        CHECK(fuzz_inside(cmd.arg, cmd.arglen, line, size));
        CHECK(cmd.arg[0] != ' ');
        CHECK(cmd.arg[cmd.arglen - 1] != ' ' && cmd.arg[cmd.arglen - 1] != '\t');
    }
    if (cmd.verb != SMTP_UNKNOWN) {
        size_t vl = strlen(smtp_verb_name(cmd.verb));    /* 4 letters, or STARTTLS */
        CHECK(size >= vl && (size == vl || line[vl] == ' '));
        CHECK(strncasecmp(line, smtp_verb_name(cmd.verb), vl) == 0);
        CHECK(cmd.arglen == 0 || cmd.arg >= line + vl + 1);
    } else {
        CHECK(strcmp(smtp_verb_name(cmd.verb), "?") == 0);
    }
    if (cmd.verb == SMTP_MAIL || cmd.verb == SMTP_RCPT) {
        /* The path code must not read past arglen: give it its own copy. */
        char *arg = malloc(cmd.arglen ? cmd.arglen : 1);
        if (arg == NULL)
            abort();
        memcpy(arg, cmd.arg, cmd.arglen);
        check_path(arg, cmd.arglen, cmd.verb == SMTP_MAIL ? "FROM:" : "TO:");
        free(arg);
    }
    check_path(line, size, "FROM:");
    check_path(line, size, "TO:");
    free(line);
    return 0;
}
