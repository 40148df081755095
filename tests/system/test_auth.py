"""SMTP AUTH (RFC 4954, PLAIN and LOGIN) and the brute-force lockout.

Real nodes, real clients (Python's smtplib, swaks when installed), the
passwd module's {PLAIN} accounts, a sink behind Relay_host for relayed
mail, and Redis for the cluster-wide lockout.  Every test ends by looking
for the passwords it used, plain and in every base64 form a client sent,
in every file the nodes wrote: none may be there.
"""
import base64
import os
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

import selortest
from selortest import recv_reply, wait_for

USER, PW = "alice@example.com", "alicepw"
WRONG = "Wr0ngPassw0rd"
SECRETS = [PW, WRONG]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, pw, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, pw))


def auth_node(nodes, options=None, **kw):
    opts = {"Auth_plaintext": 1, "Incorrect_pass_delay": 0}
    opts.update(options or {})
    return nodes(options=opts, **kw)


def assert_no_secret(*node_list):
    """No password in any file a node wrote (logs, stderr, spool).  The
    nodes are stopped first: logs are buffered, a stop writes them out."""
    for n in node_list:
        assert n.stop() == 0
    forms = set()
    for pw in SECRETS:
        forms.add(pw)
        forms.add(b64(pw))
        for authzid in ("", USER):
            forms.add(plain(USER, pw, authzid))
    for n in node_list:
        for d, _, files in os.walk(n.dir):
            for f in files:
                path = os.path.join(d, f)
                if (f == "passwd" and d == n.dir) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as fp:
                    data = fp.read()
                for form in forms:
                    assert form.encode() not in data, "%r found in %s" % (form, path)


def session(node, ehlo=b"client.test"):
    s = node.connect()
    s.sendall(b"EHLO " + ehlo + b"\r\n")
    r = recv_reply(s)
    assert r.startswith(b"250"), r
    return s, r


def cmd(s, line):
    s.sendall(line + b"\r\n")
    return recv_reply(s).decode()


def try_login(node, pw, user=USER):
    s, _ = session(node)
    r = cmd(s, b"AUTH PLAIN " + plain(user, pw).encode())
    s.close()
    return r


# ---- success, and relaying once authenticated ----

