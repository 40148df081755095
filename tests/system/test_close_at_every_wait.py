"""The client goes away at every point where a session waits (issue 7).

Each wait is made long on purpose (a delaying proxy in front of Redis or
the DNS server, a slow account module, a slow spool), the client closes
its connection in the middle of it (with FIN, then with RST), and the
answer arrives afterwards, for a session that is gone.  Against the
sanitizer build, with the embedded coordination backend and with Redis:
no worker may crash or restart, nothing may be written by the sanitizers
(the `nodes` fixture fails the test on any report), the node keeps
serving, and no half-written queue file is left.
"""
import os
import socket
import struct
import time

import pytest

import selortest
from nfsmount import NfsMount
from selortest import wait_for

DELAY = 1.5


def smtp_pids(node):
    return sorted(selortest.process_by_name(node.proc.pid, "selor-smtp"))


class Setup:
    """A node for one wait point, its DNS server behind a delaying proxy,
    and (backend "redis") a Redis behind another."""

    def __init__(self, nodes, procs, workdir, backend, options=None, passwd=None,
                 spool=None):
        self.dns = procs.dns(mx={"mx.test": [(10, "mx.mx.test")]},
                             hosts={"mx.mx.test": "127.0.0.9", "a.test": "127.0.0.9",
                                    "client.test": "127.0.0.1"},
                             ptrs={"127.0.0.1": "client.test"})
        self.dns_proxy = procs.delayproxy("dns", self.dns.server)
        opts = {"Dns_servers": self.dns_proxy.server, "Timeout": 30}
        if backend == "redis":
            self.redis = procs.redis()
            self.redis_proxy = procs.delayproxy("tcp", self.redis.server)
            opts.update({"Redis_server": self.redis_proxy.server, "Limit_buf": 200,
                         "Limit_cnx": 10000})
        if spool:
            opts.update({"Queue_path": spool, "Temp_path": os.path.join(spool, "tmp")})
        opts.update(options or {})
        self.node = nodes(options=opts, passwd=passwd).start()
        if backend == "redis":
            wait_for(lambda: "reachable" in self.node.log("warning"), what="Redis")
        self.pids = smtp_pids(self.node)

    def check(self):
        """After the answers came: the same workers, still serving."""
        time.sleep(DELAY + 1)
        assert smtp_pids(self.node) == self.pids, "an SMTP worker died"
        with self.node.smtp() as c:
            assert c.ehlo("after.test")[0] == 250
        assert "panic" not in self.node.log("warning")


def close_in(setup, send=b"", replies=0, rst=False, greeting=True):
    """Connects, sends, reads `replies` replies, then closes: the session
    is left waiting for whatever the last command asked."""
    n = setup.node
    s = socket.create_connection((n.host, n.port))
    conn = selortest.SmtpConn(s)
    if greeting:
        assert conn.reply().startswith(b"220")
    if send:
        s.sendall(send)
    for _ in range(replies):
        assert conn.reply(), "the session ended early"
    time.sleep(0.3)              # the command is being waited for now
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def both_ways(setup, **kw):
    close_in(setup, rst=False, **kw)
    close_in(setup, rst=True, **kw)
    setup.check()


