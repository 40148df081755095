/*
 * selorctl.c - the operator's tool: look at and act on a node's queue.
 *
 *   selorctl [-c FILE] queue             list queued messages, like mailq
 *   selorctl [-c FILE] queue show ID     one message: envelope and header
 *   selorctl [-c FILE] queue --summary   counts by state, domain and age (qshape)
 *   selorctl [-c FILE] flush [ID]        deliver now (every message, or one)
 *   selorctl [-c FILE] hold ID           keep a message from delivery
 *   selorctl [-c FILE] release ID        undo hold, and deliver now
 *   selorctl [-c FILE] delete ID         remove a message without a report
 *   selorctl [-c FILE] nodes             the cluster's nodes (Redis_server or
 *                                        Redis_sentinels set)
 *   selorctl [-c FILE] drain SID         a node takes no new queue work
 *   selorctl [-c FILE] undrain SID       it does again
 *   selorctl [-c FILE] reload            the node reads selor.conf again
 *   selorctl [-c FILE] version
 *
 * Owns: presenting the spool to a person, and passing changes to the
 * running node's queue process over its control socket (it changes a file
 * only while holding it).  When no node runs and the node coordinates
 * alone (no Redis_server nor Redis_sentinels), changes are made directly.  Must not: change a
 * queue file a running node could be delivering.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "arena.h"
#include "bounce.h"
#include "config.h"
#include "coord.h"
#include "net.h"
#include "module.h"
#include "queue_edit.h"
#include "rules.h"
#include "rules_test.h"
#include "queue_file.h"
#include "queue_id.h"
#include "spool.h"
#include "spool_queues.h"
#include "coord_ctl.h"
#include "selorctl_summary.h"
#include "version.h"

/* selor's default; the Debian package builds with -DSELOR_DEFAULT_CONF. */
#ifndef SELOR_DEFAULT_CONF
#define SELOR_DEFAULT_CONF "/usr/local/selor/selor.conf"
#endif
#define CTL_DEFAULT_CONF SELOR_DEFAULT_CONF

static void ctl_usage(void)
{
    fprintf(stderr, "usage: selorctl [-c FILE] queue [show ID | --summary] | flush [ID] | hold ID |"
                    " release ID | delete ID | nodes | drain SID | undrain SID |"
                    " reload | version\n"
                    "       selorctl [-c FILE] rules test --ip IP [--helo NAME] [--auth USER]"
                    " [--from ADDR] [--rcpt ADDR]... [--data FILE]\n");
    exit(2);
}

/* ---- Redis (cluster) ---- */

