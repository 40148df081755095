/*
 * test_bounce.c - delivery status notifications (src/queue/bounce.c).
 *
 * Besides string checks, each kind of report is handed to Python's email
 * package (a real /usr/bin/python3 subprocess): if it parses as a
 * multipart/report with a delivery-status part, per-recipient fields and
 * the original header, and without parser defects, receivers will read it
 * as a DSN too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bounce.h"
#include "buf.h"
#include "log.h"
#include "mem.h"

#define NOW 1764000000L      /* report time */
#define ARRIVAL 1763950000L  /* original accepted */

static const char orig_message[] =
    "Received: from client.example.com (client.example.com [192.0.2.7])\n"
    "\tby mx1.example.net (Selor) with ESMTP id Q1; Mon, 24 Nov 2025 10:00:00 +0000\n"
    "From: Alice <alice@example.com>\n"
    "To: bob@example.org, carol@example.net\n"
    "Subject: Quarterly numbers\n"
    "Message-ID: <abc123@example.com>\n"
    "\n"
    "The body, which must not be attached.\n";

static struct bounce_rcpt two_rcpts[2] = {
    { "bob@example.org", "", "550 5.1.1 <bob@example.org>: No such user",
      "mx.example.org", "" },
    { "carol@example.net", "caroline@example.net", "mailbox is full", "", "5.2.2" },
};

static void info_init(struct bounce_info *bi)
{
    memset(bi, 0, sizeof(*bi));
    bi->server_name = "mx1.example.net";
    bi->report_from = "<MAILER-DAEMON@localhost";
    bi->subject = "[Mail delivery error]";
    bi->postmaster = "postmaster@example.net";
    bi->sender = "alice@example.com";
    bi->queue_id = "Q1";
    bi->arrival = ARRIVAL;
    bi->now = NOW;
    bi->template_text = NULL;
    bi->headers = orig_message;
    bi->headers_len = bounce_header_len(orig_message, sizeof(orig_message) - 1);
    bi->rcpts = two_rcpts;
    bi->nrcpt = 2;
    bi->boundary = "selor-b1";
}

/* The report as a NUL-terminated string (freed with mem_free). */
static char *report(const struct bounce_info *bi)
{
    struct buf b = BUF_INIT(0);

    bounce_format(bi, &b);
    return buf_steal(&b, NULL);
}

/* Every line under 1000 bytes with its CR LF; only printable ASCII, TAB
 * and LF: a report must pass any relay, 8BITMIME or not. */
static void assert_wire_safe(const char *msg)
{
    size_t col = 0;

    assert_true(strlen(msg) > 0);
    assert_int_equal(msg[strlen(msg) - 1], '\n');
    for (const char *p = msg; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '\n') {
            col = 0;
            continue;
        }
        if (!((c >= 0x20 && c < 0x7f) || c == '\t'))
            fail_msg("byte 0x%02x at offset %zu", c, (size_t)(p - msg));
        col++;
        if (col > 998)
            fail_msg("line over 998 bytes at offset %zu", (size_t)(p - msg));
    }
}

/* Whether some line of msg starts with prefix (ignoring case). */
static int has_line(const char *msg, const char *prefix)
{
    size_t n = strlen(prefix);

    for (const char *p = msg; p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncasecmp(p, prefix, n) == 0)
            return 1;
    }
    return 0;
}

/* The top-level header section of msg (mem_free it). */
static char *header_of(const char *msg)
{
    const char *end = strstr(msg, "\n\n");

    assert_non_null(end);
    return mem_strndup(msg, (size_t)(end - msg) + 1);
}

/* The body of the first part (text/plain, 7bit) of msg (mem_free it). */
static char *text_part(const char *msg, const char *boundary)
{
    char delim[128];
    const char *p = strstr(msg, "Content-Type: text/plain; charset=us-ascii\n\n");
    const char *end;

    assert_non_null(p);
    p += strlen("Content-Type: text/plain; charset=us-ascii\n\n");
    snprintf(delim, sizeof(delim), "\n--%s\n", boundary);
    end = strstr(p, delim);
    assert_non_null(end);
    return mem_strndup(p, (size_t)(end - p));
}

/*
 * Parses the report with Python's email package.  Asserts the DSN shape
 * (any failure exits non-zero, with the reason on stderr), then prints what
 * it found, one "key=value" a line, for the C side to check:
 *   H.<Field>      top-level header fields, unfolded, as written
 *   subject, from.name, from.addr   decoded (policy.default)
 *   text           part 1 decoded, newlines as '|'
 *   M.<Field>      per-message delivery-status fields
 *   R<i>.<Field>   per-recipient fields of recipient i
 *   orig.subject   the Subject line of part 3, decoded bytes
 * argv: file, then optionally a recipient, a diagnostic and the original
 * Subject that must be found.
 */