def test_plain_and_login_relay_to_the_sink(nodes, procs):
    sink = procs.sink("127.0.0.1", 0)
    n = auth_node(nodes, {"Relay_host": "127.0.0.1:%d" % sink.port, "Immed_delivery": 2,
                          "Hshow_user": 1}).start()
    for mech, ir in (("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)):
        with n.smtp() as c:
            c.ehlo("client.test")
            assert c.has_extn("auth")
            assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            c.user, c.password = USER, PW
            obj = c.auth_plain if mech == "PLAIN" else c.auth_login
            code, text = c.auth(mech, obj, initial_response_ok=ir)
            assert code == 235, (mech, ir, code, text)
            assert text.startswith(b"2.7.0 Auth successful")
            c.sendmail("a@remote.test", ["z@remote.test"],
                       "Subject: auth %s %s\r\n\r\nhello\r\n" % (mech, ir))
    wait_for(lambda: len(sink.messages()) == 4, timeout=30, what="4 relayed messages")
    for env, content in sink.messages():
        assert env["rcpts"] == ["z@remote.test"]
        assert b"with ESMTPA id" in content
        assert b"(authenticated user alice@example.com)" in content
    assert_no_secret(n)
    assert "AUTH as alice@example.com" in n.log()


def test_smtplib_login_helper(nodes):
    n = auth_node(nodes).start()
    with n.smtp() as c:
        c.ehlo("client.test")
        assert c.login(USER, PW)[0] == 235
    with n.smtp() as c:
        c.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login(USER, WRONG)
        assert e.value.smtp_code == 535
    assert_no_secret(n)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks(nodes, mech):
    n = auth_node(nodes).start()

    def run(pw):
        return subprocess.run(
            ["swaks", "--server", "%s:%d" % (n.host, n.port), "--from", "a@remote.test",
             "--to", "z@remote.test", "--auth", mech, "--auth-user", USER,
             "--auth-password", pw, "--quit-after", "RCPT", "--timeout", "20"],
            capture_output=True, text=True, timeout=60)
    ok = run(PW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "235 2.7.0" in ok.stdout and "250 2.1.5" in ok.stdout
    bad = run(WRONG)
    assert bad.returncode != 0
    assert "535 5.7.8 Auth fail" in bad.stdout
    assert_no_secret(n)


# ---- refusals ----

def test_relay_without_auth_gets_auth_required(nodes):
    n = auth_node(nodes).start()
    s, _ = session(n)
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<z@remote.test>") == "550 5.7.0 Auth required\r\n"
    assert cmd(s, b"RCPT TO:<bob@example.com>").startswith("250")   # local: fine
    s.close()
    wait_for(lambda: "relay without AUTH: z@remote.test" in n.log("refused"),
             what="the refusal logged")


def test_authenticated_but_auth_relay_0(nodes):
    n = auth_node(nodes, {"Auth_relay": 0}).start()
    s, _ = session(n)
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()).startswith("235")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<z@remote.test>") == "550 5.7.1 Relay denied\r\n"
    s.close()


def test_not_offered_without_tls(nodes):
    n = auth_node(nodes, {"Auth_plaintext": 0}).start()
    s, ehlo = session(n)
    assert b"AUTH" not in ehlo
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()) == \
        "503 5.5.1 Authentication not enabled\r\n"
    assert cmd(s, b"AUTH LOGIN") == "503 5.5.1 Authentication not enabled\r\n"
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<z@remote.test>") == "550 5.7.1 Relay denied\r\n"
    s.close()
    assert_no_secret(n)


def test_wrong_password_and_tolerance(nodes):
    n = auth_node(nodes, {"Auth_tolerance": 3, "Auth_fail_limit": 0}).start()
    s, _ = session(n)
    for i in range(2):
        assert cmd(s, b"AUTH PLAIN " + plain(USER, WRONG).encode()) == \
            "535 5.7.8 Auth fail\r\n"
    # The third failure: answered, then the connection closes.
    s.sendall(b"AUTH LOGIN " + b64(USER).encode() + b"\r\n")
    assert recv_reply(s).startswith(b"334 UGFzc3dvcmQ6")
    assert cmd(s, b64(WRONG).encode()) == "535 5.7.8 Auth fail\r\n"
    assert recv_reply(s, timeout=5) == b""
    s.close()
    # A right password on a new connection still works (no lockout here).
    assert try_login(n, PW).startswith("235")
    assert_no_secret(n)


def test_last_failure_is_delayed_too_then_closes(nodes):
    n = auth_node(nodes, {"Auth_tolerance": 2, "Incorrect_pass_delay": 1,
                          "Auth_fail_limit": 0, "Smtp_workers": 1}).start()
    s, _ = session(n)
    bad = b"AUTH PLAIN " + plain(USER, WRONG).encode()
    assert cmd(s, bad) == "535 5.7.8 Auth fail\r\n"
    t = time.monotonic()
    assert cmd(s, bad) == "535 5.7.8 Auth fail\r\n"
    assert time.monotonic() - t >= 0.9
    assert recv_reply(s, timeout=5) == b""
    s.close()
    # The client leaves while that last reply is held: nothing breaks.
    s, _ = session(n)
    s.sendall(bad + b"\r\n" + bad + b"\r\n")
    assert recv_reply(s).startswith(b"535")
    s.close()
    time.sleep(1.5)
    assert try_login(n, PW).startswith("235")
    assert_no_secret(n)
    assert "Auth_tolerance" in n.log()


def test_sequence(nodes):
    n = auth_node(nodes).start()
    s = n.connect()
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()).startswith("503")  # no EHLO
    s.close()
    s, _ = session(n)
    assert cmd(s, b"AUTH CRAM-MD5") == "504 5.5.4 Unrecognized authentication type\r\n"
    assert cmd(s, b"AUTH").startswith("501 5.5.4")
    assert cmd(s, b"MAIL FROM:<a@remote.test> AUTH=<>").startswith("250")
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()) == \
        "503 5.5.1 Not allowed during a mail transaction\r\n"
    assert cmd(s, b"RSET").startswith("250")
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()).startswith("235")
    assert cmd(s, b"AUTH PLAIN " + plain(USER, PW).encode()) == \
        "503 5.5.1 Already authenticated\r\n"
    assert cmd(s, b"MAIL FROM:<a@remote.test> AUTH=a+2Bb@remote.test").startswith("250")
    assert cmd(s, b"RCPT TO:<z@remote.test>").startswith("250")
    s.close()
    assert_no_secret(n)


def test_malformed_responses_get_501(nodes):
    n = auth_node(nodes).start()
    s, _ = session(n)
    assert cmd(s, b"AUTH PLAIN !!!!") == "501 5.5.2 Cannot decode the response\r\n"
    assert cmd(s, b"AUTH PLAIN abc") == "501 5.5.2 Cannot decode the response\r\n"
    assert cmd(s, b"AUTH PLAIN " + b64("no-nul-here").encode()).startswith("501 5.5.2")
    assert cmd(s, b"AUTH PLAIN").startswith("334 ")
    assert cmd(s, b"*") == "501 5.7.0 Authentication cancelled\r\n"
    assert cmd(s, b"AUTH LOGIN").startswith("334 VXNlcm5hbWU6")
    assert cmd(s, b"*") == "501 5.7.0 Authentication cancelled\r\n"
    assert cmd(s, b"AUTH LOGIN").startswith("334 ")
    assert cmd(s, b"a=b=") == "501 5.5.2 Cannot decode the response\r\n"
    assert cmd(s, b"AUTH\tPLAIN " + plain(USER, PW).encode()).startswith("500")
    assert cmd(s, b"AUTH PLAIN").startswith("334 ")
    assert cmd(s, b"QUJD" * 200) == \
        "501 5.5.6 Authentication exchange line is too long\r\n"
    # After all that, the session works and a right login succeeds.
    assert cmd(s, b"NOOP").startswith("250")
    assert cmd(s, b"AUTH PLAIN").startswith("334 ")
    assert cmd(s, plain(USER, PW).encode()).startswith("235")
    s.close()
    assert_no_secret(n)
    log = n.log()
    assert "(AUTH response)" in log
    assert "< AUTH PLAIN\n" in log
    assert "< AUTH\tPLAIN\n" in log


