#!/usr/bin/python3
"""nfsfs - a FUSE pass-through filesystem that misbehaves like an NFS client.

Owns: presenting one plain directory (BACKING_DIR) at MOUNTPOINT, and the
NFS client behaviours the Selor tests switch on and off.  Several nfsfs
processes may mount the same backing directory; each is one "node" with its
own caches, as each NFS client has.  It must not: touch anything outside
the backing directory, change Selor or its tests, write to stdout after the
READY line (nobody reads it), or log per operation (the cluster tests push
thousands of operations through it).

Run it with Debian's interpreter, which has python3-pyfuse3:

    /usr/bin/python3 nfsfs.py BACKING_DIR MOUNTPOINT [-o KEY=VALUE,...]

It mounts with allow_other and default_permissions, prints "READY" on
stdout once mounted, and unmounts on SIGTERM, SIGINT or SIGHUP.  Files and
directories created through it belong to the calling process's uid/gid.

Behaviours (all off by default; each is a KEY=VALUE, given at mount time
with -o, several comma-separated or -o repeated, or at run time through the
control file, see below):

  actimeo=S            sets attr_timeo and dir_timeo to S seconds (float)
  attr_timeo=S         getattr answers come from this mount's cache until
                       they are S seconds old (NFS acregmin/acdirmin)
  dir_timeo=S          name lookups (found and not found) and directory
                       listings come from the cache until S seconds old:
                       another mount's new or removed files are seen late
  cto=0|1              close-to-open (default 1): open() refreshes the
                       file's attributes whatever attr_timeo says, as NFS does
  silly_rename=0|1     unlinking (or renaming over) a file this mount has
                       open renames it to .nfsXXXXXXXXXXXXXXXXYYYYYYYY in the
                       same directory; the last close removes it; unlinking
                       such a name while it is open gives EBUSY
  estale=0|handles|1   a file another mount removed (or renamed another file
                       over) gives ESTALE: "handles" on read, write, fsync,
                       getattr and setattr of an inode this mount still holds
                       (what Linux NFS applications see: the kernel retries a
                       path lookup by itself); 1 also on a lookup whose
                       cached entry still names the gone file
  rename_error=N       the next N renames (matching rename_error_pattern) are
                       done, then report rename_errno (a retransmitted RENAME)
  rename_error_pattern=GLOB   matched against the old or the new base name
  rename_errno=E       errno name or number (default ENOENT)
  fsync_error=N        the next N fsyncs of files (matching fsync_error_pattern)
                       sync the data, then report fsync_errno
  fsync_error_pattern=GLOB    matched against the file's base name
  fsyncdir_error=N     the same for fsyncs of directories
  fsyncdir_error_pattern=GLOB matched against the directory's base name (the
                       mount root's is empty: only "" or "*" match it)
  fsync_errno=E        errno name or number (default EIO)
  delay_ms=MS          added to each operation named in delay_ops; other
                       requests proceed meanwhile
  delay_ops=OP:OP...   default read:write:fsync:fsyncdir:create:rename:unlink:
                       mkdir:rmdir:readdir (readdir: once per listing); also
                       open, lookup, getattr, setattr, link, symlink, mknod,
                       opendir
  sync=0|1             fsync really syncs the backing file (default 1)
  verbose=0|1          log every injected fault on stderr

Control file: /.nfsfs-ctl at the mount root, not listed by readdir.
Writing a line of space-separated KEY=VALUE words changes behaviours at once
(a bad word fails the write with EINVAL and changes nothing); the words
"reset_counters" and "drop_caches" are commands.  Reading it gives JSON:
{"settings": {...}, "counters": {...}, "inodes": N, "handles": N}.
Counters: one per operation (lookup, getattr, open, create, read, write,
fsync, fsyncdir, rename, unlink, ...) and one per behaviour that fired:
rename_errors, fsync_errors, fsyncdir_errors, silly_renames, silly_removes,
estale, attr_cache_hits, name_cache_hits, negative_cache_hits,
listing_cache_hits, delays.

Worth knowing when reading test results:
- st_ino is the backing file's inode number, the same in every mount (as an
  NFS fileid); st_dev differs between mounts.
- This mount's own changes update its own caches at once, a rename that
  reported an error included (as the attributes in an NFS reply would): after
  it, this mount sees the source gone and the target there.
- A create whose name the negative cache hides gets EEXIST from the backing
  directory only if O_EXCL was given; without it the existing file is opened.
- close() returns before the kernel's release reaches nfsfs, so a .nfs file
  goes away shortly after the last close, not during it (as on NFS).
- Directories, unlike files, are also cached by the kernel for attr_timeo and
  dir_timeo (path walks would otherwise cost two requests per component), so
  another mount's removal of a directory is seen late.  Lowering the times
  at run time drops the kernel's directory attributes, not its names.
- estale=1 makes open() and stat() by name fail with ESTALE for a cached
  name of a gone file, which Linux NFS hides by retrying the lookup once;
  estale=handles is what applications on Linux NFS see.
"""
import argparse
import errno
import fnmatch
import json
import logging
import os
import resource
import signal
import stat
import sys
import time
from collections import defaultdict

import pyfuse3
import trio

log = logging.getLogger("nfsfs")

CTL_NAME = b".nfsfs-ctl"
# Far above any inode number a local filesystem hands out.
CTL_INO = (1 << 63) - 2
FOREIGN_INO_BASE = 1 << 62
NEVER = float("-inf")

