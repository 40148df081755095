/*
 * master.c - the master process of a node.
 *
 * Owns: everything done once, with privileges, before any mail flows:
 * directories and log files, the pid file (locked for the master's whole
 * life: a start finding it locked is refused), binding the SMTP port (and
 * Agent_port, Metrics_port),
 * dropping to User/Group (every file operation as root goes through priv.c, which never trusts a path
 * User could have changed); then
 * starting the children (SMTP workers, the queue process, the ops process
 * when a port of it is set), restarting a child that dies, and a clean
 * stop on SIGTERM (the ops process last).  The master runs no event
 * loop and handles no mail: it waits for signals.  Must not: touch the
 * spool's queue files or serve a connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "config_reload.h"
#include "coord.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "net.h"
#include "node.h"
#include "ops.h"
#include "priv.h"
#include "queue.h"
#include "smtp_worker.h"
#include "spool.h"
#include "spool_queues.h"
#include "tls_reload.h"
#include "version.h"

#define MASTER_STOP_WAIT 30      /* seconds children get to finish */
#define MASTER_RESTART_MAX 30    /* longest pause before a restart */
#define MASTER_OPS_INDEX (-2)    /* the ops process's index */

struct master_child {
    pid_t pid;
    int index;                   /* worker index; -1 = queue process, -2 = ops */
    time_t restart_at;           /* 0 = running or not due */
    int backoff;
    time_t started;
    int tls_fd;                  /* a worker's pipe for new certificates; -1 */
};

struct master {
    struct selor_node *node;
    struct master_child child[NODE_MAX_WORKERS + 2];
    int nchild;
    int pid_fd;
    uid_t uid;
    gid_t gid;
    int stopping;
    int agent_fd, metrics_fd;    /* the ops process's sockets; -1 = off */
};

/* ---- set-up ---- */

static void master_lookup_user(struct master *m)
{
    const struct config *c = selor_conf;
    struct passwd *pw;
    struct group *gr;

    m->uid = geteuid();
    m->gid = getegid();
    if (geteuid() != 0)
        return;
    if ((pw = getpwnam(c->User)) == NULL)
        log_fatal("%s:%d: User \"%s\" does not exist on this system", c->path,
                  c->line[CONF_IDX_User], c->User);
    if ((gr = getgrnam(c->Group)) == NULL)
        log_fatal("%s:%d: Group \"%s\" does not exist on this system", c->path,
                  c->line[CONF_IDX_Group], c->Group);
    m->uid = pw->pw_uid;
    m->gid = gr->gr_gid;
}

static void master_dir(const char *path, struct master *m, mode_t mode)
{
    int e;

    if (path[0] == '\0')
        return;
    if ((e = priv_mkdirs(path, mode, m->uid, m->gid)) != 0)
        log_fatal("cannot create directory %s: %s%s", path, strerror(e),
                  e == ELOOP ? " (a symlink where User can write)" : "");
}

static void master_parent_dir(const char *file, struct master *m)
{
    char tmp[4096];

    if (file[0] == '\0')
        return;
    snprintf(tmp, sizeof(tmp), "%s", file);
    master_dir(dirname(tmp), m, 0755);
}

/*
 * Every queue of the registry (spool_queues.h), owned by User: main,
 * qlimit, and the alternate queues rules may send mail to (Def!
 * Queue_path).  Runs after the registry is complete: the rules are loaded,
 * and their queues added, before master_run.
 */
static void master_queue_dirs(struct master *m)
{
    char dir[2048];

    for (size_t i = 0; i < spool_queues_count(); i++)
        if (spool_queues_dir(spool_queues_name(i), dir, sizeof(dir)) == 0)
            master_dir(dir, m, 0750);
}

/* An alternate queue on another filesystem than Temp_path cannot take a
 * commit (rename): said at start; each such message gets a 4xx. */
static void master_check_queue_fs(const struct stat *ts)
{
    struct stat qs;
    char dir[2048];

    for (size_t i = 2; i < spool_queues_count(); i++)
        if (spool_queues_dir(spool_queues_name(i), dir, sizeof(dir)) == 0 &&
            stat(dir, &qs) == 0 && qs.st_dev != ts->st_dev)
            log_warn("queue %s (%s) is not on the filesystem of Temp_path %s: mail a "
                     "rule sends there is refused with a temporary error",
                     spool_queues_name(i), dir, selor_conf->Temp_path);
}