static const char py_script[] =
    "import email, re, sys\n"
    "from email import policy\n"
    "sys.stdout.reconfigure(encoding='utf-8', errors='backslashreplace')\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "want = (sys.argv[2:] + ['', '', ''])[:3]\n"
    "def unfold(v): return re.sub(r'\\r?\\n[ \\t]', ' ', str(v))\n"
    "m = email.message_from_bytes(raw)\n"
    "assert m.get_content_type() == 'multipart/report', m.get_content_type()\n"
    "assert m.get_param('report-type') == 'delivery-status'\n"
    "for p in m.walk(): assert not p.defects, (p.get_content_type(), p.defects)\n"
    "parts = m.get_payload()\n"
    "assert len(parts) in (2, 3), len(parts)\n"
    "assert parts[0].get_content_type() == 'text/plain'\n"
    "assert parts[1].get_content_type() == 'message/delivery-status'\n"
    "blocks = parts[1].get_payload()\n"
    "assert len(blocks) >= 2, len(blocks)\n"
    "assert blocks[0]['Reporting-MTA'].startswith('dns; ')\n"
    "m2 = email.message_from_bytes(raw, policy=policy.default)\n"
    "for k in ('From', 'To', 'Subject', 'Date', 'Message-ID'):\n"
    "    assert len(m.get_all(k, [])) == 1, k\n"
    "    assert not m2[k].defects, (k, m2[k].defects)\n"
    "a = m2['From'].addresses\n"
    "assert len(a) == 1\n"
    "print('from.name=' + a[0].display_name)\n"
    "print('from.addr=' + a[0].addr_spec)\n"
    "print('subject=' + str(m2['Subject']))\n"
    "for k, v in m.items(): print('H.%s=%s' % (k, unfold(v)))\n"
    "t = parts[0].get_payload(decode=True).decode(parts[0].get_content_charset())\n"
    "print('text=' + t.replace('\\n', '|'))\n"
    "for k, v in blocks[0].items(): print('M.%s=%s' % (k, unfold(v)))\n"
    "found = [False, False]\n"
    "for i, b in enumerate(blocks[1:]):\n"
    "    assert unfold(b['Final-Recipient']).startswith('rfc822; ')\n"
    "    assert b['Action'] == 'failed' and re.match(r'^[45]\\.\\d{1,3}\\.\\d{1,3}$', b['Status'])\n"
    "    for k, v in b.items(): print('R%d.%s=%s' % (i, k, unfold(v)))\n"
    "    if want[0] and unfold(b['Final-Recipient']) == 'rfc822; ' + want[0]:\n"
    "        found[0] = True\n"
    "        found[1] = want[1] in unfold(b['Diagnostic-Code'])\n"
    "if want[0]: assert found[0], 'recipient not found'\n"
    "if want[1]: assert found[1], 'diagnostic not found'\n"
    "if len(parts) == 3:\n"
    "    assert parts[2].get_content_type() == 'text/rfc822-headers'\n"
    "    h = parts[2].get_payload(decode=True)\n"
    "    assert b'\\n\\n' not in h\n"
    "    for line in h.split(b'\\n'):\n"
    "        if line.lower().startswith(b'subject:'):\n"
    "            sys.stdout.flush()\n"
    "            sys.stdout.buffer.write(b'orig.subject=' + line[8:].strip() + b'\\n')\n"
    "            if want[2]: assert line[8:].strip() == want[2].encode('utf-8', 'surrogateescape')\n"
    "else:\n"
    "    assert not want[2]\n";

/* Runs py_script on msg; returns its output (mem_free it); fails the test
 * unless Python exits 0. */
static char *python_parse(const char *msg, const char *rcpt, const char *diag,
                          const char *subject)
{
    char path[] = "/tmp/selor-test-bounce-XXXXXX";
    struct buf out = BUF_INIT(0);
    int fd = mkstemp(path), pfd[2], status;
    size_t len = strlen(msg);
    char chunk[4096];
    ssize_t n;
    pid_t pid;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, msg, len), (ssize_t)len);
    close(fd);
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/usr/bin/python3", "python3", "-c", py_script, path,
              rcpt ? rcpt : "", diag ? diag : "", subject ? subject : "",
              (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    while ((n = read(pfd[0], chunk, sizeof(chunk))) > 0)
        buf_append(&out, chunk, (size_t)n);
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("python rejected the report:\n%s\n--- output:\n%s", msg,
                 buf_cstr(&out));
    return buf_steal(&out, NULL);
}

