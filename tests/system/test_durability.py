"""Nothing is lost, nothing is half-written.

A node killed with SIGKILL leaves no file in Queue_path that a reader
could take for a whole message unless its 250 was sent (or about to be);
a full spool answers Msg_nodisk_space and leaves nothing behind.
"""
import os
import signal
import subprocess
import threading
import time

import pytest

from selortest import parse_lfile, recv_reply, wait_for


def test_sigkill_during_data_leaves_no_message(node):
    s = node.open_data()
    s.sendall(b"Subject: half\r\n\r\n" + b"x" * 300000)  # large enough to be flushed
    time.sleep(0.5)
    node.kill(signal.SIGKILL)
    s.close()
    assert node.queue_files("l") == []
    assert node.queue_files("c") == []
    # a restarted node finds nothing to deliver and serves mail again
    node.start()
    with node.smtp() as c:
        c.sendmail("a@remote.test", ["alice@example.com"], "Subject: after\r\n\r\nok\r\n")
    assert len(node.queue_files("l")) == 1


def test_sigkill_under_load_only_acknowledged_messages(node):
    """Clients send without pause; the node is killed mid-stream.  Every l
    file must be complete and must be a message whose 250 was sent or in
    flight; every acknowledged message must be there."""
    acked, errors = [], []
    stop = threading.Event()

    def client(k):
        while not stop.is_set():
            try:
                with node.smtp(timeout=5) as c:
                    c.ehlo("load.test")
                    while not stop.is_set():
                        c.mail("s%d@remote.test" % k)
                        c.rcpt("alice@example.com")
                        code, msg = c.data("Subject: load\r\n\r\n" + ("y" * 70 + "\r\n") * 30)
                        if code == 250:
                            acked.append(msg.decode().split()[1])
            except Exception as e:  # the node dies under the clients
                errors.append(e)
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 50, timeout=60, what="50 acknowledged messages")
    node.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    check_only_acknowledged(node, acked, len(threads))


def check_only_acknowledged(node, acked, clients):
    """Every acknowledged message is queued, whole; any other queued one
    was in flight (at most one per client: committed, its 250 not read).
    Returns the IDs queued."""
    on_disk = set(node.queue_files("l"))
    assert set(acked) <= on_disk, set(acked) - on_disk
    assert len(on_disk - set(acked)) <= clients
    for qid in on_disk:
        recs, rcpts = parse_lfile(node.read_qf(qid))
        assert recs["end"] == ["1"]
        assert os.path.getsize(os.path.join(node.spool, "c" + qid)) == int(recs["size"][0])
    return on_disk


def test_sigterm_stops_cleanly(node):
    s = node.open_data()
    s.sendall(b"Subject: finishing\r\n\r\nbody")
    node.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    s.sendall(b"\r\n.\r\n")
    r = recv_reply(s).decode()
    assert "Msg accepted" in r   # an open transaction may finish
    s.close()
    assert node.proc.wait(timeout=40) == 0
    assert not os.path.exists(node.pidfile) or open(node.pidfile).read() == ""
    assert len(node.queue_files("l")) == 1
    assert "stopped" in node.log("warning")


def test_sigterm_aborts_idle_session_with_421(node):
    s = node.connect()
    s.sendall(b"EHLO idle.test\r\n")
    recv_reply(s)
    node.proc.send_signal(signal.SIGTERM)
    assert recv_reply(s, timeout=20).startswith(b"421")
    s.close()
    assert node.proc.wait(timeout=40) == 0


def test_pid_file_held_by_live_node_refuses_start(nodes):
    a = nodes("a").start()
    b = nodes("b", options={"Pid_file": a.pidfile})
    b.start(wait=False)
    assert b.proc.wait(timeout=30) == 1
    assert "already running as pid" in b.stderr()
    # a stale pid file does not stop a start
    a.kill(signal.SIGKILL)
    assert open(a.pidfile).read().strip().isdigit()
    a.start()


def test_worker_killed_is_restarted(node):
    victims = node.children()
    os.kill(victims[0], signal.SIGKILL)
    wait_for(lambda: len(node.children()) == len(victims) and victims[0] not in node.children(),
             timeout=20, what="restart")
    assert "killed by signal 9; restarting" in node.log("warning")
    with node.smtp() as c:
        c.sendmail("a@remote.test", ["alice@example.com"], "Subject: x\r\n\r\nx\r\n")


