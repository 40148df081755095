/*
 * fuzz_rules.c - the rules language's parser (src/rules/rules_parse.c)
 * and the matchers its conditions use (rules_match.c), fed any text.
 *
 * Input: two bytes of event mask (the events the file is for), then the
 * rules file's text.
 *
 * Invariants:
 *  - a text that does not parse gives an error "(inline rule):LINE:COL: ..."
 *    whose line is within the text and whose column is at least 1;
 *  - a parsed file has rules of 1 to RULES_MAX_ITEMS items, each allowed in
 *    every event of the mask, with lines increasing and columns >= 1;
 *    arguments hold no control character but tab;
 *  - a Def! names an option Def! may change, and its argument parses again
 *    to the same option and value; Itest? arguments are comparisons;
 *  - the matchers answer for any address, name and IP (no crash).
 */
#include "config.h"
#include "fuzz_util.h"
#include "rules_int.h"

static void check_item(const struct rules_item *it, unsigned mask)
{
    const struct rules_keyword *kw = NULL;
    static const char *names[] = {"From", "To", "Ip", "Rev_fail", "Itest", "Spf_resp",
        "Helo", "Auth", "Tls", "Local", "Size", "Rbl", "Exec", "Rate", "Add_hits",
        "Accept", "Close", "Cp", "Def", "Deny", "Reply", "Data_reply", "Resolve",
        "Qlimit", "Defer", "Log", "Header", "Delay", "Exec"};

    CHECK(it->op >= 0 && it->op < RULES_NOPS);
    kw = rules_keyword_find(names[it->op], it->action);
    CHECK(kw != NULL && kw->op == it->op);
    CHECK((kw->events & mask) == mask);
    CHECK(it->col >= 1 && it->line >= 1);
    if (it->arg)
        for (const char *p = it->arg; *p; p++)
            CHECK((unsigned char)*p >= 0x20 || *p == '\t');
    if (it->op == RULES_A_DEF) {
        struct buf v = BUF_INIT(0), why = BUF_INIT(0);
        int idx = -1;
        CHECK(config_def_parse(it->arg, &idx, &v, &why) == 0);
        CHECK(idx == it->u.def.idx && (config_option(idx)->flags & CONF_F_DEF));
        CHECK(strcmp(buf_cstr(&v), it->u.def.value) == 0);
        buf_free(&v);
        buf_free(&why);
    }
    if (it->op == RULES_C_ITEST)
        CHECK(rules_itest_check(it->arg) == 0);
    if (it->op == RULES_C_IP) {
        (void)rules_ip_match(it, "192.0.2.1");
        (void)rules_ip_match(it, "2001:db8::1");
        (void)rules_ip_match(it, "::ffff:10.0.0.1");
    }
    if (it->arg) {
        (void)rules_match_addr(it->arg, "alice@example.com");
        (void)rules_match_glob(it->arg, it->arg);
        (void)rules_itest(it->arg);
    }
}

static void check_error(const char *err, const char *text, size_t len)
{
    int line = 0, col = 0, lines = 1;

    CHECK(strncmp(err, "(inline rule):", 14) == 0);
    CHECK(sscanf(err + 14, "%d:%d:", &line, &col) == 2);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    CHECK(line >= 1 && line <= lines && col >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf err = BUF_INIT(0);
    struct rules_file *f;
    unsigned mask;
    int last = 0;

    if (size < 2)
        return 0;
    mask = ((unsigned)data[0] | (unsigned)data[1] << 8) & ((1u << RULES_NEVENTS) - 1);
    if (mask == 0)
        mask = RULES_EVBIT(RULES_EV_RCPT);
    f = rules_parse("x", NULL, (const char *)data + 2, size - 2, mask, &err);
    if (f == NULL) {
        check_error(buf_cstr(&err), (const char *)data + 2, size - 2);
        buf_free(&err);
        return 0;
    }
    for (size_t r = 0; r < f->nrules; r++) {
        CHECK(f->rules[r].nitems >= 1 && f->rules[r].nitems <= RULES_MAX_ITEMS);
        CHECK(f->rules[r].line > last);
        last = f->rules[r].line;
        for (size_t k = 0; k < f->rules[r].nitems; k++)
            check_item(&f->rules[r].items[k], mask);
    }
    rules_file_free(f);
    buf_free(&err);
    return 0;
}