DELAY_OPS_DEFAULT = ("read", "write", "fsync", "fsyncdir", "create", "rename",
                     "unlink", "mkdir", "rmdir", "readdir")
# Flags that only make sense for the open the kernel already did (O_CREAT,
# O_EXCL, O_NOCTTY), that would break re-opening through /proc/self/fd
# (O_NOFOLLOW: that path is a symlink), or that the backing file system may
# refuse for unaligned buffers (O_DIRECT).
REOPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW | os.O_DIRECT


def parse_bool(v):
    v = v.lower()
    if v in ("1", "on", "yes", "true"):
        return True
    if v in ("0", "off", "no", "false"):
        return False
    raise ValueError("not a boolean: %r" % v)


def parse_errno(v):
    if v.isdigit():
        return int(v)
    code = getattr(errno, v.upper(), None)
    if not isinstance(code, int):
        raise ValueError("unknown errno: %r" % v)
    return code


def parse_estale(v):
    v = v.lower()
    if v == "handles":
        return "handles"
    return "all" if parse_bool(v) else "off"


def parse_ops(v):
    ops = tuple(o for o in v.replace(",", ":").split(":") if o)
    known = set(DELAY_OPS_DEFAULT) | {"open", "lookup", "getattr", "setattr", "link",
                                      "symlink", "mknod", "opendir"}
    bad = [o for o in ops if o not in known]
    if bad:
        raise ValueError("unknown operations: %s" % ",".join(bad))
    return ops


def parse_seconds(v):
    f = float(v)
    if f < 0:
        raise ValueError("negative time")
    return f


def parse_count(v):
    n = int(v)
    if n < 0:
        raise ValueError("negative count")
    return n


# name -> parser; the defaults are what a plain mount does.
SETTINGS = {
    "attr_timeo": (parse_seconds, 0.0),
    "dir_timeo": (parse_seconds, 0.0),
    "cto": (parse_bool, True),
    "silly_rename": (parse_bool, False),
    "estale": (parse_estale, "off"),
    "rename_error": (parse_count, 0),
    "rename_error_pattern": (str, ""),
    "rename_errno": (parse_errno, errno.ENOENT),
    "fsync_error": (parse_count, 0),
    "fsync_error_pattern": (str, ""),
    "fsyncdir_error": (parse_count, 0),
    "fsyncdir_error_pattern": (str, ""),
    "fsync_errno": (parse_errno, errno.EIO),
    "delay_ms": (parse_seconds, 0.0),
    "delay_ops": (parse_ops, DELAY_OPS_DEFAULT),
    "sync": (parse_bool, True),
    "verbose": (parse_bool, False),
}
COMMANDS = ("reset_counters", "drop_caches")


def parse_words(words):
    """KEY=VALUE words -> ({setting: value}, [commands]); ValueError on any
    bad word, so that a bad control line changes nothing."""
    out, cmds = {}, []
    for w in words:
        if not w:
            continue
        if "=" not in w:
            if w not in COMMANDS:
                raise ValueError("unknown command: %r" % w)
            cmds.append(w)
            continue
        k, v = w.split("=", 1)
        if k == "actimeo":
            out["attr_timeo"] = out["dir_timeo"] = parse_seconds(v)
        elif k in SETTINGS:
            out[k] = SETTINGS[k][0](v)
        else:
            raise ValueError("unknown setting: %r" % k)
    return out, cmds


def matches(pattern, *names):
    if not pattern:
        return True
    return any(fnmatch.fnmatchcase(os.fsdecode(n), pattern) for n in names)


class Inode:
    """What this mount knows of one backing inode.  The O_PATH descriptor is
    the NFS file handle: it keeps reaching the same file after renames by
    other mounts, and tells (st_nlink 0) when the file is gone."""

    __slots__ = ("ino", "key", "fd", "nlookup", "opens", "attrs", "attr_time",
                 "retired", "removed_here", "silly", "name", "dents", "listing",
                 "listing_time", "is_dir")

    def __init__(self, ino, key, fd, is_dir, name):
        self.ino = ino
        self.key = key
        self.fd = fd
        self.is_dir = is_dir
        self.name = name
        self.nlookup = 0
        self.opens = 0
        self.attrs = None
        self.attr_time = NEVER
        self.retired = None      # monotonic time the kernel last let go of it
        self.removed_here = False
        self.silly = None        # (parent O_PATH fd dup, .nfs name, parent Inode)
        # Directories only: name -> (Inode or None, time) and name -> Inode.
        self.dents = {} if is_dir else None
        self.listing = None
        self.listing_time = NEVER

    @property
    def alive(self):
        return self.fd >= 0


class Handle:
    __slots__ = ("fd", "inode", "kind", "entries", "data", "inbuf")

    def __init__(self, fd, inode, kind):
        self.fd = fd
        self.inode = inode
        self.kind = kind          # "file", "dir" or "ctl"
        self.entries = None       # dir: the listing snapshot being read
        self.data = b""           # ctl: what a read returns
        self.inbuf = b""          # ctl: a partial line written so far


