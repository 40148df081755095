/*
 * test_config.c - the selor.conf parser and checks (src/core/config.c,
 * src/core/config_options.h).
 *
 * Files are written to a mkdtemp directory that is removed at the end.
 * REFERENCE below is the 114 options of the original reference
 * (/work/shared/seed/options.txt) with the defaults its documentation
 * (/work/shared/seed/selor.conf-reference.txt) gives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"

struct ref_option {
    const char *name;
    int is_text;
    long num;
    const char *text;
};

static const struct ref_option REFERENCE[] = {
    {"Adlocal_allowed", 1, 0, ""},
    {"Allow_broadcasts", 0, 1, NULL},
    {"Auth_relay", 0, 1, NULL},
    {"Auth_tolerance", 0, 3, NULL},
    {"Central_log", 1, 0, "/var/log/selor/selor.log"},
    {"Connect_timeout", 0, 60, NULL},
    {"Cp_errors", 0, 1, NULL},
    {"Cp_errors_path", 1, 0, "/var/spool/selor/errors"},
    {"Df_domain", 1, 0, ""},
    {"Dlocal", 1, 0, "/usr/bin/procmail -d %l "},
    {"Dlocal_max_procs", 0, 0, NULL},
    {"Dlocal_type", 0, 1, NULL},
    {"Event.auth", 1, 0, ""},
    {"Event.connection", 1, 0, ""},
    {"Event.data", 1, 0, ""},
    {"Event.data_cmd", 1, 0, ""},
    {"Event.dl_rcpt", 1, 0, ""},
    {"Event.error_report", 1, 0, ""},
    {"Event.from", 1, 0, ""},
    {"Event.helo", 1, 0, ""},
    {"Event.limit", 1, 0, ""},
    {"Event.lrcpt_refused", 1, 0, ""},
    {"Event.qend_process", 1, 0, ""},
    {"Event.qstart_process", 1, 0, ""},
    {"Event.rcpt", 1, 0, ""},
    {"Force_alias_seek", 0, 0, NULL},
    {"From_level_check", 0, 1, NULL},
    {"Group", 1, 0, "selor"},
    {"Hshow_user", 0, 0, NULL},
    {"Immed_delivery", 0, 1, NULL},
    {"Incorrect_pass_delay", 0, 3, NULL},
    {"Lavg_negative", 0, 40, NULL},
    {"Lavg_queue", 0, 20, NULL},
    {"Limit_buf", 0, 0, NULL},
    {"Limit_cnx", 0, 15, NULL},
    {"Limit_time", 0, 1, NULL},
    {"Log_lvl", 0, 0, NULL},
    {"Max_attempts", 0, 48, NULL},
    {"Max_error_report", 0, 3, NULL},
    {"Max_header_size", 0, 51200, NULL},
    {"Max_mail_size", 0, 10485760, NULL},
    {"Max_msgs_per_cnx", 0, 100, NULL},
    {"Max_qprocs", 0, 0, NULL},
    {"Max_rcpts", 0, 100, NULL},
    {"Modseq_alias", 1, 0, ""},
    {"Modseq_auth", 1, 0, ""},
    {"Modseq_domain", 1, 0, ""},
    {"Modseq_mail", 1, 0, ""},
    {"Msg_allowed_rcpt", 1, 0, "250 Rcpt allowed"},
    {"Msg_allowed_sender", 1, 0, "250 Sender allowed"},
    {"Msg_auth_falied", 1, 0, "535 Auth fail"},
    {"Msg_auth_ok", 1, 0, "235 Auth successful"},
    {"Msg_auth_required", 1, 0, "550 Auth required"},
    {"Msg_cannot_connect", 1, 0, "Could not connect to remote server"},
    {"Msg_cannot_resolve", 1, 0, "Invalid domain or no MX record"},
    {"Msg_full_mailbox", 1, 0, "552 The mailbox is over quota"},
    {"Msg_goodbye", 1, 0, "221 Ok"},
    {"Msg_header_toobig", 1, 0, "554 Header too big"},
    {"Msg_internal_error", 1, 0, "451 Internal error"},
    {"Msg_invalid_cmd", 1, 0, "500 Invalid command"},
    {"Msg_invalid_domain", 1, 0, "553 Invalid domain:"},
    {"Msg_invalid_param", 1, 0, "501 Invalid parameter"},
    {"Msg_lavg", 1, 0, "450 Load average, try again later"},
    {"Msg_mail_accepted", 1, 0, "250 Msg accepted"},
    {"Msg_mail_toobig", 1, 0, "552 Message too big"},
    {"Msg_mailbox_unavaibble", 1, 0, "451 Mailbox unavailable"},
    {"Msg_no_mailbox", 1, 0, "550 No such user"},
    {"Msg_nodisk_space", 1, 0, "452 No disk space"},
    {"Msg_ok", 1, 0, "250 Ok"},
    {"Msg_perm_deny", 1, 0, "421 Temp error. Try again later"},
    {"Msg_refused", 1, 0, "550 Refused"},
    {"Msg_relay_denied", 1, 0, "550 Relay denied"},
    {"Msg_send_body", 1, 0, "354 Ok"},
    {"Msg_sequence_error", 1, 0, "503 Invalid sequence"},
    {"Msg_toomany_rcpts", 1, 0, "452 Too many recipients"},
    {"Msg_transaction_falied", 1, 0, "554 Transaction error"},
    {"Msg_welcome", 1, 0, "220 "},
    {"Mx_alias_ip", 0, 0, NULL},
    {"No_mailbox_delay", 0, 2, NULL},
    {"Pid_file", 1, 0, "/var/run/selor.pid"},
    {"Port", 0, 25, NULL},
    {"Postmaster", 1, 0, "postmaster@localhost"},
    {"Proto_level_check", 0, 0, NULL},
    {"Qlimit_max_procs", 0, 0, NULL},
    {"Qlimit_time", 0, 8, NULL},
    {"Qsleep_time", 0, 60, NULL},
    {"Queue_path", 1, 0, "/var/spool/selor/"},
    {"Queue_time", 0, 15, NULL},
    {"Rcpt_level_check", 0, 0, NULL},
    {"Refused_log", 1, 0, ""},
    {"Report_file", 1, 0, "/usr/local/selor/error_report.txt"},
    {"Report_from", 1, 0, "<MAILER-DAEMON@localhost"},
    {"Resolve_all", 0, 1, NULL},
    {"Seek_df_alias", 0, 1, NULL},
    {"Server_name", 1, 0, "localhost"},
    {"Sid", 1, 0, ""},
    {"Srs_alias_redir", 0, 1, NULL},
    {"Srs_key", 1, 0, ""},
    {"Srs_shift", 0, 0, NULL},
    {"Subject_error_msg", 1, 0, "[Mail delivery error]"},
    {"Sumary_log", 1, 0, "/var/log/selor/selor_summary.log"},
    {"Tarpit_limit", 0, 0, NULL},
    {"Tarpit_sleep", 0, 60, NULL},
    {"Temp_path", 1, 0, "/var/spool/selor/tmp"},
    {"Timeout", 0, 120, NULL},
    {"Timezone", 1, 0, ""},
    {"Tls_cafile", 1, 0, ""},
    {"Tls_delivery", 0, 0, NULL},
    {"Tls_enable", 0, 0, NULL},
    {"Tls_module", 1, 0, ""},
    {"Tls_privkey", 1, 0, ""},
    {"Tls_pubkey", 1, 0, ""},
    {"User", 1, 0, "selor"},
    {"Warning_log", 1, 0, "/var/log/selor/selor_wrn.log"},
};

#define NREF (sizeof(REFERENCE) / sizeof(REFERENCE[0]))

/* ---- fields by index, through the same X-macro table ---- */

