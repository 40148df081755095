/*
 * milter_proto.c - the milter wire format (see milter_proto.h).
 *
 * A packet is a 32-bit big-endian length, then that many bytes: one code
 * and its data.  Strings in the data end with NUL.  Everything a milter
 * sends is checked against the length it gave, never trusted to be
 * NUL-terminated.
 */
#include <stdio.h>
#include <string.h>

#include "milter_proto.h"

void milter_proto_u32(struct buf *out, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    buf_append(out, b, 4);
}

size_t milter_proto_begin(struct buf *out, int cmd)
{
    size_t start = out->len;

    milter_proto_u32(out, 0);
    buf_putc(out, (char)cmd);
    return start;
}

void milter_proto_end(struct buf *out, size_t start)
{
    uint32_t n = (uint32_t)(out->len - start - 4);
    unsigned char *p = (unsigned char *)out->data + start;

    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
}

void milter_proto_put(struct buf *out, int cmd, const void *data, size_t n)
{
    size_t start = milter_proto_begin(out, cmd);

    buf_append(out, data, n);
    milter_proto_end(out, start);
}

void milter_proto_str(struct buf *out, const char *s)
{
    buf_append(out, s, strlen(s) + 1);
}

void milter_proto_optneg(struct buf *out)
{
    size_t start = milter_proto_begin(out, MILTER_C_OPTNEG);

    milter_proto_u32(out, MILTER_VERSION);
    milter_proto_u32(out, MILTER_A_ALL);
    milter_proto_u32(out, MILTER_P_OFFER);
    milter_proto_end(out, start);
}

static uint32_t milter_u32_at(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;

    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

int milter_proto_next(const char *in, size_t n, struct milter_pkt *p, size_t *used)
{
    uint32_t len;

    if (n < 4)
        return 0;
    len = milter_u32_at(in);
    if (len == 0 || len > MILTER_PKT_MAX)
        return -1;
    if (n - 4 < len)
        return 0;
    p->cmd = (unsigned char)in[4];
    p->data = in + 5;
    p->len = len - 1;
    *used = 4 + (size_t)len;
    return 1;
}

uint32_t milter_proto_get_u32(const struct milter_pkt *p)
{
    return p->len >= 4 ? milter_u32_at(p->data) : 0;
}

const char *milter_proto_arg(const struct milter_pkt *p, size_t skip, int i)
{
    size_t at = skip;

    while (at < p->len) {
        const char *s = p->data + at;
        const char *nul = memchr(s, '\0', p->len - at);
        if (nul == NULL)
            return NULL;
        if (i-- == 0)
            return s;
        at += (size_t)(nul - s) + 1;
    }
    return NULL;
}

/* A v6 milter may follow its three numbers with the macros it wants, as
 * (stage, "names") pairs. */
static int milter_neg_macros(const struct milter_pkt *p, struct milter_neg *neg)
{
    size_t at = 12;

    while (at + 4 < p->len) {
        uint32_t stage = milter_u32_at(p->data + at);
        const char *s = p->data + at + 4;
        const char *nul = memchr(s, '\0', p->len - at - 4);
        if (nul == NULL)
            return -1;
        if (stage < MILTER_M_NSTAGES) {
            snprintf(neg->macros[stage], sizeof(neg->macros[stage]), "%.*s",
                     (int)(nul - s), s);
            neg->has_macros[stage] = 1;
        }
        at += 4 + (size_t)(nul - s) + 1;
    }
    return 0;
}

int milter_proto_neg(const struct milter_pkt *p, struct milter_neg *neg, const char **why)
{
    memset(neg, 0, sizeof(*neg));
    if (p->cmd != MILTER_C_OPTNEG || p->len < 12) {
        *why = "not a negotiation reply";
        return -1;
    }
    neg->version = milter_u32_at(p->data);
    neg->actions = milter_u32_at(p->data + 4);
    neg->proto = milter_u32_at(p->data + 8);
    if (neg->version < 2 || neg->version > MILTER_VERSION) {
        *why = "unsupported protocol version";
        return -1;
    }
    if (neg->actions & ~(uint32_t)MILTER_A_ALL) {
        *why = "asks for actions Selor does not offer";
        return -1;
    }
    if (neg->proto & ~(uint32_t)MILTER_P_OFFER & ~(uint32_t)0x30000000u) {
        *why = "asks for protocol steps Selor does not offer";
        return -1;
    }
    if (milter_neg_macros(p, neg) < 0) {
        *why = "bad macro list";
        return -1;
    }
    return 0;
}
