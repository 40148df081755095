/*
 * test_spool_queues.c - the queue registry (src/spool/spool_queues.c) and
 * commits into the queue and with the settings a connection's rules chose
 * (spool_msg_set_queue, spool_msg_add_setting, spool_msg_set_hits in
 * src/spool/spool.c).
 *
 * Directories are made under a mkdtemp directory removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "async.h"
#include "buf.h"
#include "config.h"
#include "queue_file.h"
#include "spool.h"
#include "spool_queues.h"

static char top[256];

static struct config *conf_with_queue(const char *path)
{
    struct config *c = config_defaults();

    c->Queue_path = path;
    return c;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static int setup(void **state)
{
    snprintf(top, sizeof(top), "/tmp/selor-test-queues-XXXXXX");
    assert_non_null(mkdtemp(top));
    return 0;
}

static int teardown(void **state)
{
    nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void test_main_and_qlimit(void **state)
{
    struct config *c = conf_with_queue("/var/spool/selor/");
    char dir[256];

    spool_queues_init(c);
    assert_int_equal(spool_queues_count(), 2);
    assert_string_equal(spool_queues_name(0), "main");
    assert_string_equal(spool_queues_name(1), "qlimit");
    assert_null(spool_queues_name(2));
    assert_int_equal(spool_queues_dir("main", dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/var/spool/selor");
    assert_int_equal(spool_queues_dir("qlimit", dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/var/spool/selor/qlimit");
    assert_int_equal(spool_queues_dir("nosuch", dir, sizeof(dir)), -1);
    assert_int_equal(spool_queues_dir("main", dir, 4), -1);   /* never cut short */
    assert_string_equal(spool_queues_for_path("/var/spool//selor/./"), "main");
    assert_string_equal(spool_queues_for_path("/var/spool/selor/qlimit"), "qlimit");
    assert_null(spool_queues_for_path("/var/spool/other"));
    config_free(c);
}

/* The name depends only on the path (every node agrees), fits a claim's
 * queue field, and adding twice adds once. */
static void test_alternate_names(void **state)
{
    struct config *c = conf_with_queue("/var/spool/selor");
    const char *a, *b;
    char dir[256];

    spool_queues_init(c);
    assert_string_equal(spool_queues_add("/var/spool/selor/"), "main");
    assert_string_equal(spool_queues_add("/var/spool/selor/qlimit"), "qlimit");
    a = spool_queues_add("/srv/mail/other/");
    assert_non_null(a);
    assert_int_equal(strlen(a), 13);
    assert_true(strlen(a) < SPOOL_QUEUE_NAME_MAX);
    assert_int_equal(a[0], 'q');
    assert_int_equal(strspn(a + 1, "0123456789abcdef"), 12);
    /* fixed: a change of hash would rename queues between versions */
    assert_string_equal(a, "qc2ecb9575b56");
    assert_int_equal(spool_queues_count(), 3);
    b = spool_queues_add("//srv/./mail//other");
    assert_string_equal(a, b);
    assert_int_equal(spool_queues_count(), 3);
    assert_string_equal(spool_queues_for_path("/srv/mail/other"), a);
    assert_int_equal(spool_queues_dir(a, dir, sizeof(dir)), 0);
    assert_string_equal(dir, "/srv/mail/other");
    assert_string_equal(spool_queues_name(2), a);
    b = spool_queues_add("/srv/mail/third");
    assert_non_null(b);
    assert_string_not_equal(a, b);
    assert_int_equal(spool_queues_count(), 4);
    /* a node with another Queue_path names the same path the same */
    config_free(c);
    c = conf_with_queue("/elsewhere");
    spool_queues_init(c);
    assert_int_equal(spool_queues_count(), 2);
    assert_string_equal(spool_queues_add("/srv/mail/other"), "qc2ecb9575b56");
    config_free(c);
}

static void test_refused_paths(void **state)
{
    struct config *c = conf_with_queue("/var/spool/selor");
    char longp[3000];

    spool_queues_init(c);
    assert_null(spool_queues_add(""));
    assert_null(spool_queues_add("relative/dir"));
    assert_null(spool_queues_add(NULL));
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_null(spool_queues_add(longp));
    assert_int_equal(spool_queues_count(), 2);
    config_free(c);
}

static void test_coord_index(void **state)
{
    assert_string_equal(spool_queues_coord("main"), "main");
    assert_string_equal(spool_queues_coord("qlimit"), "qlimit");
    assert_string_equal(spool_queues_coord("qc2ecb9575b56"), "main");
    assert_string_equal(spool_queues_coord(NULL), "main");
}