static long num_field(const struct config *c, int idx)
{
    switch (idx) {
#define CONF_NUM(f, n, d, lo, hi, fl) case CONF_IDX_##f: return c->f;
#define CONF_TEXT(f, n, d, fl)
#include "config_options.h"
    default: fail_msg("option %d is not a number", idx);
    }
    return 0;
}

static const char *text_field(const struct config *c, int idx)
{
    switch (idx) {
#define CONF_NUM(f, n, d, lo, hi, fl)
#define CONF_TEXT(f, n, d, fl) case CONF_IDX_##f: return c->f;
#include "config_options.h"
    default: fail_msg("option %d is not a text", idx);
    }
    return NULL;
}

/* ---- files ---- */

static char dir[64], conf_path[128], start_cwd[4096];

static int group_setup(void **state)
{
    (void)state;
    if (getcwd(start_cwd, sizeof(start_cwd)) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "/tmp/selor-test-config-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(conf_path, sizeof(conf_path), "%s/selor.conf", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(conf_path);
    return rmdir(dir);
}

/* Every test starts (and ends) in the directory the program started in. */
static int back_to_start(void **state)
{
    (void)state;
    return chdir(start_cwd);
}

static void write_conf_n(const char *text, size_t len)
{
    FILE *f = fopen(conf_path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static struct config *load_n(const char *text, size_t len, struct buf *err,
                             struct buf *warn)
{
    write_conf_n(text, len);
    return config_load(conf_path, err, warn);
}

/* Loads text, which must succeed without warnings. */
static struct config *load_ok(const char *text)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    struct config *c = load_n(text, strlen(text), &err, &warn);
    char e[512], w[512];

    snprintf(e, sizeof(e), "%s", buf_cstr(&err));
    snprintf(w, sizeof(w), "%s", buf_cstr(&warn));
    buf_free(&err);
    buf_free(&warn);
    if (c == NULL)
        fail_msg("refused:\n%s\nerror: %s", text, e);
    if (w[0]) {
        config_free(c);
        fail_msg("warned:\n%s\nwarning: %s", text, w);
    }
    assert_string_equal(c->path, conf_path);
    return c;
}

/* Loads text (len bytes), which must fail with "FILE:LINE: " + what. */
static void load_fails_n(const char *text, size_t len, int line,
                         const char *what)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    struct config *c = load_n(text, len, &err, &warn);
    char want[512], got[1024];

    snprintf(want, sizeof(want), "%s:%d: %s", conf_path, line, what);
    snprintf(got, sizeof(got), "%s", buf_cstr(&err));
    buf_free(&err);
    buf_free(&warn);
    if (c != NULL) {
        config_free(c);
        fail_msg("accepted:\n%s", text);
    }
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("for:\n%s\ngot:  %s\nwant: %s...", text, got, want);
}

#define IN_TEXT(s) s, sizeof(s) - 1

static void load_fails(const char *text, int line, const char *what)
{
    load_fails_n(text, strlen(text), line, what);
}

/* ---- the option table ---- */

static void test_reference_names_known(void **state)
{
    int seen[CONF_COUNT] = {0};

    (void)state;
    assert_int_equal(NREF, 114);
    for (size_t i = 0; i < NREF; i++) {
        const struct ref_option *r = &REFERENCE[i];
        int idx = config_option_index(r->name);
        const struct config_option_info *o = config_option(idx);

        if (idx < 0)
            fail_msg("reference option %s is unknown", r->name);
        assert_string_equal(o->name, r->name);  /* spelt as the reference */
        assert_false(o->flags & CONF_F_NEW);
        assert_int_equal(seen[idx]++, 0);
        if (o->is_text != r->is_text)
            fail_msg("%s: wrong type", r->name);
        if (r->is_text && strcmp(o->text_default, r->text) != 0)
            fail_msg("%s: default \"%s\", reference \"%s\"", r->name,
                     o->text_default, r->text);
        if (!r->is_text && o->num_default != r->num)
            fail_msg("%s: default %ld, reference %ld", r->name, o->num_default,
                     r->num);
        if (!r->is_text)
            assert_true(o->num_default >= o->min && o->num_default <= o->max);
    }
    /* Everything else in the table is marked as Selor's own. */
    for (int i = 0; i < CONF_COUNT; i++)
        if (!seen[i] && !(config_option(i)->flags & CONF_F_NEW))
            fail_msg("%s is not in the reference nor marked new",
                     config_option(i)->name);
}

/* The hard-coded list is the seed's options.txt, when it can be read. */
static void test_options_txt(void **state)
{
    static const char *paths[] = {"../shared/seed/options.txt",
                                  "/work/shared/seed/options.txt"};
    FILE *f = NULL;
    char name[128];
    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && f == NULL; i++)
        f = fopen(paths[i], "r");
    if (f == NULL)
        skip();
    while (fscanf(f, "%127s", name) == 1) {
        int found = 0;
        for (size_t i = 0; i < NREF; i++)
            found |= strcmp(REFERENCE[i].name, name) == 0;
        if (!found) {
            fclose(f);
            fail_msg("options.txt has %s, the test does not", name);
        }
        if (config_option_index(name) < 0) {
            fclose(f);
            fail_msg("options.txt has %s, config does not know it", name);
        }
        n++;
    }
    fclose(f);
    assert_int_equal(n, NREF);
}