/* out holds the line "key=value". */
static void assert_field(const char *out, const char *key, const char *value)
{
    char line[2048];

    snprintf(line, sizeof(line), "%s=%s\n", key, value);
    if (!(strncmp(out, line, strlen(line)) == 0 ||
          (strstr(out, line) && strstr(out, line)[-1] == '\n')))
        fail_msg("missing line \"%s=%s\" in:\n%s", key, value, out);
}

static void assert_no_field(const char *out, const char *key)
{
    char line[256];

    snprintf(line, sizeof(line), "%s=", key);
    if (has_line(out, line))
        fail_msg("unexpected %s in:\n%s", key, out);
}

/* ---- a whole report, read back as a DSN ---- */

static void test_dsn_parses_as_report(void **state)
{
    struct bounce_info bi;
    char *msg, *out, *hdr, date[64], arrival[64], line[256];

    (void)state;
    info_init(&bi);
    msg = report(&bi);
    assert_wire_safe(msg);
    out = python_parse(msg, "bob@example.org",
                       "550 5.1.1 <bob@example.org>: No such user",
                       "Quarterly numbers");
    log_format_rfc5322(date, sizeof(date), NOW);
    log_format_rfc5322(arrival, sizeof(arrival), ARRIVAL);

    assert_field(out, "H.From", "Mail Delivery System <MAILER-DAEMON@mx1.example.net>");
    assert_field(out, "H.To", "<alice@example.com>");
    assert_field(out, "H.Subject", "[Mail delivery error]");
    assert_field(out, "H.Date", date);
    snprintf(line, sizeof(line), "<Q1.%ld.bounce@mx1.example.net>", NOW);
    assert_field(out, "H.Message-ID", line);
    assert_field(out, "H.In-Reply-To", "<abc123@example.com>");
    assert_field(out, "H.References", "<abc123@example.com>");
    assert_field(out, "H.Auto-Submitted", "auto-replied");
    assert_field(out, "H.MIME-Version", "1.0");
    assert_field(out, "H.Content-Type",
                 "multipart/report; report-type=delivery-status; boundary=\"selor-b1\"");

    assert_field(out, "M.Reporting-MTA", "dns; mx1.example.net");
    assert_field(out, "M.X-Selor-Queue-ID", "Q1");
    assert_field(out, "M.Arrival-Date", arrival);

    assert_field(out, "R0.Final-Recipient", "rfc822; bob@example.org");
    assert_no_field(out, "R0.Original-Recipient");
    assert_field(out, "R0.Action", "failed");
    assert_field(out, "R0.Status", "5.1.1");
    assert_field(out, "R0.Remote-MTA", "dns; mx.example.org");
    assert_field(out, "R0.Diagnostic-Code", "smtp; 550 5.1.1 <bob@example.org>: No such user");
    assert_field(out, "R0.Last-Attempt-Date", date);

    assert_field(out, "R1.Final-Recipient", "rfc822; carol@example.net");
    assert_field(out, "R1.Original-Recipient", "rfc822; caroline@example.net");
    assert_field(out, "R1.Status", "5.2.2");
    assert_no_field(out, "R1.Remote-MTA");
    assert_field(out, "R1.Diagnostic-Code", "X-Selor; mailbox is full");
    assert_field(out, "orig.subject", "Quarterly numbers");

    /* The header section, in the given order, and no body. */
    hdr = header_of(msg);
    assert_non_null(strstr(hdr, "From: "));
    assert_true(strstr(hdr, "From: ") < strstr(hdr, "Content-Type: "));
    assert_null(strstr(msg, "The body, which must not be attached."));
    assert_non_null(strstr(msg, "\n--selor-b1--\n"));
    mem_free(hdr);
    mem_free(out);
    mem_free(msg);
}

static void test_without_headers_two_parts(void **state)
{
    struct bounce_info bi;
    char *msg, *out;

    (void)state;
    info_init(&bi);
    bi.headers = NULL;
    bi.headers_len = 0;
    msg = report(&bi);
    assert_wire_safe(msg);
    assert_null(strstr(msg, "text/rfc822-headers"));
    assert_null(strstr(msg, "In-Reply-To"));
    out = python_parse(msg, "carol@example.net", "mailbox is full", NULL);
    mem_free(out);
    mem_free(msg);
}

/* ---- the human part ---- */

