/*
 * milter_proto.h - the milter wire format (protocol version 6, as
 * libmilter and Postfix's milter8 speak it), from the MTA's side.
 *
 * Owns: the command and reply codes, the action and protocol-step bits,
 * building the packets the MTA sends and cutting the milter's replies out
 * of a byte stream, with a limit on every length the milter controls.
 * Must not: do I/O, keep state between packets, or know a session.
 */
#ifndef SELOR_MILTER_PROTO_H
#define SELOR_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define MILTER_VERSION 6
#define MILTER_CHUNK 65535            /* largest body chunk a milter takes */
#define MILTER_PKT_MAX (1024 * 1024 + 64)   /* largest reply taken (MDS_1M) */

/* MTA to milter */
enum {
    MILTER_C_ABORT = 'A', MILTER_C_BODY = 'B', MILTER_C_CONNECT = 'C',
    MILTER_C_MACRO = 'D', MILTER_C_EOB = 'E', MILTER_C_HELO = 'H',
    MILTER_C_HEADER = 'L', MILTER_C_MAIL = 'M', MILTER_C_EOH = 'N',
    MILTER_C_OPTNEG = 'O', MILTER_C_QUIT = 'Q', MILTER_C_RCPT = 'R',
    MILTER_C_DATA = 'T',
};

/* milter to MTA */
enum {
    MILTER_R_ADDRCPT = '+', MILTER_R_DELRCPT = '-', MILTER_R_ADDRCPT_PAR = '2',
    MILTER_R_SHUTDOWN = '4', MILTER_R_ACCEPT = 'a', MILTER_R_REPLBODY = 'b',
    MILTER_R_CONTINUE = 'c', MILTER_R_DISCARD = 'd', MILTER_R_CHGFROM = 'e',
    MILTER_R_CONN_FAIL = 'f', MILTER_R_ADDHEADER = 'h', MILTER_R_INSHEADER = 'i',
    MILTER_R_SETSYMLIST = 'l', MILTER_R_CHGHEADER = 'm', MILTER_R_PROGRESS = 'p',
    MILTER_R_QUARANTINE = 'q', MILTER_R_REJECT = 'r', MILTER_R_SKIP = 's',
    MILTER_R_TEMPFAIL = 't', MILTER_R_REPLYCODE = 'y',
};

/* What a milter may do at the end of a message (negotiated). */
enum {
    MILTER_A_ADDHDRS = 0x01, MILTER_A_CHGBODY = 0x02, MILTER_A_ADDRCPT = 0x04,
    MILTER_A_DELRCPT = 0x08, MILTER_A_CHGHDRS = 0x10, MILTER_A_QUARANTINE = 0x20,
    MILTER_A_CHGFROM = 0x40, MILTER_A_ADDRCPT_PAR = 0x80, MILTER_A_SETSYMLIST = 0x100,
    MILTER_A_ALL = 0x1ff,
};

/* Steps a milter does not want, and those it will not answer. */
enum {
    MILTER_P_NOCONNECT = 0x1, MILTER_P_NOHELO = 0x2, MILTER_P_NOMAIL = 0x4,
    MILTER_P_NORCPT = 0x8, MILTER_P_NOBODY = 0x10, MILTER_P_NOHDRS = 0x20,
    MILTER_P_NOEOH = 0x40, MILTER_P_NR_HDR = 0x80, MILTER_P_NOUNKNOWN = 0x100,
    MILTER_P_NODATA = 0x200, MILTER_P_SKIP = 0x400, MILTER_P_RCPT_REJ = 0x800,
    MILTER_P_NR_CONN = 0x1000, MILTER_P_NR_HELO = 0x2000, MILTER_P_NR_MAIL = 0x4000,
    MILTER_P_NR_RCPT = 0x8000, MILTER_P_NR_DATA = 0x10000, MILTER_P_NR_UNKN = 0x20000,
    MILTER_P_NR_EOH = 0x40000, MILTER_P_NR_BODY = 0x80000, MILTER_P_HDR_LEADSPC = 0x100000,
};

/* What Selor offers: every step may be refused or left unanswered; it
 * never sends refused recipients (no RCPT_REJ) nor larger packets. */
#define MILTER_P_OFFER 0x1ff7ffu

/* The stages a milter may name macros for (SMFIM_*). */
enum milter_stage {
    MILTER_M_CONNECT, MILTER_M_HELO, MILTER_M_MAIL, MILTER_M_RCPT,
    MILTER_M_DATA, MILTER_M_EOM, MILTER_M_EOH, MILTER_M_NSTAGES
};

/* One packet cut from the stream: its code and data (not NUL-ended). */
struct milter_pkt {
    int cmd;
    const char *data;
    size_t len;
};

/* What the milter answered to the negotiation. */
struct milter_neg {
    uint32_t version, actions, proto;
    char macros[MILTER_M_NSTAGES][256];   /* "" none asked: Selor's defaults */
    int has_macros[MILTER_M_NSTAGES];
};

/* Starts a packet of code cmd in out; milter_proto_end closes it. */
size_t milter_proto_begin(struct buf *out, int cmd);
void milter_proto_end(struct buf *out, size_t start);
/* A packet whose data is given whole. */
void milter_proto_put(struct buf *out, int cmd, const void *data, size_t n);
/* Appends s and its NUL to the packet being built. */
void milter_proto_str(struct buf *out, const char *s);
void milter_proto_u32(struct buf *out, uint32_t v);
/* The negotiation Selor opens with. */
void milter_proto_optneg(struct buf *out);
/*
 * Cuts the next packet from in[0..n): 1 with *used bytes and p set, 0
 * when more is needed, -1 on a length no milter sends (0, or over
 * MILTER_PKT_MAX).
 */
int milter_proto_next(const char *in, size_t n, struct milter_pkt *p, size_t *used);
/* Parses the negotiation reply; -1 with why when it is not one. */
int milter_proto_neg(const struct milter_pkt *p, struct milter_neg *neg, const char **why);
/*
 * The i-th NUL-terminated string of a packet's data (from its start), or
 * NULL when there are fewer.  skip: bytes to pass first (an index).
 */
const char *milter_proto_arg(const struct milter_pkt *p, size_t skip, int i);
/* The 32-bit number at the start of a packet's data (0 when too short). */
uint32_t milter_proto_get_u32(const struct milter_pkt *p);

#endif