/* The built-in defaults are the reference's, field by field. */
static void test_defaults_struct(void **state)
{
    struct config *c = config_defaults();

    (void)state;
    for (size_t i = 0; i < NREF; i++) {
        int idx = config_option_index(REFERENCE[i].name);
        if (REFERENCE[i].is_text)
            assert_string_equal(text_field(c, idx), REFERENCE[i].text);
        else
            assert_int_equal(num_field(c, idx), REFERENCE[i].num);
    }
    /* the representative set, by name */
    assert_int_equal(c->Port, 25);
    assert_string_equal(c->Server_name, "localhost");
    assert_int_equal(c->Max_mail_size, 10485760);
    assert_int_equal(c->Max_header_size, 51200);
    assert_int_equal(c->Max_attempts, 48);
    assert_int_equal(c->Queue_time, 15);
    assert_int_equal(c->Qsleep_time, 60);
    assert_string_equal(c->Msg_welcome, "220 ");
    assert_string_equal(c->Msg_mail_accepted, "250 Msg accepted");
    assert_string_equal(c->Msg_perm_deny, "421 Temp error. Try again later");
    assert_string_equal(c->Report_from, "<MAILER-DAEMON@localhost");
    assert_string_equal(c->Dlocal, "/usr/bin/procmail -d %l ");
    assert_int_equal(c->Dlocal_type, 1);
    assert_int_equal(c->Lavg_queue, 20);
    assert_int_equal(c->Lavg_negative, 40);
    assert_string_equal(c->Queue_path, "/var/spool/selor/");
    assert_string_equal(c->Sumary_log, "/var/log/selor/selor_summary.log");
    assert_int_equal(c->Incorrect_pass_delay, 3);
    assert_string_equal(c->Event_limit, "");
    assert_int_equal(c->From_level_check, 1);
    for (int i = 0; i < CONF_COUNT; i++)
        assert_int_equal(c->line[i], 0);
    assert_int_equal(c->nmodules, 0);
    assert_int_equal(c->nextra, 0);
    assert_int_equal(c->tz_set, 0);
    config_free(c);
}

static void test_option_lookup(void **state)
{
    (void)state;
    assert_null(config_option(-1));
    assert_null(config_option(CONF_COUNT));
    assert_non_null(config_option(0));
    assert_non_null(config_option(CONF_COUNT - 1));
    assert_int_equal(config_option_index(""), -1);
    assert_int_equal(config_option_index("Port "), -1);
    assert_int_equal(config_option_index(" Port"), -1);
    assert_int_equal(config_option_index("port"), -1);   /* case-sensitive */
    assert_int_equal(config_option_index("PORT"), -1);
    assert_int_equal(config_option_index("Event.LIMIT"), -1);
    assert_int_equal(config_option_index("Event_limit"), -1);
    assert_int_equal(config_option_index("Port"), CONF_IDX_Port);
    assert_int_equal(config_option_index("Event.limit"), CONF_IDX_Event_limit);
    /* the options Selor added */
    assert_true(config_option(config_option_index("Module"))->flags & CONF_F_LIST);
    assert_true(config_option(config_option_index("Bind_address"))->flags & CONF_F_NEW);
    for (int i = 0; i < CONF_COUNT; i++)
        assert_int_equal(config_option_index(config_option(i)->name), i);
}

static void test_aliases(void **state)
{
    static const char *pairs[][2] = {
        {"Summary_log", "Sumary_log"},
        {"Incorret_pass_delay", "Incorrect_pass_delay"},
        {"Event.Limit", "Event.limit"},
        {"Msg_transaction_failed", "Msg_transaction_falied"},
        {"Msg_auth_failed", "Msg_auth_falied"},
        {"Msg_mailbox_unavailable", "Msg_mailbox_unavaibble"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        int a = config_option_index(pairs[i][0]);
        if (a < 0 || a != config_option_index(pairs[i][1]))
            fail_msg("%s is not an alias of %s", pairs[i][0], pairs[i][1]);
        assert_string_equal(config_option(a)->name, pairs[i][1]);
    }
}

static void test_alias_in_file(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Summary_log \"/var/log/s.log\"\n"
                "Incorret_pass_delay 7\n"
                "Event.Limit \"/etc/selor/limit_rules\"\n"
                "Msg_transaction_failed \"554 5.0.0 No\"\n");
    assert_string_equal(c->Sumary_log, "/var/log/s.log");
    assert_int_equal(c->line[CONF_IDX_Sumary_log], 1);
    assert_int_equal(c->Incorrect_pass_delay, 7);
    assert_int_equal(c->line[CONF_IDX_Incorrect_pass_delay], 2);
    assert_string_equal(c->Event_limit, "/etc/selor/limit_rules");
    assert_string_equal(c->Msg_transaction_falied, "554 5.0.0 No");
    assert_int_equal(c->nextra, 0);
    config_free(c);
}

