/*
 * fuzz_milter.c - what a milter sends back (src/smtp/milter_proto.c) and
 * the header changes it asks for (src/smtp/milter_head.c).
 *
 * Input: the byte stream a milter writes, as it is.  Every packet cut from
 * it goes through the negotiation parser and, when it is a header change
 * (h, i, m), is applied to a header section that starts as a fixed one.
 * Invariants, on exactly-sized copies (ASan sees any read past them):
 *   - a packet lies within the input, and its arguments within the packet;
 *   - cutting stops at the first impossible length, never reads past it;
 *   - whatever the changes, the section written back parses into the same
 *     fields, names and values, and the parse takes it whole: no value can
 *     start a field of its own or end the section early.
 */
#include "fuzz_util.h"
#include "milter_head.h"
#include "milter_proto.h"

static const char START[] = "Received: from a\n\tby b\nSubject: hi\nX-A: 1\nX-A: 2\n\n";

static void check_args(const struct milter_pkt *p, const char *base, size_t n)
{
    for (int i = 0; i < 8; i++) {
        const char *a = milter_proto_arg(p, 0, i);
        if (a == NULL)
            break;
        CHECK(fuzz_inside(a, strlen(a) + 1, p->data, p->len));
        CHECK(fuzz_inside(a, 1, base, n));
    }
}

static void apply(struct milter_head *h, const struct milter_pkt *p)
{
    size_t skip = p->cmd == MILTER_R_ADDHEADER ? 0 : 4;
    const char *name = milter_proto_arg(p, skip, 0);
    const char *value = milter_proto_arg(p, skip, 1);
    uint32_t idx = milter_proto_get_u32(p);

    if (name == NULL || value == NULL || (skip && p->len < 4))
        return;
    if (p->cmd == MILTER_R_ADDHEADER)
        milter_head_add(h, name, value);
    else if (p->cmd == MILTER_R_INSHEADER)
        milter_head_insert(h, idx, name, value);
    else
        milter_head_change(h, name, idx, value);
}

static void check_section(const struct milter_head *h)
{
    struct buf b = BUF_INIT(0);
    struct milter_head again;
    size_t used;

    milter_head_format(h, &b);
    milter_head_init(&again);
    used = milter_head_parse(&again, b.data, b.len);
    CHECK(used == b.len);
    CHECK(again.n == h->n);
    for (size_t i = 0; i < h->n; i++) {
        CHECK(strcmp(again.f[i].name, h->f[i].name) == 0);
        CHECK(strcmp(again.f[i].value, h->f[i].value) == 0);
    }
    milter_head_free(&again);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    struct milter_head h;
    struct milter_pkt p;
    struct milter_neg neg;
    const char *why;
    size_t at = 0, used;
    int r;

    if (in == NULL)
        abort();
    memcpy(in, data, size);
    milter_head_init(&h);
    CHECK(milter_head_parse(&h, START, sizeof(START) - 1) == sizeof(START) - 1);
    while ((r = milter_proto_next(in + at, size - at, &p, &used)) == 1) {
        CHECK(used >= 5 && used <= size - at);
        CHECK(fuzz_inside(p.data, p.len, in, size));
        check_args(&p, in, size);
        if (milter_proto_neg(&p, &neg, &why) == 0)
            CHECK(neg.version >= 2 && neg.version <= MILTER_VERSION);
        if (p.cmd == MILTER_R_ADDHEADER || p.cmd == MILTER_R_INSHEADER ||
            p.cmd == MILTER_R_CHGHEADER)
            apply(&h, &p);
        at += used;
    }
    check_section(&h);
    milter_head_free(&h);
    free(in);
    return 0;
}