@pytest.fixture
def small_spool(workdir):
    mnt = os.path.join(workdir, "small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", mnt],
                   check=True)
    yield mnt
    subprocess.run(["umount", "-l", mnt])


def test_full_spool_answers_nodisk_space(nodes, small_spool):
    n = nodes(options={"Queue_path": os.path.join(small_spool, "q"),
                       "Temp_path": os.path.join(small_spool, "q", "tmp"),
                       "Msg_nodisk_space": "452 Spool is full"}).start()
    replies = []
    body = "Subject: fill\r\n\r\n" + ("z" * 76 + "\r\n") * 1000
    for _ in range(12):
        with n.smtp() as c:
            c.ehlo("fill.test")
            c.mail("a@remote.test")
            c.rcpt("alice@example.com")
            code, msg = c.data(body)
            replies.append((code, msg.decode()))
    assert (452, "4.3.0 Spool is full") in replies, replies
    accepted = [m.split()[1] for c, m in replies if c == 250]
    assert sorted(accepted) == n.queue_files("l")
    assert sorted(accepted) == n.queue_files("c")
    assert os.listdir(n.tmp) == []


def _strace_syncfs(pids, out, delay_us):
    """strace on every thread of pids, each syncfs(2) held delay_us at its
    entry: a group flush lasts long enough for a kill to land inside it."""
    cmd = ["strace", "-f", "-qq", "-e", "trace=syncfs", "-o", out,
           "-e", "inject=syncfs:delay_enter=%d" % delay_us]
    for p in pids:
        cmd += ["-p", str(p)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SYNCFS_NR = {"x86_64": 306, "aarch64": 267}


def _in_syscall(pid, nr):
    """Whether a thread of pid is in system call nr now (/proc/.../syscall)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for t in tids:
        try:
            with open("/proc/%d/task/%s/syscall" % (pid, t)) as f:
                if f.read().split(" ", 1)[0] == str(nr):
                    return True
        except OSError:
            pass
    return False


def test_sigkill_in_the_middle_of_a_group_flush(nodes):
    """Spool_flush syncfs, each flush held 300 ms (strace), 10 clients
    sending without pause: messages pile up into groups.  The node is
    killed while a thread of a worker is in a group's syncfs (/proc shows
    it).
    Every message that got its 250 is in the queue, whole; nothing else
    is, but for the messages in flight (at most one per client); no l file
    is there without its c file."""
    node = nodes(options={"Spool_flush": "syncfs"}).start()
    assert "commits flushed with syncfs (Spool_flush syncfs)" in node.log("warning")
    trace = os.path.join(node.dir, "strace.out")
    tracer = _strace_syncfs(node.children(), trace, 300000)
    acked, sent = [], []
    stop = threading.Event()

    def client(k):
        try:
            with node.smtp(timeout=20) as c:
                c.ehlo("group.test")
                while not stop.is_set():
                    c.mail("g%d@remote.test" % k)
                    c.rcpt("alice@example.com")
                    sent.append(k)
                    code, msg = c.data("Subject: group\r\n\r\n" + ("g" * 70 + "\r\n") * 20)
                    if code == 250:
                        acked.append(msg.decode().split()[1])
        except Exception:  # the node dies under the clients
            return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 40, timeout=90, what="40 acknowledged messages")

        workers = node.children()

        def in_a_flush():   # a thread of the node stopped in syncfs(2)
            return any(_in_syscall(p, SYNCFS_NR[os.uname().machine]) for p in workers)
        wait_for(in_a_flush, timeout=30, interval=0.005, what="a syncfs under way")
        node.kill(signal.SIGKILL)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        tracer.wait(timeout=30)
    with open(trace) as f:
        log = f.read()
    # groups: more messages were acknowledged than flushes were made
    flushes = log.count("syncfs(")
    assert 0 < flushes < len(acked), (flushes, len(acked))
    assert "+++ killed by SIGKILL +++" in log
    on_disk = check_only_acknowledged(node, acked, len(threads))
    # the restarted node serves on, with the same commit path
    node.start()
    with node.smtp() as c:
        c.sendmail("a@remote.test", ["alice@example.com"], "Subject: after\r\n\r\nok\r\n")
    assert len(node.queue_files("l")) == len(on_disk) + 1