static void check_suggest(const char *name, const char *want)
{
    const char *got = config_suggest(name);

    if (want == NULL && got != NULL)
        fail_msg("config_suggest(\"%s\") = %s, expected nothing", name, got);
    if (want != NULL && (got == NULL || strcmp(got, want) != 0))
        fail_msg("config_suggest(\"%s\") = %s, expected %s", name,
                 got ? got : "NULL", want);
}

static void test_suggest(void **state)
{
    char longname[200];

    (void)state;
    check_suggest("Max_rcpt", "Max_rcpts");
    check_suggest("port", "Port");
    check_suggest("PORT", "Port");
    check_suggest("max_rcpts", "Max_rcpts");
    check_suggest("Server_nmae", "Server_name");
    check_suggest("Servername", "Server_name");
    check_suggest("Queue_pth", "Queue_path");
    check_suggest("Max_mail_szie", "Max_mail_size");
    check_suggest("Msg_welcom", "Msg_welcome");
    check_suggest("event.helo", "Event.helo");
    check_suggest("Smtp_worker", "Smtp_workers");
    check_suggest("Xyzzy", NULL);
    check_suggest("Completely_unrelated_thing", NULL);
    check_suggest("", NULL);
    memset(longname, 'P', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    check_suggest(longname, NULL);
}

/* ---- values ---- */

static void test_numbers(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Port 2525\n"
                "Max_rcpts +50\n"
                "From_level_check -1\n"
                "Rcpt_level_check -1\n"
                "Max_mail_size 2147483647\n"
                "Timeout 007\n");
    assert_int_equal(c->Port, 2525);
    assert_int_equal(c->Max_rcpts, 50);
    assert_int_equal(c->From_level_check, -1);
    assert_int_equal(c->Rcpt_level_check, -1);
    assert_int_equal(c->Max_mail_size, 2147483647L);
    assert_int_equal(c->Timeout, 7);
    config_free(c);
}

static void test_number_errors(void **state)
{
    (void)state;
    load_fails("Port 0\n", 1, "Port must be between 1 and 65535, got 0");
    load_fails("Port 65536\n", 1, "Port must be between 1 and 65535, got 65536");
    load_fails("Port -25\n", 1, "Port must be between 1 and 65535, got -25");
    load_fails("Port abc\n", 1, "Port needs a number, got \"abc\"");
    load_fails("Port 25abc\n", 1, "Port needs a number, got \"25abc\"");
    load_fails("Port 0x19\n", 1, "Port needs a number, got \"0x19\"");
    load_fails("Port 2.5\n", 1, "Port needs a number, got \"2.5\"");
    load_fails("Port -\n", 1, "Port needs a number, got \"-\"");
    load_fails("Port 99999999999999999999\n", 1,
               "Port needs a number, got \"99999999999999999999\"");
    load_fails("Port \"25\"\n", 1, "Port takes a number, not a quoted text");
    load_fails("Max_mail_size 2147483648\n", 1,
               "Max_mail_size must be between 1024 and 2147483647, got 2147483648");
    load_fails("Log_lvl 1\n", 1, "Log_lvl must be between 0 and 0, got 1");
}

/* Every numeric option takes its bounds and refuses one step past them. */
static void test_every_number_range(void **state)
{
    char text[200], what[200];
    struct config *c;

    (void)state;
    for (int i = 0; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        if (o->is_text)
            continue;
        snprintf(text, sizeof(text), "# bounds\n%s %ld\n", o->name, o->min);
        c = load_ok(text);
        assert_int_equal(num_field(c, i), o->min);
        assert_int_equal(c->line[i], 2);
        config_free(c);
        snprintf(text, sizeof(text), "%s %ld\n", o->name, o->max);
        c = load_ok(text);
        assert_int_equal(num_field(c, i), o->max);
        config_free(c);
        snprintf(text, sizeof(text), "\n%s %ld\n", o->name, o->min - 1);
        snprintf(what, sizeof(what), "%s must be between %ld and %ld, got %ld",
                 o->name, o->min, o->max, o->min - 1);
        load_fails(text, 2, what);
        snprintf(text, sizeof(text), "%s %ld\n", o->name, o->max + 1);
        snprintf(what, sizeof(what), "%s must be between %ld and %ld, got %ld",
                 o->name, o->min, o->max, o->max + 1);
        load_fails(text, 1, what);
        snprintf(text, sizeof(text), "%s \"1\"\n", o->name);
        snprintf(what, sizeof(what), "%s takes a number, not a quoted text",
                 o->name);
        load_fails(text, 1, what);
    }
}

/* A valid value for option i that differs from its default. */
static const char *other_value(int i, char *buf, size_t len)
{
    const struct config_option_info *o = config_option(i);

    if (!o->is_text) {
        snprintf(buf, len, "%ld", o->num_default != o->max ? o->max : o->min);
    } else if (strcmp(o->name, "Timezone") == 0) {
        snprintf(buf, len, "\"+0100\"");
    } else if (strcmp(o->name, "Bind_address") == 0) {
        snprintf(buf, len, "\"127.0.0.1\"");
    } else if (strcmp(o->name, "Dns_servers") == 0) {
        snprintf(buf, len, "\"127.0.0.1, 192.0.2.53:5353\"");
    } else if (strcmp(o->name, "Redis_server") == 0) {
        snprintf(buf, len, "\"127.0.0.1:6380\"");
    } else if (strcmp(o->name, "Redis_sentinels") == 0) {
        snprintf(buf, len, "\"10.0.0.1:26379, sentinel.example [::1]:26380\"");
    } else if (strcmp(o->name, "Redis_master_name") == 0) {
        snprintf(buf, len, "\"othermaster\"");
    } else if (strcmp(o->name, "Proxy_protocol") == 0) {
        snprintf(buf, len, "\"10.0.0.0/8 192.0.2.7, 2001:db8::/32\"");
    } else if (strcmp(o->name, "Relay_host") == 0) {
        snprintf(buf, len, "\"smarthost.example.net:587\"");
    } else if (strcmp(o->name, "Milters") == 0) {
        snprintf(buf, len, "\"inet:127.0.0.1:11332, unix:/run/opendkim/opendkim.sock\"");
    } else if (strcmp(o->name, "Milter_default_action") == 0) {
        snprintf(buf, len, "\"accept\"");
    } else if (strcmp(o->name, "Spool_flush") == 0) {
        snprintf(buf, len, "\"fsync\"");
    } else if (o->flags & CONF_F_PATH) {
        snprintf(buf, len, "\"/changed/%s\"", o->name);
    } else if (strncmp(o->name, "Msg_", 4) == 0) {
        snprintf(buf, len, "\"599 changed %s\"", o->name);
    } else {
        snprintf(buf, len, "\"changed %s\"", o->name);
    }
    return buf;
}

