/*
 * smtp_milter_pkt.c - what a session tells its milters (see
 * smtp_milter_pkt.h and docs/milter.md for the macros of each step).
 *
 * A macro without a value is not sent (a milter reads a missing one as
 * unknown), and a step without any sends no macro packet at all.
 */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "milter_head.h"
#include "milter_proto.h"
#include "smtp_milter_pkt.h"
#include "smtp_session.h"
#include "version.h"

static void smtp_milter_pkt_macro(struct buf *b, const char *name, const char *value)
{
    if (value && value[0]) {
        milter_proto_str(b, name);
        milter_proto_str(b, value);
    }
}

static void smtp_milter_pkt_client(struct buf *b, const struct smtp_session *s)
{
    const char *name = s->rdns[0] ? s->rdns : "unknown";
    char tmp[600];

    smtp_milter_pkt_macro(b, "j", s->conf->Server_name);
    smtp_milter_pkt_macro(b, "{daemon_name}", s->conf->Server_name);
    smtp_milter_pkt_macro(b, "v", "Selor " SELOR_VERSION);
    snprintf(tmp, sizeof(tmp), "%s [%s]", name, s->ip);
    smtp_milter_pkt_macro(b, "_", tmp);
    smtp_milter_pkt_macro(b, "{client_addr}", s->ip);
    smtp_milter_pkt_macro(b, "{client_name}", name);
    smtp_milter_pkt_macro(b, "{client_ptr}", name);
}

static void smtp_milter_pkt_tls(struct buf *b, const struct smtp_session *s)
{
    char bits[16];

    if (!s->tls)
        return;
    smtp_milter_pkt_macro(b, "{tls_version}", stream_tls_version(&s->io));
    smtp_milter_pkt_macro(b, "{cipher}", stream_tls_cipher(&s->io));
    snprintf(bits, sizeof(bits), "%d", stream_tls_bits(&s->io));
    smtp_milter_pkt_macro(b, "{cipher_bits}", bits);
}

/* An address and its domain under the names of a step. */
static void smtp_milter_pkt_path(struct buf *b, const char *addr_name, const char *host_name,
                                 const char *addr)
{
    const char *at = strrchr(addr, '@');

    smtp_milter_pkt_macro(b, addr_name, addr);
    smtp_milter_pkt_macro(b, host_name, at ? at + 1 : "");
}

void smtp_milter_pkt_macros(struct buf *b, const struct smtp_session *s, int cmd,
                            const char *rcpt)
{
    size_t start = milter_proto_begin(b, MILTER_C_MACRO);

    buf_putc(b, (char)cmd);
    switch (cmd) {
    case MILTER_C_CONNECT:
        smtp_milter_pkt_client(b, s);
        break;
    case MILTER_C_HELO:
        smtp_milter_pkt_tls(b, s);
        break;
    case MILTER_C_MAIL:
        smtp_milter_pkt_macro(b, "{auth_authen}", s->auth);
        smtp_milter_pkt_macro(b, "{auth_type}", s->auth[0] ? s->authx.mech : NULL);
        smtp_milter_pkt_path(b, "{mail_addr}", "{mail_host}", s->txn.from);
        smtp_milter_pkt_macro(b, "{mail_mailer}", "smtp");
        break;
    case MILTER_C_RCPT:
        smtp_milter_pkt_path(b, "{rcpt_addr}", "{rcpt_host}", rcpt);
        break;
    default:
        smtp_milter_pkt_macro(b, "i", s->txn.qid);
        break;
    }
    if (b->len == start + 6)
        b->len = start;
    else
        milter_proto_end(b, start);
}

void smtp_milter_pkt_connect(struct buf *b, const struct smtp_session *s)
{
    char host[300];
    size_t start;

    snprintf(host, sizeof(host), s->rdns[0] ? "%s" : "[%s]", s->rdns[0] ? s->rdns : s->ip);
    smtp_milter_pkt_macros(b, s, MILTER_C_CONNECT, NULL);
    start = milter_proto_begin(b, MILTER_C_CONNECT);
    milter_proto_str(b, host);
    buf_putc(b, strchr(s->ip, ':') ? '6' : '4');
    buf_append(b, "\0\0", 2);   /* the client's port: not kept */
    milter_proto_str(b, s->ip);
    milter_proto_end(b, start);
}

void smtp_milter_pkt_addr(struct buf *b, const struct smtp_session *s, int cmd,
                          const char *addr, const char *arg)
{
    char path[ADDR_PATH_MAX + 4];
    size_t start;

    smtp_milter_pkt_macros(b, s, cmd, addr);
    start = milter_proto_begin(b, cmd);
    snprintf(path, sizeof(path), "<%s>", addr);
    milter_proto_str(b, path);
    if (arg)
        milter_proto_str(b, arg);
    milter_proto_end(b, start);
}

void smtp_milter_pkt_header(struct buf *b, const struct milter_head_field *f, int leadspc)
{
    size_t start = milter_proto_begin(b, MILTER_C_HEADER);

    milter_proto_str(b, f->name);
    milter_proto_str(b, milter_head_value(f, leadspc));
    milter_proto_end(b, start);
}

void smtp_milter_pkt_body(struct buf *b, const char *p, size_t n)
{
    size_t start = milter_proto_begin(b, MILTER_C_BODY);

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n')
            buf_putc(b, '\r');
        buf_putc(b, p[i]);
    }
    milter_proto_end(b, start);
}