static void master_prepare_files(struct master *m)
{
    struct config *c = selor_conf;
    const char *logs[] = {c->Central_log, c->Sumary_log, c->Warning_log,
                          c->Refused_log};
    struct buf err = BUF_INIT(0);
    struct stat qs, ts;

    master_dir(c->Queue_path, m, 0750);
    master_dir(c->Temp_path, m, 0750);
    master_queue_dirs(m);
    master_dir(c->Cp_errors_path, m, 0750);
    for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++)
        master_parent_dir(logs[i], m);
    master_parent_dir(c->Pid_file, m);
    if (log_open(c, m->uid, m->gid, &err) < 0)
        log_fatal("%s", buf_cstr(&err));
    buf_free(&err);
    if (stat(c->Queue_path, &qs) < 0 || stat(c->Temp_path, &ts) < 0)
        log_fatal("cannot stat Queue_path or Temp_path: %s", strerror(errno));
    if (qs.st_dev != ts.st_dev)
        log_fatal("Temp_path %s must be on the same filesystem as Queue_path %s",
                  c->Temp_path, c->Queue_path);
    master_check_queue_fs(&ts);
}

/* 1: fd holds the whole-file write lock; -1: another process does (its pid
 * in *holder, 0 when it lives in another pid namespace); 0: the holder let
 * go between our two questions. */
static int master_try_lock(int fd, const char *path, long *holder)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

    if (fcntl(fd, F_SETLK, &fl) == 0)
        return 1;
    if (errno != EAGAIN && errno != EACCES)
        log_fatal("cannot lock Pid_file %s: %s", path, strerror(errno));
    fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, &fl) < 0)
        log_fatal("cannot lock Pid_file %s: %s", path, strerror(errno));
    *holder = (long)fl.l_pid;
    return fl.l_type == F_UNLCK ? 0 : -1;
}

/* A stopping node unlinks the file while it still holds the lock: a lock
 * won on the unlinked file would let a third node lock a new one. */
static int master_still_named(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/*
 * The lock, not the pid written in the file, says a node runs: whatever a
 * stale file holds (a dead pid, a reused one, garbage) never stops a start,
 * and of two nodes started at once exactly one wins.  Opened without
 * O_TRUNC: the holder's pid must stay readable until we own the file.
 */
static void master_lock_pid_file(struct master *m)
{
    const char *path = selor_conf->Pid_file;
    long holder = 0;
    int fd, got;

    for (int tries = 0; tries < 100; tries++) {
        fd = priv_open(path, O_RDWR | O_CREAT, 0644, m->uid, m->gid);
        if (fd < 0)
            log_fatal("cannot open Pid_file %s: %s", path, strerror(-fd));
        got = master_try_lock(fd, path, &holder);
        if (got > 0 && master_still_named(fd, path)) {
            m->pid_fd = fd;
            return;
        }
        close(fd);
        if (got < 0)
            log_fatal("Selor is already running as pid %ld: it holds the lock on "
                      "Pid_file %s", holder, path);
    }
    log_fatal("cannot lock Pid_file %s: it was replaced at every try", path);
}

/* The descriptor stays open for the master's life: closing it, or any other
 * descriptor of the file, in this process would release the lock. */
static void master_write_pid_file(struct master *m)
{
    char line[32];
    int n;

    n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(m->pid_fd, 0) < 0 || pwrite(m->pid_fd, line, (size_t)n, 0) != n ||
        fsync(m->pid_fd) < 0)
        log_fatal("cannot write Pid_file %s: %s", selor_conf->Pid_file,
                  strerror(errno));
}

/* Without privileges to unlink, an empty pid file also says "stopped". */
static void master_remove_pid_file(struct master *m)
{
    if (unlink(selor_conf->Pid_file) < 0 && m->pid_fd >= 0 &&
        ftruncate(m->pid_fd, 0) < 0)
        log_warn("cannot remove Pid_file %s: %s", selor_conf->Pid_file,
                 strerror(errno));
}

