"""The cluster scenarios on a spool that behaves like NFS.

Each node reaches the one shared spool directory through an nfsfs mount of
its own (tests/nfsfs/nfsfs.py, a FUSE pass-through that behaves like an
NFS client): attributes, names and listings cached for a few seconds, so a
node sees another's new and removed files late; silly renames (a file
unlinked or renamed over while open becomes .nfsXXXX); ESTALE on handles of
files another node removed; and, where a test says so, a rename that
reports an error after it succeeded (a retransmitted RENAME) and fsyncs
that fail.  This file shows that on such a spool:

- 1,000 messages sent round robin to three nodes are each delivered exactly
  once, also with one rename per node reporting an error after succeeding
  and one failed fsync per node (the client of that message gets a 4xx and
  sends again, as real clients do);
- the deliveries of a node killed with SIGKILL are taken over;
- a drained node takes no new queue work while the others deliver
  everything, its own accepted mail included;
- a commit whose rename reports an error after succeeding is accepted once
  and delivered once (src/spool/spool.c: spool_rename_known);
- a commit whose fsync fails (content, envelope, or the queue directory
  after the renames) gets a 4xx, leaves nothing in the spool and is never
  delivered; the next message is accepted and delivered;
- on an NFS server that answers writes late, a client sending a large
  message in one go is read to the end (Selor stops reading past 1 MB of
  unwritten content and goes on once it is written): accepted, delivered
  once; and when that server also runs out of space meanwhile, the client
  gets 452 after its content and nothing of the message stays.

Tests list `procs` before `nodes`: the nodes are stopped first, then the
mounts (with the test's other processes).
"""
import os
import re
import subprocess
import threading
import time

import pytest

from nfsmount import is_mounted
from selortest import wait_for
from test_cluster import (LEASE, Cluster, all_delivered_once, check_killed_node_takeover,
                          holders, send_many)

# What every mount does: NFS's caches (a few seconds), silly renames, and
# ESTALE where an application on Linux NFS sees it.
NFS = dict(actimeo=2, silly_rename=1, estale="handles")


def nfs(**more):
    d = dict(NFS)
    d.update(more)
    return d


def spool_debris(cl):
    """What the shared directory holds besides its subdirectories: queue
    files, silly-renamed files, and anything left in Temp_path."""
    out = [n for n in os.listdir(cl.spool)
           if not os.path.isdir(os.path.join(cl.spool, n))]
    tmp = os.path.join(cl.spool, "tmp")
    out += ["tmp/" + n for n in os.listdir(tmp)] if os.path.isdir(tmp) else []
    return sorted(out)


def delivered_lines(cl, nodes=None):
    return sum(n.log("summary").count("delivered to=<all@remote.test>")
               for n in (nodes or cl.members))