BACKENDS = ["embedded", "redis"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_check(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend)
    if backend == "redis":
        st.redis_proxy.set(delay=DELAY)      # the Limit_* decision comes late
    both_ways(st, greeting=False)
    if backend == "redis":
        st.redis_proxy.set(delay=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reverse_name(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend, options={"Resolve_all": 1})
    st.dns_proxy.set(PTR=DELAY)
    both_ways(st, greeting=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reverse_name_confirmation(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend, options={"Resolve_all": 1})
    st.dns_proxy.set(PTR=0, A=DELAY, AAAA=DELAY)
    both_ways(st, greeting=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sender_mx(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend, options={"From_level_check": 2})
    st.dns_proxy.set(MX=DELAY)
    both_ways(st, send=b"EHLO client.test\r\nMAIL FROM:<x@mx.test>\r\n", replies=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sender_address(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend, options={"From_level_check": 1})
    st.dns_proxy.set(A=DELAY, AAAA=DELAY)     # a.test has no MX: its address is asked
    both_ways(st, send=b"EHLO client.test\r\nMAIL FROM:<x@a.test>\r\n", replies=1)


ALICE_PLAIN = b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlcHc=\r\n"   # alice, alicepw


@pytest.mark.parametrize("backend", BACKENDS)
def test_recipient_domain(nodes, procs, workdir, backend):
    """Rcpt_level_check 1: a relayed recipient's domain is looked up."""
    st = Setup(nodes, procs, workdir, backend,
               options={"Rcpt_level_check": 1, "Auth_plaintext": 1})
    st.dns_proxy.set(MX=DELAY, A=DELAY, AAAA=DELAY)
    for rcpt in (b"x@mx.test", b"x@a.test"):      # MX; no MX, then addresses
        both_ways(st, send=b"EHLO client.test\r\n" + ALICE_PLAIN +
                  b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<" + rcpt + b">\r\n",
                  replies=3)
    assert "AUTH as alice@example.com" in st.node.log()    # so RCPT did wait
    assert "relay" not in st.node.log("refused")


@pytest.mark.parametrize("backend", BACKENDS)
def test_account_lookup(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend,
               options={"Module": os.path.join(selortest.TESTMOD_DIR, "selor_slow.so"),
                        "Passwd_file": None, "Slow_domains": "slow.test",
                        "Slow_delay_ms": int(DELAY * 1000)})
    both_ways(st, send=b"EHLO client.test\r\nMAIL FROM:<x@remote.test>\r\n"
                       b"RCPT TO:<u@slow.test>\r\n", replies=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_mailbox_delay(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend, options={"No_mailbox_delay": 2})
    both_ways(st, send=b"EHLO client.test\r\nMAIL FROM:<x@remote.test>\r\n"
                       b"RCPT TO:<nobody@example.com>\r\n", replies=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_delay(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend)
    both_ways(st, send=b"EHLO client.test\r\n" + b"BOGUS\r\n" * 12, replies=11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_commit(nodes, procs, workdir, backend):
    """The spool is slow: the client leaves while its message is being made
    durable.  The commit completes (a rename cannot be taken back) or is
    undone; either way nothing half-written stays behind."""
    backing = os.path.join(workdir, "backing")
    mnt = os.path.join(workdir, "spool")
    os.makedirs(backing)
    os.makedirs(mnt)
    fs = NfsMount(backing, mnt, delay_ms=int(DELAY * 1000), delay_ops="fsync")
    try:
        st = Setup(nodes, procs, workdir, backend, spool=mnt)
        for rst in (False, True):
            s = st.node.open_data()
            s.sendall(b"Subject: going\r\n\r\nbody\r\n.\r\n")
            time.sleep(0.3)
            if rst:
                s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            s.close()
        st.check()
        time.sleep(2 * DELAY)
        st.node.stop()
        for qid in st.node.queue_files("l"):     # what is queued is whole
            recs, rcpts = selortest.parse_lfile(st.node.read_qf(qid))
            assert int(recs["size"][0]) == len(st.node.read_content(qid))
        assert set(st.node.queue_files("c")) == set(st.node.queue_files("l"))
        assert [f for f in os.listdir(st.node.tmp) if f[0] in "cl"] == []
    finally:
        for n in nodes.nodes:
            n.kill()
        fs.stop()


AUTH_PLAIN = b"AUTH PLAIN AHVAc2xvdy50ZXN0AHNlY3JldA==\r\n"   # \0u@slow.test\0secret


@pytest.mark.parametrize("backend", BACKENDS)
def test_auth_lookup(nodes, procs, workdir, backend):
    st = Setup(nodes, procs, workdir, backend,
               options={"Module": os.path.join(selortest.TESTMOD_DIR, "selor_slow.so"),
                        "Passwd_file": None, "Slow_domains": "slow.test",
                        "Slow_delay_ms": int(DELAY * 1000), "Auth_plaintext": 1,
                        "Incorrect_pass_delay": 0})
    both_ways(st, send=b"EHLO client.test\r\n" + AUTH_PLAIN, replies=1)
    assert_auth_answer_dropped(st)


def assert_auth_answer_dropped(st):
    log = st.node.log()
    assert "wait (AUTH check)" in log
    assert "AUTH failed" not in log, "an answer reached a session that was gone"


def test_auth_lockout_check(nodes, procs, workdir):
    st = Setup(nodes, procs, workdir, "redis", options={"Auth_plaintext": 1})
    st.redis_proxy.set(delay=DELAY)          # the lockout's answer comes late
    both_ways(st, send=b"EHLO client.test\r\n" + AUTH_PLAIN, replies=1)
    st.redis_proxy.set(delay=0)
    assert_auth_answer_dropped(st)
