/*
 * priv.c - root's filesystem work, safe against the unprivileged User
 * (see priv.h).
 *
 * "User can write a directory" is judged from its mode and owner for User
 * and Group (the identity every Selor process has after the drop; ACLs
 * are not looked at): the owner can always make it writable, so owning
 * it counts.  Where User can write, a path component is opened with
 * O_NOFOLLOW and the final operation runs with User's filesystem
 * credentials; elsewhere root does it itself, on descriptors.  When Selor
 * does not run as root there is nobody to protect against: operations
 * only gain O_NOFOLLOW.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "priv.h"

static int priv_root(void)
{
    return geteuid() == 0;
}

/* Could User have put something into this directory? */
static int priv_user_writes(int dfd, uid_t uid, gid_t gid)
{
    struct stat st;

    if (fstat(dfd, &st) < 0)
        return 1;
    if (st.st_uid == uid || (st.st_mode & S_IWOTH))
        return 1;
    return st.st_gid == gid && (st.st_mode & S_IWGRP);
}

/* The next filesystem calls are made as User (filesystem ids only: the
 * process keeps its root powers for everything else). */
static void priv_become(uid_t uid, gid_t gid)
{
    setgroups(1, &gid);
    setfsgid(gid);
    setfsuid(uid);
}

static void priv_unbecome(void)
{
    setfsuid(0);
    setfsgid(0);
}

/* Splits path into its directory and last component; -1 when it has none. */
static int priv_split(const char *path, char *dir, size_t dirlen, char *base)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (slash == NULL) {
        snprintf(dir, dirlen, ".");
        slash = path - 1;
    } else if (slash == path) {
        snprintf(dir, dirlen, "/");
    } else if ((size_t)(slash - path) < dirlen) {
        snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
    } else {
        return -1;
    }
    n = strlen(slash + 1);
    if (n == 0 || n > NAME_MAX)
        return -1;
    memcpy(base, slash + 1, n + 1);
    return 0;
}

/*
 * Opens a directory one component at a time; a component inside a
 * directory User can write must not be a symlink.  fd, or -errno.
 */
static int priv_open_dir(const char *dir, uid_t uid, gid_t gid)
{
    const char *p = dir;
    char comp[NAME_MAX + 1];
    int fd = open(dir[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    while (fd >= 0 && *p) {
        size_t n;
        int nfd, e, guard;

        p += strspn(p, "/");
        n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n > NAME_MAX) {
            close(fd);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n;
        guard = priv_user_writes(fd, uid, gid);
        nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (guard ? O_NOFOLLOW : 0));
        e = errno;
        close(fd);
        if (nfd < 0)
            return e == ENOTDIR && guard ? -ELOOP : -e;
        fd = nfd;
    }
    return fd < 0 ? -errno : fd;
}

/* A file root opened where User cannot write: a plain file, not a link to
 * something else, handed to User through its descriptor. */
static int priv_adopt(int fd, uid_t uid, gid_t gid)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return errno;
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
        return EPERM;
    if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)
        return errno;
    return 0;
}

int priv_open(const char *path, int flags, mode_t mode, uid_t uid, gid_t gid)
{
    char dir[PATH_MAX], base[NAME_MAX + 1];
    int dfd, fd, e = 0;

    flags |= O_NOFOLLOW | O_CLOEXEC;
    if (!priv_root())
        return (fd = open(path, flags, mode)) < 0 ? -errno : fd;
    if (priv_split(path, dir, sizeof(dir), base) < 0)
        return -EINVAL;
    if ((dfd = priv_open_dir(dir, uid, gid)) < 0)
        return dfd;
    if (priv_user_writes(dfd, uid, gid)) {
        priv_become(uid, gid);
        fd = openat(dfd, base, flags, mode);
        e = errno;
        priv_unbecome();
    } else {
        fd = openat(dfd, base, flags, mode);
        e = errno;
        if (fd >= 0 && (e = priv_adopt(fd, uid, gid)) != 0) {
            close(fd);
            fd = -1;
        }
    }
    close(dfd);
    return fd < 0 ? -e : fd;
}

/* One directory in dfd, made by User where User can write, else by root
 * and then handed over through its descriptor. */
static int priv_mkdir_in(int dfd, const char *name, mode_t mode, uid_t uid, gid_t gid)
{
    int fd, e;

    if (!priv_root())
        return mkdirat(dfd, name, mode) < 0 ? errno : 0;
    if (priv_user_writes(dfd, uid, gid)) {
        priv_become(uid, gid);
        e = mkdirat(dfd, name, mode) < 0 ? errno : 0;
        priv_unbecome();
        return e;
    }
    if (mkdirat(dfd, name, mode) < 0)
        return errno;
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    e = fchown(fd, uid, gid) < 0 ? errno : 0;
    close(fd);
    return e;
}

int priv_mkdirs(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    char sofar[PATH_MAX], base[NAME_MAX + 1], dir[PATH_MAX];
    size_t n = strlen(path), i = 0;

    if (n == 0 || n >= sizeof(sofar))
        return EINVAL;
    while (i < n) {
        int dfd, e;
        while (i < n && path[i] == '/')
            i++;
        while (i < n && path[i] != '/')
            i++;
        memcpy(sofar, path, i);
        sofar[i] = '\0';
        if (priv_split(sofar, dir, sizeof(dir), base) < 0)
            continue;   /* "/" itself */
        if ((dfd = priv_open_dir(dir, uid, gid)) < 0)
            return -dfd;
        e = priv_mkdir_in(dfd, base, i < n ? 0755 : mode, uid, gid);
        close(dfd);
        if (e && e != EEXIST)
            return e;
    }
    return 0;
}

int priv_bind_unix(int fd, const struct sockaddr_un *sa, uid_t uid, gid_t gid)
{
    char dir[PATH_MAX], base[NAME_MAX + 1];
    struct sockaddr_un rel;
    int dfd, cwd, e = 0, as_user;
    mode_t old;

    if (priv_split(sa->sun_path, dir, sizeof(dir), base) < 0)
        return EINVAL;
    if ((dfd = priv_open_dir(dir, uid, gid)) < 0)
        return -dfd;
    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* bind(2) has no "at" form: the name is bound relative to the
     * directory we checked, so nobody can swap a component meanwhile. */
    if (cwd < 0 || fchdir(dfd) < 0) {
        e = errno;
        goto out;
    }
    memset(&rel, 0, sizeof(rel));
    rel.sun_family = AF_UNIX;
    memcpy(rel.sun_path, base, strlen(base) + 1);
    as_user = priv_root() && priv_user_writes(dfd, uid, gid);
    old = umask(as_user ? 0117 : 0177);
    if (as_user)
        priv_become(uid, gid);
    unlinkat(dfd, base, 0);   /* a leftover: the pid file's lock said no node runs */
    if (bind(fd, (struct sockaddr *)&rel, sizeof(rel)) < 0)
        e = errno;
    if (as_user)
        priv_unbecome();
    umask(old);
    if (fchdir(cwd) < 0 && e == 0)
        e = errno;
out:
    if (cwd >= 0)
        close(cwd);
    close(dfd);
    return e;
}
