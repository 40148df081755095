"""nfsfs, the NFS stand-in of the cluster tests, does what it promises.

Owns: proving tests/nfsfs/nfsfs.py is a correct pass-through and that each
NFS behaviour happens when switched on (and not when off), seen through two
mounts ("nodes") of one backing directory.  It must not start Selor or
depend on a built tree; every mount a test makes is stopped by the fixture,
whatever the test did.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/system/test_nfsfs.py
"""
import errno
import functools
import os
import pwd
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from nfsmount import PYTHON, NfsMount, is_mounted
from selortest import wait_for

# Cache time of the caching tests: long enough that a few local operations
# surely fit in it, short enough for the suite's time budget.
CACHE = 1.5


class Mounts:
    """The mounts of one test, all of one backing directory."""

    def __init__(self, base):
        self.base = base
        self.backing = os.path.join(base, "backing")
        self.items = []

    def __call__(self, name, **behaviours):
        m = NfsMount(self.backing, os.path.join(self.base, name), **behaviours)
        self.items.append(m)
        return m

    def stop(self):
        errors = []
        for m in self.items:
            try:
                m.stop()
            except Exception as e:  # the others must be stopped all the same
                errors.append(e)
        if errors:
            raise errors[0]


@functools.lru_cache(maxsize=None)
def missing():
    """What this machine lacks to run nfsfs: a failure, not a skip, so that a
    machine without them cannot pass as one where the tests ran."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse"
    if shutil.which("fusermount3") is None:
        return "fusermount3 (Debian package fuse3)"
    if subprocess.run([PYTHON, "-c", "import pyfuse3"], capture_output=True).returncode:
        return "pyfuse3 for %s (Debian package python3-pyfuse3)" % PYTHON
    return None


@pytest.fixture
def mount(workdir):
    lack = missing()
    if lack:
        pytest.fail("nfsfs needs %s" % lack)
    f = Mounts(workdir)
    yield f
    f.stop()


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def oserror(fn, *args, **kw):
    """The errno fn(*args, **kw) fails with (None if it does not fail)."""
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return None


def visible(m):
    return sorted(n for n in os.listdir(m.mountpoint))


# ---- a plain pass-through ----

def test_plain_file_operations(mount):
    a = mount("a")
    b = mount("b")
    back = mount.backing

    # O_EXCL: the first create wins, the second sees EEXIST
    p = a.path("excl")
    write(p, b"one", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    assert oserror(os.open, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640) == errno.EEXIST
    assert oserror(os.open, b.path("excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL) == errno.EEXIST
    assert read(os.path.join(back, "excl")) == b"one"
    assert os.stat(os.path.join(back, "excl")).st_mode & 0o777 == 0o640

    # O_APPEND from two opens, the second through the other mount
    write(a.path("app"), b"abc", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    write(b.path("app"), b"def", os.O_WRONLY | os.O_APPEND)
    write(a.path("app"), b"ghi", os.O_WRONLY | os.O_APPEND)
    assert read(a.path("app")) == b"abcdefghi"

    # truncation: O_TRUNC, truncate by path, ftruncate
    write(a.path("app"), b"xy", os.O_WRONLY | os.O_TRUNC)
    assert read(os.path.join(back, "app")) == b"xy"
    os.truncate(a.path("app"), 1)
    assert os.stat(a.path("app")).st_size == 1
    fd = os.open(a.path("app"), os.O_RDWR)
    os.ftruncate(fd, 5)
    os.close(fd)
    assert read(os.path.join(back, "app")) == b"x\0\0\0\0"

    # chmod, utime, stat
    os.chmod(a.path("app"), 0o600)
    os.utime(a.path("app"), (1000000000, 1000000001))
    st = os.stat(os.path.join(back, "app"))
    assert (st.st_mode & 0o777, st.st_mtime) == (0o600, 1000000001)
    assert os.stat(a.path("app")).st_mtime == 1000000001

    # rename over an existing file: the destination is the source's inode
    write(a.path("old"), b"old")
    write(a.path("new"), b"new")
    ino = os.stat(a.path("new")).st_ino
    os.rename(a.path("new"), a.path("old"))
    assert read(a.path("old")) == b"new" and not os.path.exists(a.path("new"))
    assert os.stat(a.path("old")).st_ino == ino == os.stat(b.path("old")).st_ino
    assert sorted(os.listdir(back)) == ["app", "excl", "old"]

    # directories
    os.mkdir(a.path("d"), 0o750)
    assert os.stat(os.path.join(back, "d")).st_mode & 0o777 == 0o750
    write(a.path("d", "f"), b"in d")
    assert oserror(os.rmdir, a.path("d")) == errno.ENOTEMPTY
    os.rename(a.path("d"), a.path("e"))
    assert read(b.path("e", "f")) == b"in d"
    os.unlink(a.path("e", "f"))
    os.rmdir(a.path("e"))
    assert not os.path.exists(os.path.join(back, "e"))

    # links
    os.symlink("old", a.path("sym"))
    assert os.readlink(b.path("sym")) == "old" and read(a.path("sym")) == b"new"
    os.link(a.path("old"), a.path("hard"))
    assert os.stat(a.path("hard")).st_nlink == 2

    # data larger than one FUSE request, written through one mount, read through the other
    blob = random.Random(1).randbytes(3 * 1024 * 1024 + 17)
    write(a.path("blob"), blob)
    assert read(b.path("blob")) == blob
    assert os.statvfs(a.mountpoint).f_bsize > 0

    # the control file is there to open, not to list
    assert os.path.exists(a.path(".nfsfs-ctl"))
    assert ".nfsfs-ctl" not in os.listdir(a.mountpoint)


def test_big_directory_and_shell_tools(mount):
    a = mount("a")
    b = mount("b")
    big = os.path.join(mount.backing, "big")
    os.mkdir(big)
    names = ["m%05d_%s" % (i, "x" * (i % 40)) for i in range(3000)]
    for n in names:
        open(os.path.join(big, n), "w").close()
    assert sorted(os.listdir(a.path("big"))) == names
    # readdir in many chunks while names come and go through the other mount
    for n in names[:100]:
        os.unlink(b.path("big", n))
    assert sorted(os.listdir(a.path("big"))) == names[100:]
    assert sorted(os.listdir(b.path("big"))) == names[100:]

    run = lambda *c: subprocess.run(c, capture_output=True, text=True, check=True).stdout
    write(a.path("t.txt"), b"hello\n")
    assert run("cat", b.path("t.txt")) == "hello\n"
    assert "t.txt" in run("ls", "-la", a.mountpoint)
    run("mv", a.path("t.txt"), a.path("big", "t2.txt"))
    assert read(b.path("big", "t2.txt")) == b"hello\n"
    run("cp", a.path("big", "t2.txt"), a.path("t3.txt"))
    run("rm", "-r", a.path("big"))
    assert sorted(os.listdir(mount.backing)) == ["t3.txt"]


def test_files_belong_to_the_caller(mount):
    try:
        selor = pwd.getpwnam("selor")
    except KeyError:
        pytest.skip("no user selor")
    a = mount("a")
    os.mkdir(a.path("rootonly"), 0o755)
    script = (
        "import os, sys\n"
        "m = sys.argv[1]\n"
        "fd = os.open(m + '/mine', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
        "os.write(fd, b'x'); os.fsync(fd); os.close(fd)\n"
        "os.mkdir(m + '/mydir')\n"
        "os.rename(m + '/mine', m + '/mydir/moved')\n"
        "try:\n"
        "    open(m + '/rootonly/no', 'w')\n"
        "    print('created')\n"
        "except PermissionError:\n"
        "    print('denied')\n")
    r = subprocess.run(["setpriv", "--reuid", "selor", "--regid", "selor", "--clear-groups",
                        "/usr/bin/python3", "-c", script, a.mountpoint],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "denied"      # default_permissions: the kernel checks
    for rel in ("mydir", "mydir/moved"):
        st = os.stat(os.path.join(mount.backing, rel))
        assert (st.st_uid, st.st_gid) == (selor.pw_uid, selor.pw_gid), rel
        st = os.stat(a.path(rel))
        assert (st.st_uid, st.st_gid) == (selor.pw_uid, selor.pw_gid), rel
    assert os.stat(os.path.join(mount.backing, "mydir/moved")).st_mode & 0o777 == 0o600
    assert not os.path.exists(os.path.join(mount.backing, "rootonly", "no"))


# ---- the NFS behaviours ----

def test_attribute_and_listing_cache(mount):
    a = mount("a")
    b = mount("b", actimeo=CACHE)
    write(a.path("old"), b"12345")
    write(a.path("doomed"), b"x")

    t0 = time.monotonic()
    assert visible(b) == ["doomed", "old"]          # B caches the listing,
    assert not os.path.exists(b.path("new"))        # that "new" is not there,
    assert os.stat(b.path("old")).st_size == 5      # and old's attributes
    assert os.path.exists(b.path("doomed"))

    write(a.path("new"), b"n")
    write(a.path("old"), b"1234567890")
    os.unlink(a.path("doomed"))
    write(b.path("mine"), b"m")                     # B's own change

    # A sees everything at once; B sees its own change, not A's
    assert visible(a) == ["mine", "new", "old"]
    assert visible(b) == ["doomed", "mine", "old"]
    assert not os.path.exists(b.path("new"))
    assert os.path.exists(b.path("doomed"))
    assert os.stat(b.path("old")).st_size == 5
    assert time.monotonic() - t0 < CACHE, "too slow to test the cache"
    c = b.counters()
    assert c["negative_cache_hits"] >= 1 and c["listing_cache_hits"] >= 1
    assert c["attr_cache_hits"] >= 1 and c["name_cache_hits"] >= 1

    time.sleep(CACHE + 0.2)
    assert visible(b) == ["mine", "new", "old"]
    assert os.path.exists(b.path("new")) and not os.path.exists(b.path("doomed"))
    assert os.stat(b.path("old")).st_size == 10

    # close-to-open: opening revalidates the attributes, whatever their age
    write(a.path("old"), b"1")
    assert os.stat(b.path("old")).st_size == 10
    assert read(b.path("old")) == b"1"

    # switched off at run time: A's next change is seen at once
    b.set(actimeo=0)
    write(a.path("late"), b"l")
    assert "late" in visible(b) and os.path.exists(b.path("late"))


def test_rename_reports_an_error_once_after_doing_it(mount):
    a = mount("a", rename_error=1)
    b = mount("b")
    write(a.path("x"), b"data")
    ino = os.stat(a.path("x")).st_ino
    assert oserror(os.rename, a.path("x"), a.path("y")) == errno.ENOENT
    # what Selor checks after a failed rename: done after all
    assert os.stat(a.path("y")).st_ino == ino
    assert not os.access(a.path("x"), os.F_OK)
    assert read(b.path("y")) == b"data" and not os.path.exists(b.path("x"))
    assert sorted(os.listdir(mount.backing)) == ["y"]
    os.rename(a.path("y"), a.path("z"))                 # once only
    c = a.counters()
    assert (c["rename"], c["rename_errors"]) == (2, 1)

    # only for names matching a pattern, with another errno
    a.set(rename_error=1, rename_error_pattern="l*", rename_errno="EIO")
    write(a.path("c1.tmp"), b"c")
    write(a.path("l1.tmp"), b"l")
    os.rename(a.path("c1.tmp"), a.path("c1"))
    assert oserror(os.rename, a.path("l1.tmp"), a.path("l1")) == errno.EIO
    assert read(a.path("l1")) == b"l" and not os.path.exists(a.path("l1.tmp"))
    os.rename(a.path("l1"), a.path("l2"))
    assert a.counters()["rename_errors"] == 2


def test_silly_rename(mount):
    a = mount("a", silly_rename=1)
    b = mount("b")
    write(a.path("f"), b"content")
    fd = os.open(a.path("f"), os.O_RDONLY)
    try:
        os.unlink(a.path("f"))
        assert not os.path.exists(a.path("f"))
        silly = os.listdir(a.mountpoint)
        assert len(silly) == 1 and silly[0].startswith(".nfs"), silly
        assert os.listdir(mount.backing) == silly == os.listdir(b.mountpoint)
        assert os.pread(fd, 100, 0) == b"content"
        assert oserror(os.unlink, a.path(silly[0])) == errno.EBUSY
    finally:
        os.close(fd)
    # the kernel sends the release after close() returned, as NFS removes
    # the .nfs file after it
    wait_for(lambda: os.listdir(mount.backing) == [], timeout=5, what=".nfs file removed")
    assert os.listdir(a.mountpoint) == []

    # renaming over a file this mount has open moves it aside too
    write(a.path("t"), b"old")
    fd = os.open(a.path("t"), os.O_RDONLY)
    try:
        write(a.path("n"), b"new")
        os.rename(a.path("n"), a.path("t"))
        assert read(a.path("t")) == b"new"
        assert [n for n in os.listdir(mount.backing) if n.startswith(".nfs")]
        assert os.pread(fd, 100, 0) == b"old"
    finally:
        os.close(fd)
    wait_for(lambda: os.listdir(mount.backing) == ["t"], timeout=5, what=".nfs file removed")
    c = a.counters()
    assert (c["silly_renames"], c["silly_removes"]) == (2, 2)

    # off: unlinking an open file removes it, as on a local disk
    a.set(silly_rename=0)
    fd = os.open(a.path("t"), os.O_RDONLY)
    try:
        os.unlink(a.path("t"))
        assert os.listdir(mount.backing) == []
        assert os.pread(fd, 100, 0) == b"new"
    finally:
        os.close(fd)


def test_estale_for_files_another_mount_removed(mount):
    a = mount("a")
    b = mount("b", estale=1, actimeo=CACHE)
    write(a.path("f"), b"content")
    write(a.path("g"), b"g")
    write(a.path("h"), b"old h")

    rfd = os.open(b.path("f"), os.O_RDONLY)
    wfd = os.open(b.path("f"), os.O_WRONLY)
    hfd = os.open(b.path("h"), os.O_RDONLY)
    try:
        assert os.path.exists(b.path("g"))              # cached in B
        os.unlink(a.path("f"))
        os.unlink(a.path("g"))
        write(a.path("h.tmp"), b"new h")
        os.rename(a.path("h.tmp"), a.path("h"))         # replaces B's open file

        assert oserror(os.read, rfd, 100) == errno.ESTALE
        assert oserror(os.fstat, rfd) == errno.ESTALE
        assert oserror(os.write, wfd, b"x") == errno.ESTALE
        assert oserror(os.fsync, wfd) == errno.ESTALE
        assert oserror(os.read, hfd, 100) == errno.ESTALE
        assert oserror(os.stat, b.path("g")) == errno.ESTALE   # the cache believes in g
        assert b.counters()["estale"] >= 6
    finally:
        for fd in (rfd, wfd, hfd):
            os.close(fd)
    time.sleep(CACHE + 0.2)
    assert oserror(os.stat, b.path("g")) == errno.ENOENT
    assert read(b.path("h")) == b"new h"

    # "handles": a cached name of a gone file is looked up again, as the
    # kernel's own ESTALE retry does; open handles still go stale
    b.set(estale="handles")
    assert read(b.path("h")) == b"new h"                # caches h
    fd = os.open(b.path("h"), os.O_RDONLY)
    try:
        write(a.path("h.tmp"), b"newer h")
        os.rename(a.path("h.tmp"), a.path("h"))
        assert read(b.path("h")) == b"newer h"
        assert oserror(os.read, fd, 100) == errno.ESTALE
    finally:
        os.close(fd)

    # off: a removed file stays readable through the open handle
    b.set(estale=0)
    fd = os.open(b.path("h"), os.O_RDONLY)
    try:
        os.unlink(a.path("h"))
        assert os.pread(fd, 100, 0) == b"newer h"
    finally:
        os.close(fd)

    # this mount's own removal is not stale
    b.set(estale=1)
    write(b.path("own"), b"own")
    fd = os.open(b.path("own"), os.O_RDONLY)
    try:
        os.unlink(b.path("own"))
        assert os.pread(fd, 100, 0) == b"own"
    finally:
        os.close(fd)


def test_fsync_fails_once(mount):
    a = mount("a", fsync_error=1)
    fd = os.open(a.path("f"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"data")
        assert oserror(os.fsync, fd) == errno.EIO
        assert read(os.path.join(mount.backing, "f")) == b"data"
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    c = a.counters()
    assert (c["fsync"], c["fsync_errors"]) == (3, 1)

    # only for names matching a pattern
    a.set(fsync_error=1, fsync_error_pattern="l*")
    for name, expect in (("c1", None), ("l1", errno.EIO), ("l2", None)):
        fd = os.open(a.path(name), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, name.encode())
            assert oserror(os.fsync, fd) == expect, name
        finally:
            os.close(fd)

    # a directory's fsync, of the directory named by the pattern
    os.mkdir(a.path("spool"))
    a.set(fsyncdir_error=1, fsyncdir_error_pattern="spool")
    for d in (a.mountpoint, a.path("spool"), a.path("spool")):
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fails = oserror(os.fsync, dfd)
        finally:
            os.close(dfd)
        assert fails == (errno.EIO if a.counters()["fsyncdir"] == 2 else None), d
    assert a.counters()["fsyncdir_errors"] == 1


def test_slow_io_does_not_block_the_mount(mount):
    delay = 0.8
    a = mount("a", delay_ms=int(delay * 1000), delay_ops="fsync")
    write(a.path("other"), b"o")
    fd = os.open(a.path("slow"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x")
    took = []

    def fsync():
        t = time.monotonic()
        os.fsync(fd)
        took.append(time.monotonic() - t)

    th = threading.Thread(target=fsync)
    try:
        th.start()
        deadline = time.monotonic() + 5
        while a.counters()["fsync"] == 0:              # the fsync is under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t = time.monotonic()
        os.stat(a.path("other"))
        assert read(a.path("other")) == b"o"
        write(a.path("third"), b"3")
        os.listdir(a.mountpoint)
        meanwhile = time.monotonic() - t
        assert th.is_alive(), "the fsync was not delayed"
        assert meanwhile < delay / 2, meanwhile
    finally:
        th.join(10)
        os.close(fd)
    assert took and took[0] >= delay, took

    # other operations, switched at run time
    a.set(delay_ms=300, delay_ops="rename:write")
    t = time.monotonic()
    os.rename(a.path("third"), a.path("fourth"))
    assert time.monotonic() - t >= 0.3
    t = time.monotonic()
    write(a.path("fourth"), b"4")
    assert time.monotonic() - t >= 0.3
    a.set(delay_ms=0)
    t = time.monotonic()
    write(a.path("fourth"), b"4")
    os.rename(a.path("fourth"), a.path("fifth"))
    assert time.monotonic() - t < 0.3
    assert a.counters()["delays"] == 3       # the fsync, the rename, the write


# ---- the helper and the control file ----

def test_control_file(mount):
    a = mount("a", actimeo=2, estale="handles", delay_ops=["write", "fsync"])
    s = a.settings()
    assert (s["attr_timeo"], s["dir_timeo"], s["estale"], s["delay_ops"]) == (
        2.0, 2.0, "handles", "write:fsync")
    assert oserror(a.set, bogus=1) == errno.EINVAL
    assert oserror(a.set, attr_timeo=1, silly_rename="maybe") == errno.EINVAL
    assert a.settings()["attr_timeo"] == 2.0            # a bad line changes nothing
    a.set(attr_timeo=0.5, rename_errno="EXDEV")
    s = a.settings()
    assert (s["attr_timeo"], s["dir_timeo"], s["rename_errno"]) == (0.5, 2.0, errno.EXDEV)
    os.listdir(a.mountpoint)
    assert a.counters()["opendir"] >= 1
    a.reset_counters()
    assert a.counters()["opendir"] == 0
    # root writes it; selor (the nodes' user) may too: it is 0666
    assert os.stat(a.ctl_path).st_mode & 0o777 == 0o666


def test_stop_never_leaves_a_mount(mount):
    a = mount("a")
    fd = os.open(a.path("busy"), os.O_WRONLY | os.O_CREAT, 0o600)   # the mount is busy
    a.stop()
    assert oserror(os.close, fd) in (None, errno.ENOTCONN)   # its nfsfs is gone
    assert not is_mounted(a.mountpoint)
    a.stop()                                            # idempotent
    b = mount("b")
    os.killpg(b.proc.pid, signal.SIGKILL)               # dies without unmounting
    b.proc.wait(10)
    assert is_mounted(b.mountpoint)
    b.stop()
    assert not is_mounted(b.mountpoint)
    # and a mountpoint can be used again
    c = NfsMount(mount.backing, b.mountpoint)
    mount.items.append(c)
    assert os.listdir(c.mountpoint) == ["busy"]

    # a test process killed outright takes its mounts along
    mp = os.path.join(mount.base, "orphan")
    script = ("import sys, time\n"
              "sys.path.insert(0, %r)\n"
              "from nfsmount import NfsMount\n"
              "m = NfsMount(%r, %r)\n"
              "print('up', flush=True)\n"
              "time.sleep(60)\n" % (os.path.dirname(os.path.abspath(__file__)),
                                     mount.backing, mp))
    p = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"up\n"
        assert is_mounted(mp)
        p.kill()
        p.wait(10)
        wait_for(lambda: not is_mounted(mp), timeout=10, what="the orphan mount to go")
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        if is_mounted(mp):
            subprocess.run(["fusermount3", "-u", "-z", mp])


def test_throughput(mount):
    """The cluster tests push thousands of operations through: a spool-like
    cycle (create, write, fsync, rename, unlink) must not crawl."""
    a = mount("a", actimeo=1, silly_rename=1, estale="handles")
    os.makedirs(a.path("tmp"))
    data = b"x" * 2000
    n, t = 0, time.monotonic()
    while time.monotonic() - t < 1.5:
        tmp, dst = a.path("tmp", "c%d" % n), a.path("c%d" % n)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, dst)
        os.unlink(dst)
        n += 1
    rate = n / (time.monotonic() - t)
    print("nfsfs: %.0f create+write+fsync+rename+unlink cycles/s" % rate)
    assert rate > 30
    assert os.listdir(mount.backing) == ["tmp"] and os.listdir(a.path("tmp")) == []