/* A connection to the cluster's Redis, or NULL (with a message) if none. */
static redisContext *ctl_redis(const struct config *c, int quiet)
{
    struct timeval tv = {3, 0};
    struct net_hostport hp;
    redisContext *rc;
    redisReply *r;
    char why[300];

    if (c->Redis_server[0] == '\0' && c->Redis_sentinels[0] == '\0') {
        if (!quiet)
            fprintf(stderr, "selorctl: no Redis_server nor Redis_sentinels: this node "
                            "is not in a cluster\n");
        return NULL;
    }
    /* with Sentinel: the primary it names (the protocol is the backend's) */
    if (coord_redis_primary(c, &hp, why, sizeof(why)) < 0) {
        if (!quiet)
            fprintf(stderr, "selorctl: Redis: %s\n", why);
        return NULL;
    }
    rc = redisConnectWithTimeout(hp.host, hp.port, tv);
    if (rc == NULL || rc->err) {
        if (!quiet)
            fprintf(stderr, "selorctl: Redis %s:%d: %s\n", hp.host, hp.port,
                    rc ? rc->errstr : "out of memory");
        if (rc)
            redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    if (c->Redis_password[0] && (r = redisCommand(rc, "AUTH %s", c->Redis_password))) {
        int bad = r->type == REDIS_REPLY_ERROR;
        if (bad && !quiet)
            fprintf(stderr, "selorctl: Redis refused Redis_password: %s\n", r->str);
        freeReplyObject(r);
        if (bad) {
            redisFree(rc);
            return NULL;
        }
    }
    if (c->Redis_db && (r = redisCommand(rc, "SELECT %ld", c->Redis_db)))
        freeReplyObject(r);
    return rc;
}

/* The Sid of the node holding qid's lock, or "" (out >= 128 bytes). */
static void ctl_holder(redisContext *rc, const struct config *c, const char *qid,
                       char *out, size_t size)
{
    coord_ctl_holder(rc, c->Redis_prefix, qid, out, size);
}

static void ctl_node_line(const struct coord_ctl_node *n, void *arg)
{
    time_t now = *(const time_t *)arg;

    printf("%-16s %-9s %5lds  %-9ld %-9s %s\n", n->sid, n->gone ? "gone" : n->state,
           (long)(now - n->beat), n->inflight, n->version, n->rules);
}

static int ctl_nodes(const struct config *c)
{
    redisContext *rc = ctl_redis(c, 0);
    time_t now = time(NULL);

    if (rc == NULL)
        return 1;
    printf("%-16s %-9s %-8s %-9s %-9s %s\n", "SID", "STATE", "BEAT", "IN-FLIGHT", "VERSION",
           "RULES");
    coord_ctl_nodes(rc, c->Redis_prefix, ctl_node_line, &now);
    redisFree(rc);
    return 0;
}

static int ctl_drain(const struct config *c, const char *sid, int drain)
{
    redisContext *rc = ctl_redis(c, 0);
    char why[256];

    if (rc == NULL)
        return 1;
    if (coord_ctl_drain(rc, c->Redis_prefix, sid, drain, why, sizeof(why)) < 0) {
        fprintf(stderr, "selorctl: Redis: %s\n", why);
        redisFree(rc);
        return 1;
    }
    redisFree(rc);
    printf("ok node %s %s (within a heartbeat, about 2 s)\n", sid,
           drain ? "drains: it finishes what it holds and takes nothing new"
                 : "takes queue work again");
    return 0;
}

/* ---- listing ---- */

struct ctl_list {
    struct buf names;
    size_t n;
};

static int ctl_collect(const char *name, void *arg)
{
    struct ctl_list *l = arg;

    if (name[0] == 'l') {
        buf_puts(&l->names, name);
        buf_putc(&l->names, '\n');
        l->n++;
    }
    return 0;
}

/* ---- showing what a client wrote, to a person's terminal ---- */

/* Any byte of s, which a client or a remote server chose, printable:
 * control and non-ASCII bytes as \xHH (no escape sequence reaches the
 * operator's terminal, no field can fake a line). */
static const char *ctl_safe(struct arena *a, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    char *out = arena_alloc(a, 4 * n + 1), *o = out;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            *o++ = '\\';
            if (c == '\\') {
                *o++ = '\\';
                continue;
            }
            *o++ = 'x';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return out;
}

/* A header section: line ends and tabs kept, every other byte as above. */
static void ctl_print_text(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static int ctl_load(const char *dir, const char *id, struct queue_file *qf)
{
    char path[4096], err[200];
    struct buf text = BUF_INIT(0);
    int r;

    snprintf(path, sizeof(path), "%s/l%s", dir, id);
    if (spool_read_sync(path, &text, 64 << 20) != 0) {
        buf_free(&text);
        return -1;  /* taken or delivered meanwhile */
    }
    r = qf_parse(qf, text.data, text.len, err, sizeof(err));
    if (r < 0) {
        struct arena a;
        arena_init(&a, 512);
        printf("%-34s (unreadable: %s)\n", id, ctl_safe(&a, err));
        arena_clear(&a);
    }
    buf_free(&text);
    return r;
}

static void ctl_when(long t, char *out, size_t size)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t <= 0) {
        snprintf(out, size, "now");
        return;
    }
    localtime_r(&tt, &tm);
    strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm);
}

