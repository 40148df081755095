"""nfsmount - starts and stops tests/nfsfs/nfsfs.py for the system tests.

Owns: one nfsfs process per NfsMount, its mount, and talking to its control
file.  It must not leave a mount behind: stop() is idempotent, falls back
to fusermount3 -u, a lazy unmount and SIGKILL, and every mount still up when
the interpreter exits is stopped then.  It does not decide what a test
mounts where: tests pass the backing directory and the mountpoint.

    m = NfsMount(backing, mountpoint, actimeo=1, silly_rename=1)
    m.set(rename_error=1)
    m.counters()["rename_errors"]
    m.stop()

Behaviour names and values are nfsfs.py's (see its docstring); True/False
become 1/0 and lists of operations are joined with ":".
"""
import atexit
import json
import os
import select
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NFSFS = os.path.join(os.path.dirname(HERE), "nfsfs", "nfsfs.py")
# Debian's interpreter: the one with python3-pyfuse3.
PYTHON = "/usr/bin/python3"
CTL = ".nfsfs-ctl"

_live = set()


def _value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return ":".join(v)
    return str(v)


def _words(behaviours):
    out = []
    for k, v in behaviours.items():
        v = _value(v)
        if not v or any(c in v for c in " ,\n"):
            raise ValueError("nfsfs value for %s must be one word without commas: %r" % (k, v))
        out.append("%s=%s" % (k, v))
    return out


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == path:
                return True
    return False


class NfsMount:
    """One nfsfs "NFS client" of backing, mounted at mountpoint."""

    def __init__(self, backing, mountpoint, log=None, timeout=15, die_with_parent=True,
                 **behaviours):
        """Mounts and waits for READY.  log: nfsfs's stderr (default
        MOUNTPOINT.nfsfs.log beside the mountpoint).  die_with_parent: nfsfs
        unmounts when the thread that made this NfsMount ends (so a killed
        pytest leaves no mount): make mounts from the main thread, or pass
        False for a mount made in a short-lived thread."""
        self.backing = os.path.realpath(backing)
        self.mountpoint = os.path.realpath(mountpoint)
        self.proc = None
        os.makedirs(self.backing, exist_ok=True)
        # Nodes run as the user selor: the shared directory is theirs too,
        # as the cluster tests make their shared spool.
        os.chmod(self.backing, 0o777)
        os.makedirs(self.mountpoint, exist_ok=True)
        os.chmod(self.mountpoint, 0o755)
        if is_mounted(self.mountpoint):
            raise AssertionError("%s is mounted already" % self.mountpoint)
        self.log_path = log or "%s.nfsfs.log" % self.mountpoint
        args = [PYTHON, NFSFS, self.backing, self.mountpoint]
        if die_with_parent:
            args += ["--parent", str(os.getpid())]
        words = _words(behaviours)
        if words:
            args += ["-o", ",".join(words)]
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        _live.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("nfsfs did not get ready in %ss:\n%s" % (timeout, self.log()))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    raise AssertionError("nfsfs exited before READY (%s):\n%s" % (
                        self.proc.wait(), self.log()))
                line += c
        if line.strip() != b"READY":
            raise AssertionError("nfsfs said %r, not READY:\n%s" % (line, self.log()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def ctl_path(self):
        return os.path.join(self.mountpoint, CTL)

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ---- the control file ----

    def command(self, *words):
        fd = os.open(self.ctl_path, os.O_WRONLY)
        try:
            os.write(fd, (" ".join(words) + "\n").encode())
        finally:
            os.close(fd)

    def set(self, **behaviours):
        """Changes behaviours at once (EINVAL, and nothing changed, on a bad one)."""
        self.command(*_words(behaviours))

    def state(self):
        with open(self.ctl_path) as f:
            return json.load(f)

    def counters(self):
        """Operations and injected faults so far; a name never counted is 0."""
        c = self.state()["counters"]
        return _Counters(c)

    def settings(self):
        return self.state()["settings"]

    def reset_counters(self):
        self.command("reset_counters")

    def drop_caches(self):
        self.command("drop_caches")

    # ---- stopping ----

    def stop(self, timeout=10):
        """Unmounts and waits for the process; safe to call again, and after
        the process died or was killed."""
        _live.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        # A killed nfsfs leaves its mount ("Transport endpoint is not
        # connected"): take it down, lazily if something still uses it.
        for cmd in (["fusermount3", "-u", "-q", self.mountpoint],
                    ["fusermount3", "-u", "-z", "-q", self.mountpoint],
                    ["umount", "-l", self.mountpoint]):
            if not is_mounted(self.mountpoint):
                break
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=30)
        if is_mounted(self.mountpoint):
            raise AssertionError("could not unmount %s" % self.mountpoint)
        return self.proc.returncode if self.proc else None


class _Counters(dict):
    def __missing__(self, key):
        return 0


@atexit.register
def _stop_all():
    for m in list(_live):
        try:
            m.stop()
        except Exception:
            pass
