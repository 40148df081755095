"""The security review's findings (issue 7), one regression test each,
against the sanitizer build: every test here failed on the code the review
looked at, and must keep passing.

  1 a session freed while its connection check (Redis) was on its way
  2 root following User's symlinks (logs, pid file, directories)
  3 refused recipients: no cost, counted as errors, bounded
  4 a mailbox's own MDA command reaching a shell
  5 Timeout firing while the sender's domain (or an account) is looked up
  6 address literals carrying NUL and control bytes
  7 a bare CR relayed as it came
  8 HELO with control and 8-bit bytes; selorctl printing stored bytes raw
  9 fencing: an operator's change keeps its claim alive (below); the
    rest in test_slow_redis.py, test_clock_skew.py, unit test_lease.c
 10 temporary files of a slow DATA; the control socket and the MDA's user
"""
import os
import pwd
import signal
import socket
import struct
import subprocess
import time

import pytest

import selortest
from selortest import wait_for
from test_delivery import World, fwd

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (drops to selor)")


def smtp_pids(node):
    return sorted(selortest.process_by_name(node.proc.pid, "selor-smtp"))


def still_serving(node):
    with node.smtp() as c:
        assert c.ehlo("after.test")[0] == 250


def replies_until_closed(s, timeout=30):
    out = []
    while True:
        r = s.reply(timeout)
        if not r:
            return out
        out.append(r.decode(errors="replace"))


def close_rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---- 1: the connection check answers after the client left ----

def test_conn_check_answer_after_client_left(nodes, procs):
    redis = procs.redis()
    slow = procs.delayproxy("tcp", redis.server, delay=0.0)
    n = nodes(options={"Redis_server": slow.server, "Limit_buf": 200,
                       "Limit_cnx": 1000}).start()
    wait_for(lambda: "reachable" in n.log("warning"), what="Redis connected")
    pids = smtp_pids(n)
    slow.set(delay=1.0)          # every Limit_* decision now comes a second late
    for i in range(40):
        s = socket.create_connection((n.host, n.port))
        if i % 2:
            close_rst(s)
        else:
            s.close()
    time.sleep(2.5)              # the answers arrive for sessions long gone
    slow.set(delay=0.0)
    still_serving(n)
    assert smtp_pids(n) == pids, "an SMTP worker died"


# ---- 2: symlinks where User can write are never followed by root ----

def secret_file(workdir):
    path = os.path.join(workdir, "root-secret")
    with open(path, "w") as f:
        f.write("root's own\n")
    os.chmod(path, 0o600)
    return path


def assert_untouched(path):
    st = os.stat(path)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert open(path).read() == "root's own\n"


def start_fails(node, text):
    node.write_conf()
    r = subprocess.run([selortest.SELOR, "-f", "-c", node.conf], capture_output=True,
                       text=True, env=node.env(), timeout=60)
    assert r.returncode != 0
    assert text in r.stdout + r.stderr, r.stdout + r.stderr
    return r.stdout + r.stderr


@ROOT_ONLY
def test_log_symlink_not_followed(nodes, workdir):
    n = nodes().start()
    n.stop()
    secret = secret_file(workdir)
    log = n.options["Central_log"]
    assert pwd.getpwuid(os.stat(os.path.dirname(log)).st_uid).pw_name == "selor"
    os.unlink(log)
    os.symlink(secret, log)       # what User could do to its own log directory
    start_fails(n, "symlink")
    assert_untouched(secret)


@ROOT_ONLY
def test_pid_file_symlink_not_followed(nodes, workdir):
    n = nodes().start()
    n.stop()
    secret = secret_file(workdir)
    pid = n.options["Pid_file"]
    if os.path.exists(pid):
        os.unlink(pid)
    os.symlink(secret, pid)
    start_fails(n, "Pid_file")
    assert_untouched(secret)


