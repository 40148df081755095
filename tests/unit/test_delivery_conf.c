/*
 * test_delivery_conf.c - a delivery run's view of the options
 * (src/queue/delivery_conf.c): the l file's settings applied to an overlay,
 * the bad ones skipped, the loaded configuration never changed; the MDA
 * command a mailbox gets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "arena.h"
#include "config.h"
#include "delivery_conf.h"
#include "queue_file.h"

static void test_no_settings_is_base(void **state)
{
    struct config *base = config_defaults();
    struct queue_file qf;
    struct arena mem;

    arena_init(&mem, 1024);
    qf_init(&qf);
    assert_ptr_equal(delivery_conf_for(base, "1_1_1_1", &qf, &mem), base);
    qf_free(&qf);
    arena_clear(&mem);
    config_free(base);
}

static void test_settings_applied(void **state)
{
    struct config *base = config_defaults();
    const struct config *c;
    struct queue_file qf;
    struct arena mem;
    const char *dlocal = base->Dlocal;

    arena_init(&mem, 1024);
    qf_init(&qf);
    qf_add_setting(&qf, "Dlocal", "/usr/bin/deliver -d %l 'x y'");
    qf_add_setting(&qf, "Max_attempts", "1");
    qf_add_setting(&qf, "Queue_time", "not a number");    /* invalid: skipped */
    qf_add_setting(&qf, "No_such_option", "1");          /* unknown: skipped */
    qf_add_setting(&qf, "Sid", "other");                 /* not Def!-able: skipped */
    qf_add_setting(&qf, "Max_error_report", "0");        /* out of range: skipped */
    qf_add_setting(&qf, "Relay_host", "relay.example:2525");
    qf_add_setting(&qf, "Tls_delivery", "2");
    c = delivery_conf_for(base, "1_1_1_1", &qf, &mem);
    assert_ptr_not_equal(c, base);
    assert_string_equal(c->Dlocal, "/usr/bin/deliver -d %l 'x y'");
    assert_int_equal(c->Max_attempts, 1);
    assert_int_equal(c->Queue_time, base->Queue_time);
    assert_string_equal(c->Sid, base->Sid);
    assert_int_equal(c->Max_error_report, base->Max_error_report);
    assert_string_equal(c->Relay_host, "relay.example:2525");
    assert_int_equal(c->Tls_delivery, 2);
    assert_true(config_differs(c, CONF_IDX_Dlocal));
    /* the loaded configuration is shared by every run: untouched */
    assert_ptr_equal(base->Dlocal, dlocal);
    assert_int_equal(base->Max_attempts, 48);
    assert_string_equal(base->Relay_host, "");
    qf_free(&qf);
    arena_clear(&mem);
    config_free(base);
}

static void test_mda_command(void **state)
{
    struct config *base = config_defaults();
    struct config *c;
    struct arena mem;
    struct buf err = BUF_INIT(0);
    int type = -1;

    arena_init(&mem, 1024);
    c = config_overlay(base, &mem);
    assert_int_equal(config_def_set(c, &mem, CONF_IDX_Adlocal_allowed,
                                    "/usr/bin/maildrop", &err), 0);
    assert_string_equal(delivery_conf_mda_command(c, "1_1_1_1", "a@b", "", &type),
                        c->Dlocal);
    assert_int_equal(type, c->Dlocal_type);
    assert_string_equal(delivery_conf_mda_command(c, "1_1_1_1", "a@b",
                                                  "/usr/bin/maildrop -d x", &type),
                        "/usr/bin/maildrop -d x");
    assert_int_equal(type, 0);
    /* not listed, or shell: Dlocal */
    assert_string_equal(delivery_conf_mda_command(c, "1_1_1_1", "a@b", "/bin/sh -c x",
                                                  &type), c->Dlocal);
    assert_string_equal(delivery_conf_mda_command(c, "1_1_1_1", "a@b",
                                                  "/usr/bin/maildrop; rm x", &type),
                        c->Dlocal);
    buf_free(&err);
    arena_clear(&mem);
    config_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_settings_is_base),
        cmocka_unit_test(test_settings_applied),
        cmocka_unit_test(test_mda_command),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
