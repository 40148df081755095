/*
 * test_metrics.c - the node's counters (src/core/metrics.c): a process
 * without a slot counts alone, children forked after metrics_init write
 * their slots and the render sums them, a child restarted in its slot goes
 * on from its predecessor's counts, histograms are cumulative, gauges are
 * set, and the text is the Prometheus format (HELP and TYPE once per
 * family, label values escaped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "metrics.h"

/* The value of the series line that starts with series (name and labels). */
static long long metric_value(const char *series)
{
    struct buf out = BUF_INIT(0);
    const char *p;
    long long v = -1;
    size_t n = strlen(series);

    metrics_render(&out);
    for (p = buf_cstr(&out); p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtoll(p + n + 1, NULL, 10);
            break;
        }
    }
    buf_free(&out);
    return v;
}

/* Before metrics_init (selorctl, tools): counts stay in the process. */
static void test_private_slot(void **state)
{
    (void)state;
    assert_int_equal(metric_value("selor_messages_accepted_total"), 0);
    metrics_inc(METRIC_MESSAGES_ACCEPTED);
    metrics_add(METRIC_MESSAGES_ACCEPTED, 2);
    assert_int_equal(metric_value("selor_messages_accepted_total"), 3);
    metrics_inc2(METRIC_DELIVERIES, METRICS_VIA_REMOTE, METRICS_ST_BOUNCED);
    assert_int_equal(metric_value(
        "selor_deliveries_total{transport=\"remote\",status=\"bounced\"}"), 1);
    assert_int_equal(metric_value(
        "selor_deliveries_total{transport=\"local\",status=\"bounced\"}"), 0);
    /* labels out of range, or no such family: nothing, no crash */
    metrics_inc2(METRIC_DELIVERIES, 99, 0);
    metrics_inc2(METRIC_DELIVERIES, 0, 99);
    metrics_count((enum metric)METRICS_NFAMILIES, 0, 0, 1);
    metrics_observe(METRIC_MESSAGES_ACCEPTED, 5);    /* not a histogram */
    assert_int_equal(metric_value("selor_messages_accepted_total"), 3);
    metrics_use_slot(0);        /* no region: still the private slot */
    metrics_inc(METRIC_MESSAGES_ACCEPTED);
    assert_int_equal(metric_value("selor_messages_accepted_total"), 4);
}

static void test_histogram_and_gauge(void **state)
{
    (void)state;
    metrics_observe(METRIC_MESSAGE_SIZE, 100);        /* le 1024 */
    metrics_observe(METRIC_MESSAGE_SIZE, 1024);       /* le 1024: bounds are inclusive */
    metrics_observe(METRIC_MESSAGE_SIZE, 5000);       /* le 16384 */
    metrics_observe(METRIC_MESSAGE_SIZE, 1u << 30);   /* +Inf only */
    assert_int_equal(metric_value("selor_message_size_bytes_bucket{le=\"1024\"}"), 2);
    assert_int_equal(metric_value("selor_message_size_bytes_bucket{le=\"4096\"}"), 2);
    assert_int_equal(metric_value("selor_message_size_bytes_bucket{le=\"16384\"}"), 3);
    assert_int_equal(metric_value("selor_message_size_bytes_bucket{le=\"67108864\"}"), 3);
    assert_int_equal(metric_value("selor_message_size_bytes_bucket{le=\"+Inf\"}"), 4);
    assert_int_equal(metric_value("selor_message_size_bytes_count"), 4);
    assert_int_equal(metric_value("selor_message_size_bytes_sum"),
                     100 + 1024 + 5000 + (1LL << 30));
    metrics_observe(METRIC_DELIVERY_DELAY, -5);       /* a clock set back: 0 */
    assert_int_equal(metric_value("selor_delivery_delay_seconds_bucket{le=\"1\"}"), 1);
    assert_int_equal(metric_value("selor_delivery_delay_seconds_sum"), 0);
    metrics_set(METRIC_DELIVERY_RUNS, 0, 7);
    metrics_set(METRIC_DELIVERY_RUNS, 0, 3);
    assert_int_equal(metric_value("selor_delivery_runs_active"), 3);
}

/* A child of slot `slot` adds n to the accepted messages, then exits. */
static void child_counts(int slot, int n)
{
    pid_t pid = fork();
    int st;

    assert_true(pid >= 0);
    if (pid == 0) {
        metrics_use_slot(slot);
        for (int i = 0; i < n; i++)
            metrics_inc(METRIC_MESSAGES_ACCEPTED);
        metrics_inc1(METRIC_SMTPD_REFUSED, METRICS_REASON_AUTH);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_shared_slots(void **state)
{
    (void)state;
    assert_int_equal(metrics_init(0), -1);
    assert_int_equal(metrics_init(4), 0);
    /* a fresh region: what the process counted alone is not in it */
    assert_int_equal(metric_value("selor_messages_accepted_total"), 0);
    metrics_inc(METRIC_MESSAGES_ACCEPTED);            /* the master's slot (3) */
    child_counts(0, 5);
    child_counts(1, 7);
    assert_int_equal(metric_value("selor_messages_accepted_total"), 13);
    /* the worker of slot 0 dies and its successor takes the slot */
    child_counts(0, 2);
    assert_int_equal(metric_value("selor_messages_accepted_total"), 15);
    assert_int_equal(metric_value(
        "selor_smtpd_connections_refused_total{reason=\"auth\"}"), 3);
    /* a slot past the table: the child keeps the one it had (the master's) */
    child_counts(9, 1);
    assert_int_equal(metric_value("selor_messages_accepted_total"), 16);
}

static void test_escape(void **state)
{
    struct buf b = BUF_INIT(0);

    (void)state;
    metrics_escape(&b, "a\"b\\c\nd");
    assert_string_equal(buf_cstr(&b), "a\\\"b\\\\c\\nd");
    buf_free(&b);
}

/* Every family has HELP then TYPE, once, before its series; every other
 * line is "name[{labels}] integer"; counters end in _total. */
static void test_format(void **state)
{
    struct buf out = BUF_INIT(0);
    char family[128] = "", type[16] = "";
    int nhelp = 0, ntype = 0, nseries = 0;
    char *save = NULL;

    (void)state;
    metrics_render(&out);
    buf_cstr(&out);
    assert_true(out.len > 0 && out.data[out.len - 1] == '\n');
    for (char *l = strtok_r(out.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "# HELP ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(l + 7, "%127s", name), 1);
            assert_string_not_equal(name, family);     /* each family once */
            snprintf(family, sizeof(family), "%s", name);
            nhelp++;
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(l + 7, "%127s %15s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                assert_string_equal(family + strlen(family) - 6, "_total");
            ntype++;
            continue;
        }
        assert_true(l[0] != '#');
        assert_memory_equal(l, family, strlen(family));    /* under its family */
        char *sp = strrchr(l, ' ');
        assert_non_null(sp);
        assert_true(sp[1] == '-' || (sp[1] >= '0' && sp[1] <= '9'));
        if (strchr(l, '{')) {
            assert_true(sp > l && sp[-1] == '}');
        }
        nseries++;
    }
    assert_int_equal(nhelp, METRICS_NFAMILIES);
    assert_int_equal(ntype, METRICS_NFAMILIES);
    /* 3 transports x 3 statuses, 13 events x 5 verdicts are all there */
    assert_true(nseries > 9 + 65);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_private_slot),
        cmocka_unit_test(test_histogram_and_gauge),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_shared_slots),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
