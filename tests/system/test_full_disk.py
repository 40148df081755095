"""A full spool: the node answers Msg_nodisk_space, keeps nothing of the
refused message, and accepts again by itself once there is room.

The node's spool (Queue_path, Temp_path) is a small tmpfs mounted in a
mount namespace of the node's own (unshare -m), so nothing of it is seen
outside and it goes with the node.  The test reaches it through
/proc/PID/root (the node's view of the filesystem), where it writes and
removes a filler file.  This file shows:

- a message sent while the spool is full gets 452 (Msg_nodisk_space's
  default, "452 No disk space"), leaves no c or l file in Queue_path and no
  temporary file in Temp_path, and the session goes on;
- once the filler is removed, the next message gets 250 and is queued
  whole (its l file parses, its c file has the size the l file records and
  the content sent), without a restart of the node or of its processes;
- a large message (2 MB: content past 256 KB is written to the temporary
  file while it arrives) that runs out of space in the middle of DATA, at
  the first background write or a later one, gets 452 after its end and
  leaves nothing behind either; with room again it is accepted whole.

Content that runs into the full spool is sent in pieces, each written
before the next comes: a client faster than the node's writes, when the
spool fills up while more than 1 MB waits in the node's memory, hits a
Selor bug (test_nfs_cluster.py shows it deterministically, on an NFS
server that is slow and full).
"""
import errno
import os
import pwd
import time

import pytest

import selortest
from selortest import parse_lfile

SIZE_KB = 3072


class TmpfsNode(selortest.Node):
    """A node whose spool directory is a tmpfs of its own mount namespace."""

    def __init__(self, base, name, size_kb=SIZE_KB, **kw):
        super().__init__(base, name, **kw)
        os.makedirs(self.spool, exist_ok=True)
        opts = "size=%dk,mode=0755" % size_kb
        if selortest.RUN_USER:
            pw = pwd.getpwnam(selortest.RUN_USER)
            opts += ",uid=%d,gid=%d" % (pw.pw_uid, pw.pw_gid)
        # unshare -m: a new mount namespace whose mounts do not propagate
        # back (util-linux makes it private); the node is exec'ed in it.
        self.prefix = ["unshare", "-m", "sh", "-c",
                       'mount -t tmpfs -o "$1" selor-test-spool "$2" && shift 2 && exec "$@"',
                       "sh", opts, self.spool]

    def accepting(self):
        # Only the mount namespace is the node's own: ask from here.
        prefix, self.prefix = self.prefix, []
        try:
            return super().accepting()
        finally:
            self.prefix = prefix

    # ---- the spool as the node sees it ----

    def ns(self, *parts):
        """A path of the node's spool, through the node's mount namespace."""
        return os.path.join("/proc/%d/root" % self.proc.pid, self.spool.lstrip("/"), *parts)

    def mounted(self):
        with open("/proc/%d/mounts" % self.proc.pid) as f:
            return any(line.split()[1] == self.spool and line.split()[2] == "tmpfs"
                       for line in f)

    def queue_files(self, kind="l"):
        return sorted(n[1:] for n in os.listdir(self.ns()) if n.startswith(kind) and
                      len(n) > 1 and n[1].isdigit())

    def temp_files(self):
        return sorted(os.listdir(self.ns("tmp")))

    def free(self):
        st = os.statvfs(self.ns())
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0):
        """Fills the spool up to `leave` bytes free (0: every block)."""
        path = self.ns("filler")
        chunk = b"\0" * 65536
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            want = self.free() - leave
            while want > 0:
                want -= os.write(fd, chunk[:min(len(chunk), want)])
            while leave == 0:
                os.write(fd, chunk[:4096])
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        finally:
            os.close(fd)
        return path

    def unfill(self):
        os.unlink(self.ns("filler"))


@pytest.fixture
def tmpfs_node(nodes):
    def make(size_kb=SIZE_KB, **options):
        n = TmpfsNode(nodes.base, "full", size_kb=size_kb, options=options)
        nodes.nodes.append(n)           # stopped and checked by the fixture
        n.start()
        assert n.mounted(), "the spool is not the node's tmpfs"
        # the mount is the node's alone
        with open("/proc/self/mounts") as f:
            assert not any(line.split()[1] == n.spool for line in f)
        return n
    return make


