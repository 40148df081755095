/*
 * priv.h - what the master does as root on the filesystem: opening the
 * logs and the pid file, creating directories, binding the control socket.
 *
 * Owns: the rule that root never trusts a path the unprivileged User could
 * have changed.  A path is walked one directory at a time; a symlink is
 * followed only where nobody but root could have put it.  In a directory
 * that someone other than root can write, root works with User's
 * filesystem credentials (setfsuid), so whatever it creates belongs to
 * User and whatever a link points to is opened with User's rights, not
 * root's.  In a directory only root can write, root opens without
 * following a final link, refuses hard-linked files, and changes ownership
 * through the descriptor only.  Must not: be used after the privilege
 * drop for anything but plain opens (it then just adds O_NOFOLLOW).
 */
#ifndef SELOR_PRIV_H
#define SELOR_PRIV_H

#include <sys/types.h>
#include <sys/un.h>

/* open(2) of a file User will use: a descriptor, or -errno. */
int priv_open(const char *path, int flags, mode_t mode, uid_t uid, gid_t gid);
/* mkdir -p; directories it creates belong to uid:gid.  0 or errno. */
int priv_mkdirs(const char *path, mode_t mode, uid_t uid, gid_t gid);
/* Binds fd to sa (a path): the socket file is User's in a directory User
 * can write, else root's with mode 0600.  0 or errno. */
int priv_bind_unix(int fd, const struct sockaddr_un *sa, uid_t uid, gid_t gid);

#endif