static void master_bind(struct master *m)
{
    struct selor_node *node = m->node;
    const struct config *c = selor_conf;

    for (int i = 0; i < node->nworkers; i++) {
        node->listen_fd[i] = net_listen(c->Bind_address, (int)c->Port, 1, 1024);
        if (node->listen_fd[i] < 0)
            log_fatal("cannot listen on %s:%ld: %s",
                      c->Bind_address[0] ? c->Bind_address : "*", c->Port,
                      strerror(errno));
    }
}

/*
 * Agent_port on Bind_address (every address when empty: HAProxy is on
 * another host); Metrics_port on Bind_address, or 127.0.0.1 when that is
 * empty or a wildcard: the metrics are not for the whole network.
 */
static void master_bind_ops(struct master *m)
{
    const struct config *c = selor_conf;
    const char *mip = c->Bind_address;

    m->agent_fd = m->metrics_fd = -1;
    if (mip[0] == '\0' || strcmp(mip, "0.0.0.0") == 0 || strcmp(mip, "::") == 0)
        mip = "127.0.0.1";
    if (c->Agent_port &&
        (m->agent_fd = net_listen(c->Bind_address, (int)c->Agent_port, 0, 128)) < 0)
        log_fatal("cannot listen on %s:%ld (Agent_port): %s",
                  c->Bind_address[0] ? c->Bind_address : "*", c->Agent_port,
                  strerror(errno));
    if (c->Metrics_port &&
        (m->metrics_fd = net_listen(mip, (int)c->Metrics_port, 0, 128)) < 0)
        log_fatal("cannot listen on %s:%ld (Metrics_port): %s", mip, c->Metrics_port,
                  strerror(errno));
}