/* Every option (all names, not only the reference's) can be set. */
static void test_every_option_settable(void **state)
{
    char text[300], value[200];
    struct config *c;

    (void)state;
    for (int i = 0; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        other_value(i, value, sizeof(value));
        snprintf(text, sizeof(text), "# one option\n\n   %s\t%s   # set\n",
                 o->name, value);
        c = load_ok(text);
        assert_int_equal(c->line[i], 3);
        assert_int_equal(c->nextra, 0);
        if (o->flags & CONF_F_LIST) {
            assert_int_equal(c->nmodules, 1);
            assert_string_equal(c->modules[0], "/changed/Module");
        } else if (o->is_text) {
            char want[200];
            snprintf(want, sizeof(want), "%.*s", (int)strlen(value) - 2, value + 1);
            assert_string_equal(text_field(c, i), want);
        } else {
            assert_int_equal(num_field(c, i), strtol(value, NULL, 10));
        }
        config_free(c);
    }
}

/* A file that spells out every default loads to the built-in defaults. */
static void test_all_defaults_written_out(void **state)
{
    struct buf text = BUF_INIT(0);
    struct config *c, *d = config_defaults();

    (void)state;
    for (int i = 0; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        if (o->flags & CONF_F_LIST)
            continue;
        if (!o->is_text) {
            buf_printf(&text, "%s %ld\n", o->name, o->num_default);
            continue;
        }
        buf_printf(&text, "%s \"", o->name);
        for (const char *p = o->text_default; *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_putc(&text, '\\');
            buf_putc(&text, *p);
        }
        buf_puts(&text, "\"\n");
    }
    c = load_ok(buf_cstr(&text));
    buf_free(&text);
    for (int i = 0, line = 1; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        if (o->flags & CONF_F_LIST)
            continue;
        assert_int_equal(c->line[i], line++);
        if (o->is_text)
            assert_string_equal(text_field(c, i), text_field(d, i));
        else
            assert_int_equal(num_field(c, i), num_field(d, i));
    }
    config_free(c);
    config_free(d);
}

static void test_empty_file(void **state)
{
    struct config *c = load_ok(""), *d = config_defaults();

    (void)state;
    for (int i = 0; i < CONF_COUNT; i++) {
        if (config_option(i)->is_text)
            assert_string_equal(text_field(c, i), text_field(d, i));
        else
            assert_int_equal(num_field(c, i), num_field(d, i));
        assert_int_equal(c->line[i], 0);
    }
    config_free(c);
    config_free(d);
    c = load_ok("# only comments\n\n   \n\t\n  # indented comment\n");
    config_free(c);
}

static void test_text_values(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Server_name \"mx1.example.org\"\n"
                "Subject_error_msg \"a \\\"quoted\\\" word, a back\\\\slash\"\n"
                "Postmaster \"\"\n"
                "Df_domain \"a#b\" # the # in quotes is text\n"
                "Dlocal \"/usr/bin/deliver -d %l \"\n"
                "Srs_key \"tab\there\"\n"
                "Sid \"back\\nslash-n stays\"\n"
                "User \"\\\\\"\n"
                "Group \"\xc3\xa9\"\n");
    assert_string_equal(c->Server_name, "mx1.example.org");
    assert_string_equal(c->Subject_error_msg, "a \"quoted\" word, a back\\slash");
    assert_string_equal(c->Postmaster, "");
    assert_string_equal(c->Df_domain, "a#b");
    assert_string_equal(c->Dlocal, "/usr/bin/deliver -d %l ");
    assert_string_equal(c->Srs_key, "tab\there");
    assert_string_equal(c->Sid, "back\\nslash-n stays");
    assert_string_equal(c->User, "\\");
    assert_string_equal(c->Group, "\xc3\xa9");
    config_free(c);
}

/* An empty text is a value like any other (several defaults are ""). */
static void test_empty_text(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Sid \"\"\nTls_module \"\"\nServer_name \"\" # empty\n"
                "Unknown_module_option \"\"\n");
    assert_string_equal(c->Sid, "");
    assert_string_equal(c->Tls_module, "");
    assert_string_equal(c->Server_name, "");
    assert_int_equal(c->line[CONF_IDX_Server_name], 3);
    assert_int_equal(c->nextra, 1);
    assert_string_equal(c->extra[0].value, "");
    assert_true(c->extra[0].quoted);
    config_free(c);
}