def content(i, size=0):
    """A message of about `size` bytes with lines of 76 characters."""
    head = "Subject: m%d\r\n\r\n" % i
    line = ("%d-" % i + "x" * 76)[:76] + "\r\n"
    body = line * (size // len(line)) + "end of m%d\r\n" % i
    return head + body


def send_raw(node, i, size=0):
    """EHLO, MAIL, RCPT, DATA, the content, QUIT: the replies to DATA's
    content, as (code, text)."""
    with node.smtp(timeout=60) as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt("alice@example.com")[0] == 250
        code, msg = c.data(content(i, size))
    return code, msg.decode()


def assert_nothing_kept(node):
    assert node.queue_files("l") == [] and node.queue_files("c") == [], os.listdir(node.ns())
    assert node.temp_files() == [], node.temp_files()


def assert_queued_whole(node, qid, i, size=0):
    assert node.queue_files("l") == [qid] and node.queue_files("c") == [qid]
    with open(node.ns("l" + qid)) as f:
        recs, rcpts = parse_lfile(f.read())
    with open(node.ns("c" + qid), "rb") as f:
        data = f.read()
    assert int(recs["size"][0]) == len(data)
    assert recs["end"] == ["1"] and rcpts[0][3] == "alice@example.com"
    # the content as sent, with LF line ends, after Selor's Received: header
    assert data.startswith(b"Received: ")
    assert data.endswith(content(i, size).replace("\r\n", "\n").encode())
    assert node.temp_files() == []


def test_full_spool_refuses_then_accepts_by_itself(tmpfs_node):
    n = tmpfs_node()
    pids = sorted([n.proc.pid] + n.children())
    n.fill()
    assert n.free() == 0
    with n.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt("alice@example.com")[0] == 250
        code, msg = c.data(content(0, 20000))
        assert code == 452 and msg.endswith(b"No disk space"), (code, msg)
        assert_nothing_kept(n)
        # the session goes on, and so does the full disk
        c.mail("someone@sender.test")
        assert c.rcpt("alice@example.com")[0] == 250
        assert c.data(content(1))[0] == 452
        assert c.noop()[0] == 250
    assert_nothing_kept(n)
    warn = n.log("warning")
    assert warn.count("cannot queue") == 2 and "No space left on device" in warn, warn
    # room again: the next message is accepted, by the same processes
    n.unfill()
    code, msg = send_raw(n, 2, 20000)
    assert code == 250, msg
    qid = msg.split()[1]
    assert_queued_whole(n, qid, 2, 20000)
    assert sorted([n.proc.pid] + n.children()) == pids, "a process was restarted"
    # only the accepted message is in the summary log
    summary = n.log("summary")
    assert summary.count("accepted from=") == 1 and qid in summary, summary


def send_at_once(node, i, size):
    """The whole content in one write, faster than the node writes it (it
    stops reading past 1 MB of unwritten content): the reply."""
    s = node.open_data()
    try:
        s.sendall(content(i, size).encode() + b".\r\n")
        return s.reply(timeout=node.options["Timeout"] + 10).decode()
    finally:
        s.close()


def send_in_pieces(node, i, size, piece=128 * 1024, pause=0.05):
    """The content in pieces, each written by the node before the next
    comes (less than 1 MB ever waits in its memory): the reply."""
    s = node.open_data()
    data = content(i, size).encode() + b".\r\n"
    try:
        for off in range(0, len(data), piece):
            s.sendall(data[off:off + piece])
            time.sleep(pause)
        return s.reply(timeout=node.options["Timeout"] + 10).decode()
    finally:
        s.close()


@pytest.mark.parametrize("leave_kb", [64, 700], ids=["first-write", "later-write"])
def test_space_runs_out_in_the_middle_of_data(tmpfs_node, leave_kb):
    """A 2 MB message: content past 256 KB is written to Temp_path while it
    arrives, and one of those writes (the first, or a later one) finds the
    spool full.  452 after the content, nothing kept; with room again the
    same message is accepted whole, also from a client that sends it in one
    go."""
    n = tmpfs_node(Timeout=10)
    n.fill(leave=leave_kb * 1024)
    size = 2 * 1024 * 1024
    reply = send_in_pieces(n, 0, size)
    assert reply.startswith("452 ") and "No disk space" in reply, reply
    assert_nothing_kept(n)
    assert n.free() >= (leave_kb - 16) * 1024, "the refused message's content stayed"
    warn = n.log("warning")
    assert "cannot queue" in warn and "No space left on device" in warn, warn
    n.unfill()
    reply = send_in_pieces(n, 1, size)
    assert reply.startswith("250 "), reply
    assert_queued_whole(n, reply.split()[2], 1, size)
    os.unlink(n.ns("l" + reply.split()[2]))
    os.unlink(n.ns("c" + reply.split()[2]))
    reply = send_at_once(n, 2, size)
    assert reply.startswith("250 "), reply
    assert_queued_whole(n, reply.split()[2], 2, size)