def _fuse_errors(fn):
    """pyfuse3 stops the whole main loop on any exception but FUSEError, so
    every operation turns OSError into its errno, and a bug into EIO."""
    async def wrapper(self, *args):
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except Exception:
            log.exception("nfsfs: %s failed", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class NfsFs(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, backing, settings):
        super().__init__()
        self.s = {k: v[1] for k, v in SETTINGS.items()}
        self.s.update(settings)
        self.counters = defaultdict(int)
        self.inodes = {}
        self.by_key = {}
        self.handles = {}
        self.next_fh = 1
        self.next_foreign = FOREIGN_INO_BASE
        self.silly_serial = 0
        self.start_ns = time.time_ns()
        fd = os.open(backing, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(fd)
        self.root_dev = st.st_dev
        self.root = Inode(pyfuse3.ROOT_INODE, (st.st_dev, st.st_ino), fd, True, b"")
        self.root.nlookup = 1
        self._store(self.root)
        self._set_attrs(self.root, st, time.monotonic())
        self.ctl_attrs = self._ctl_attrs()

    # ---- settings and control ----

    def apply(self, settings, cmds=()):
        shorter = any(settings.get(k, self.s[k]) < self.s[k] for k in ("attr_timeo", "dir_timeo"))
        self.s.update(settings)
        if shorter or "drop_caches" in cmds:
            self._kernel_forget_dirs()
        for c in cmds:
            if c == "reset_counters":
                self.counters.clear()
            elif c == "drop_caches":
                self._drop_caches()

    def _drop_caches(self):
        for inode in self.inodes.values():
            inode.attr_time = NEVER
            if inode.is_dir:
                inode.dents.clear()
                inode.listing = None

    def _kernel_forget_dirs(self):
        """Directory attributes the kernel holds under a longer timeout than
        the new one are dropped.  (Directory names it caches keep theirs:
        that would need each directory's parent, which we do not track.)"""
        for inode in list(self.inodes.values()):
            if inode.is_dir and inode.alive:
                try:
                    pyfuse3.invalidate_inode(inode.ino, attr_only=True)
                except OSError:
                    pass    # not known to the kernel (any more)

    def ctl_state(self):
        s = dict(self.s)
        s["delay_ops"] = ":".join(s["delay_ops"])
        return json.dumps({"settings": s, "counters": dict(self.counters),
                           "inodes": len(self.inodes), "handles": len(self.handles)},
                          sort_keys=True, indent=1).encode() + b"\n"

    def _ctl_attrs(self):
        e = pyfuse3.EntryAttributes()
        e.st_ino = CTL_INO
        e.entry_timeout = 0
        e.attr_timeout = 0
        e.st_mode = stat.S_IFREG | 0o666
        e.st_nlink = 1
        e.st_uid = 0
        e.st_gid = 0
        e.st_size = 0
        e.st_blksize = 4096
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = self.start_ns
        return e

    def _fault(self, what, detail):
        self.counters[what] += 1
        if self.s["verbose"]:
            log.warning("nfsfs: %s: %s", what, detail)

    async def _delay(self, op):
        # trio.sleep, not time.sleep: the other requests go on meanwhile.
        if self.s["delay_ms"] and op in self.s["delay_ops"]:
            self.counters["delays"] += 1
            await trio.sleep(self.s["delay_ms"] / 1000.0)

    # ---- the inode table ----

    def _store(self, inode):
        self.inodes[inode.ino] = inode
        self.by_key[inode.key] = inode

    def _inode(self, ino):
        inode = self.inodes.get(ino)
        if inode is None or not inode.alive:
            # The kernel never names an inode it has forgotten; this is a
            # handle this mount cannot resolve any more.
            raise pyfuse3.FUSEError(errno.ESTALE)
        return inode

    def _set_attrs(self, inode, st, now):
        e = inode.attrs
        if e is None:
            e = inode.attrs = pyfuse3.EntryAttributes()
            e.st_ino = inode.ino
            # For files the kernel must ask every time: the caching is ours,
            # so that it can be switched, counted and made to go stale.
            e.entry_timeout = 0
            e.attr_timeout = 0
        if inode.is_dir:
            # Directories are left to the kernel for as long as our caches
            # would keep them: without that, every path walk costs a lookup
            # and a permission getattr per component.
            e.attr_timeout = self.s["attr_timeo"]
            e.entry_timeout = self.s["dir_timeo"]
        e.st_mode = st.st_mode
        e.st_nlink = st.st_nlink
        e.st_uid = st.st_uid
        e.st_gid = st.st_gid
        e.st_rdev = st.st_rdev
        e.st_size = st.st_size
        e.st_blksize = st.st_blksize
        e.st_blocks = st.st_blocks
        e.st_atime_ns = st.st_atime_ns
        e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        inode.attr_time = now
        return e

    def _gone(self, inode, st):
        """The server would answer ESTALE: no link left, and not by our doing."""
        return st.st_nlink == 0 and not inode.removed_here

    def _resolve(self, parent, name, st=None):
        """(Inode, stat) for name in parent, asking the backing directory
        (st: its stat when the caller has it); (None, None) when the name
        does not exist.  The Inode's cached attributes are not refreshed."""
        if st is None:
            try:
                st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                return None, None
        key = (st.st_dev, st.st_ino)
        inode = self.by_key.get(key)
        if inode is not None and inode.alive:
            inode.name = name
            return inode, st
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd)
        except FileNotFoundError:
            return None, None
        st2 = os.fstat(fd)
        if (st2.st_dev, st2.st_ino) != key:
            # Replaced between the stat and the open: take what we opened.
            st, key = st2, (st2.st_dev, st2.st_ino)
            inode = self.by_key.get(key)
            if inode is not None and inode.alive:
                os.close(fd)
                return inode, st
        return self._new_inode(fd, st, name), st

    def _new_inode(self, fd, st, name):
        key = (st.st_dev, st.st_ino)
        # The backing inode number is the file id every mount shows, as an
        # NFS server's fileid is; another device's numbers could collide.
        if st.st_dev == self.root_dev and st.st_ino not in (pyfuse3.ROOT_INODE, CTL_INO) \
                and st.st_ino < FOREIGN_INO_BASE:
            ino = st.st_ino
        else:
            self.next_foreign += 1
            ino = self.next_foreign
        old = self.inodes.get(ino)
        if old is not None and old.alive:
            # Cannot happen while old's O_PATH descriptor keeps its number
            # from being reused; say so loudly if it does.
            log.warning("nfsfs: inode %d reused while still known", ino)
            self._close_inode(old)
        inode = Inode(ino, key, fd, stat.S_ISDIR(st.st_mode), name)
        inode.retired = time.monotonic()
        self._store(inode)
        self._set_attrs(inode, st, time.monotonic())
        return inode

    def _from_fd(self, fd, name):
        """The Inode of the file an ordinary descriptor refers to."""
        st = os.fstat(fd)
        inode = self.by_key.get((st.st_dev, st.st_ino))
        if inode is not None and inode.alive:
            inode.name = name
            self._set_attrs(inode, st, time.monotonic())
            return inode
        opath = os.open("/proc/self/fd/%d" % fd, os.O_PATH | os.O_CLOEXEC)
        return self._new_inode(opath, st, name)

    def _entry(self, inode):
        """inode's attributes for a reply that counts as a kernel lookup."""
        inode.nlookup += 1
        inode.retired = None
        return inode.attrs

    def _maybe_retire(self, inode):
        if inode.nlookup > 0 or inode.opens > 0 or inode is self.root:
            return
        if self.s["attr_timeo"] == 0 and self.s["dir_timeo"] == 0:
            self._close_inode(inode)
        else:
            # Kept while the caches may still name it, so that a cached
            # lookup reaches the very file it cached (or finds it gone).
            inode.retired = time.monotonic()

    def _close_inode(self, inode):
        if not inode.alive or inode is self.root:
            return
        os.close(inode.fd)
        inode.fd = -1
        if self.inodes.get(inode.ino) is inode:
            del self.inodes[inode.ino]
        if self.by_key.get(inode.key) is inode:
            del self.by_key[inode.key]

    def sweep(self):
        now = time.monotonic()
        keep = max(self.s["attr_timeo"], self.s["dir_timeo"])
        dir_timeo = self.s["dir_timeo"]
        for inode in list(self.inodes.values()):
            if (inode.retired is not None and inode.nlookup == 0 and inode.opens == 0
                    and now - inode.retired >= keep):
                self._close_inode(inode)
            elif inode.is_dir and inode.dents:
                if dir_timeo == 0:
                    inode.dents.clear()
                else:
                    inode.dents = {n: e for n, e in inode.dents.items()
                                   if now - e[1] < dir_timeo and (e[0] is None or e[0].alive)}
            if inode.is_dir and inode.listing is not None and now - inode.listing_time >= dir_timeo:
                inode.listing = None

    async def sweeper(self):
        while True:
            await trio.sleep(1.0)
            self.sweep()

    # ---- what this mount's own changes do to its caches ----

    def _name_added(self, parent, name, inode, now):
        if self.s["dir_timeo"]:
            parent.dents[name] = (inode, now)
        if parent.listing is not None:
            parent.listing[name] = inode
        parent.attr_time = NEVER

    def _name_removed(self, parent, name, now):
        if self.s["dir_timeo"]:
            parent.dents[name] = (None, now)
        else:
            parent.dents.pop(name, None)
        if parent.listing is not None:
            parent.listing.pop(name, None)
        parent.attr_time = NEVER

    def _name_unknown(self, parent, name):
        """A change this mount made but cannot describe: forget what the
        caches say of that name, so that the next look asks the backing dir."""
        parent.dents.pop(name, None)
        parent.listing = None
        parent.attr_time = NEVER

    def _check_handle(self, h):
        """ESTALE for an open file another mount removed."""
        if self.s["estale"] != "off":
            st = os.fstat(h.fd)
            if self._gone(h.inode, st):
                self._fault("estale", h.inode.name)
                raise pyfuse3.FUSEError(errno.ESTALE)

    # ---- lookups and attributes ----

    @_fuse_errors
    async def lookup(self, parent_ino, name, ctx=None):
        self.counters["lookup"] += 1
        await self._delay("lookup")
        parent = self._inode(parent_ino)
        if name == CTL_NAME and parent is self.root:
            return self.ctl_attrs
        dir_timeo = self.s["dir_timeo"]
        if dir_timeo:
            ent = parent.dents.get(name)
            if ent is not None and time.monotonic() - ent[1] < dir_timeo:
                inode = ent[0]
                if inode is None:
                    self.counters["negative_cache_hits"] += 1
                    raise pyfuse3.FUSEError(errno.ENOENT)
                if inode.alive:
                    mode = self.s["estale"]
                    if mode == "off" or not self._gone(inode, os.fstat(inode.fd)):
                        self.counters["name_cache_hits"] += 1
                        if inode.is_dir:
                            # The kernel keeps it for what is left of our time.
                            inode.attrs.entry_timeout = dir_timeo - (time.monotonic() - ent[1])
                        return self._entry(inode)
                    if mode == "all":
                        self._fault("estale", name)
                        raise pyfuse3.FUSEError(errno.ESTALE)
                    # "handles": the kernel's own ESTALE retry looks again.
        now = time.monotonic()
        inode, st = self._resolve(parent, name)
        if inode is None:
            if dir_timeo:
                parent.dents[name] = (None, now)
            raise pyfuse3.FUSEError(errno.ENOENT)
        if dir_timeo:
            parent.dents[name] = (inode, now)
        # A lookup that went to the "server" brings fresh attributes along.
        self._set_attrs(inode, st, now)
        return self._entry(inode)

    async def forget(self, inode_list):
        for ino, n in inode_list:
            inode = self.inodes.get(ino)
            if inode is None or inode is self.root:
                continue
            inode.nlookup -= n
            if inode.nlookup <= 0:
                inode.nlookup = 0
                try:
                    self._maybe_retire(inode)
                except OSError:
                    log.exception("nfsfs: forget")

    @_fuse_errors
    async def getattr(self, ino, ctx=None):
        self.counters["getattr"] += 1
        if ino == CTL_INO:
            return self.ctl_attrs
        await self._delay("getattr")
        inode = self._inode(ino)
        now = time.monotonic()
        timeo = self.s["attr_timeo"]
        if timeo and now - inode.attr_time < timeo:
            if self.s["estale"] != "off" and self._gone(inode, os.fstat(inode.fd)):
                self._fault("estale", inode.name)
                raise pyfuse3.FUSEError(errno.ESTALE)
            self.counters["attr_cache_hits"] += 1
            if inode.is_dir:
                inode.attrs.attr_timeout = timeo - (now - inode.attr_time)
            return inode.attrs
        st = os.fstat(inode.fd)
        if self.s["estale"] != "off" and self._gone(inode, st):
            self._fault("estale", inode.name)
            raise pyfuse3.FUSEError(errno.ESTALE)
        return self._set_attrs(inode, st, now)

    @_fuse_errors
    async def setattr(self, ino, attr, fields, fh, ctx):
        self.counters["setattr"] += 1
        if ino == CTL_INO:
            return self.ctl_attrs    # "> ctl" truncates it: nothing to do
        await self._delay("setattr")
        inode = self._inode(ino)
        st = os.fstat(inode.fd)
        if self.s["estale"] != "off" and self._gone(inode, st):
            self._fault("estale", inode.name)
            raise pyfuse3.FUSEError(errno.ESTALE)
        if stat.S_ISLNK(st.st_mode):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        # /proc/self/fd/N follows to the file itself, whatever its name is now.
        path = "/proc/self/fd/%d" % inode.fd
        if fields.update_size:
            h = self.handles.get(fh) if fh is not None else None
            if h is not None and h.kind == "file":
                os.ftruncate(h.fd, attr.st_size)
            else:
                os.truncate(path, attr.st_size)
        if fields.update_mode:
            os.chmod(path, stat.S_IMODE(attr.st_mode))
        if fields.update_uid or fields.update_gid:
            os.chown(path, attr.st_uid if fields.update_uid else -1,
                     attr.st_gid if fields.update_gid else -1)
        if fields.update_atime or fields.update_mtime:
            os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                               attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))
        return self._set_attrs(inode, os.fstat(inode.fd), time.monotonic())

    @_fuse_errors
    async def access(self, ino, mode, ctx):
        # default_permissions makes the kernel check; it does not ask us.
        return True

    @_fuse_errors
    async def readlink(self, ino, ctx):
        self.counters["readlink"] += 1
        return os.readlink(b"", dir_fd=self._inode(ino).fd)

    @_fuse_errors
    async def statfs(self, ctx):
        self.counters["statfs"] += 1
        v = os.statvfs(self.root.fd)
        out = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_namemax"):
            setattr(out, f, getattr(v, f))
        return out

    # ---- creating and removing names ----

    def _owner(self, parent, ctx):
        gid = ctx.gid
        pa = parent.attrs
        if pa is not None and pa.st_mode & stat.S_ISGID:
            gid = pa.st_gid
        return ctx.uid, gid

    @_fuse_errors
    async def create(self, parent_ino, name, mode, flags, ctx):
        self.counters["create"] += 1
        await self._delay("create")
        parent = self._inode(parent_ino)
        if name == CTL_NAME and parent is self.root:
            raise pyfuse3.FUSEError(errno.EEXIST)
        base = (flags & ~(os.O_NOCTTY | os.O_DIRECT)) | os.O_CLOEXEC
        created = True
        try:
            fd = os.open(name, base | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode),
                         dir_fd=parent.fd)
        except FileExistsError:
            # The kernel thought the name free (our negative cache may say
            # so); without O_EXCL that means opening what is there.
            if flags & os.O_EXCL:
                raise
            fd = os.open(name, base & ~os.O_CREAT, dir_fd=parent.fd)
            created = False
        try:
            if created:
                os.fchown(fd, *self._owner(parent, ctx))
            inode = self._from_fd(fd, name)
        except BaseException:
            os.close(fd)
            raise
        self._name_added(parent, name, inode, time.monotonic())
        fh = self._new_handle(Handle(fd, inode, "file"))
        inode.opens += 1
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), self._entry(inode)

    def _new_handle(self, h):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = h
        return fh

    async def _make(self, op, parent_ino, name, ctx, make):
        """mkdir, mknod, symlink: make the name, give it to the caller."""
        self.counters[op] += 1
        await self._delay(op)
        parent = self._inode(parent_ino)
        if name == CTL_NAME and parent is self.root:
            raise pyfuse3.FUSEError(errno.EEXIST)
        make(parent)
        uid, gid = self._owner(parent, ctx)
        os.chown(name, uid, gid, dir_fd=parent.fd, follow_symlinks=False)
        inode, st = self._resolve(parent, name)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)   # another mount removed it already
        now = time.monotonic()
        self._set_attrs(inode, st, now)
        self._name_added(parent, name, inode, now)
        return self._entry(inode)

    @_fuse_errors
    async def mkdir(self, parent_ino, name, mode, ctx):
        return await self._make("mkdir", parent_ino, name, ctx, lambda p: os.mkdir(
            name, stat.S_IMODE(mode), dir_fd=p.fd))

    @_fuse_errors
    async def mknod(self, parent_ino, name, mode, rdev, ctx):
        return await self._make("mknod", parent_ino, name, ctx, lambda p: os.mknod(
            name, mode, rdev, dir_fd=p.fd))

    @_fuse_errors
    async def symlink(self, parent_ino, name, target, ctx):
        return await self._make("symlink", parent_ino, name, ctx, lambda p: os.symlink(
            target, name, dir_fd=p.fd))

    @_fuse_errors
    async def link(self, ino, new_parent_ino, new_name, ctx):
        self.counters["link"] += 1
        await self._delay("link")
        inode = self._inode(ino)
        parent = self._inode(new_parent_ino)
        if new_name == CTL_NAME and parent is self.root:
            raise pyfuse3.FUSEError(errno.EEXIST)
        os.link("/proc/self/fd/%d" % inode.fd, new_name, dst_dir_fd=parent.fd,
                follow_symlinks=True)
        now = time.monotonic()
        self._name_added(parent, new_name, inode, now)
        self._set_attrs(inode, os.fstat(inode.fd), now)
        return self._entry(inode)

    def _silly_rename(self, parent, name, inode):
        """Moves an open file aside as the Linux NFS client does, so that the
        server keeps it until the last close here."""
        while True:
            self.silly_serial += 1
            silly = b".nfs%016x%08x" % (inode.key[1], self.silly_serial & 0xffffffff)
            try:
                os.stat(silly, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                break
        os.rename(name, silly, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        inode.silly = (os.dup(parent.fd), silly, parent)
        inode.name = silly
        now = time.monotonic()
        self._name_removed(parent, name, now)
        self._name_added(parent, silly, inode, now)
        self._fault("silly_renames", name)

    def _silly_remove(self, inode):
        pfd, silly, parent = inode.silly
        inode.silly = None
        try:
            st = os.stat(silly, dir_fd=pfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == inode.key:
                os.unlink(silly, dir_fd=pfd)
                inode.removed_here = True
                self.counters["silly_removes"] += 1
                if parent.alive:
                    self._name_removed(parent, silly, time.monotonic())
        except FileNotFoundError:
            pass    # another mount removed it: nothing left to do
        finally:
            os.close(pfd)

    def _known(self, parent, name):
        """(stat, Inode or None) of name as the backing dir has it now;
        (None, None) when it does not exist."""
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None, None
        inode = self.by_key.get((st.st_dev, st.st_ino))
        if inode is not None and not inode.alive:
            inode = None
        return st, inode

    @_fuse_errors
    async def unlink(self, parent_ino, name, ctx):
        self.counters["unlink"] += 1
        await self._delay("unlink")
        parent = self._inode(parent_ino)
        if name == CTL_NAME and parent is self.root:
            raise pyfuse3.FUSEError(errno.EPERM)
        st, inode = self._known(parent, name)
        if st is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if self.s["silly_rename"] and inode is not None and inode.opens > 0:
            if inode.silly is not None and inode.silly[1] == name:
                raise pyfuse3.FUSEError(errno.EBUSY)   # as NFS answers for a busy .nfs file
            self._silly_rename(parent, name, inode)
            return
        os.unlink(name, dir_fd=parent.fd)
        if inode is not None:
            if st.st_nlink <= 1:
                inode.removed_here = True
            inode.attr_time = NEVER
        self._name_removed(parent, name, time.monotonic())

    @_fuse_errors
    async def rmdir(self, parent_ino, name, ctx):
        self.counters["rmdir"] += 1
        await self._delay("rmdir")
        parent = self._inode(parent_ino)
        st, inode = self._known(parent, name)
        os.rmdir(name, dir_fd=parent.fd)
        if inode is not None:
            inode.removed_here = True
            inode.dents.clear()
            inode.listing = None
        self._name_removed(parent, name, time.monotonic())

    @_fuse_errors
    async def rename(self, old_parent_ino, old_name, new_parent_ino, new_name, flags, ctx):
        self.counters["rename"] += 1
        await self._delay("rename")
        old_parent = self._inode(old_parent_ino)
        new_parent = self._inode(new_parent_ino)
        if CTL_NAME in (old_name, new_name) and self.root in (old_parent, new_parent):
            raise pyfuse3.FUSEError(errno.EPERM)
        src_st = os.stat(old_name, dir_fd=old_parent.fd, follow_symlinks=False)
        src = self.by_key.get((src_st.st_dev, src_st.st_ino))
        dst_st, dst = self._known(new_parent, new_name)
        if dst_st is not None and (dst_st.st_dev, dst_st.st_ino) == (src_st.st_dev, src_st.st_ino):
            dst_st = dst = None      # two links of one file: rename does nothing
        if (flags == 0 and dst is not None and dst.opens > 0 and self.s["silly_rename"]
                and not stat.S_ISDIR(dst_st.st_mode)):
            # Linux NFS moves a busy target aside before renaming over it.
            self._silly_rename(new_parent, new_name, dst)
            dst_st = dst = None
        if flags == 0:
            os.rename(old_name, new_name, src_dir_fd=old_parent.fd, dst_dir_fd=new_parent.fd)
        else:
            _renameat2(old_parent.fd, old_name, new_parent.fd, new_name, flags)
        now = time.monotonic()
        if flags & pyfuse3.RENAME_EXCHANGE:
            self._name_unknown(old_parent, old_name)
            self._name_unknown(new_parent, new_name)
        else:
            if dst is not None and (dst_st.st_nlink <= 1 or stat.S_ISDIR(dst_st.st_mode)):
                dst.removed_here = True
                dst.attr_time = NEVER
            self._name_removed(old_parent, old_name, now)
            if src is not None and src.alive:
                src.name = new_name
                src.attr_time = NEVER
                self._name_added(new_parent, new_name, src, now)
            else:
                self._name_unknown(new_parent, new_name)
        if self.s["rename_error"] and matches(self.s["rename_error_pattern"], old_name, new_name):
            self.s["rename_error"] -= 1
            self._fault("rename_errors", b"%s -> %s" % (old_name, new_name))
            raise pyfuse3.FUSEError(self.s["rename_errno"])

    # ---- files ----

    @_fuse_errors
    async def open(self, ino, flags, ctx):
        self.counters["open"] += 1
        await self._delay("open")
        if ino == CTL_INO:
            h = Handle(-1, None, "ctl")
            h.data = self.ctl_state()
            # direct_io: every read and write comes here, whatever size
            # getattr said.
            return pyfuse3.FileInfo(fh=self._new_handle(h), direct_io=True, keep_cache=False)
        inode = self._inode(ino)
        if self.s["estale"] != "off" and self._gone(inode, os.fstat(inode.fd)):
            self._fault("estale", inode.name)
            raise pyfuse3.FUSEError(errno.ESTALE)
        fd = os.open("/proc/self/fd/%d" % inode.fd, (flags & ~REOPEN_STRIP) | os.O_CLOEXEC)
        if self.s["cto"] or flags & os.O_TRUNC:
            self._set_attrs(inode, os.fstat(fd), time.monotonic())
        inode.opens += 1
        # keep_cache off: the page cache is dropped at each open, so what a
        # reader sees after open is what the backing file holds (CTO).
        return pyfuse3.FileInfo(fh=self._new_handle(Handle(fd, inode, "file")),
                                keep_cache=False)

    @_fuse_errors
    async def read(self, fh, off, size):
        self.counters["read"] += 1
        h = self.handles[fh]
        if h.kind == "ctl":
            return h.data[off:off + size]
        await self._delay("read")
        self._check_handle(h)
        return os.pread(h.fd, size, off)

    @_fuse_errors
    async def write(self, fh, off, buf):
        self.counters["write"] += 1
        h = self.handles[fh]
        if h.kind == "ctl":
            return self._ctl_write(h, buf)
        await self._delay("write")
        self._check_handle(h)
        n = os.pwrite(h.fd, buf, off)
        h.inode.attr_time = NEVER
        return n

    def _ctl_write(self, h, buf):
        h.inbuf += bytes(buf)
        *lines, h.inbuf = h.inbuf.split(b"\n")
        for line in lines:
            try:
                settings, cmds = parse_words(line.decode().split())
            except (ValueError, UnicodeDecodeError) as e:
                log.warning("nfsfs: control: %s", e)
                raise pyfuse3.FUSEError(errno.EINVAL)
            self.apply(settings, cmds)
        return len(buf)

    @_fuse_errors
    async def fsync(self, fh, datasync):
        self.counters["fsync"] += 1
        h = self.handles[fh]
        if h.kind == "ctl":
            return
        await self._delay("fsync")
        self._check_handle(h)
        if self.s["sync"]:
            # In a worker thread: a slow disk must not stop the other requests.
            await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, h.fd)
        if self.s["fsync_error"] and matches(self.s["fsync_error_pattern"], h.inode.name):
            self.s["fsync_error"] -= 1
            self._fault("fsync_errors", h.inode.name)
            raise pyfuse3.FUSEError(self.s["fsync_errno"])

    @_fuse_errors
    async def release(self, fh):
        self.counters["release"] += 1
        h = self.handles.pop(fh, None)
        if h is None or h.kind == "ctl":
            if h is not None and h.inbuf.strip():
                self._ctl_write(h, b"\n")   # a last line without its newline
            return
        os.close(h.fd)
        inode = h.inode
        inode.opens -= 1
        inode.attr_time = NEVER
        if inode.opens == 0:
            if inode.silly is not None:
                self._silly_remove(inode)
            self._maybe_retire(inode)

    # ---- directories ----

    @_fuse_errors
    async def opendir(self, ino, ctx):
        self.counters["opendir"] += 1
        await self._delay("opendir")
        inode = self._inode(ino)
        if self.s["estale"] != "off" and self._gone(inode, os.fstat(inode.fd)):
            self._fault("estale", inode.name)
            raise pyfuse3.FUSEError(errno.ESTALE)
        inode.opens += 1
        # The listing is taken at the first readdir: Selor opens its queue
        # directory only to fsync it, and that must stay cheap.
        return self._new_handle(Handle(-1, inode, "dir"))

    def _listing(self, inode):
        now = time.monotonic()
        timeo = self.s["dir_timeo"]
        if timeo and inode.listing is not None and now - inode.listing_time < timeo:
            self.counters["listing_cache_hits"] += 1
            return list(inode.listing.items())
        names = os.listdir(b"/proc/self/fd/%d" % inode.fd)
        listing = {}
        for name in names:
            if name == CTL_NAME and inode is self.root:
                continue
            try:
                st = os.stat(name, dir_fd=inode.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            child, st = self._resolve(inode, name, st)
            if child is not None:
                self._set_attrs(child, st, now)
                listing[name] = child
        if timeo:
            inode.listing, inode.listing_time = listing, now
        else:
            inode.listing = None
        return list(listing.items())

    @_fuse_errors
    async def readdir(self, fh, start_id, token):
        self.counters["readdir"] += 1
        h = self.handles[fh]
        if start_id == 0 or h.entries is None:
            await self._delay("readdir")
            h.entries = [(b".", None), (b"..", None)] + self._listing(h.inode)
        entries = h.entries
        for i in range(start_id, len(entries)):
            name, child = entries[i]
            if child is None:
                # "." and "..": ls shows them; the kernel takes no lookup
                # reference for them.  ".." shows the directory itself: this
                # mount does not track parents.
                if not pyfuse3.readdir_reply(token, name, h.inode.attrs, i + 1):
                    break
                continue
            if not child.alive:
                # Swept since the listing was taken: find it again by name.
                child, st = self._resolve(h.inode, name)
                if child is None:
                    continue
                self._set_attrs(child, st, time.monotonic())
                entries[i] = (name, child)
            if not pyfuse3.readdir_reply(token, name, child.attrs, i + 1):
                break
            self._entry(child)

    @_fuse_errors
    async def releasedir(self, fh):
        self.counters["releasedir"] += 1
        h = self.handles.pop(fh, None)
        if h is not None:
            h.inode.opens -= 1
            if h.inode.opens == 0:
                self._maybe_retire(h.inode)

    @_fuse_errors
    async def fsyncdir(self, fh, datasync):
        self.counters["fsyncdir"] += 1
        h = self.handles[fh]
        await self._delay("fsyncdir")
        if self.s["estale"] != "off" and self._gone(h.inode, os.fstat(h.inode.fd)):
            self._fault("estale", h.inode.name)
            raise pyfuse3.FUSEError(errno.ESTALE)
        if self.s["sync"]:
            fd = os.open(b"/proc/self/fd/%d" % h.inode.fd,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
        if self.s["fsyncdir_error"] and matches(self.s["fsyncdir_error_pattern"], h.inode.name):
            self.s["fsyncdir_error"] -= 1
            self._fault("fsyncdir_errors", h.inode.name)
            raise pyfuse3.FUSEError(self.s["fsync_errno"])


_libc_renameat2 = None


def _renameat2(olddirfd, old, newdirfd, new, flags):
    """renameat2(2) for RENAME_NOREPLACE and RENAME_EXCHANGE (mv uses them);
    the os module has no binding for it."""
    global _libc_renameat2
    if _libc_renameat2 is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        _libc_renameat2 = libc.renameat2
        _libc_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                    ctypes.c_char_p, ctypes.c_uint]
    if _libc_renameat2(olddirfd, old, newdirfd, new, flags) != 0:
        import ctypes
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


async def run(fs):
    async with trio.open_nursery() as nursery:
        async def on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for _ in sigs:
                    pyfuse3.terminate()
                    return
        nursery.start_soon(on_signal)
        nursery.start_soon(fs.sweeper)
        print("READY", flush=True)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("Behaviours"):])
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("-o", dest="options", action="append", default=[],
                    help="KEY=VALUE[,KEY=VALUE...] behaviours (see below)")
    ap.add_argument("--parent", type=int, metavar="PID",
                    help="unmount and exit when the thread that started nfsfs "
                         "(process PID) ends, so that a killed test leaves no mount")
    args = ap.parse_args(argv)
    if args.parent:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != args.parent:
            return 1    # it ended before prctl: nobody wants this mount
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(message)s")
    words = [w for o in args.options for w in o.split(",")]
    try:
        settings, cmds = parse_words(words)
    except ValueError as e:
        ap.error(str(e))
    if cmds:
        ap.error("commands are for the control file: %s" % ", ".join(cmds))

    # Modes arrive with the caller's umask applied already; ours must not
    # take anything more away.
    os.umask(0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    fs = NfsFs(args.backing, settings)
    opts = {"allow_other", "default_permissions", "fsname=nfsfs", "subtype=nfsfs"}
    pyfuse3.init(fs, args.mountpoint, opts)
    try:
        trio.run(run, fs)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