static void test_text_errors(void **state)
{
    (void)state;
    load_fails("Server_name localhost\n", 1,
               "Server_name takes a text in double quotes, like Server_name \"localhost\"");
    load_fails("Summary_log /tmp/x\n", 1,
               "Summary_log takes a text in double quotes, like Sumary_log \"/tmp/x\"");
    load_fails("Server_name 5\n", 1, "Server_name takes a text in double quotes");
    load_fails("Server_name \"abc\n", 1,
               "missing closing quote in the value of Server_name");
    load_fails("Server_name \"abc\\\"\n", 1,
               "missing closing quote in the value of Server_name");
    load_fails("Server_name \"abc\" junk\n", 1,
               "unexpected text after the value of Server_name: \"junk\"");
    load_fails("Server_name \"a\"\"b\"\n", 1,
               "unexpected text after the value of Server_name");
    load_fails("Server_name \"a\x01z\"\n", 1,
               "control character in the value of Server_name");
    load_fails("Server_name \"a\rz\"\n", 1,
               "control character in the value of Server_name");
    load_fails("Port 2525\nSpool_flush \"sometimes\"\n", 2,
               "Spool_flush must be auto, syncfs or fsync, not \"sometimes\"");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    load_fails("Port\n", 1, "Port has no value");
    load_fails("Port   \n", 1, "Port has no value");
    load_fails("Port # no value\n", 1, "Port has no value");
    load_fails("Port 25 26\n", 1, "unexpected text after the value of Port: \"26\"");
    load_fails("Port=25\n", 1, "bad character '=' in option name Port");
    load_fails("Port:25\n", 1, "bad character ':' in option name Port");
    load_fails("Port-x 25\n", 1, "bad character '-' in option name Port");
    load_fails("1Port 25\n", 1, "expected an option name, got \"1Port 25\"");
    load_fails("\"Port\" 25\n", 1, "expected an option name");
    load_fails("_Port 25\n", 1, "expected an option name");
    load_fails("Foo\n", 1, "Foo has no value");  /* unknown, but still checked */
    load_fails("Foo bar baz\n", 1, "unexpected text after the value of Foo");
}

/* Errors point at the line they are on, counting comments and blanks. */
static void test_error_lines(void **state)
{
    (void)state;
    load_fails("# comment\n\nPort 25\n   # another\n\t\nPort 0\nPort 1\n", 6,
               "Port must be between");
    load_fails("Port 25\r\nServer_name \"x\"\r\nMax_rcpts x\r\n", 3,
               "Max_rcpts needs a number, got \"x\"");
    load_fails("Port 25\nServer_name \"x\"\nMax_rcpts 0", 3,
               "Max_rcpts must be between");  /* last line without newline */
}

static void test_crlf_and_blanks(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Port 2525\r\n"
                "\tServer_name\t\"mx\"\t\r\n"
                "  Max_rcpts   7   # comment\r\n"
                "Queue_time 3#comment touching the value\n"
                "Timeout 9");  /* no newline at the end */
    assert_int_equal(c->Port, 2525);
    assert_string_equal(c->Server_name, "mx");
    assert_int_equal(c->Max_rcpts, 7);
    assert_int_equal(c->Queue_time, 3);
    assert_int_equal(c->Timeout, 9);
    assert_int_equal(c->line[CONF_IDX_Timeout], 5);
    config_free(c);
}

static void test_long_lines(void **state)
{
    char *text = malloc(20000);

    (void)state;
    assert_non_null(text);
    /* 8190 characters and the newline: the longest line */
    text[0] = '#';
    memset(text + 1, 'x', 8189);
    strcpy(text + 8190, "\nPort 26\n");
    struct config *c = load_ok(text);
    assert_int_equal(c->Port, 26);
    assert_int_equal(c->line[CONF_IDX_Port], 2);
    config_free(c);
    /* one more */
    memset(text + 1, 'x', 8190);
    strcpy(text + 8191, "\nPort 26\n");
    load_fails(text, 1, "line longer than 8190 characters");
    /* a long value */
    strcpy(text, "Port 25\nServer_name \"");
    memset(text + 21, 'n', 9000);
    strcpy(text + 9021, "\"\n");
    load_fails(text, 2, "line longer than 8190 characters");
    free(text);
}

static void test_nul_byte(void **state)
{
    static const char text[] = "Port 25\0 junk after a NUL\nServer_name \"x\"\n";
    static const char text2[] = "Port 25\nServer_name \"a\0b\"\n";

    (void)state;
    load_fails_n(text, sizeof(text) - 1, 1, "NUL byte in line");
    load_fails_n(text2, sizeof(text2) - 1, 2, "NUL byte in line");
}

static void test_missing_file(void **state)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    struct config *c;
    char path[200];

    (void)state;
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", dir);
    c = config_load(path, &err, &warn);
    assert_null(c);
    assert_true(strncmp(buf_cstr(&err), path, strlen(path)) == 0);
    assert_non_null(strstr(err.data, ": cannot open: "));
    buf_free(&err);
    buf_free(&warn);
}

/* ---- checks beyond type and range ---- */

static void test_msg_reply_codes(void **state)
{
    char text[300], what[300];
    struct config *c;

    (void)state;
    for (int i = 0; i < CONF_COUNT; i++) {
        const char *name = config_option(i)->name;
        int free_text = strcmp(name, "Msg_cannot_connect") == 0 ||
                        strcmp(name, "Msg_cannot_resolve") == 0;
        static const char *bad[] = {"Ok", "", "25 Ok", "250Ok", "250-Ok",
                                    "650 Ok", "150 Ok", "2a0 Ok", " 250 Ok"};
        static const char *good_values[] = {"250", "250 ", "550 5.1.1 No",
                                            "421 x", "200 y"};
        if (strncmp(name, "Msg_", 4) != 0)
            continue;
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            snprintf(text, sizeof(text), "Port 25\n# x\n%s \"%s\"\n", name, bad[b]);
            if (free_text) {
                c = load_ok(text);
                assert_string_equal(text_field(c, i), bad[b]);
                config_free(c);
                continue;
            }
            snprintf(what, sizeof(what),
                     "%s must start with a 3-digit SMTP reply code, got \"%s\"",
                     name, bad[b]);
            load_fails(text, 3, what);
        }
        for (size_t g = 0; g < sizeof(good_values) / sizeof(good_values[0]); g++) {
            snprintf(text, sizeof(text), "%s \"%s\"\n", name, good_values[g]);
            c = load_ok(text);
            assert_string_equal(text_field(c, i), good_values[g]);
            config_free(c);
        }
    }
}