@ROOT_ONLY
def test_directory_symlink_not_followed(nodes, workdir):
    """User owns the log directory; a subdirectory it replaced by a link to a
    root-only directory must not get a root-made, User-owned log file."""
    n = nodes().start()
    n.stop()
    logdir = os.path.dirname(n.options["Central_log"])
    rootdir = os.path.join(workdir, "root-only")
    os.mkdir(rootdir, 0o755)
    os.symlink(rootdir, os.path.join(logdir, "sub"))
    n.options["Central_log"] = os.path.join(logdir, "sub", "selor.log")
    start_fails(n, "cannot")
    assert os.listdir(rootdir) == []


@ROOT_ONLY
def test_logs_belong_to_user(nodes):
    """Files root makes for User are User's, made through descriptors."""
    n = nodes().start()
    for opt in ("Central_log", "Warning_log"):
        assert pwd.getpwuid(os.stat(n.options[opt]).st_uid).pw_name == "selor"


# ---- 3: refused recipients ----

def test_refused_rcpts_count_and_cost(nodes):
    n = nodes().start()
    s = n.connect()
    s.sendall(b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\n")
    assert selortest.recv_replies(s, 2)[1].startswith("250")
    t0 = time.monotonic()
    s.sendall(b"".join(b"RCPT TO:<nobody%d@example.com>\r\n" % i for i in range(25)) +
              b"RCPT TO:<alice@example.com>\r\n")
    replies = []
    while True:
        r = s.reply(timeout=60)
        if not r:
            break
        replies.append(r.decode())
    took = time.monotonic() - t0
    codes = [r[:3] for r in replies]
    # 19 refusals, the 20th refusal, then the session ends: nothing after it
    assert codes[:20] == ["550"] * 20, codes
    assert codes[20] == "421" and len(codes) == 21, codes
    # past ten errors each refusal comes a second late (a client that keeps
    # guessing addresses is slowed down, as Postfix's smtpd_error_sleep_time)
    assert took >= 9, took
    wait_for(lambda: "too many errors" in n.log("refused"), what="the hang-up logged")


def test_errors_reset_after_a_message(nodes):
    """The count is of errors without delivering mail: a sender whose list
    holds some stale addresses is not cut off for good."""
    n = nodes().start()
    with n.smtp() as c:
        c.ehlo("client.test")
        for _ in range(3):
            c.mail("a@remote.test")
            for i in range(8):
                assert c.rcpt("nobody%d@example.com" % i)[0] == 550
            assert c.rcpt("alice@example.com")[0] == 250
            assert c.data("Subject: x\r\n\r\nbody\r\n")[0] == 250


# ---- 4: a mailbox's own command never reaches a shell ----

def recording_mda(workdir, name):
    script = os.path.join(workdir, name)
    log = os.path.join(workdir, name + ".log")
    with open(script, "w") as f:
        f.write('#!/bin/sh\ncat >/dev/null\necho "$@" >> %s\nexit 0\n' % log)
    os.chmod(script, 0o755)
    open(log, "w").close()
    os.chmod(log, 0o666)
    return script, log


@pytest.mark.parametrize("dtype", [0, 1])
def test_mailbox_command_cannot_reach_a_shell(nodes, workdir, dtype):
    default, dlog = recording_mda(workdir, "default.sh")
    own, olog = recording_mda(workdir, "own.sh")
    marker = os.path.join(workdir, "pwned")
    passwd = ("evil@example.com:{PLAIN}pw::::%s::dlocal=%s %%r ; touch %s\n"
              % (workdir, own, marker) +
              "plain@example.com:{PLAIN}pw::::%s::dlocal=%s %%r x=1\n" % (workdir, own))
    n = nodes(passwd=passwd, options={"Dlocal": default + " %r", "Dlocal_type": dtype,
                                      "Adlocal_allowed": own, "Immed_delivery": 2}).start()
    for to in ("evil@example.com", "plain@example.com"):
        with n.smtp() as c:
            c.ehlo("client.test")
            c.mail("a@remote.test")
            assert c.rcpt(to)[0] == 250
            assert c.data("Subject: x\r\n\r\nbody\r\n")[0] == 250
    wait_for(lambda: "evil@example.com" in open(dlog).read() and
             "plain@example.com" in open(olog).read(), timeout=30, what="deliveries")
    time.sleep(0.5)
    assert not os.path.exists(marker), "the mailbox's command ran a shell"
    assert "evil@example.com" not in open(olog).read()
    # the plain one ran its own MDA, arguments as words, no shell
    assert open(olog).read().split() == ["plain@example.com", "x=1"]
    assert "characters a shell would interpret" in n.log("warning")


# ---- 5: Timeout while a lookup is out ----

# Sends EHLO, 200 HELPs (15 KB of replies: more than the socket takes, less
# than the 64 KB of unsent replies that stop Selor reading) and the
# given commands (| for a
# line end; the last one makes the session wait), then reads nothing for
# argv[4] seconds, then every reply (their codes are printed).  In a
# namespace with 4 KB socket buffers the replies cannot all be written: when
# Timeout fires, the session's last reply is stuck behind them, so the
# session is still there, closing, when the answer it waited for arrives.
STALL = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect((sys.argv[1], int(sys.argv[2])))
s.recv(512)
s.sendall(b"EHLO client.test\\r\\n" + b"HELP\\r\\n" * 200 +
          sys.argv[3].replace("|", "\\r\\n").encode())
time.sleep(float(sys.argv[4]))
s.settimeout(5)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(" ".join(l[:3].decode() for l in data.split(b"\\r\\n") if l[3:4] == b" "))
"""


def stalled_wait(node, commands, seconds):
    pids = smtp_pids(node)
    selortest.client_in(node.prefix, STALL, node.host, node.port, commands, seconds)
    log = node.log("selor").splitlines()
    at = [i for i, line in enumerate(log) if "timeout in state wait" in line]
    assert at, "no timeout while waiting"
    cid = log[at[0]].split()[4]
    late = [line for line in log[at[0]:] if " %s " % cid in line and " < " in line]
    assert late == [], "commands handled after the session timed out: %s" % late
    assert selortest.client_in(node.prefix, selortest.PROBE, node.host,
                               node.port).startswith("220")
    assert smtp_pids(node) == pids, "an SMTP worker died"


def test_timeout_during_sender_domain_check(nodes, procs):
    ns = procs.netns()
    dns = selortest.Dns(procs.base, mx={"slow.test": [(10, "mx.slow.test")]},
                        hosts={"mx.slow.test": "127.0.0.9"}, prefix=ns.prefix)
    procs.items.append(dns)
    slow = selortest.DelayProxy(procs.base, "dns", dns.server, per_type={"MX": 4},
                                prefix=ns.prefix)
    procs.items.append(slow)
    n = nodes(options={"Dns_servers": slow.server, "From_level_check": 2, "Timeout": 2})
    n.prefix = ns.prefix
    n.start()
    stalled_wait(n, "MAIL FROM:<x@slow.test>|NOOP|", 5)   # timeout at 2 s, MX at 4 s


def test_timeout_during_account_lookup(nodes, procs):
    ns = procs.netns()
    n = nodes(options={"Module": os.path.join(selortest.TESTMOD_DIR, "selor_slow.so"),
                       "Passwd_file": None, "Slow_domains": "slow.test",
                       "Slow_delay_ms": 4000, "Timeout": 2})
    n.prefix = ns.prefix
    n.start()
    stalled_wait(n, "MAIL FROM:<x@remote.test>|RCPT TO:<u@slow.test>|NOOP|", 5)


# ---- 6: address literals ----

def test_address_literal_with_nul(node):
    s = node.connect()
    s.sendall(b"EHLO client.test\r\nMAIL FROM:<u@[127.0.0.1\x00]>\r\n"
              b"MAIL FROM:<a@remote.test>\r\n"
              b"RCPT TO:<u@[127.0.0.1\x00\x01\x1b[2J]>\r\n"
              b"RCPT TO:<u@[127.0.0.1]>\r\n")
    codes = [r[:3] for r in selortest.recv_replies(s, 5)]
    assert codes[1] == "553" and codes[2] == "250" and codes[3] == "553", codes
    assert codes[4][0] == "5", codes      # a good literal: fine, but not local


# ---- 7: a bare CR goes out only as CR LF ----

def test_bare_cr_relayed_as_line_end(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test"])
    body = b"one\rtwo\r.\rMAIL FROM:<x@evil.test>\rlast\r\n"
    with w.node.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt(fwd("bob@remote.test"))[0] == 250
        assert c.data(b"Subject: cr\r\n\r\n" + body)[0] == 250
    wait_for(lambda: w.sink.messages(), timeout=30, what="delivery")
    env, content = w.sink.messages()[0]
    assert len(w.sink.messages()) == 1          # nothing smuggled in
    stripped = content.replace(b"\r\n", b"")
    assert b"\r" not in stripped, content
    assert b"\r\n.\r\nMAIL FROM:<x@evil.test>\r\nlast\r\n" in content


# ---- 8: HELO bytes; selorctl's output ----

@pytest.mark.parametrize("helo", [b"bad\rname", b"esc\x1b[2Jname", b"caf\xc3\xa9.test"])
def test_helo_with_control_or_8bit_refused(node, helo):
    s = node.connect()
    s.sendall(b"EHLO " + helo + b"\r\nEHLO good.test\r\n")
    replies = selortest.recv_replies(s, 2)
    assert replies[0].startswith("501"), replies
    assert replies[1].startswith("250"), replies


def test_selorctl_escapes_stored_bytes(node):
    with node.smtp() as c:
        c.ehlo("client.test")
        c.mail("a@remote.test")
        c.rcpt("alice@example.com")
        code, msg = c.data(b"Subject: \x1b]0;owned\x07title\r\nX-Evil: \x1b[2J\r\n\r\nbody\r\n")
        assert code == 250
    qid = msg.decode().split()[1]
    # A queue file an older Selor (or another tool) could have written: a
    # HELO with an escape sequence, an answer with a fake line in it.
    path = os.path.join(node.spool, "l" + qid)
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("client "):
            lines[i] = line.rsplit(" ", 1)[0] + " evil%1B%5B2Jhost"
        if line.startswith("rcpt "):          # the answer: next to last
            f = line.split(" ")
            f[-2] = "a%0Afake%1B%5D0%3Bx%07"
            lines[i] = " ".join(f)
    with open(path + ".new", "w") as f:
        f.write("\n".join(lines))
    os.rename(path + ".new", path)
    for args in (["queue", "show", qid], ["queue"]):
        r = subprocess.run([selortest.SELORCTL, "-c", node.conf] + args,
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r
        assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout, r.stdout
        assert b"\nfake" not in r.stdout, r.stdout
        assert b"\\x1b" in r.stdout, r.stdout


# ---- 9: an operator's change holds its claim while it works ----

def test_operator_change_keeps_its_claim(nodes, procs, workdir):
    """selorctl hold on a slow spool takes longer than a lease: the claim
    is renewed all along (the lock never lapses in Redis), and the change
    is written once, with the claim's token."""
    import threading
    from nfsmount import NfsMount
    redis = procs.redis()
    backing, mnt = os.path.join(workdir, "backing"), os.path.join(workdir, "spool")
    os.makedirs(backing)
    os.makedirs(mnt)
    fs = NfsMount(backing, mnt)
    try:
        n = nodes(options={"Redis_server": redis.server, "Lock_lease": 3,
                           "Queue_path": mnt, "Temp_path": os.path.join(mnt, "tmp")}).start()
        wait_for(lambda: "reachable" in n.log("warning"), what="Redis")

        def pause_over():          # Redis started empty: nobody claims for a lease
            epoch = redis.cmd("GET", "selor:epoch")   # from the first claim on
            return epoch and time.time() * 1000 > int(epoch) + 3000 + 500
        wait_for(pause_over, timeout=30, what="the start-up pause")
        with n.smtp() as c:
            c.ehlo("client.test")
            c.mail("a@remote.test")
            c.rcpt("alice@example.com")
            qid = c.data("Subject: x\r\n\r\nbody\r\n")[1].decode().split()[1]
        fs.set(delay_ms=900)       # each file operation now takes most of a second
        seen, done = [], []

        def watch():
            while not done:
                seen.append(redis.cmd("EXISTS", "selor:lock:" + qid) == "1")
                time.sleep(0.1)

        t = threading.Thread(target=watch)
        t.start()
        t0 = time.monotonic()
        r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "hold", qid],
                           capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        done.append(1)
        t.join()
        fs.set(delay_ms=0)
        assert r.returncode == 0 and r.stdout.startswith("ok 1"), r
        assert took > 3, took      # longer than one lease: renewals were needed
        held = "".join("1" if x else "0" for x in seen).strip("0")
        assert held and "0" not in held, "the claim lapsed during the change: %s" % held
        recs, _ = selortest.parse_lfile(n.read_qf(qid))
        assert int(recs["flags"][0]) & 1            # held
        assert int(recs["token"][0]) > 0           # written under the claim's token
    finally:
        for node in nodes.nodes:
            node.kill()
        fs.stop()


