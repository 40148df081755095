"""The pid file is a lock (docs/selor.conf.md, Pid_file): the master holds an
exclusive fcntl lock on it for its whole life.  A start is refused only when
another process holds that lock, whatever pid the file names; two nodes on
the same Pid_file never both run.

Nodes here share one Pid_file but have their own port, spool and logs.
"""
import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import selortest


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


def write_file(path, data):
    """A leftover pid file, User's as the node would have left it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if selortest.RUN_USER:
        for p in (os.path.dirname(path), path):
            shutil.chown(p, selortest.RUN_USER, selortest.RUN_USER)


def lock_holders(path):
    """Pids /proc/locks gives for POSIX write locks on path's inode."""
    st = os.stat(path)
    out = []
    with open("/proc/locks") as f:
        for line in f:
            p = line.split()
            if "->" in p:
                continue   # a waiter, not a holder
            if len(p) >= 6 and p[1] == "POSIX" and p[3] == "WRITE" and \
                    int(p[5].split(":")[2]) == st.st_ino:
                out.append(int(p[4]))
    return out


def locked_by_someone(path):
    with open(path, "r+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN)
        return False


def wait_exit(node, timeout=30):
    return node.proc.wait(timeout=timeout)


def sharing(nodes, first, name):
    n = nodes(name, options={"Pid_file": first.pidfile})
    n.pidfile = first.pidfile
    return n


def assert_holds(node):
    pid = read_pid(node.pidfile)
    assert pid == node.proc.pid, "the pid file names %d, the master is %d" % (
        pid, node.proc.pid)
    assert lock_holders(node.pidfile) == [node.proc.pid]


def test_running_master_holds_the_lock(nodes):
    n = nodes().start()
    assert_holds(n)
    assert locked_by_someone(n.pidfile)
    # a worker that dies and restarts takes nothing away from the master
    worker = selortest.process_by_name(n.proc.pid, "selor-smtp")[0]
    os.kill(worker, signal.SIGKILL)
    selortest.wait_for(lambda: worker not in n.children() and
                       len(n.children()) >= n.options["Smtp_workers"] + 1,
                       what="worker restarted")
    assert_holds(n)
    assert n.stop() == 0
    assert not os.path.exists(n.pidfile)


def test_stale_pid_of_live_process(nodes, workdir):
    """The file names a live process whose name starts with "selor": only the
    lock counts, so the start goes on."""
    fake = os.path.join(workdir, "selor-sleep")
    shutil.copy("/bin/sleep", fake)
    sleeper = subprocess.Popen([fake, "60"])
    try:
        n = nodes()
        write_file(n.pidfile, b"%d\n" % sleeper.pid)
        n.start()
        assert_holds(n)
        assert sleeper.poll() is None, "the stale pid's process was touched"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_pid_of_unrelated_process(nodes):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        n = nodes()
        write_file(n.pidfile, b"%d\n" % sleeper.pid)
        n.start()
        assert_holds(n)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_garbage_pid_file(nodes):
    n = nodes()
    write_file(n.pidfile, b"not a pid\x00\xff" + b"x" * 5000 + b"\n")
    n.start()
    assert_holds(n)
    with open(n.pidfile, "rb") as f:
        assert f.read() == b"%d\n" % n.proc.pid, "old content left behind"


def test_lock_held_by_another_program_refuses(nodes):
    """Whatever the file says, a lock held by someone refuses the start and
    names the holder."""
    n = nodes()
    write_file(n.pidfile, b"1\n")
    with open(n.pidfile, "r+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        n.start(wait=False)
        assert wait_exit(n) == 1
        assert "pid %d" % os.getpid() in n.stderr(), n.stderr()
        assert n.pidfile in n.stderr()
    n.start()
    assert_holds(n)


def test_second_node_refused_then_starts(nodes):
    n1 = nodes().start()
    n2 = sharing(nodes, n1, "n2")
    ctl = n1.pidfile[:-4] + ".ctl"
    assert os.path.exists(ctl)
    n2.start(wait=False)
    assert wait_exit(n2) == 1
    err = n2.stderr()
    assert "pid %d" % n1.proc.pid in err, err
    assert n1.pidfile in err, err
    assert n1.accepting()
    assert_holds(n1)
    assert os.path.exists(ctl), "the refused node removed the running node's socket"
    r = subprocess.run([selortest.SELORCTL, "-c", n1.conf, "queue"],
                       capture_output=True, text=True, env=n1.env(), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert n1.stop() == 0
    n2.start()
    assert_holds(n2)


@pytest.mark.parametrize("threads", [False, True])
def test_simultaneous_starts_one_runs(nodes, threads):
    for rnd in range(4):
        a = nodes("a%d" % rnd)
        b = sharing(nodes, a, "b%d" % rnd)
        a.write_conf()
        b.write_conf()
        if threads:
            go = threading.Barrier(2)
            ts = [threading.Thread(target=lambda n=n: (go.wait(), n.start(write=False,
                                                                         wait=False)))
                  for n in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        else:
            a.start(write=False, wait=False)
            b.start(write=False, wait=False)
        loser = None
        deadline = time.monotonic() + 30
        while loser is None and time.monotonic() < deadline:
            loser = next((n for n in (a, b) if n.proc.poll() is not None), None)
            time.sleep(0.05)
        assert loser is not None, "both nodes run on one Pid_file"
        winner = b if loser is a else a
        assert loser.proc.returncode == 1, loser.stderr()
        assert "pid %d" % winner.proc.pid in loser.stderr(), loser.stderr()
        selortest.wait_for(winner.accepting, timeout=20, what="the winner accepts")
        time.sleep(0.5)
        assert winner.proc.poll() is None
        assert_holds(winner)
        assert winner.stop() == 0


def test_starts_while_holder_stops(nodes):
    """Two nodes start while the holder stops (it unlinks the file it still
    holds): never both run."""
    for rnd in range(4):
        h = nodes("h%d" % rnd).start()
        a = sharing(nodes, h, "a%d" % rnd)
        b = sharing(nodes, h, "b%d" % rnd)
        a.write_conf()
        b.write_conf()
        h.proc.send_signal(signal.SIGTERM)
        a.start(write=False, wait=False)
        b.start(write=False, wait=False)
        h.proc.wait(timeout=40)
        # Each has decided: it exited, or it accepts (it binds its port only
        # once it holds the lock).
        selortest.wait_for(lambda: all(settled(n) for n in (a, b)), timeout=20,
                           what="both starts to end or accept")
        running = [n for n in (a, b) if n.proc.poll() is None]
        assert len(running) <= 1, "both nodes run on one Pid_file"
        for n in running:
            assert_holds(n)
            assert n.stop() == 0


def settled(n):
    """n exited, or accepts connections."""
    try:
        return n.proc.poll() is not None or n.accepting()
    except AssertionError:     # it exited meanwhile
        return True


def test_sigkill_leaves_a_file_the_next_start_takes(nodes):
    n1 = nodes().start()
    dead = n1.proc.pid
    n1.kill()
    assert read_pid(n1.pidfile) == dead
    assert not locked_by_someone(n1.pidfile)
    n2 = sharing(nodes, n1, "n2").start()
    assert_holds(n2)
    assert n2.proc.pid != dead


def test_detached(nodes):
    n1 = nodes()
    n2 = sharing(nodes, n1, "n2")
    assert n1.start_detached() == 0, n1.stderr()
    pid = n1.daemon_pid()
    try:
        assert pid and selortest.pid_alive(pid)
        assert lock_holders(n1.pidfile) == [pid], "the daemon does not hold the lock"
        selortest.wait_for(n1.accepting, timeout=20, what="the daemon accepts")
        assert n2.start_detached() == 1, "a second daemon started"
        assert "pid %d" % pid in n2.stderr(), n2.stderr()
        assert n1.daemon_pid() == pid
        n2.start(wait=False)
        assert wait_exit(n2) == 1
        assert selortest.pid_alive(pid)
        n1.stop_detached(pid)
        assert not os.path.exists(n1.pidfile)
        assert n2.start_detached() == 0, n2.stderr()
        pid = n2.daemon_pid()
        assert lock_holders(n2.pidfile) == [pid]
        kids = [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)],
                                               capture_output=True,
                                               text=True).stdout.split()]
        for p in [pid] + kids:
            os.kill(p, signal.SIGKILL)
        selortest.wait_for(lambda: not any(map(selortest.pid_alive, [pid] + kids)),
                           what="daemon killed")
        assert n1.start_detached() == 0, n1.stderr()
        pid = n1.daemon_pid()
        assert lock_holders(n1.pidfile) == [pid]
        n1.stop_detached(pid)
    finally:
        p = n1.daemon_pid()
        if p and selortest.pid_alive(p):
            n1.stop_detached(p)


def test_selorctl_reads_the_pid_file(nodes):
    """Without its control socket, selorctl still sees from the pid file
    that the node runs."""
    n = nodes().start()
    os.unlink(n.pidfile[:-4] + ".ctl")
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "flush"],
                       capture_output=True, text=True, env=n.env(), timeout=30)
    assert r.returncode == 1
    assert "the node runs" in r.stderr, r.stdout + r.stderr