static void test_template_variables(void **state)
{
    struct bounce_info bi;
    char *msg, *text, arrival[64], want[2048];

    (void)state;
    info_init(&bi);
    bi.template_text =
        "s=%s d=%d h=%h t=%t p=%p n=%n pct=%% 100%% unknown=%X %q end%\n"
        "  list:\n"
        "    %r\n"
        "inline: %r.\r\n"
        "done 100%";
    msg = report(&bi);
    assert_wire_safe(msg);
    text = text_part(msg, "selor-b1");
    log_format_rfc5322(arrival, sizeof(arrival), ARRIVAL);
    snprintf(want, sizeof(want),
             "s=alice@example.com d=Q1 h=mx1.example.net t=%s "
             "p=postmaster@example.net n=2 pct=%% 100%% unknown=%%X %%q end%%\n"
             "  list:\n"
             "    <bob@example.org>: 550 5.1.1 <bob@example.org>: No such user\n"
             "    <carol@example.net>: mailbox is full\n"
             "inline: <bob@example.org>: 550 5.1.1 <bob@example.org>: No such user\n"
             "<carol@example.net>: mailbox is full.\n"
             "done 100%%\n",
             arrival);
    assert_string_equal(text, want);
    mem_free(text);
    mem_free(python_parse(msg, NULL, NULL, NULL));
    mem_free(msg);
}

static void test_builtin_text(void **state)
{
    struct bounce_info bi;
    char *msg, *text;

    (void)state;
    info_init(&bi);
    msg = report(&bi);
    text = text_part(msg, "selor-b1");
    assert_non_null(strstr(text, "This is the mail delivery system at mx1.example.net.\n"));
    assert_non_null(strstr(text, "  Sender:    <alice@example.com>\n"));
    assert_non_null(strstr(text, "  Queue ID:  Q1\n"));
    assert_non_null(strstr(text, "\n  <bob@example.org>: 550 5.1.1 <bob@example.org>: "
                                 "No such user\n  <carol@example.net>: mailbox is full\n"));
    assert_non_null(strstr(text, "The 2 failed recipient(s)"));
    assert_non_null(strstr(text, "<postmaster@example.net>"));
    assert_null(strchr(text, '%'));
    mem_free(text);
    mem_free(msg);
}

/* conf/error_report.txt and the built-in text say the same. */
static void test_shipped_template_matches_builtin(void **state)
{
    struct bounce_info bi;
    struct buf file = BUF_INIT(0);
    char chunk[4096], *with_file, *builtin;
    size_t n;
    FILE *f = fopen("conf/error_report.txt", "r");

    (void)state;
    if (!f)
        skip();  /* not run from the top of the source tree */
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&file, chunk, n);
    fclose(f);
    info_init(&bi);
    builtin = report(&bi);
    bi.template_text = buf_cstr(&file);
    with_file = report(&bi);
    assert_string_equal(with_file, builtin);
    mem_free(with_file);
    mem_free(builtin);
    buf_free(&file);
}

static void test_long_template_lines_wrapped(void **state)
{
    struct bounce_info bi;
    struct buf tpl = BUF_INIT(0);
    char *msg, *text, *out, *p;
    size_t words = 0;

    (void)state;
    info_init(&bi);
    for (int i = 0; i < 600; i++)
        buf_puts(&tpl, "word ");
    buf_putc(&tpl, '\n');
    for (int i = 0; i < 2500; i++)
        buf_putc(&tpl, 'z');  /* no space to break at */
    buf_puts(&tpl, "\n%r\n");
    bi.template_text = buf_cstr(&tpl);
    msg = report(&bi);
    assert_wire_safe(msg);
    text = text_part(msg, "selor-b1");
    for (p = text; (p = strstr(p, "word")) != NULL; p += 4)
        words++;
    assert_int_equal(words, 600);                 /* broken at spaces, none lost */
    assert_non_null(strstr(text, "word\nword"));
    for (p = text, words = 0; *p; p++)
        words += *p == 'z';
    assert_int_equal(words, 2500);
    out = python_parse(msg, NULL, NULL, NULL);
    mem_free(out);
    mem_free(text);
    mem_free(msg);
    buf_free(&tpl);
}