/* The control socket selorctl talks to (served by the queue process). */
static void master_ctl_socket(struct master *m)
{
    struct sockaddr_un sa;
    char path[sizeof(sa.sun_path) + 64];
    int fd, e;

    m->node->ctl_fd = -1;
    config_ctl_path(selor_conf, path, sizeof(path));
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_warn("control socket path %s is too long; selorctl cannot reach this node",
                 path);
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    e = fd < 0 ? errno : priv_bind_unix(fd, &sa, m->uid, m->gid);
    if (e == 0 && listen(fd, 16) < 0)
        e = errno;
    if (e) {
        log_warn("cannot create control socket %s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        return;
    }
    m->node->ctl_fd = fd;
}

static void master_drop_privileges(struct master *m)
{
    if (geteuid() != 0) {
        log_info("not started as root: running as uid %ld", (long)geteuid());
        return;
    }
    if (setgroups(0, NULL) < 0 || setgid(m->gid) < 0 || setuid(m->uid) < 0)
        log_fatal("cannot drop privileges to %s:%s: %s", selor_conf->User,
                  selor_conf->Group, strerror(errno));
    if (m->uid != 0 && setuid(0) == 0)
        log_fatal("privileges could be regained after dropping them");
    m->node->dropped = m->uid != 0;
}

/* After the drop: the children will fail on a spool User cannot use. */
static void master_check_access(void)
{
    const struct config *c = selor_conf;
    char d[2048];

    for (size_t i = 0; i <= spool_queues_count(); i++) {
        if (i == spool_queues_count())
            snprintf(d, sizeof(d), "%s", c->Temp_path);
        else if (spool_queues_dir(spool_queues_name(i), d, sizeof(d)) < 0)
            continue;
        if (access(d, R_OK | W_OK | X_OK) < 0)
            log_fatal("user %s cannot use %s: %s (check the permissions of the "
                      "directory and of every directory above it)", c->User, d,
                      strerror(errno));
    }
}

static void master_raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (geteuid() == 0 && rl.rlim_max < 65536)
        rl.rlim_max = 65536;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * Detaching forks before the pid file is locked: fcntl locks are not
 * inherited, so the process that stays must take the lock itself, and a
 * hand-over from the parent would leave a moment with no holder.  The
 * parent waits for a byte on the pipe: it exits 0 once the daemon is set
 * up, 1 when the daemon failed (its messages still reach our stderr).
 * Returns the daemon's end of the pipe; -1 in the foreground.
 */
static int master_detach(const struct selor_node *node)
{
    int p[2];
    pid_t pid;
    ssize_t n;
    char c;

    if (node->foreground)
        return -1;
    if (pipe2(p, O_CLOEXEC) < 0)
        log_fatal("pipe: %s", strerror(errno));
    if ((pid = fork()) < 0)
        log_fatal("fork: %s", strerror(errno));
    if (pid > 0) {
        close(p[1]);
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
            ;
        _exit(n == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    return p[1];
}

static void master_detach_done(int ready)
{
    int fd;

    if (ready < 0)
        return;
    if (chdir("/") < 0)
        log_warn("chdir /: %s", strerror(errno));
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    if (write(ready, "1", 1) != 1)
        log_warn("cannot tell the starting process we run: %s", strerror(errno));
    close(ready);
}

/* ---- children ---- */

static void master_child_signals(void)
{
    sigset_t all;

    sigemptyset(&all);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGUSR2, SIG_IGN);   /* until the child's loop listens for it */
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/* A worker gets a pipe on which the master sends new certificates. */
static void master_tls_pipe(struct master *m, struct master_child *ch, int p[2])
{
    p[0] = p[1] = -1;
    if (ch->tls_fd >= 0)
        close(ch->tls_fd);
    ch->tls_fd = -1;
    if (ch->index < 0 || m->node->tls.ops == NULL)
        return;
    if (pipe2(p, O_CLOEXEC) < 0) {
        log_warn("pipe: %s (this worker keeps its certificate until restarted)",
                 strerror(errno));
        p[0] = p[1] = -1;
        return;
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK);
}

static void master_tls_reload(struct master *m)
{
    int fds[NODE_MAX_WORKERS + 1];

    for (int i = 0; i < m->nchild; i++)
        fds[i] = m->child[i].tls_fd;
    tls_reload_master(selor_conf, &m->node->tls, fds, m->nchild);
}

static void master_spawn(struct master *m, struct master_child *ch)
{
    struct selor_node *node = m->node;
    int tp[2];
    pid_t pid;

    master_tls_pipe(m, ch, tp);
    pid = fork();

    if (pid < 0) {
        log_warn("fork: %s", strerror(errno));
        ch->restart_at = time(NULL) + 1;
        if (tp[0] >= 0) {
            close(tp[0]);
            close(tp[1]);
        }
        return;
    }
    if (pid == 0) {
        metrics_use_slot((int)(ch - m->child));   /* a restart keeps its counts */
        /* fcntl locks are not inherited: the pid file's lock stays the
         * master's alone, and this close cannot release it */
        if (m->pid_fd >= 0)
            close(m->pid_fd);
        master_child_signals();
        for (int i = 0; i < m->nchild; i++)
            if (m->child[i].tls_fd >= 0)
                close(m->child[i].tls_fd);
        if (tp[1] >= 0)
            close(tp[1]);
        node->tls_pipe = tp[0];
        if (ch->index != -1 && node->ctl_fd >= 0)
            close(node->ctl_fd);
        if (ch->index != MASTER_OPS_INDEX) {
            if (m->agent_fd >= 0)
                close(m->agent_fd);
            if (m->metrics_fd >= 0)
                close(m->metrics_fd);
        }
        for (int i = 0; i < node->nworkers; i++)
            if (i != ch->index)
                close(node->listen_fd[i]);
        /* Operators and tests tell the processes apart by name. */
        prctl(PR_SET_NAME, ch->index == MASTER_OPS_INDEX ? "selor-ops"
              : ch->index < 0 ? "selor-queue" : "selor-smtp", 0, 0, 0);
        if (ch->index == MASTER_OPS_INDEX)
            ops_main(node, m->agent_fd, m->metrics_fd);
        if (ch->index < 0)
            queue_main(node);
        smtp_worker_main(node, ch->index, node->listen_fd[ch->index]);
    }
    if (tp[0] >= 0)
        close(tp[0]);
    ch->tls_fd = tp[1];
    ch->pid = pid;
    ch->restart_at = 0;
    ch->started = time(NULL);
}

static const char *master_child_name(const struct master_child *ch, char *buf,
                                     size_t size)
{
    if (ch->index == MASTER_OPS_INDEX)
        snprintf(buf, size, "ops process");
    else if (ch->index < 0)
        snprintf(buf, size, "queue process");
    else
        snprintf(buf, size, "smtp worker %d", ch->index);
    return buf;
}

static void master_reap(struct master *m)
{
    int status;
    pid_t pid;
    char name[32];

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < m->nchild; i++) {
            struct master_child *ch = &m->child[i];
            if (ch->pid != pid)
                continue;
            ch->pid = 0;
            if (m->stopping)
                break;
            /* A child that lived a while restarts at once; a crash loop backs off. */
            ch->backoff = time(NULL) - ch->started > 60 ? 1
                : (ch->backoff ? ch->backoff * 2 : 1);
            if (ch->backoff > MASTER_RESTART_MAX)
                ch->backoff = MASTER_RESTART_MAX;
            ch->restart_at = time(NULL) + ch->backoff - 1;
            if (WIFSIGNALED(status))
                log_warn("%s (pid %ld) killed by signal %d; restarting",
                         master_child_name(ch, name, sizeof(name)), (long)pid,
                         WTERMSIG(status));
            else
                log_warn("%s (pid %ld) exited with status %d; restarting",
                         master_child_name(ch, name, sizeof(name)), (long)pid,
                         WEXITSTATUS(status));
        }
    }
}

static void master_restart_due(struct master *m)
{
    time_t now = time(NULL);

    for (int i = 0; i < m->nchild; i++)
        if (m->child[i].pid == 0 && m->child[i].restart_at &&
            m->child[i].restart_at <= now)
            master_spawn(m, &m->child[i]);
}

/* Children still running; but_ops: not counting the ops process. */
static int master_alive(const struct master *m, int but_ops)
{
    int n = 0;

    for (int i = 0; i < m->nchild; i++)
        n += m->child[i].pid != 0 && !(but_ops && m->child[i].index == MASTER_OPS_INDEX);
    return n;
}

static void master_signal_all(struct master *m, int sig)
{
    for (int i = 0; i < m->nchild; i++)
        if (m->child[i].pid)
            kill(m->child[i].pid, sig);
}

/* One log line a report line of config_reload. */
static void master_reload_report(const char *report)
{
    struct buf changed = BUF_INIT(0);

    for (const char *l = report, *e; *l; l = e + 1) {
        e = strchr(l, '\n');
        if (e == NULL)
            break;
        if (strncmp(l, "changed ", 8) == 0)
            buf_printf(&changed, "%s%.*s", changed.len ? ", " : "", (int)(e - l - 8), l + 8);
        else if (strncmp(l, "restart ", 8) == 0)
            log_warn("reload: %.*s", (int)(e - l - 8), l + 8);
    }
    if (changed.len)
        log_info("reload: %s read again; new sessions and deliveries use: %s",
                 selor_conf->path, buf_cstr(&changed));
    buf_free(&changed);
}

/*
 * SIGHUP: selor.conf first (the children read it again on SIGUSR2, each
 * keeping what it runs if the file fails), then the certificate and the
 * rules.  The children are told even when the master's read failed: their
 * rules files are looked at all the same.
 */
static void master_reload(struct master *m)
{
    struct buf err = BUF_INIT(0), report = BUF_INIT(0);
    int r = config_reload(module_claims_option, &m->node->mods, &err, &report);

    if (r < 0)
        log_warn("reload: %s; nothing changed", buf_cstr(&err));
    else
        master_reload_report(buf_cstr(&report));
    if (r == 1)   /* nothing live changed (restart-only lines were said above) */
        log_info("reload: %s read again: no change the running node can take",
                 selor_conf->path);
    buf_free(&err);
    buf_free(&report);
    master_tls_reload(m);
    master_signal_all(m, SIGUSR2);
}

static void master_remove_ctl_socket(void)
{
    char path[4096];

    config_ctl_path(selor_conf, path, sizeof(path));
    unlink(path);  /* may fail without privileges; the next start removes it */
}

__attribute__((noreturn)) static void master_stop(struct master *m)
{
    struct timespec tick = {1, 0};
    time_t deadline = time(NULL) + MASTER_STOP_WAIT;
    sigset_t set;
    siginfo_t si;

    m->stopping = 1;
    log_info("stopping");
    master_signal_all(m, SIGTERM);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    /* The ops process goes last: until the workers are gone, it tells the
     * load balancer the node is stopping (its SIGTERM), then SIGQUIT. */
    for (int pass = 1; pass >= 0; pass--) {
        while (master_alive(m, pass) && time(NULL) < deadline) {
            sigtimedwait(&set, &si, &tick);
            master_reap(m);
        }
        for (int i = 0; pass && i < m->nchild; i++)
            if (m->child[i].index == MASTER_OPS_INDEX && m->child[i].pid)
                kill(m->child[i].pid, SIGQUIT);
    }
    if (master_alive(m, 0)) {
        log_warn("children did not stop in %d s; killing them", MASTER_STOP_WAIT);
        master_signal_all(m, SIGKILL);
        while (master_alive(m, 0) && waitpid(-1, NULL, 0) > 0)
            master_reap(m);
    }
    master_remove_pid_file(m);
    master_remove_ctl_socket();
    log_info("stopped");
    exit(0);
}

__attribute__((noreturn)) static void master_supervise(struct master *m)
{
    struct timespec tick = {1, 0};
    sigset_t set;
    siginfo_t si;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        sig = sigtimedwait(&set, &si, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            master_stop(m);
        if (sig == SIGUSR1) {      /* a log rotation: the master's own logs too */
            log_reopen("SIGUSR1");
            master_signal_all(m, SIGUSR1);
        }
        if (sig == SIGHUP)
            master_reload(m);
        master_reap(m);
        master_restart_due(m);
    }
}

static void master_block_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

void master_run(struct selor_node *node)
{
    struct master m = {0};
    struct buf err = BUF_INIT(0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int ready;

    m.node = node;
    m.pid_fd = -1;
    node->nworkers = selor_conf->Smtp_workers ? (int)selor_conf->Smtp_workers
                                              : (int)(ncpu > 0 ? ncpu : 1);
    if (node->nworkers > NODE_MAX_WORKERS)
        node->nworkers = NODE_MAX_WORKERS;
    log_set_stderr(node->foreground);
    master_block_signals();
    master_raise_fd_limit();
    ready = master_detach(node);
    log_set_role("master");
    master_lookup_user(&m);
    master_prepare_files(&m);
    /* before the control socket: a refused start must not unlink the
     * running node's socket */
    master_lock_pid_file(&m);
    master_bind(&m);
    master_bind_ops(&m);
    master_ctl_socket(&m);
    node->coord = coord_create(selor_conf, &err);
    if (node->coord == NULL)
        log_fatal("%s", buf_cstr(&err));
    master_write_pid_file(&m);
    master_drop_privileges(&m);
    master_check_access();
    master_detach_done(ready);
    for (size_t i = 0; i < node->mods.n; i++)
        log_info("module %s %s loaded from %s", node->mods.m[i].mod->name,
                 node->mods.m[i].mod->version, node->mods.m[i].path);
    log_info("Selor %s started: port %ld, %d smtp worker(s), coordination %s",
             SELOR_VERSION, selor_conf->Port, node->nworkers,
             node->coord->ops->name);
    m.nchild = node->nworkers + 1 + (m.agent_fd >= 0 || m.metrics_fd >= 0);
    /* every child's pipe is "none" before the first fork: a child closes
     * the others' pipes, and a 0 there would be its standard input */
    for (int i = 0; i < m.nchild; i++) {
        m.child[i].index = i < node->nworkers ? i : i == node->nworkers ? -1
                                                                   : MASTER_OPS_INDEX;
        m.child[i].tls_fd = -1;
    }
    metrics_init(m.nchild + 1);   /* the children (ops among them), the master */
    for (int i = 0; i < m.nchild; i++)
        master_spawn(&m, &m.child[i]);
    master_supervise(&m);
}