static void test_timezone(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Timezone \"-0300\"\n");
    assert_true(c->tz_set);
    assert_int_equal(c->tz_offset, -3 * 3600);
    config_free(c);
    c = load_ok("Timezone \"+0530\"\n");
    assert_int_equal(c->tz_offset, 5 * 3600 + 30 * 60);
    config_free(c);
    c = load_ok("Timezone \"+0000\"\n");
    assert_true(c->tz_set);
    assert_int_equal(c->tz_offset, 0);
    config_free(c);
    c = load_ok("Timezone \"-1400\"\n");
    assert_int_equal(c->tz_offset, -14 * 3600);
    config_free(c);
    c = load_ok("Timezone \"\"\n");
    assert_false(c->tz_set);
    config_free(c);

    load_fails("Port 25\nTimezone \"0300\"\n", 2,
               "Timezone must look like \"-0300\", got \"0300\"");
    load_fails("Timezone \"-3:00\"\n", 1, "Timezone must look like \"-0300\"");
    load_fails("Timezone \"-030\"\n", 1, "Timezone must look like \"-0300\"");
    load_fails("Timezone \"-03000\"\n", 1, "Timezone must look like \"-0300\"");
    load_fails("Timezone \"UTC\"\n", 1, "Timezone must look like \"-0300\"");
    load_fails("Timezone \"+03a0\"\n", 1, "Timezone must look like \"-0300\"");
    load_fails("Timezone \"+1500\"\n", 1, "Timezone out of range: \"+1500\"");
    load_fails("Timezone \"-0060\"\n", 1, "Timezone out of range: \"-0060\"");
}

static void test_required_paths(void **state)
{
    (void)state;
    load_fails("Port 25\nQueue_path \"\"\n", 2, "Queue_path must not be empty");
    load_fails("Temp_path \"\"\n", 1, "Temp_path must not be empty");
}

static void test_network_values(void **state)
{
    struct config *c;

    (void)state;
    c = load_ok("Bind_address \"::1\"\n"
                "Dns_servers \"192.0.2.53, [2001:db8::53]:5353\"\n"
                "Redis_server \"redis.example:6379\"\n");
    assert_string_equal(c->Bind_address, "::1");
    config_free(c);
    load_fails("Port 25\nBind_address \"mx.example.org\"\n", 2,
               "Bind_address must be an IP address, got \"mx.example.org\"");
    load_fails("\nDns_servers \"192.0.2.53, bad_host\"\n", 2, "Dns_servers: ");
    load_fails("Redis_server \"127.0.0.1:0\"\n", 1, "Redis_server: ");
    load_fails("\nRedis_sentinels \"10.0.0.1:26379 s.example:0\"\n", 2,
               "Redis_sentinels: \"s.example:0\": ");
    load_fails("Redis_master_name \"\"\n", 1, "Redis_master_name must be one word");
}