static void test_utf8_template_and_subject(void **state)
{
    struct bounce_info bi;
    char *msg, *out;

    (void)state;
    info_init(&bi);
    bi.template_text = "Votre message \xc3\xa0 destination de %r n'a pas pu "
                       "\xc3\xaatre remis (%n).\n";
    bi.subject = "\xc3\x89" "chec de remise \xe2\x80\x94 "
                 "une ligne assez longue pour demander plusieurs mots encod\xc3\xa9s";
    bi.nrcpt = 1;
    msg = report(&bi);
    assert_wire_safe(msg);  /* encoded: no 8-bit byte on the wire */
    assert_non_null(strstr(msg, "Content-Type: text/plain; charset=utf-8\n"
                                "Content-Transfer-Encoding: quoted-printable\n"));
    assert_non_null(strstr(msg, "Subject: =?utf-8?B?"));
    out = python_parse(msg, "bob@example.org", "No such user", NULL);
    assert_field(out, "subject", "\xc3\x89" "chec de remise \xe2\x80\x94 "
                 "une ligne assez longue pour demander plusieurs mots encod\xc3\xa9s");
    assert_field(out, "text", "Votre message \xc3\xa0 destination de <bob@example.org>: "
                 "550 5.1.1 <bob@example.org>: No such user n'a pas pu "
                 "\xc3\xaatre remis (1).|");
    mem_free(out);
    mem_free(msg);

    /* 8-bit but not UTF-8: the charset is unknown, the bytes become '?'. */
    bi.template_text = "Caf\xe9 %n\n";
    bi.subject = "Caf\xe9";
    msg = report(&bi);
    assert_wire_safe(msg);
    assert_non_null(strstr(msg, "\n\nCaf? 1\n"));
    assert_non_null(strstr(msg, "\nSubject: Caf?\n"));
    mem_free(msg);
}

/* ---- From: ---- */

static void test_from_variants(void **state)
{
    static const struct {
        const char *report_from, *line, *name, *addr;
    } cases[] = {
        { "<MAILER-DAEMON@localhost", "From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>",
          "Mail Delivery System", "MAILER-DAEMON@mx1.example.net" },
        { "<MAILER-DAEMON@example.net", "From: Mail Delivery System <MAILER-DAEMON@example.net>",
          "Mail Delivery System", "MAILER-DAEMON@example.net" },
        { "<mailer-daemon@example.net>", "From: Mail Delivery System <mailer-daemon@example.net>",
          "Mail Delivery System", "mailer-daemon@example.net" },
        { "MAILER-DAEMON@example.net", "From: Mail Delivery System <MAILER-DAEMON@example.net>",
          "Mail Delivery System", "MAILER-DAEMON@example.net" },
        { "  Postmaster Team <pm@example.net>  ", "From: Postmaster Team <pm@example.net>",
          "Postmaster Team", "pm@example.net" },
        { "\"Selor, the MTA\" <md@example.net>", "From: \"Selor, the MTA\" <md@example.net>",
          "Selor, the MTA", "md@example.net" },
        { "md@example.net (Mail System)", "From: Mail System <md@example.net>",
          "Mail System", "md@example.net" },
        { "MAILER-DAEMON", "From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>",
          "Mail Delivery System", "MAILER-DAEMON@mx1.example.net" },
        { "", "From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>",
          "Mail Delivery System", "MAILER-DAEMON@mx1.example.net" },
        { "<>", "From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>",
          "Mail Delivery System", "MAILER-DAEMON@mx1.example.net" },
        { "Bounces <bounce@>", "From: Bounces <bounce@mx1.example.net>",
          "Bounces", "bounce@mx1.example.net" },
        { "Evil\r\nBcc: x@y <md@example.net>\r\nX-Evil: 1",
          "From: \"Evil Bcc: x@y X-Evil: 1\" <md@example.net>",
          "Evil Bcc: x@y X-Evil: 1", "md@example.net" },
        { "Odd <a@b@example.net>", "From: Odd <\"a@b\"@example.net>",
          "Odd", "\"a@b\"@example.net" },
        { "Syst\xc3\xa8me de messagerie <md@example.net>", NULL,
          "Syst\xc3\xa8me de messagerie", "md@example.net" },
    };
    struct bounce_info bi;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *msg, *hdr, *out;

        info_init(&bi);
        bi.report_from = cases[i].report_from;
        msg = report(&bi);
        assert_wire_safe(msg);
        hdr = header_of(msg);
        if (cases[i].line && !has_line(hdr, cases[i].line))
            fail_msg("case %zu: no \"%s\" in:\n%s", i, cases[i].line, hdr);
        assert_false(has_line(hdr, "Bcc:"));
        assert_false(has_line(hdr, "X-Evil:"));
        out = python_parse(msg, NULL, NULL, NULL);
        assert_field(out, "from.name", cases[i].name);
        assert_field(out, "from.addr", cases[i].addr);
        mem_free(out);
        mem_free(hdr);
        mem_free(msg);
    }
}

/* ---- outside text cannot break the report ---- */

