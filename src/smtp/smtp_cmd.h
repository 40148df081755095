/*
 * smtp_cmd.h - the syntax of SMTP command lines (RFC 5321 section 4.1).
 *
 * Owns: splitting a command line into verb and argument, the MAIL/RCPT path
 * and its ESMTP parameters.  Pure functions over bytes, so they can be unit
 * tested.  Must not: keep state or decide policy (smtp_server.c does).
 */
#ifndef SELOR_SMTP_CMD_H
#define SELOR_SMTP_CMD_H

#include <stddef.h>

#include "addr.h"

#define SMTP_CMD_LINE_MAX 512   /* command line, CRLF included */
#define SMTP_TEXT_LINE_MAX 1000 /* text line in DATA, CRLF included */

enum smtp_verb {
    SMTP_UNKNOWN,
    SMTP_HELO,
    SMTP_EHLO,
    SMTP_MAIL,
    SMTP_RCPT,
    SMTP_DATA,
    SMTP_RSET,
    SMTP_NOOP,
    SMTP_QUIT,
    SMTP_VRFY,
    SMTP_EXPN,
    SMTP_HELP,
    SMTP_STARTTLS,
    SMTP_AUTH,
};

struct smtp_cmd {
    enum smtp_verb verb;
    const char *arg;  /* after the verb and its blanks; "" if none */
    size_t arglen;
};

/* line: one command without its CRLF. */
void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);
const char *smtp_verb_name(enum smtp_verb v);

enum smtp_path_err {
    SMTP_PATH_OK,
    SMTP_PATH_SYNTAX,      /* no "FROM:"/"TO:", bad brackets or mailbox */
    SMTP_PATH_BRACKETS,    /* no <> and Proto_level_check 1 */
    SMTP_PATH_DOMAIN,      /* the domain part is bad */
    SMTP_PATH_TOOLONG,
    SMTP_PATH_8BIT,
};

struct smtp_path {
    struct addr addr;
    int null;             /* the null path <> */
    const char *params;   /* ESMTP parameters after the path */
    size_t paramslen;
};

/*
 * Parses the argument of MAIL ("FROM:") or RCPT ("TO:").  strict: the path
 * must be in angle brackets (Proto_level_check 1).
 */
enum smtp_path_err smtp_cmd_path(const char *arg, size_t len, const char *kw,
                                 int strict, struct smtp_path *out);

struct smtp_param {
    char key[32];     /* upper case */
    char value[256];  /* "" when the parameter has no value */
};

/*
 * Reads the next KEY[=VALUE] from *p (advanced past it).  1 when one was
 * read, 0 at the end, -1 on bad syntax.
 */
int smtp_cmd_next_param(const char **p, const char *end, struct smtp_param *out);

/* ---- AUTH responses (RFC 4954): base64 and the PLAIN message ---- */

/*
 * Decodes base64 (RFC 4648: the standard alphabet, padded to a multiple of
 * four, nothing else, no blanks).  The output is at most n / 4 * 3 bytes
 * and must fit in max.  0 with *outlen, -1 when the text is not base64 or
 * does not fit.
 */
int smtp_cmd_b64_decode(const char *in, size_t n, unsigned char *out, size_t max,
                        size_t *outlen);

/* A PLAIN message "authzid NUL authcid NUL password", pointing into it. */
struct smtp_plain {
    const unsigned char *authzid, *authcid, *password;
    size_t authzid_len, authcid_len, password_len;
};

/* Splits a decoded PLAIN message: exactly two NULs, a non-empty authcid
 * and password.  0, or -1 when it is not such a message. */
int smtp_cmd_plain_split(const unsigned char *in, size_t n, struct smtp_plain *out);

#endif