static void touch(const char *dir, const char *name)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/* A message is found in whichever queue holds it; an index is searched
 * only among its own queues. */
static void test_find(void **state)
{
    char qmain[300], alt[300], ql[320], dir[512];
    struct config *c;
    const char *name;

    snprintf(qmain, sizeof(qmain), "%s/spool", top);
    snprintf(ql, sizeof(ql), "%s/qlimit", qmain);
    snprintf(alt, sizeof(alt), "%s/alt", top);
    assert_int_equal(spool_mkdirs(ql, 0700), 0);
    assert_int_equal(spool_mkdirs(alt, 0700), 0);
    c = conf_with_queue(qmain);
    spool_queues_init(c);
    name = spool_queues_add(alt);
    touch(alt, "l1700000000_000001_1_1");
    touch(qmain, "l1700000000_000002_1_1");
    touch(ql, "l1700000000_000003_1_1");
    assert_string_equal(spool_queues_find(NULL, "1700000000_000001_1_1", dir, sizeof(dir)),
                        name);
    assert_string_equal(dir, alt);
    assert_string_equal(spool_queues_find("main", "1700000000_000001_1_1", dir,
                                          sizeof(dir)), name);
    assert_null(spool_queues_find("qlimit", "1700000000_000001_1_1", dir, sizeof(dir)));
    assert_string_equal(dir, ql);
    assert_string_equal(spool_queues_find("main", "1700000000_000002_1_1", dir,
                                          sizeof(dir)), "main");
    assert_string_equal(spool_queues_find(NULL, "1700000000_000003_1_1", dir, sizeof(dir)),
                        "qlimit");
    assert_null(spool_queues_find("main", "1700000000_000009_1_1", dir, sizeof(dir)));
    assert_string_equal(dir, qmain);
    config_free(c);
}

/* ---- commits ---- */

struct commit_result {
    int called, err;
};

static void commit_done(void *arg, int err, const char *id)
{
    struct commit_result *r = arg;

    r->called++;
    r->err = err;
}

static const char envelope[] =
    "SELOR-L 3\nid %s\nsid -\ncreated 1700000000\nsize 6\nfrom a@b.example\n"
    "client 192.0.2.1 - helo\nauth alice\nbody 7BIT\ntoken 0\nflags 0\nattempts 0\n"
    "next 0\nhits 0\nrcpt P 0 0 c@d.example - - -\nend 1\n";

/* Commits id with content "hello\n"; returns the done result. */
static struct commit_result commit(struct spool *sp, uv_loop_t *loop, const char *id,
                                   const char *queue, int qlimit, int rules)
{
    struct async_owner own;
    struct commit_result r = {0, 0};
    struct spool_msg *m;
    char l[1024];

    async_owner_init(&own);
    m = spool_msg_new(sp, &own, id);
    spool_msg_write(m, "hello\n", 6);
    if (queue)
        spool_msg_set_queue(m, queue);
    if (qlimit)
        spool_msg_set_qlimit(m);
    if (rules) {
        spool_msg_add_setting(m, "Dlocal", "/bin/x -d 'a b' \"%l\" \xc3\xa9");
        spool_msg_add_setting(m, "Max_attempts", "1");
        spool_msg_set_hits(m, 12);
    }
    snprintf(l, sizeof(l), envelope, id);
    spool_msg_commit(m, l, strlen(l), commit_done, &r);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(r.called, 1);
    return r;
}

static void read_envelope(const char *dir, const char *id, struct queue_file *qf)
{
    char path[600], why[256];
    struct buf text = BUF_INIT(0);

    snprintf(path, sizeof(path), "%s/l%s", dir, id);
    assert_int_equal(spool_read_sync(path, &text, 1 << 20), 0);
    if (qf_parse(qf, text.data, text.len, why, sizeof(why)) < 0)
        fail_msg("%s: %s", path, why);
    buf_free(&text);
}