def send_retrying(cl, node, i, conn, refusals):
    """One message; a 4xx for the content is sent again (a client's retry),
    and noted in refusals."""
    for _ in range(5):
        conn.mail("someone@sender.test")
        code, msg = conn.rcpt("m%d@fwd.test" % i)
        assert code == 250, msg
        code, msg = conn.data("Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
        if code == 250:
            return msg.decode().split()[1]
        assert 400 <= code < 500, (code, msg)
        refusals.append((node.name, i, code, msg.decode()))
    raise AssertionError("m%d refused five times: %s" % (i, refusals[-5:]))


def send_all(cl, count, refusals):
    """count messages, round robin, one sender thread per node."""
    errors = []

    def one(k):
        node = cl.members[k]
        try:
            conn = None
            for n, i in enumerate(range(k, count, len(cl.members))):
                if n % 50 == 0:
                    if conn is not None:
                        conn.quit()
                    conn = node.smtp()
                    conn.ehlo("client.test")
                send_retrying(cl, node, i, conn, refusals)
            conn.quit()
        except Exception as e:       # reported by the test's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(cl.members))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], errors


def send_at_once(node, size):
    """A message of about size bytes to m0@fwd.test, its content sent in one
    go: (the reply to it, the body sent)."""
    body = "Subject: big\r\n\r\n" + ("x" * 76 + "\r\n") * (size // 78)
    s = node.open_data(rcpt=b"m0@fwd.test", sender=b"someone@sender.test")
    try:
        s.sendall(body.encode() + b".\r\n")
        return s.reply(timeout=60).decode(), body
    finally:
        s.close()


@pytest.mark.parametrize("faults", [
    {},
    # one rename per node reports ENOENT after it happened; one fsync fails
    {"rename_error": 1, "fsync_error": 1, "actimeo": 3},
], ids=["caching", "caching+faults"])
def test_thousand_messages_round_robin_each_delivered_once(procs, nodes, faults):
    cl = Cluster(nodes, procs, nfs=nfs(**faults))
    cl.wait_startup_pause()
    refusals = []
    send_all(cl, 1000, refusals)
    missing, doubled = all_delivered_once(cl, 0, 1000)
    assert missing == [] and doubled == {}, (missing[:20], doubled)
    # Selor's own record agrees: one delivery per message, no more
    wait_for(lambda: delivered_lines(cl) >= 1000, timeout=10, what="the summary logs")
    assert delivered_lines(cl) == 1000
    busy = [n.name for n in cl.members if "delivered to=<all@remote.test>" in n.log("summary")]
    assert len(busy) >= 2, busy
    counters = {sid: m.counters() for sid, m in cl.mounts.items()}
    # the NFS behaviours were there: caches answered, and the faults fired
    assert all(c["name_cache_hits"] > 0 and c["attr_cache_hits"] > 0
               for c in counters.values()), counters
    if faults:
        assert all(c["rename_errors"] == 1 and c["fsync_errors"] == 1
                   for c in counters.values()), counters
        # a failed fsync is the only refusal: one per node, a 4xx each time
        assert len(refusals) == 3 and all(r[2] == 452 for r in refusals), refusals
        warn = "".join(n.log("warning") for n in cl.members)
        assert warn.count("cannot queue") == 3, warn
    else:
        assert refusals == []
    # nothing left behind: no queue file, no silly-renamed file, no temp file
    wait_for(lambda: spool_debris(cl) == [], timeout=10, what="an empty spool")


def test_killed_node_work_is_taken_over(procs, nodes):
    check_killed_node_takeover(
        Cluster(nodes, procs, sink_args=["--delay-data", "1.5"], nfs=nfs()), timeout=90)


def test_drained_node_takes_no_queue_work(procs, nodes):
    cl = Cluster(nodes, procs, sink_args=["--delay-data", "0.05"], nfs=nfs())
    drained = cl.members[0]
    cl.wait_startup_pause()
    send_many(cl, 60, 0)
    missing, doubled = all_delivered_once(cl, 0, 60, timeout=90)
    assert missing == [] and doubled == {}
    assert "delivered to=" in drained.log("summary"), "mx1 took no work before the drain"
    code, out = cl.ctl("drain", "mx1")
    assert code == 0, out
    wait_for(lambda: re.search(r"mx1\s+draining", cl.ctl("nodes")[1]), timeout=10,
             what="mx1 draining")
    wait_for(lambda: "mx1" not in holders(cl).values(), timeout=30,
             what="mx1 finishing what it holds")
    before = drained.log("summary").count("delivered to=")
    # every node accepts, the drained one too; only the others deliver
    send_many(cl, 150, 60, None, 0.01)
    missing, doubled = all_delivered_once(cl, 60, 150, timeout=120)
    assert missing == [] and doubled == {}
    assert drained.log("summary").count("delivered to=") == before
    assert delivered_lines(cl) == 210
    code, out = cl.ctl("nodes")
    assert re.search(r"mx1\s+draining", out), out
    # and undrained, it works again
    code, out = cl.ctl("undrain", "mx1")
    assert code == 0, out
    wait_for(lambda: re.search(r"mx1\s+active", cl.ctl("nodes")[1]), timeout=10,
             what="mx1 active")
    send_many(cl, 60, 210, None)
    missing, doubled = all_delivered_once(cl, 210, 60, timeout=60)
    assert missing == [] and doubled == {}
    assert drained.log("summary").count("delivered to=") > before


@pytest.mark.parametrize("pattern", ["l*", "c*"])
def test_commit_rename_error_after_success(procs, nodes, pattern):
    """The rename into Queue_path happened, then reported ENOENT (a
    retransmitted RENAME): the message is accepted once, delivered once."""
    cl = Cluster(nodes, procs, n=2, nfs=nfs())
    a = cl.members[0]
    cl.wait_startup_pause()
    m = cl.mounts["mx1"]
    m.set(rename_error=1, rename_error_pattern=pattern)
    with a.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt("m0@fwd.test")[0] == 250
        code, msg = c.data("Subject: m0\r\n\r\nbody\r\n")
        assert code == 250, msg
    assert m.counters()["rename_errors"] == 1
    missing, doubled = all_delivered_once(cl, 0, 1, timeout=30)
    assert missing == [] and doubled == {}
    assert "cannot queue" not in a.log("warning")
    assert delivered_lines(cl) == 1
    # delivered once means once: no later run (a scan, the other node)
    time.sleep(cl.options["Qsleep_time"] + 1)
    assert cl.subjects()["m0"] == 1 and delivered_lines(cl) == 1
    assert spool_debris(cl) == []


FSYNC_FAULTS = {
    "content": dict(fsync_error=1, fsync_error_pattern="c*"),
    "envelope": dict(fsync_error=1, fsync_error_pattern="l*"),
    # Queue_path is the mount's root: its base name is empty
    "directory": dict(fsyncdir_error=1, fsyncdir_error_pattern="*"),
}


@pytest.mark.parametrize("which", ["content", "envelope", "directory"])
def test_failed_fsync_on_commit(procs, nodes, which):
    """A commit whose fsync fails: 4xx, nothing of the message stays, it is
    never delivered; the next one is accepted and delivered."""
    cl = Cluster(nodes, procs, n=2, nfs=nfs())
    a = cl.members[0]
    cl.wait_startup_pause()
    m = cl.mounts["mx1"]
    counter = "fsyncdir_errors" if which == "directory" else "fsync_errors"
    m.set(**FSYNC_FAULTS[which])
    with a.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt("m0@fwd.test")[0] == 250
        code, msg = c.data("Subject: m0\r\n\r\nbody\r\n")
        assert m.counters()[counter] == 1
        assert code == 452 and b"No disk space" in msg, (code, msg)
        # the session goes on: the same client sends the next message
        c.mail("someone@sender.test")
        assert c.rcpt("m1@fwd.test")[0] == 250
        code, msg = c.data("Subject: m1\r\n\r\nbody\r\n")
        assert code == 250, msg
        qid = msg.decode().split()[1]
    missing, doubled = all_delivered_once(cl, 1, 1, timeout=30)
    assert missing == [] and doubled == {}
    assert "cannot queue" in a.log("warning")
    # A queue scan on every node (Qsleep_time) and a lease later, the
    # refused message is still nowhere: not delivered, nothing in the spool.
    time.sleep(cl.options["Qsleep_time"] + LEASE)
    assert cl.subjects()["m0"] == 0, "a refused message was delivered"
    assert spool_debris(cl) == [], "left in the spool: %s" % spool_debris(cl)
    assert qid in a.log("summary") and delivered_lines(cl) == 1


def test_large_message_on_a_slow_nfs_server(procs, nodes):
    """The NFS server answers each write late (200 ms): a client sending
    4 MB in one go is faster than the spool.  Selor stops reading past 1 MB
    of unwritten content and goes on once it is written: the message is
    accepted and delivered once."""
    cl = Cluster(nodes, procs, n=1, nfs=nfs(), options={"Timeout": 15})
    node = cl.members[0]
    m = cl.mounts["mx1"]
    m.set(delay_ms=200, delay_ops="write")
    reply, body = send_at_once(node, 4 * 1024 * 1024)
    assert m.counters()["delays"] > 0
    assert reply.startswith("250 "), reply
    m.set(delay_ms=0)
    wait_for(lambda: cl.sink.messages(), timeout=30, what="the delivery")
    assert len(cl.sink.messages()) == 1
    assert cl.sink.messages()[0][1].endswith(body.encode())


class Tmpfs:
    """A small tmpfs at path (the shared directory of a test), stopped with
    the test's processes; lazily unmounted if something still uses it."""

    def __init__(self, path, size_kb):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk,mode=0777" % size_kb,
                        "selor-test-backing", path], check=True)
        self.path = path

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave):
        os.makedirs(os.path.join(self.path, "fill"), exist_ok=True)
        with open(os.path.join(self.path, "fill", "filler"), "wb") as f:
            f.write(b"\0" * (self.free() - leave))

    def unfill(self):
        os.unlink(os.path.join(self.path, "fill", "filler"))

    def stop(self):
        for cmd in (["umount", self.path], ["umount", "-l", self.path]):
            if not is_mounted(self.path):
                break
            subprocess.run(cmd, capture_output=True, timeout=30)


def test_spool_full_while_a_fast_client_waits_for_a_slow_nfs_server(procs, nodes):
    """The same server fills up while the message arrives: 452 after the
    content, nothing of it stays; with room again it is accepted."""
    backing = Tmpfs(os.path.join(nodes.base, "shared-spool"), 6 * 1024)
    procs.items.insert(0, backing)
    cl = Cluster(nodes, procs, n=1, nfs=nfs(), options={"Timeout": 15})
    procs.items.remove(backing)
    procs.items.insert(0, backing)      # unmounted after the nfsfs mounts
    node = cl.members[0]
    m = cl.mounts["mx1"]
    backing.fill(leave=1536 * 1024)
    m.set(delay_ms=200, delay_ops="write")
    reply, _ = send_at_once(node, 4 * 1024 * 1024)
    assert reply.startswith("452 ") and "No disk space" in reply, reply
    wait_for(lambda: spool_debris(cl) == [], timeout=10, what="nothing left")
    backing.unfill()
    m.set(delay_ms=0)
    reply = cl.send(node, 1)
    wait_for(lambda: cl.subjects()["m1"] == 1, timeout=30, what="the next delivery")