/* Relative paths are taken from the directory Selor was started in. */
static void test_relative_paths(void **state)
{
    char cwd[4096], text[300], want[4500];
    struct config *c;

    (void)state;
    assert_int_equal(chdir(dir), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    for (int i = 0; i < CONF_COUNT; i++) {
        const struct config_option_info *o = config_option(i);
        if (!o->is_text || (o->flags & CONF_F_LIST))
            continue;
        snprintf(text, sizeof(text), "%s \"spool/x\"\n", o->name);
        if (strcmp(o->name, "Timezone") == 0 || strncmp(o->name, "Msg_", 4) == 0 ||
            (o->flags & CONF_F_NEW && !(o->flags & CONF_F_PATH)))
            continue;  /* those check their text */
        c = load_ok(text);
        if (o->flags & CONF_F_PATH)
            snprintf(want, sizeof(want), "%s/spool/x", cwd);
        else
            snprintf(want, sizeof(want), "spool/x");
        if (strcmp(text_field(c, i), want) != 0) {
            char got[4500];
            snprintf(got, sizeof(got), "%s", text_field(c, i));
            config_free(c);
            fail_msg("%s \"spool/x\" gave \"%s\", expected \"%s\"", o->name, got,
                     want);
        }
        config_free(c);
    }
    c = load_ok("Queue_path \"./q/\"\nPid_file \"/run/selor.pid\"\n"
                "Central_log \"../log/c.log\"\nSumary_log \"\"\n"
                "Server_name \"./not/a/path\"\n");
    snprintf(want, sizeof(want), "%s/q/", cwd);
    assert_string_equal(c->Queue_path, want);
    assert_string_equal(c->Pid_file, "/run/selor.pid");
    snprintf(want, sizeof(want), "%s/../log/c.log", cwd);
    assert_string_equal(c->Central_log, want);
    assert_string_equal(c->Sumary_log, "");
    assert_string_equal(c->Server_name, "./not/a/path");
    config_free(c);
}

static void test_modules(void **state)
{
    char cwd[4096], want[4500];
    struct config *c;

    (void)state;
    assert_int_equal(chdir(dir), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    c = load_ok("Module \"/usr/lib/selor/selor_passwd.so\"\n"
                "Port 25\n"
                "Module \"mod/selor_mysql.so\"\n");
    assert_int_equal(c->nmodules, 2);
    assert_string_equal(c->modules[0], "/usr/lib/selor/selor_passwd.so");
    snprintf(want, sizeof(want), "%s/mod/selor_mysql.so", cwd);
    assert_string_equal(c->modules[1], want);
    assert_int_equal(c->line[CONF_IDX_Module], 3);
    config_free(c);
}

/* An option set twice: the last value wins, with a warning. */
static void test_duplicate_warning(void **state)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    struct config *c;
    char want[600];

    (void)state;
    c = load_n(IN_TEXT("Port 25\n# comment\nPort 26\n"), &err, &warn);
    assert_non_null(c);
    assert_int_equal(c->Port, 26);
    assert_int_equal(c->line[CONF_IDX_Port], 3);
    snprintf(want, sizeof(want),
             "%s:3: Port was already set at line 1; the last value is used\n",
             conf_path);
    assert_string_equal(buf_cstr(&warn), want);
    config_free(c);

    buf_reset(&warn);
    c = load_n(IN_TEXT("Sumary_log \"/a\"\nSummary_log \"/b\"\nSummary_log \"/c\"\n"),
               &err, &warn);
    assert_non_null(c);
    assert_string_equal(c->Sumary_log, "/c");
    snprintf(want, sizeof(want),
             "%s:2: Sumary_log was already set at line 1; the last value is used\n"
             "%s:3: Sumary_log was already set at line 2; the last value is used\n",
             conf_path, conf_path);
    assert_string_equal(buf_cstr(&warn), want);
    config_free(c);
    buf_free(&err);
    buf_free(&warn);
}

/* ---- unknown options (left for modules) ---- */

static int claim_some(const char *name, int quoted, void *arg)
{
    const char *const *names = arg;

    for (; *names; names++)
        if (strcmp(*names, name) == 0)
            return 1;
    return 0;
}

static void test_extras(void **state)
{
    struct buf err = BUF_INIT(0);
    struct config *c;
    char want[600];
    const char *claimed_first[] = {"Max_rcpt", NULL};
    const char *claimed_all[] = {"Max_rcpt", "Zqxj_vvvvvvvvvv", "Passwd.hash", NULL};

    (void)state;
    c = load_ok("Port 2525\n"
                "Max_rcpt 10\n"
                "Zqxj_vvvvvvvvvv \"some text\"\n"
                "Passwd.hash \"sha512\"\n"
                "Passwd.hash \"bcrypt\"\n");
    assert_int_equal(c->Port, 2525);
    assert_int_equal(c->nextra, 4);
    assert_string_equal(c->extra[0].name, "Max_rcpt");
    assert_string_equal(c->extra[0].value, "10");
    assert_false(c->extra[0].quoted);
    assert_int_equal(c->extra[0].line, 2);
    assert_string_equal(c->extra[1].name, "Zqxj_vvvvvvvvvv");
    assert_string_equal(c->extra[1].value, "some text");
    assert_true(c->extra[1].quoted);
    assert_int_equal(c->extra[1].line, 3);
    assert_int_equal(c->Max_rcpts, 100);  /* not set by the misspelling */

    /* the last of a repeated extra */
    assert_int_equal(config_extra_find(c, "Passwd.hash")->line, 5);
    assert_string_equal(config_extra_find(c, "Passwd.hash")->value, "bcrypt");
    assert_null(config_extra_find(c, "Nope"));
    assert_null(config_extra_find(c, "Port"));

    assert_int_equal(config_check_extras(c, NULL, NULL, &err), -1);
    snprintf(want, sizeof(want),
             "%s:2: unknown option Max_rcpt (did you mean Max_rcpts?)", conf_path);
    assert_string_equal(buf_cstr(&err), want);

    assert_int_equal(config_check_extras(c, claim_some, claimed_first, &err), -1);
    snprintf(want, sizeof(want), "%s:3: unknown option Zqxj_vvvvvvvvvv", conf_path);
    assert_string_equal(buf_cstr(&err), want);  /* nothing close: no suggestion */

    buf_reset(&err);
    assert_int_equal(config_check_extras(c, claim_some, claimed_all, &err), 0);
    assert_int_equal(err.len, 0);
    config_free(c);
    buf_free(&err);
}

/* A module wants text for every option it claims. */
static int claim_text_only(const char *name, int quoted, void *arg)
{
    return quoted ? 1 : -1;
}

static void test_extra_wrong_type(void **state)
{
    struct buf err = BUF_INIT(0);
    struct config *c = load_ok("Mod_path \"/x\"\nMod_count 5\n");
    char want[600];

    (void)state;
    assert_int_equal(config_check_extras(c, claim_text_only, NULL, &err), -1);
    snprintf(want, sizeof(want), "%s:2: Mod_count takes a text in double quotes", conf_path);
    assert_string_equal(buf_cstr(&err), want);
    config_free(c);
    buf_free(&err);
}

static void test_extra_case_suggestion(void **state)
{
    struct buf err = BUF_INIT(0);
    struct config *c = load_ok("\nport 25\n");
    char want[600];

    (void)state;
    assert_int_equal(c->Port, 25);
    assert_int_equal(config_check_extras(c, NULL, NULL, &err), -1);
    snprintf(want, sizeof(want), "%s:2: unknown option port (did you mean Port?)",
             conf_path);
    assert_string_equal(buf_cstr(&err), want);
    config_free(c);
    c = load_ok("Port 25\n");
    buf_reset(&err);
    assert_int_equal(config_check_extras(c, NULL, NULL, &err), 0);
    config_free(c);
    buf_free(&err);
}

#define T(f) cmocka_unit_test_teardown(f, back_to_start)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reference_names_known),
        T(test_options_txt),
        T(test_defaults_struct),
        T(test_option_lookup),
        T(test_aliases),
        T(test_alias_in_file),
        T(test_suggest),
        T(test_numbers),
        T(test_number_errors),
        T(test_every_number_range),
        T(test_every_option_settable),
        T(test_all_defaults_written_out),
        T(test_empty_file),
        T(test_text_values),
        T(test_empty_text),
        T(test_text_errors),
        T(test_syntax_errors),
        T(test_error_lines),
        T(test_crlf_and_blanks),
        T(test_long_lines),
        T(test_nul_byte),
        T(test_missing_file),
        T(test_msg_reply_codes),
        T(test_timezone),
        T(test_required_paths),
        T(test_network_values),
        T(test_relative_paths),
        T(test_modules),
        T(test_duplicate_warning),
        T(test_extras),
        T(test_extra_case_suggestion),
        T(test_extra_wrong_type),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