static void test_commit_into_queues(void **state)
{
    char qmain[300], alt[300], ql[320], tmp[300], path[600];
    struct config *c;
    struct spool sp;
    struct buf err = BUF_INIT(0);
    struct queue_file qf;
    uv_loop_t loop;
    const char *name;

    snprintf(qmain, sizeof(qmain), "%s/c/spool", top);
    snprintf(ql, sizeof(ql), "%s/qlimit", qmain);
    snprintf(alt, sizeof(alt), "%s/c/alt", top);
    snprintf(tmp, sizeof(tmp), "%s/c/tmp", top);
    assert_int_equal(spool_mkdirs(ql, 0700), 0);
    assert_int_equal(spool_mkdirs(alt, 0700), 0);
    assert_int_equal(spool_mkdirs(tmp, 0700), 0);
    c = conf_with_queue(qmain);
    spool_queues_init(c);
    name = spool_queues_add(alt);
    spool_queues_add("/nonexistent/selor/queue");   /* cannot be opened */
    uv_loop_init(&loop);
    assert_int_equal(spool_open(&sp, &loop, qmain, tmp, &err), 0);

    assert_int_equal(commit(&sp, &loop, "1700000000_000001_1_1", name, 0, 1).err, 0);
    read_envelope(alt, "1700000000_000001_1_1", &qf);
    assert_int_equal(qf.hits, 12);
    assert_int_equal(qf.nsettings, 2);
    assert_string_equal(qf.settings[0].name, "Dlocal");
    assert_string_equal(qf.settings[0].value, "/bin/x -d 'a b' \"%l\" \xc3\xa9");
    assert_string_equal(qf.settings[1].value, "1");
    assert_string_equal(qf.auth, "alice");
    qf_free(&qf);
    snprintf(path, sizeof(path), "%s/c1700000000_000001_1_1", alt);
    assert_int_equal(access(path, F_OK), 0);

    /* no rules: the envelope as given; NULL is the main queue */
    assert_int_equal(commit(&sp, &loop, "1700000000_000002_1_1", NULL, 0, 0).err, 0);
    read_envelope(qmain, "1700000000_000002_1_1", &qf);
    assert_int_equal(qf.nsettings, 0);
    qf_free(&qf);
    /* qlimit wins over an alternate queue */
    assert_int_equal(commit(&sp, &loop, "1700000000_000003_1_1", name, 1, 0).err, 0);
    read_envelope(ql, "1700000000_000003_1_1", &qf);
    qf_free(&qf);

    /* a queue this spool cannot use: refused, nothing left anywhere */
    assert_int_equal(commit(&sp, &loop, "1700000000_000004_1_1", "qffffffffffff", 0, 1).err,
                     ENOENT);
    assert_int_equal(commit(&sp, &loop, "1700000000_000005_1_1",
                            spool_queues_for_path("/nonexistent/selor/queue"), 0, 0).err,
                     ENOENT);
    snprintf(path, sizeof(path), "%s/c1700000000_000004_1_1", tmp);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/l1700000000_000004_1_1", qmain);
    assert_int_equal(access(path, F_OK), -1);

    spool_close(&sp);
    uv_loop_close(&loop);
    buf_free(&err);
    config_free(c);
}

/* An alternate queue on another filesystem than Temp_path: rename(2)
 * says EXDEV; the client gets a 4xx and nothing is left anywhere.  Needs
 * /dev/shm on another filesystem than /tmp (skipped otherwise). */
static void test_commit_other_filesystem(void **state)
{
    char qmain[300], tmp[300], other[64] = "/dev/shm/selor-test-xdev-XXXXXX", path[600];
    struct stat a, b;
    struct config *c;
    struct spool sp;
    struct buf err = BUF_INIT(0);
    uv_loop_t loop;
    const char *name;

    if (stat("/dev/shm", &a) < 0 || stat(top, &b) < 0 || a.st_dev == b.st_dev ||
        mkdtemp(other) == NULL) {
        skip();
        return;
    }
    snprintf(qmain, sizeof(qmain), "%s/x/spool", top);
    snprintf(tmp, sizeof(tmp), "%s/x/tmp", top);
    snprintf(path, sizeof(path), "%s/qlimit", qmain);
    assert_int_equal(spool_mkdirs(path, 0700), 0);
    assert_int_equal(spool_mkdirs(tmp, 0700), 0);
    c = conf_with_queue(qmain);
    spool_queues_init(c);
    name = spool_queues_add(other);
    uv_loop_init(&loop);
    assert_int_equal(spool_open(&sp, &loop, qmain, tmp, &err), 0);
    assert_int_equal(commit(&sp, &loop, "1700000000_000006_1_1", name, 0, 1).err, EXDEV);
    snprintf(path, sizeof(path), "%s/c1700000000_000006_1_1", other);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/l1700000000_000006_1_1", other);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/c1700000000_000006_1_1", tmp);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/l1700000000_000006_1_1", tmp);
    assert_int_equal(access(path, F_OK), -1);
    spool_close(&sp);
    uv_loop_close(&loop);
    buf_free(&err);
    config_free(c);
    rmdir(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_and_qlimit),
        cmocka_unit_test(test_alternate_names),
        cmocka_unit_test(test_refused_paths),
        cmocka_unit_test(test_coord_index),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_commit_into_queues),
        cmocka_unit_test(test_commit_other_filesystem),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