static void test_hostile_values(void **state)
{
    static const struct bounce_rcpt evil[] = {
        { "bob@example.org\nX-Evil: 1", "", "550 5.1.1 bad\r\nBcc: victim@evil.example\r\n"
          "\r\n--selor-b1\r\nContent-Type: text/html\n\xc3\xa9t\xe9\x01\x7f end",
          "mx.evil.example\r\nX-Injected: 1", "" },
    };
    struct bounce_info bi;
    char *msg, *out;

    (void)state;
    info_init(&bi);
    bi.rcpts = evil;
    bi.nrcpt = 1;
    bi.sender = "alice@example.com>\r\nBcc: x@y";
    bi.subject = "Failure\r\nBcc: z@example.com";
    bi.queue_id = "Q1\nX-Q: 1";
    bi.server_name = "mx1.example.net\r\nX-Server: 1";
    bi.template_text = "%s %d %h %r\n";
    msg = report(&bi);
    assert_wire_safe(msg);
    assert_false(has_line(msg, "Bcc:"));
    assert_false(has_line(msg, "X-Evil:"));
    assert_false(has_line(msg, "X-Injected:"));
    assert_false(has_line(msg, "X-Q:"));
    assert_false(has_line(msg, "X-Server:"));
    assert_false(has_line(msg, "Content-Type: text/html"));
    /* The answer carried "--selor-b1": another boundary was chosen. */
    assert_non_null(strstr(msg, "boundary=\"selor-b1=_1\""));
    assert_non_null(strstr(msg, "\n--selor-b1=_1--\n"));
    out = python_parse(msg, "bob@example.org X-Evil: 1",
                       "550 5.1.1 bad Bcc: victim@evil.example --selor-b1 "
                       "Content-Type: text/html ?t? end", NULL);
    /* Still one well-formed address (Python checks To: for defects). */
    assert_field(out, "H.To", "<\"alice@example.com> Bcc: x\"@y>");
    assert_field(out, "H.Subject", "Failure Bcc: z@example.com");
    assert_field(out, "R0.Remote-MTA", "dns; mx.evil.example X-Injected: 1");
    assert_field(out, "M.X-Selor-Queue-ID", "Q1 X-Q: 1");
    mem_free(out);
    mem_free(msg);

    /* A quoted local part, as a client may send it, stays quoted. */
    info_init(&bi);
    bi.sender = "\"john \\\"jd\\\" doe\"@example.com";
    msg = report(&bi);
    out = python_parse(msg, NULL, NULL, NULL);
    assert_field(out, "H.To", "<\"john \\\"jd\\\" doe\"@example.com>");
    mem_free(out);
    mem_free(msg);
}

static void test_long_answers_limited(void **state)
{
    struct bounce_rcpt r[3];
    struct buf a1 = BUF_INIT(0), a2 = BUF_INIT(0), addr = BUF_INIT(0);
    struct bounce_info bi;
    char *msg, *out, *diag, *end;

    (void)state;
    buf_puts(&a1, "550 5.2.2 ");
    for (int i = 0; i < 3000; i++)
        buf_putc(&a1, 'x');
    buf_puts(&a2, "554 5.7.1 ");
    for (int i = 0; i < 1000; i++)
        buf_puts(&a2, "long ");
    for (int i = 0; i < 1200; i++)
        buf_putc(&addr, 'u');
    buf_puts(&addr, "@example.org");
    r[0] = (struct bounce_rcpt){ "bob@example.org", "", buf_cstr(&a1), "mx.example.org", "" };
    r[1] = (struct bounce_rcpt){ "carol@example.net", "", buf_cstr(&a2), "mx.example.net", "" };
    r[2] = (struct bounce_rcpt){ buf_cstr(&addr), "", buf_cstr(&a2), "", "" };
    info_init(&bi);
    bi.rcpts = r;
    bi.nrcpt = 3;
    bi.template_text = "%r\n";
    msg = report(&bi);
    assert_wire_safe(msg);
    out = python_parse(msg, "bob@example.org", "550 5.2.2 xxxxxxxx", NULL);
    assert_field(out, "R0.Status", "5.2.2");
    assert_field(out, "R1.Status", "5.7.1");
    diag = strstr(out, "R0.Diagnostic-Code=");
    assert_non_null(diag);
    end = strchr(diag, '\n');
    assert_true(end - diag < 1000);                  /* limited... */
    assert_memory_equal(end - 3, "...", 3);           /* ...and marked so */
    assert_non_null(strstr(out, "R1.Diagnostic-Code=smtp; 554 5.7.1 long long"));
    mem_free(out);
    mem_free(msg);
    buf_free(&a1);
    buf_free(&a2);
    buf_free(&addr);
}

