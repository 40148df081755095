/*
 * test_config_reload.c - selor.conf read again (src/core/config_reload.c)
 * and the generations sessions hold (config_hold/config_release).
 *
 * The leak checker of the sanitizer build proves a replaced generation is
 * freed with its last holder; it would report one kept for ever.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "config_reload.h"

static char dir[64], file[128];

static void write_conf(const char *text)
{
    FILE *f = fopen(file, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);

    snprintf(dir, sizeof(dir), "/tmp/selor-reload-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/selor.conf", dir);
    write_conf("Port 2525\nMsg_welcome \"220 first\"\nTimeout 100\n"
               "Central_log \"/dev/null\"\nSumary_log \"\"\nWarning_log \"\"\nRefused_log \"\"\n");
    selor_conf = config_load(file, &err, &warn);
    assert_non_null(selor_conf);
    buf_free(&err);
    buf_free(&warn);
    return 0;
}

static int teardown(void **state)
{
    config_free(selor_conf);   /* the test's last generation */
    selor_conf = NULL;
    unlink(file);
    rmdir(dir);
    return 0;
}

static int reload(struct buf *err, struct buf *report)
{
    buf_reset(err);
    buf_reset(report);
    return config_reload(NULL, NULL, err, report);
}

static void test_live_options_change_and_restart_ones_stay(void **state)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);
    const struct config *first = selor_conf, *held = config_hold(selor_conf);

    write_conf("Port 2600\nMsg_welcome \"220 second\"\nTimeout 200\n"
               "Central_log \"/dev/null\"\nSumary_log \"\"\nWarning_log \"\"\nRefused_log \"\"\n");
    assert_int_equal(reload(&err, &report), 0);
    assert_ptr_not_equal(selor_conf, first);
    assert_string_equal(selor_conf->Msg_welcome, "220 second");
    assert_int_equal(selor_conf->Timeout, 200);
    assert_int_equal(selor_conf->Port, 2525);            /* kept */
    assert_non_null(strstr(buf_cstr(&report), "changed Msg_welcome\n"));
    assert_non_null(strstr(buf_cstr(&report), "changed Timeout\n"));
    assert_non_null(strstr(buf_cstr(&report), ":1: Port changed: needs a restart"));
    /* the holder of the first still reads it */
    assert_string_equal(held->Msg_welcome, "220 first");
    config_release(held);
    config_free((struct config *)first);   /* the first is never freed by a release */
    buf_free(&err);
    buf_free(&report);
}

static void test_broken_file_changes_nothing(void **state)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);
    const struct config *before = selor_conf;

    write_conf("Port 2525\nMsg_welcome \"220 never\"\nTimeout \"x\n");
    assert_int_equal(reload(&err, &report), -1);
    assert_ptr_equal(selor_conf, before);
    assert_string_equal(selor_conf->Msg_welcome, "220 first");
    assert_non_null(strstr(buf_cstr(&err), ":3:"));
    buf_free(&err);
    buf_free(&report);
}

static void test_nothing_live_changed(void **state)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);
    const struct config *before = selor_conf;

    write_conf("Port 2999\nMsg_welcome \"220 first\"\nTimeout 100\n"
               "Central_log \"/dev/null\"\nSumary_log \"\"\nWarning_log \"\"\nRefused_log \"\"\n");
    assert_int_equal(reload(&err, &report), 1);
    assert_ptr_equal(selor_conf, before);
    assert_int_equal(selor_conf->Port, 2525);
    assert_non_null(strstr(buf_cstr(&report), "Port changed"));
    buf_free(&err);
    buf_free(&report);
}

/* Reload after reload, with holders: each replaced generation goes with
 * its last holder (the leak checker sees any kept). */
static void test_generations_freed_with_their_last_holder(void **state)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);
    const struct config *first = selor_conf, *h[4];
    char text[512];

    for (int i = 0; i < 4; i++) {
        h[i] = config_hold(selor_conf);
        snprintf(text, sizeof(text), "Port 2525\nMsg_welcome \"220 gen %d\"\n"
                 "Central_log \"/dev/null\"\nSumary_log \"\"\nWarning_log \"\"\n"
                 "Refused_log \"\"\n", i);
        write_conf(text);
        assert_int_equal(reload(&err, &report), 0);
    }
    assert_string_equal(selor_conf->Msg_welcome, "220 gen 3");
    assert_string_equal(h[2]->Msg_welcome, "220 gen 1");
    for (int i = 3; i >= 0; i--)
        config_release(h[i]);
    config_free((struct config *)first);
    buf_free(&err);
    buf_free(&report);
}

static void test_live_table(void **state)
{
    assert_int_equal(config_reload_live(CONF_IDX_Msg_welcome), 1);
    assert_int_equal(config_reload_live(CONF_IDX_Relay_host), 1);
    assert_int_equal(config_reload_live(CONF_IDX_Tls_pubkey), 1);
    assert_int_equal(config_reload_live(CONF_IDX_Port), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Queue_path), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Event_rcpt), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Redis_sentinels), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Agent_port), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Metrics_port), 0);
    assert_int_equal(config_reload_live(CONF_IDX_Redis_master_name), 0);
}

/* Every name of the restart table is an option (a misspelt one would make
 * its option live without a word). */
static void test_restart_table_names_options(void **state)
{
    int restart = 0;

    for (int i = 0; i < CONF_COUNT; i++)
        restart += !config_reload_live(i);
    assert_int_equal(restart, config_reload_restart_count());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_live_options_change_and_restart_ones_stay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_broken_file_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_live_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generations_freed_with_their_last_holder, setup,
                                        teardown),
        cmocka_unit_test(test_live_table),
        cmocka_unit_test(test_restart_table_names_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