# ---- Incorrect_pass_delay: a timer, not a sleep ----

def test_failure_delay_does_not_stall_the_worker(nodes):
    n = auth_node(nodes, {"Incorrect_pass_delay": 2, "Smtp_workers": 1,
                          "Auth_fail_limit": 0}).start()
    slow, _ = session(n)
    t0 = time.monotonic()
    slow.sendall(b"AUTH PLAIN " + plain(USER, WRONG).encode() + b"\r\n")
    time.sleep(0.3)
    other, _ = session(n)          # the same (only) worker serves it at once
    t1 = time.monotonic()
    assert cmd(other, b"NOOP").startswith("250")
    assert cmd(other, b"AUTH PLAIN " + plain(USER, PW).encode()).startswith("235")
    assert time.monotonic() - t1 < 1.0
    other.close()
    assert recv_reply(slow) == b"535 5.7.8 Auth fail\r\n"
    took = time.monotonic() - t0
    assert 1.9 <= took < 4, took
    slow.close()
    assert_no_secret(n)


# ---- the lockout ----

def cluster_nodes(nodes, base, redis, limit, ttl):
    spool = os.path.join(base, "shared-spool")
    os.makedirs(spool, exist_ok=True)
    os.chmod(spool, 0o777)
    opts = {"Auth_fail_limit": limit, "Auth_fail_time": ttl, "Auth_tolerance": 100,
            "Queue_path": spool, "Temp_path": os.path.join(spool, "tmp")}
    if redis:
        opts["Redis_server"] = redis.server
    out = []
    for i in range(3):
        sid = "mx%d" % (i + 1)
        out.append(auth_node(nodes, dict(opts), name=sid, sid=sid).start())
    if redis:
        for n in out:
            wait_for(lambda: "reachable" in n.log("warning"), what="Redis reached")
    return out


def test_lockout_across_the_cluster(nodes, procs, workdir):
    redis = procs.redis()
    ns = cluster_nodes(nodes, workdir, redis, limit=3, ttl=4)
    for n in ns:                               # one failure on each node
        assert try_login(n, WRONG) == "535 5.7.8 Auth fail\r\n"
    keys = redis.cmd("KEYS", "selor:authfail:*").split()
    assert sorted(keys) == ["selor:authfail:ip:127.0.0.1",
                            "selor:authfail:login:alice@example.com"], keys
    t = time.monotonic()
    for n in ns:                               # locked out everywhere
        assert try_login(n, PW) == "535 5.7.8 Auth fail\r\n"
    for n in ns:
        wait_for(lambda: "locked out: Auth_fail_limit" in n.log(), what="lockout logged")
    # Another login from the same address is locked too (the address is).
    assert try_login(ns[1], "bobpw", user="bob@example.com").startswith("535")
    wait_for(lambda: try_login(ns[2], PW).startswith("235"), timeout=8, interval=0.5,
             what="the lockout to expire")
    assert time.monotonic() - t > 2.5
    assert_no_secret(*ns)


def test_lockout_per_node_without_redis(nodes, workdir):
    ns = cluster_nodes(nodes, workdir, None, limit=3, ttl=3)
    a, b = ns[0], ns[1]
    for _ in range(3):
        assert try_login(a, WRONG).startswith("535")
    assert try_login(a, PW).startswith("535")       # locked on this node
    assert try_login(b, PW).startswith("235")       # not on the others
    wait_for(lambda: try_login(a, PW).startswith("235"), timeout=6, interval=0.5,
             what="the lockout to expire")
    assert_no_secret(*ns)


def test_lockout_shared_by_the_workers_of_a_node(nodes):
    n = auth_node(nodes, {"Auth_fail_limit": 4, "Auth_fail_time": 30,
                          "Smtp_workers": 2}).start()
    for _ in range(4):      # the kernel spreads these over both workers
        assert try_login(n, WRONG).startswith("535")
    for _ in range(4):
        assert try_login(n, PW).startswith("535")
    assert_no_secret(n)


def test_lockout_falls_back_to_the_node_when_redis_is_down(nodes, procs):
    redis = procs.redis()
    n = auth_node(nodes, {"Redis_server": redis.server, "Auth_fail_limit": 3,
                          "Auth_fail_time": 30, "Auth_tolerance": 100}).start()
    wait_for(lambda: "reachable" in n.log("warning"), what="Redis reached")
    redis.stop()
    wait_for(lambda: "unreachable" in n.log("warning"), timeout=15, what="Redis gone")
    for _ in range(3):
        assert try_login(n, WRONG).startswith("535")
    assert try_login(n, PW).startswith("535")       # the node's own counts lock
    assert_no_secret(n)