static void ctl_show_rcpts(const struct queue_file *qf, struct arena *a)
{
    static const char *const names[] = {"pending", "delivered", "failed", "reported"};
    char when[40];

    for (size_t i = 0; i < qf->nrcpt; i++) {
        const struct qf_rcpt *r = &qf->rcpt[i];
        const char *st = r->state == QF_DELIVERED ? names[1] : r->state == QF_FAILED
            ? names[2] : r->state == QF_REPORTED ? names[3] : names[0];
        ctl_when(r->next, when, sizeof(when));
        printf("    %-9s <%s>", st, ctl_safe(a, r->addr));
        if (r->state == QF_PENDING)
            printf(" next %s, %d attempt(s)", when, r->attempts);
        if (r->answer[0])
            printf("\n              %s", ctl_safe(a, r->answer));
        printf("\n");
    }
}

static void ctl_show_one(const char *dir, const char *queue, const char *lname, time_t now,
                         redisContext *rc)
{
    struct queue_file qf;
    struct arena a;
    char holder[128], qtag[32];

    if (ctl_load(dir, lname + 1, &qf) < 0)
        return;
    arena_init(&a, 1024);
    ctl_holder(rc, selor_conf, qf.id, holder, sizeof(holder));
    /* the queue is named unless it is main: "(qlimit)", "(q1a2b3c4d5e6f)" */
    snprintf(qtag, sizeof(qtag), " (%s)", queue);
    printf("%-34s %6lds %8ld  <%s>%s%s%s%s\n", qf.id, (long)(now - qf.created), qf.size,
           ctl_safe(&a, qf.from), qf.flags & QF_F_HOLD ? " (held)" : "",
           strcmp(queue, "main") ? qtag : "",
           holder[0] ? " held by node " : "", ctl_safe(&a, holder));
    ctl_show_rcpts(&qf, &a);
    arena_clear(&a);
    qf_free(&qf);
}