# ---- 10: a slow DATA keeps its temporary file; the control socket ----

def test_slow_data_keeps_its_temp_file(nodes):
    n = nodes(options={"Qsleep_time": 1, "Timeout": 60}).start()
    s = n.open_data()
    s.sendall(b"Subject: slow\r\n\r\n" + (b"x" * 998 + b"\r\n") * 400)   # > 256 KB
    temp = lambda: [f for f in os.listdir(n.tmp) if f.startswith("c")]
    wait_for(temp, what="the temporary content file")
    for f in temp():                  # as if the client had been at it for hours
        os.utime(os.path.join(n.tmp, f), (time.time() - 7200, time.time() - 7200))
    time.sleep(3)                     # queue scans run (Qsleep_time 1)
    assert temp(), "the scan removed a live session's file"
    s.sendall(b"the end\r\n.\r\n")
    reply = s.reply()
    assert reply.startswith(b"250"), reply


def queue_node(sid):
    """The <node> part of this node's queue IDs (src/spool/queue_id.c)."""
    if sid.isdigit() and len(sid) <= 6:
        return int(sid)
    h = 2166136261
    for b in sid.encode():
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h % 1000000


def test_dead_workers_temp_files_are_removed(nodes):
    n = nodes(options={"Qsleep_time": 1}).start()
    dead = "c%d_000001_999999_%d" % (time.time() - 7200, queue_node(n.options["Sid"]))
    path = os.path.join(n.tmp, dead)
    open(path, "w").close()
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    wait_for(lambda: not os.path.exists(path), timeout=15, what="debris removed")


@ROOT_ONLY
def test_control_socket_refuses_the_mda_user(nodes):
    """An MDA runs as User: it must not flush, hold or delete mail."""
    n = nodes().start()
    with n.smtp() as c:
        c.ehlo("client.test")
        c.mail("a@remote.test")
        c.rcpt("alice@example.com")
        qid = c.data("Subject: x\r\n\r\nbody\r\n")[1].decode().split()[1]
    sock = n.options["Pid_file"][:-4] + ".ctl"
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
              "s.settimeout(5)\ntry: s.sendall(b'delete %s\\n')\nexcept OSError: pass\n"
              "print(s.recv(512).decode())" % qid)
    r = subprocess.run(["setpriv", "--reuid", "selor", "--regid", "selor", "--clear-groups",
                        "/usr/bin/python3", "-c", script, sock],
                       capture_output=True, text=True, timeout=30)
    assert "permission denied" in r.stdout + r.stderr, r
    assert qid in n.queue_files("l")
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "hold", qid],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("ok 1"), r   # root may