static void test_8bit_original_header(void **state)
{
    static const char h[] =
        "From: =?utf-8?Q?Andr=C3=A9?= <andre@example.com>\n"
        "Subject: Caf\xc3\xa9 r\xc3\xa9union\n"
        "X-Long: ";
    struct buf hb = BUF_INIT(0);
    struct bounce_info bi;
    char *msg, *out;

    (void)state;
    buf_puts(&hb, h);
    for (int i = 0; i < 1500; i++)
        buf_putc(&hb, 'y');   /* an over-long line: 7bit would be invalid */
    buf_puts(&hb, "\n");
    info_init(&bi);
    bi.headers = hb.data;
    bi.headers_len = hb.len;
    msg = report(&bi);
    assert_wire_safe(msg);
    assert_non_null(strstr(msg, "Content-Type: text/rfc822-headers\n"
                                "Content-Transfer-Encoding: quoted-printable\n"));
    out = python_parse(msg, NULL, NULL, "Caf\xc3\xa9 r\xc3\xa9union");
    mem_free(out);
    mem_free(msg);
    buf_free(&hb);
}

static void test_boundary_choice(void **state)
{
    static const char h[] = "Subject: x\nX-Trick: --selor-b1 and --selor-b1=_1\n";
    struct bounce_info bi;
    char *msg, want[128];

    (void)state;
    info_init(&bi);
    bi.headers = h;
    bi.headers_len = sizeof(h) - 1;
    msg = report(&bi);
    assert_non_null(strstr(msg, "boundary=\"selor-b1=_2\""));
    mem_free(python_parse(msg, NULL, NULL, "x"));
    mem_free(msg);

    info_init(&bi);
    bi.boundary = "bad boundary\"\r\nX-B: 1";
    msg = report(&bi);
    assert_non_null(strstr(msg, "boundary=\"badboundaryX-B:1\""));
    mem_free(python_parse(msg, NULL, NULL, NULL));
    mem_free(msg);

    info_init(&bi);
    bi.boundary = NULL;
    msg = report(&bi);
    snprintf(want, sizeof(want), "boundary=\"selor-report-Q1-%ld\"", NOW);
    assert_non_null(strstr(msg, want));
    mem_free(python_parse(msg, NULL, NULL, NULL));
    mem_free(msg);
}

/* ---- status codes ---- */

static void test_status_in_report(void **state)
{
    static const struct bounce_rcpt r[] = {
        { "a@example.org", "", "451 4.4.1 Connection timed out", "mx.example.org", "" },
        { "b@example.org", "", "connection refused", "mx.example.org", "" },
        { "c@example.org", "", "550 5.1.1 No such user", "mx.example.org", "2.0.0" },
        { "d@example.org", "", "550 5.1.1 No such user", "mx.example.org", "junk" },
        { "e@example.org", "", "550 5.1.1 No such user", "mx.example.org", "5.4.7" },
        { "f@example.org", "F@Example.Org", "", "", "" },
        { "g@example.org", "", "421 Service not available", "mx.example.org", "" },
        { "h@example.org", "", "552 5.2.2 Over quota", "", "" },
        { "i@example.org", "", "giving up after 48 attempts: 451 4.3.0 later", "", "" },
    };
    struct bounce_info bi;
    char *msg, *out;

    (void)state;
    info_init(&bi);
    bi.rcpts = r;
    bi.nrcpt = sizeof(r) / sizeof(r[0]);
    msg = report(&bi);
    out = python_parse(msg, "b@example.org", "connection refused", NULL);
    assert_field(out, "R0.Status", "4.4.1");  /* given up after Max_attempts */
    assert_field(out, "R0.Diagnostic-Code", "smtp; 451 4.4.1 Connection timed out");
    assert_field(out, "R1.Status", "5.0.0");
    assert_field(out, "R1.Diagnostic-Code", "X-Selor; connection refused");
    assert_field(out, "R2.Status", "5.1.1");
    assert_field(out, "R3.Status", "5.1.1");
    assert_field(out, "R4.Status", "5.4.7");
    assert_field(out, "R5.Status", "5.0.0");
    assert_no_field(out, "R5.Diagnostic-Code");
    assert_no_field(out, "R5.Original-Recipient");  /* same address */
    assert_field(out, "R6.Status", "4.0.0");
    /* An SMTP reply is "smtp" even with the host unknown... */
    assert_field(out, "R7.Status", "5.2.2");
    assert_field(out, "R7.Diagnostic-Code", "smtp; 552 5.2.2 Over quota");
    assert_no_field(out, "R7.Remote-MTA");
    /* ...but not one behind our own words, whose class is then unknown. */
    assert_field(out, "R8.Status", "5.0.0");
    assert_field(out, "R8.Diagnostic-Code",
                 "X-Selor; giving up after 48 attempts: 451 4.3.0 later");
    mem_free(out);
    mem_free(msg);
}