static int ctl_list_queue(const struct config *c, const char *queue, size_t *total,
                          redisContext *rc)
{
    struct ctl_list l = {BUF_INIT(0), 0};
    char dir[2048], *line, *save = NULL;
    time_t now = time(NULL);
    int e;

    if (spool_queues_dir(queue, dir, sizeof(dir)) < 0)
        return 0;
    e = spool_scan_sync(dir, ctl_collect, &l);
    if (e && e != ENOENT) {
        fprintf(stderr, "selorctl: cannot read %s: %s\n", dir, strerror(e));
        return 1;
    }
    buf_cstr(&l.names);
    for (line = l.n ? strtok_r(l.names.data, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        ctl_show_one(dir, queue, line, now, rc);
    *total += l.n;
    buf_free(&l.names);
    return 0;
}

static int ctl_queue(const struct config *c)
{
    redisContext *rc = ctl_redis(c, 1);
    size_t n = 0;
    int r;

    printf("%-34s %7s %8s  %s\n", "ID", "AGE", "SIZE", "SENDER / RECIPIENTS");
    r = 0;
    for (size_t i = 0; i < spool_queues_count() && r == 0; i++)
        r = ctl_list_queue(c, spool_queues_name(i), &n, rc);
    if (r == 0)
        printf("-- %zu message(s)\n", n);
    if (rc)
        redisFree(rc);
    return r;
}

static int ctl_summary_held(const char *qid, void *arg)
{
    char holder[128];

    ctl_holder(arg, selor_conf, qid, holder, sizeof(holder));
    return holder[0] != '\0';
}

static int ctl_queue_summary(const struct config *c)
{
    redisContext *rc = ctl_redis(c, 1);
    int r = ctl_summary(rc ? ctl_summary_held : NULL, rc);

    if (rc)
        redisFree(rc);
    return r;
}

static int ctl_queue_show(const struct config *c, const char *id)
{
    const char *queue = queue_id_valid(id) ? queue_edit_find(id) : NULL;
    char dir[2048], path[4096];
    struct buf content = BUF_INIT(0);
    struct queue_file qf;
    struct arena a;

    if (queue == NULL) {
        fprintf(stderr, "selorctl: no message %s in the queue\n", id);
        return 1;
    }
    if (spool_queues_dir(queue, dir, sizeof(dir)) < 0 || ctl_load(dir, id, &qf) < 0)
        return 1;
    arena_init(&a, 1024);
    printf("id:       %s (%s queue)\nfrom:     <%s>\nclient:   %s %s (helo %s)\n"
           "accepted: %ld by %s\nsize:     %ld\nflags:    %u%s\n", qf.id, queue,
           ctl_safe(&a, qf.from), ctl_safe(&a, qf.client_ip), ctl_safe(&a, qf.client_name),
           ctl_safe(&a, qf.helo), qf.created, qf.sid[0] ? ctl_safe(&a, qf.sid) : "-",
           qf.size, qf.flags, qf.flags & QF_F_HOLD ? " (held)" : "");
    printf("hits:     %ld\n", qf.hits);
    for (size_t i = 0; i < qf.nsettings; i++)
        printf("%s %s=\"%s\"\n", i ? "         " : "settings:",
               ctl_safe(&a, qf.settings[i].name), ctl_safe(&a, qf.settings[i].value));
    ctl_show_rcpts(&qf, &a);
    arena_clear(&a);
    snprintf(path, sizeof(path), "%s/c%s", dir, id);
    if (spool_read_sync(path, &content, (size_t)qf.size + 1) == 0) {
        printf("--\n");
        ctl_print_text(content.data, bounce_header_len(content.data, content.len));
    }
    qf_free(&qf);
    buf_free(&content);
    return 0;
}

/* ---- changes ---- */

/*
 * Connects to the node's control socket; -1 when no node answers.  Done
 * before selorctl gives up root: a node started as root takes changes
 * from root only (its MDAs run as User), and the kernel tells it who
 * connected, not who writes later.
 */
static int ctl_connect(const struct config *c)
{
    struct sockaddr_un sa;
    char path[sizeof(sa.sun_path) + 64];
    int fd;

    config_ctl_path(c, path, sizeof(path));
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Sends one request over fd (closed after); -1 when no node answers. */
static int ctl_send(int fd, const char *req, char *reply, size_t size)
{
    size_t got = 0;
    ssize_t n;

    if (fd < 0)
        return -1;
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return -1;
    }
    while (got < size - 1 && (n = read(fd, reply + got, size - 1 - got)) > 0)
        got += (size_t)n;
    reply[got] = '\0';
    close(fd);
    return 0;
}

/* The master's pid if a Selor node runs on c's Pid_file, else 0. */
static long ctl_node_pid(const struct config *c)
{
    char line[64] = "", comm[64] = "", proc[64];
    FILE *f = fopen(c->Pid_file, "r");
    long pid;

    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    fclose(f);
    pid = strtol(line, NULL, 10);
    if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
        return 0;
    snprintf(proc, sizeof(proc), "/proc/%ld/comm", pid);
    f = fopen(proc, "r");
    if (f == NULL)
        return pid;
    if (fgets(comm, sizeof(comm), f) == NULL)
        comm[0] = '\0';
    fclose(f);
    return strncmp(comm, "selor", 5) == 0 ? pid : 0;
}

static int ctl_node_alive(const struct config *c)
{
    return ctl_node_pid(c) != 0;
}

/*
 * The file was loaded (and found good) by main before this: a broken one
 * never reaches the node.  The node checks it again (the modules' options
 * too) and logs what changed and what needs a restart.
 */
static int ctl_reload(const struct config *c)
{
    long pid = ctl_node_pid(c);

    if (pid == 0) {
        fprintf(stderr, "selorctl: the node is not running (Pid_file %s)\n", c->Pid_file);
        return 1;
    }
    if (kill((pid_t)pid, SIGHUP) < 0) {
        fprintf(stderr, "selorctl: signalling the node (pid %ld): %s\n", pid, strerror(errno));
        return 1;
    }
    printf("ok %s is valid; the node (pid %ld) reloads it: Central_log says what changed, "
           "Warning_log what needs a restart\n", c->path, pid);
    return 0;
}

/* No node runs: make the change ourselves (single-node setups only). */
static int ctl_direct(const struct config *c, int op, const char *id)
{
    char why[200] = "";
    const char *queue;
    int e;

    if (ctl_node_alive(c)) {
        fprintf(stderr, "selorctl: the node runs (Pid_file %s) but its control socket "
                        "does not answer; nothing was changed\n", c->Pid_file);
        return 1;
    }
    if (c->Redis_server[0] || c->Redis_sentinels[0]) {
        fprintf(stderr, "selorctl: this node is not running; in a cluster, run the "
                        "command on a node that is\n");
        return 1;
    }
    if (id == NULL) {
        fprintf(stderr, "selorctl: the node is not running; nothing to flush\n");
        return 1;
    }
    queue = queue_edit_find(id);
    if (queue == NULL) {
        fprintf(stderr, "selorctl: no message %s in the queue\n", id);
        return 1;
    }
    e = queue_edit_apply(queue, id, op, 0, NULL, NULL, why, sizeof(why));
    if (e) {
        fprintf(stderr, "selorctl: %s: %s\n", id, why[0] ? why : strerror(e));
        return 1;
    }
    printf("ok 1 message(s) (node not running: changed directly)\n");
    return 0;
}

/*
 * A flush of everything in a cluster: one for the cluster.  1 to go on
 * (ours, or no cluster, or Redis failing: a flush is never lost to that),
 * 0 when another node's flush runs or just ran (said on stdout).
 */
static int ctl_flush_cluster(const struct config *c, redisContext *rc)
{
    char holder[160], sid[64] = "-", state[16] = "";
    long since = 0;
    int r;

    if (rc == NULL)
        return 1;
    r = coord_ctl_flush_begin(rc, c->Redis_prefix, c->Sid, holder, sizeof(holder));
    if (r < 0)
        fprintf(stderr, "selorctl: Redis: %s; flushing this node's view anyway\n", holder);
    if (r != 0)
        return 1;
    sscanf(holder, "%63s %ld %15s", sid, &since, state);
    printf("ok not repeated: node %s %s the cluster's flush %lds ago (one flush covers the "
           "shared spool)\n", sid, strcmp(state, "done") == 0 ? "finished" : "started",
           since ? (long)time(NULL) - since : 0L);
    return 0;
}

static int ctl_change(const struct config *c, int fd, const char *verb, const char *id)
{
    int op = queue_edit_op_parse(verb);
    char req[256], reply[512];

    if (id && !queue_id_valid(id)) {
        fprintf(stderr, "selorctl: %s is not a queue ID\n", id);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    snprintf(req, sizeof(req), "%s%s%s\n", verb, id ? " " : "", id ? id : "");
    if (op == QUEUE_EDIT_FLUSH && id == NULL && fd >= 0) {
        redisContext *rc = ctl_redis(c, 1);
        int sent, ok;
        if (!ctl_flush_cluster(c, rc)) {
            close(fd);
            redisFree(rc);
            return 0;
        }
        sent = ctl_send(fd, req, reply, sizeof(reply));
        ok = sent == 0 && strncmp(reply, "ok", 2) == 0;
        if (rc) {
            coord_ctl_flush_end(rc, c->Redis_prefix, c->Sid, ok);
            redisFree(rc);
        }
        if (sent < 0)
            return ctl_direct(c, op, id);
        fputs(reply, ok ? stdout : stderr);
        return ok ? 0 : 1;
    }
    if (ctl_send(fd, req, reply, sizeof(reply)) < 0)
        return ctl_direct(c, op, id);
    fputs(reply, strncmp(reply, "ok", 2) == 0 ? stdout : stderr);
    return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

/*
 * Run as root, work as User/Group: a file selorctl writes must stay
 * readable by the node.  (The control socket was connected before, as
 * root: see ctl_connect.)
 */
static void ctl_queue_path(const char *path, void *arg)
{
    (void)arg;
    spool_queues_add(path);
}

static void ctl_rules_queues(const struct config *c)
{
    struct buf err = BUF_INIT(0);
    struct rules_set *set = rules_load(c, &err, ctl_queue_path, NULL);

    rules_unref(set);
    buf_free(&err);
}

/* selorctl rules test: the options, then the dry run (rules_test.c). */
static int ctl_rules_test(const struct config *c, int argc, char **argv)
{
    struct rules_test_args a = {0};
    struct module_set mods = {0};
    struct buf err = BUF_INIT(0);
    int rc;

    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--ip") == 0) a.ip = v;
        else if (strcmp(k, "--helo") == 0) a.helo = v;
        else if (strcmp(k, "--auth") == 0) a.auth = v;
        else if (strcmp(k, "--from") == 0) a.from = v;
        else if (strcmp(k, "--data") == 0) a.data = v;
        else if (strcmp(k, "--rcpt") == 0 && a.nrcpt < RULES_TEST_MAX_RCPT) a.rcpt[a.nrcpt++] = v;
        else ctl_usage();
    }
    if (a.ip == NULL || argc % 2)
        ctl_usage();
    if (module_load_all(&mods, &err) < 0 ||
        (rules_current = rules_load(c, &err, NULL, NULL)) == NULL) {
        fprintf(stderr, "selorctl: %s\n", buf_cstr(&err));
        buf_free(&err);
        return 1;
    }
    rc = rules_test_run(c, &mods, &a);
    rules_unref(rules_current);
    buf_free(&err);
    return rc;
}

static int ctl_drop_privileges(const struct config *c)
{
    struct passwd *pw;
    struct group *gr;

    if (geteuid() != 0)
        return 0;
    pw = getpwnam(c->User);
    gr = getgrnam(c->Group);
    if (pw == NULL || gr == NULL) {
        fprintf(stderr, "selorctl: User %s or Group %s does not exist\n", c->User, c->Group);
        return -1;
    }
    if (setgroups(0, NULL) < 0 || setgid(gr->gr_gid) < 0 || setuid(pw->pw_uid) < 0) {
        fprintf(stderr, "selorctl: cannot become %s: %s\n", c->User, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = CTL_DEFAULT_CONF, *cmd, *arg;
    struct buf err = BUF_INIT(0), warn = BUF_INIT(0);
    int opt, change, fd = -1;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c')
            path = optarg;
        else
            ctl_usage();
    }
    if (optind >= argc)
        ctl_usage();
    cmd = argv[optind];
    arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (strcmp(cmd, "version") == 0) {
        printf("selorctl %s\n", SELOR_VERSION);
        return 0;
    }
    selor_conf = config_load(path, &err, &warn);
    if (selor_conf == NULL) {
        fprintf(stderr, "selorctl: %s\n", buf_cstr(&err));
        return 1;
    }
    log_set_role("selorctl");
    /* main and qlimit, and the queues the rules' Def!s name, so that
     * listing and changes see every queue (rules that do not load here are
     * the node's business: selor -t says why) */
    spool_queues_init(selor_conf);
    ctl_rules_queues(selor_conf);
    change = queue_edit_op_parse(cmd) >= 0 &&
             (argc - optind == 2 || (argc - optind == 1 && strcmp(cmd, "flush") == 0));
    if (change)
        fd = ctl_connect(selor_conf);
    if (ctl_drop_privileges(selor_conf) < 0)
        return 1;
    if (strcmp(cmd, "queue") == 0 && arg == NULL)
        return ctl_queue(selor_conf);
    if (strcmp(cmd, "rules") == 0 && arg && strcmp(arg, "test") == 0)
        return ctl_rules_test(selor_conf, argc - optind - 2, argv + optind + 2);
    if (strcmp(cmd, "reload") == 0 && arg == NULL)
        return ctl_reload(selor_conf);
    if (strcmp(cmd, "nodes") == 0 && arg == NULL)
        return ctl_nodes(selor_conf);
    if ((strcmp(cmd, "drain") == 0 || strcmp(cmd, "undrain") == 0) && arg &&
        argc - optind == 2)
        return ctl_drain(selor_conf, arg, cmd[0] == 'd');
    if (strcmp(cmd, "queue") == 0 && strcmp(arg, "--summary") == 0 && optind + 2 == argc)
        return ctl_queue_summary(selor_conf);
    if (strcmp(cmd, "queue") == 0 && strcmp(arg, "show") == 0 && optind + 2 < argc)
        return ctl_queue_show(selor_conf, argv[optind + 2]);
    if (change)
        return ctl_change(selor_conf, fd, cmd, arg);
    ctl_usage();
    return 2;
}
