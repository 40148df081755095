/*
 * main.c - the selor command line.
 *
 *   selor [-c FILE] [-f] [-t] [-V]
 *     -c FILE  configuration (default /usr/local/selor/selor.conf)
 *     -f       stay in the foreground (warnings also go to stderr)
 *     -t       check the configuration (and modules) and exit:
 *              0 when valid, 1 with "FILE:LINE: message" otherwise
 *     -V       print the version and exit
 *
 * Owns: option parsing and the checks shared by -t and a real start.
 * Must not: start processes (master.c does).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accounts.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "rules.h"
#include "module.h"
#include "node.h"
#include "spool_queues.h"
#include "version.h"

/* The Debian package builds with -DSELOR_DEFAULT_CONF="/etc/selor/selor.conf". */
#ifndef SELOR_DEFAULT_CONF
#define SELOR_DEFAULT_CONF "/usr/local/selor/selor.conf"
#endif

static void usage(void)
{
    fprintf(stderr, "usage: selor [-c FILE] [-f] [-t] [-V]\n");
    exit(2);
}

/* What -t loaded, given back (modules free their state on detach). */
static void main_unload(struct selor_node *node)
{
    module_detach_all(&node->mods);
    rules_unref(rules_current);
    rules_current = NULL;
    log_close();
    config_free(selor_conf);
    selor_conf = NULL;
}

/* TLS options without a Tls_module do nothing: say so, with where. */
static void main_tls_warnings(struct buf *warn)
{
    const struct config *c = selor_conf;
    static const int idx[] = {CONF_IDX_Tls_enable, CONF_IDX_Tls_implicit,
                              CONF_IDX_Tls_delivery, CONF_IDX_Tls_pubkey,
                              CONF_IDX_Tls_privkey, CONF_IDX_Tls_cafile};

    if (c->Tls_module[0]) {
        if ((c->Tls_enable || c->Tls_implicit) && !c->Tls_pubkey[0])
            buf_printf(warn, "%s:%d: %s is ignored: no certificate (Tls_pubkey)\n",
                       c->path, c->line[c->Tls_implicit ? CONF_IDX_Tls_implicit
                                                        : CONF_IDX_Tls_enable],
                       c->Tls_implicit ? "Tls_implicit" : "Tls_enable");
        return;
    }
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
        if (c->line[idx[i]] > 0)
            buf_printf(warn, "%s:%d: %s is ignored: no Tls_module, no TLS\n", c->path,
                       c->line[idx[i]], config_option(idx[i])->name);
}

/* A spool directory a rule's Def! can send mail to: every process serves it. */
static void main_queue_path(const char *path, void *arg)
{
    (void)arg;
    spool_queues_add(path);
}

/* A Def! the rules engine cannot check alone: the syntax of some options,
 * the modules a Modseq_* names. */
static int main_check_def(int idx, const char *value, struct buf *why, void *arg)
{
    char text[400];

    if (config_value_check(idx, value, text, sizeof(text)) < 0) {
        buf_puts(why, text);
        return -1;
    }
    return accounts_check_seq(arg, idx, value, why);
}

/* Loads and checks everything -t checks; exits 1 on the first error. */
static void main_load(const char *path, struct selor_node *node)
{
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);

    selor_conf = config_load(path, &err, &warn);
    if (selor_conf) {
        main_tls_warnings(&warn);
        /* main and qlimit; the rules add the queues their Def! Queue_path
         * name, here, before master_run creates every queue's directory */
        spool_queues_init(selor_conf);
    }
    if (warn.len)
        fprintf(stderr, "%s", buf_cstr(&warn));
    if (selor_conf == NULL) {
        fprintf(stderr, "%s\n", buf_cstr(&err));
        exit(1);
    }
    if (module_load_all(&node->mods, &err) < 0 ||
        module_load_tls(&node->mods, &node->tls, &err) < 0 ||
        config_check_extras(selor_conf, module_claims_option, &node->mods, &err) < 0 ||
        accounts_check_config(&node->mods, selor_conf, &err) < 0 ||
        (rules_current = rules_load(selor_conf, &err, main_queue_path, NULL)) == NULL ||
        rules_check_defs(rules_current, main_check_def, &node->mods, &err) < 0) {
        fprintf(stderr, "%s\n", buf_cstr(&err));
        main_unload(node);
        buf_free(&err);
        buf_free(&warn);
        exit(1);
    }
    rules_set_def_check(main_check_def, &node->mods);
    buf_free(&err);
    buf_free(&warn);
}

/*
 * Started with descriptor 0, 1 or 2 closed (by a service manager, a
 * shell's "<&-"), the next file opened would take its number: an event
 * loop's epoll descriptor as 0 (libuv aborts when closing it), or a log
 * written to by anything that prints to stderr.  They are filled with
 * /dev/null first, as Postfix does.
 */
static void main_sane_fds(void)
{
    /* in order: each open takes the lowest free number, fd itself */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
            open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
            exit(1);
}

int main(int argc, char **argv)
{
    struct selor_node node = {.tls_pipe = -1};
    const char *path = SELOR_DEFAULT_CONF;
    int opt, check = 0;

    main_sane_fds();
    while ((opt = getopt(argc, argv, "c:ftVh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'f': node.foreground = 1; break;
        case 't': check = 1; break;
        case 'V': printf("selor %s\n", SELOR_VERSION); return 0;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    main_load(path, &node);
    if (check) {
        printf("%s: configuration is valid (rules %s)\n", path, rules_hash(rules_current));
        main_unload(&node);
        return 0;
    }
    master_run(&node);
}