static void test_status_code(void **state)
{
    static const struct {
        const char *answer;
        int permanent;
        const char *want;
    } cases[] = {
        { "550 5.1.1 No such user", 1, "5.1.1" },
        { "550-5.7.1 Blocked", 1, "5.7.1" },
        { "  554 5.7.1\r\n", 1, "5.7.1" },
        { "550 5.1.10 Odd but valid", 1, "5.1.10" },
        { "552 5.3.4 Message too big", 1, "5.3.4" },
        { "451 4.3.0 Try later", 0, "4.3.0" },
        { "451 4.3.0 Try later", 1, "5.0.0" },     /* class disagrees */
        { "550 5.1.1 No such user", 0, "4.0.0" },
        { "550 No such user", 1, "5.0.0" },
        { "450 Mailbox busy", 0, "4.0.0" },
        { "5.2.2 Mailbox full", 1, "5.2.2" },      /* no reply code */
        { "550 5.1.1234 x", 1, "5.0.0" },
        { "550 5.1 x", 1, "5.0.0" },
        { "550 5.1.1.2 x", 1, "5.0.0" },
        { "550 5.1.1x", 1, "5.0.0" },
        { "550 2.0.0 ok", 1, "5.0.0" },
        { "550 3.1.1 x", 1, "5.0.0" },
        { "timeout after 300 s", 1, "5.0.0" },
        { "", 1, "5.0.0" },
        { NULL, 0, "4.0.0" },
        { "55 5.1.1 short code", 1, "5.0.0" },
    };
    char out[16];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'Z', sizeof(out));
        bounce_status_code(cases[i].answer, cases[i].permanent, out, sizeof(out));
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu \"%s\": got %s, want %s", i,
                     cases[i].answer ? cases[i].answer : "(null)", out, cases[i].want);
    }
}

/* ---- header length ---- */

static void test_header_len(void **state)
{
    static const struct {
        const char *content;
        size_t want;
    } cases[] = {
        { "A: b\nC: d\n\nbody\n", 10 },
        { "A: b\nC: d\n", 10 },                 /* no empty line: all header */
        { "A: b\nC: d", 9 },                    /* nor a last line end */
        { "A: b\n folded\nC: d\n\nbody", 18 },
        { "A: b\r\nC: d\r\n\r\nbody", 12 },
        { "Subject : obsolete space\n\nbody", 25 },
        { "\nbody\n", 0 },                      /* no header at all */
        { "A: b\nnot a header line\nmore\n", 5 },  /* ends at a non-field */
        { " leading continuation\n\n", 0 },
        { "From alice@example.com Mon Nov 24\nA: b\n", 0 },
        { ": no name\n", 0 },
        { "", 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got = bounce_header_len(cases[i].content, strlen(cases[i].content));

        if (got != cases[i].want)
            fail_msg("case %zu: got %zu, want %zu", i, got, cases[i].want);
    }
    assert_int_equal(bounce_header_len("A: b\n\nbody", 3), 3);  /* len bounds it */
    assert_int_equal(bounce_header_len(NULL, 0), 0);
}

/* ---- the caller's buffer ---- */

static void test_all_or_nothing(void **state)
{
    struct bounce_info bi;
    struct buf b = BUF_INIT(200);

    (void)state;
    info_init(&bi);
    buf_puts(&b, "kept");
    bounce_format(&bi, &b);  /* does not fit in 200 bytes */
    assert_string_equal(buf_cstr(&b), "kept");
    buf_free(&b);

    buf_init(&b, 0);
    buf_puts(&b, "kept");
    bounce_format(&bi, &b);  /* appended after what was there */
    assert_memory_equal(b.data, "keptFrom: ", 10);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsn_parses_as_report),
        cmocka_unit_test(test_without_headers_two_parts),
        cmocka_unit_test(test_template_variables),
        cmocka_unit_test(test_builtin_text),
        cmocka_unit_test(test_shipped_template_matches_builtin),
        cmocka_unit_test(test_long_template_lines_wrapped),
        cmocka_unit_test(test_utf8_template_and_subject),
        cmocka_unit_test(test_from_variants),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_long_answers_limited),
        cmocka_unit_test(test_8bit_original_header),
        cmocka_unit_test(test_boundary_choice),
        cmocka_unit_test(test_status_in_report),
        cmocka_unit_test(test_status_code),
        cmocka_unit_test(test_header_len),
        cmocka_unit_test(test_all_or_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
