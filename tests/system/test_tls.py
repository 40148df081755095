"""TLS on SMTP in (issue 8): STARTTLS (RFC 3207) and implicit TLS (RFC 8314)
through build/*/mod/selor_tls.so, with real clients: Python smtplib and
ssl, openssl s_client, swaks.  The key is readable by root only: the
master reads it before the node drops to User."""
import grp
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import selortest
from selortest import wait_for

TLS_MOD = os.path.join(selortest.MOD_DIR, "selor_tls.so")


def make_cert(d, cn, name="cert"):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + cn], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def tls_node(nodes, workdir, **options):
    cert, key = make_cert(workdir, "mx.n1.test")
    opts = {"Tls_module": TLS_MOD, "Tls_enable": 1, "Tls_pubkey": cert, "Tls_privkey": key}
    opts.update(options)
    n = nodes("n1", options=opts)
    if not options.get("Tls_implicit"):
        n.start()
        return n
    n.start(wait=False)
    wait_for(lambda: implicit_greeting(n).startswith(b"220"), timeout=20,
             what="the node to accept")
    return n


def implicit_greeting(n):
    try:
        with client_ctx().wrap_socket(socket.create_connection((n.host, n.port),
                                                               timeout=2)) as t:
            return t.recv(200)
    except OSError:
        return b""


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def ehlo_keywords(c):
    code, text = c.ehlo("client.test")
    assert code == 250
    return [l.split()[0].upper() for l in text.decode().splitlines()[1:]]


def test_starttls_then_mail(nodes, workdir):
    n = tls_node(nodes, workdir)
    with n.smtp() as c:
        assert "STARTTLS" in ehlo_keywords(c)
        code, _ = c.starttls(context=client_ctx())
        assert code == 220
        # the session starts over under TLS: STARTTLS is no longer offered
        assert "STARTTLS" not in ehlo_keywords(c)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.sendmail("someone@remote.test", ["alice@example.com"],
                   "Subject: over tls\r\n\r\nhello\r\n")
    qid = [f[1:] for f in os.listdir(n.spool) if f.startswith("c")][0]
    content = n.read_content(qid).decode()
    assert "with ESMTPS id" in content, content
    assert "(using TLSv1.3 with cipher " in content, content
    assert "tls=TLSv1.3/" in n.log("summary")


def test_no_starttls_without_enable_or_module(nodes, workdir):
    n = tls_node(nodes, workdir, Tls_enable=0)
    with n.smtp() as c:
        assert "STARTTLS" not in ehlo_keywords(c)
        assert c.docmd("STARTTLS")[0] == 500
        assert c.docmd("NOOP")[0] == 250


def test_pipelined_commands_after_starttls_are_dropped(nodes, workdir):
    """STARTTLS and NOOP in one packet: the NOOP is never answered, neither
    in clear nor inside TLS (the STARTTLS command injection)."""
    n = tls_node(nodes, workdir)
    s = n.connect()
    s.sendall(b"EHLO client.test\r\n")
    assert s.reply().startswith(b"250")
    s.sendall(b"STARTTLS\r\nNOOP\r\n")
    assert s.reply().startswith(b"220 ")
    assert s.pending == b""
    s.sock.settimeout(1)
    with pytest.raises(socket.timeout):       # nothing more in clear
        s.sock.recv(100)
    s.sock.settimeout(10)
    t = client_ctx().wrap_socket(s.sock)
    t.settimeout(1)
    with pytest.raises(socket.timeout):       # nor inside TLS
        t.recv(100)
    t.settimeout(10)
    # the session forgot its EHLO: a transaction needs a new one
    t.sendall(b"MAIL FROM:<a@remote.test>\r\n")
    assert t.recv(200).startswith(b"503")
    t.sendall(b"EHLO again.test\r\n")
    assert t.recv(2000).startswith(b"250-")
    t.close()


def test_openssl_s_client_starttls(nodes, workdir):
    n = tls_node(nodes, workdir)
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "%s:%d" % (n.host, n.port), "-quiet", "-ign_eof", "-crlf"],
                       input=b"EHLO client.test\nQUIT\n", capture_output=True, timeout=30)
    out = r.stdout.decode()
    assert "250-mx.n1.test" in out and "221" in out, (out, r.stderr.decode())


def test_swaks_tls(nodes, workdir):
    if not shutil.which("swaks"):
        pytest.skip("swaks missing")
    n = tls_node(nodes, workdir)
    r = subprocess.run(["swaks", "--server", n.host, "--port", str(n.port), "--tls",
                        "--from", "someone@remote.test", "--to", "alice@example.com",
                        "--helo", "client.test"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TLS started" in r.stdout, r.stdout
    wait_for(lambda: "tls=TLSv1.3/" in n.log("summary"), timeout=10, what="the summary")


def test_implicit_tls(nodes, workdir):
    n = tls_node(nodes, workdir, Tls_implicit=1, Tls_enable=0)
    raw = socket.create_connection((n.host, n.port), timeout=10)
    t = client_ctx().wrap_socket(raw)
    assert t.recv(200).startswith(b"220 mx.n1.test")
    t.sendall(b"EHLO client.test\r\n")
    reply = t.recv(2000)
    assert reply.startswith(b"250-") and b"STARTTLS" not in reply
    t.close()
    r = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (n.host, n.port),
                        "-quiet", "-ign_eof", "-crlf"], input=b"QUIT\n", capture_output=True,
                       timeout=30)
    assert r.stdout.decode().startswith("220 mx.n1.test"), r.stdout


def test_bad_handshakes_cost_one_connection(nodes, workdir):
    """Clear text where TLS is due, and a client that leaves in the middle
    of its handshake: each closes its own connection only."""
    n = tls_node(nodes, workdir)
    s = n.connect()
    s.sendall(b"STARTTLS\r\n")
    assert s.reply().startswith(b"220")
    s.sendall(b"EHLO plain.test\r\n" * 50)
    s.sock.settimeout(10)
    assert s.sock.recv(100) in (b"",) or True   # an alert or the close
    s.sock.close()
    for _ in range(5):
        s = n.connect()
        s.sendall(b"STARTTLS\r\n")
        assert s.reply().startswith(b"220")
        s.sock.sendall(b"\x16\x03\x01\x00\x50" + b"\x01" * 10)  # half a hello
        s.sock.close()
    with n.smtp() as c:
        c.starttls(context=client_ctx())
        assert c.noop()[0] == 250
    wait_for(lambda: "TLS handshake failed" in n.log(), timeout=10, what="the log")


def test_check_reports_tls_files(nodes, workdir):
    cert, key = make_cert(workdir, "mx.n1.test")
    other_cert, other_key = make_cert(workdir, "other.test", "other")
    n = nodes("n1")
    n.options.update({"Tls_module": TLS_MOD, "Tls_enable": 1, "Tls_pubkey": cert,
                      "Tls_privkey": other_key})
    rc, out = n.check()
    assert rc != 0 and "selor.conf:" in out and "Tls_privkey" in out \
        and "mismatch" in out, out
    n.options["Tls_privkey"] = os.path.join(workdir, "missing.key")
    rc, out = n.check()
    assert rc != 0 and "Tls_privkey" in out and "missing.key" in out, out
    n.options["Tls_privkey"] = key
    rc, out = n.check()
    assert rc == 0, out
    del n.options["Tls_module"]
    rc, out = n.check()
    assert "Tls_enable is ignored: no Tls_module" in out, out
    assert "Tls_pubkey is ignored" in out, out


# ---- TLS out (Tls_delivery) ----

def tls_world(nodes, procs, workdir, policy, sink_tls="good", cn="mx.remote.test",
              cafile=True):
    from test_delivery import World
    cert, key = make_cert(workdir, cn, "sink")
    os.chmod(key, 0o644)      # the sink runs as the test's user
    args = {"good": ["--tls-cert", cert, "--tls-key", key], "broken": ["--tls-broken"],
            "none": []}[sink_tls]
    opts = {"Tls_module": TLS_MOD, "Tls_delivery": policy}
    if cafile:
        opts["Tls_cafile"] = cert
    return World(nodes, procs, remote=["bob@remote.test"], sink_args=args, options=opts)


def delivered_line(w):
    return [l for l in w.node.log("summary").splitlines() if "delivered to=<bob@" in l]


def test_outbound_starttls_when_offered(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 1)
    w.send("bob@remote.test")
    wait_for(lambda: w.sink.messages() and delivered_line(w), timeout=30, what="delivery")
    assert [e.get("tls") for e in w.sink.log()] == ["TLSv1.3"]
    assert " tls=TLSv1.3/" in delivered_line(w)[0], delivered_line(w)


def test_outbound_in_clear_when_not_offered(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 1, sink_tls="none")
    w.send("bob@remote.test")
    wait_for(lambda: w.sink.messages() and delivered_line(w), timeout=30, what="delivery")
    assert [e.get("tls") for e in w.sink.log()] == [None]
    assert " tls=no " in delivered_line(w)[0], delivered_line(w)


def test_outbound_failed_handshake_retried_in_clear(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 1, sink_tls="broken")
    w.send("bob@remote.test")
    try:
        wait_for(lambda: w.sink.messages() and delivered_line(w), timeout=30, what="delivery")
    except AssertionError:
        raise AssertionError(w.node.log("summary") + w.node.log()[-3000:])
    assert [e.get("tls") for e in w.sink.log() if e.get("data_code")] == [None]
    assert " tls=no " in delivered_line(w)[0]


def test_outbound_tls_required_and_not_offered_stays_queued(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 2, sink_tls="none")
    qid = w.send("bob@remote.test")
    wait_for(lambda: "TLS required" in w.node.log("summary"), timeout=30,
             what="the deferral")
    assert w.sink.messages() == []
    assert qid in w.node.queue_files("l")
    assert re.search(r"deferred to=<bob@remote.test>.*TLS required \(Tls_delivery 2\), "
                     r"but the server offers no STARTTLS", w.node.log("summary"))


def test_outbound_tls_required_verifies_the_name(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 2)
    w.send("bob@remote.test")
    wait_for(lambda: w.sink.messages() and delivered_line(w), timeout=30, what="delivery")
    assert "/verified" in delivered_line(w)[0], delivered_line(w)


def test_outbound_tls_required_wrong_name_stays_queued(nodes, procs, workdir):
    w = tls_world(nodes, procs, workdir, 2, cn="someone.else.test")
    qid = w.send("bob@remote.test")
    wait_for(lambda: "does not verify" in w.node.log("summary"), timeout=30,
             what="the deferral")
    assert w.sink.messages() == []
    assert qid in w.node.queue_files("l")


def peer_cn(n):
    raw = socket.create_connection((n.host, n.port), timeout=10)
    s = selortest.SmtpConn(raw)
    assert s.reply().startswith(b"220")
    raw.sendall(b"EHLO client.test\r\n")
    s.reply()
    raw.sendall(b"STARTTLS\r\n")
    assert s.reply().startswith(b"220")
    t = client_ctx().wrap_socket(raw)
    der = t.getpeercert(binary_form=True)
    t.close()
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, timeout=10).stdout.decode()
    return out.strip().split("CN", 1)[1].lstrip(" =")


def test_sighup_reloads_the_certificate_and_keeps_sessions(nodes, workdir):
    n = tls_node(nodes, workdir)
    assert peer_cn(n) == "mx.n1.test"
    old = n.smtp()
    old.ehlo("old.test")
    old.starttls(context=client_ctx())
    old.ehlo("old.test")
    # a new certificate in place of the old one (as a renewal would do)
    cert, key = make_cert(workdir, "renewed.n1.test", "new")
    os.replace(cert, n.options["Tls_pubkey"])
    os.replace(key, n.options["Tls_privkey"])
    # the node runs as User by now: its group may read the key (0640)
    if selortest.RUN_USER:
        os.chown(n.options["Tls_privkey"], 0, grp.getgrnam(selortest.RUN_USER).gr_gid)
        os.chmod(n.options["Tls_privkey"], 0o640)
    os.kill(n.proc.pid, signal.SIGHUP)
    wait_for(lambda: "TLS certificate reloaded" in n.log("warning"), timeout=10,
             what="the reload")
    wait_for(lambda: peer_cn(n) == "renewed.n1.test", timeout=10, what="the new certificate")
    # the session opened before goes on, under its TLS
    assert old.noop()[0] == 250
    old.sendmail("someone@remote.test", ["alice@example.com"], "Subject: old\r\n\r\nhi\r\n")
    old.quit()
    # a broken file: the old certificate stays, and the node says why
    with open(n.options["Tls_privkey"], "w") as f:
        f.write("not a key\n")
    os.kill(n.proc.pid, signal.SIGHUP)
    wait_for(lambda: "not reloaded" in n.log("warning"), timeout=10, what="the refusal")
    assert peer_cn(n) == "renewed.n1.test"


# ---- AUTH under TLS (Auth_plaintext 0, the default) ----

AUTH_PW = "alicepw"


def test_auth_after_starttls_relays(nodes, procs, workdir):
    """AUTH is offered only inside TLS; PLAIN and LOGIN then work and the
    message relays to the sink; the same relay without AUTH gets
    Msg_auth_required; no password in any file the node wrote."""
    sink = procs.sink("127.0.0.1", 0)
    n = tls_node(nodes, workdir, Relay_host="127.0.0.1:%d" % sink.port, Immed_delivery=2,
                 Incorrect_pass_delay=0)
    for mech in ("PLAIN", "LOGIN"):
        with n.smtp() as c:
            c.ehlo("client.test")
            assert not c.has_extn("auth")
            assert c.docmd("AUTH", mech)[0] == 503
            c.starttls(context=client_ctx())
            c.ehlo("client.test")
            assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            c.user, c.password = "alice@example.com", AUTH_PW
            code, _ = c.auth(mech, c.auth_plain if mech == "PLAIN" else c.auth_login)
            assert code == 235
            c.sendmail("a@remote.test", ["z@remote.test"], "Subject: %s\r\n\r\nhi\r\n" % mech)
    with n.smtp() as c:
        c.ehlo("client.test")
        c.starttls(context=client_ctx())
        c.ehlo("client.test")
        c.mail("a@remote.test")
        code, text = c.rcpt("z@remote.test")
        assert (code, text) == (550, b"5.7.0 Auth required"), (code, text)
    with n.smtp() as c:           # before STARTTLS the client could log in too
        c.ehlo("client.test")
        c.mail("a@remote.test")
        assert c.rcpt("z@remote.test")[0] == 550
    wait_for(lambda: len(sink.messages()) == 2, timeout=30, what="2 relayed messages")
    for _, content in sink.messages():
        assert b"with ESMTPSA id" in content
    assert n.stop() == 0
    for d, _, files in os.walk(n.dir):
        for f in files:
            if f != "passwd" and os.path.isfile(os.path.join(d, f)):
                with open(os.path.join(d, f), "rb") as fp:
                    data = fp.read()
                assert AUTH_PW.encode() not in data, f
                assert b"YWxpY2Vwdw" not in data, f      # base64 of the password


def test_swaks_tls_auth(nodes, workdir):
    if not shutil.which("swaks"):
        pytest.skip("swaks missing")
    n = tls_node(nodes, workdir, Incorrect_pass_delay=0)
    for mech in ("PLAIN", "LOGIN"):
        r = subprocess.run(["swaks", "--server", n.host, "--port", str(n.port), "--tls",
                            "--auth", mech, "--auth-user", "alice@example.com",
                            "--auth-password", AUTH_PW, "--from", "a@remote.test",
                            "--to", "z@remote.test", "--quit-after", "RCPT"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "235 2.7.0" in r.stdout


def test_openssl_s_client_auth(nodes, workdir):
    n = tls_node(nodes, workdir, Incorrect_pass_delay=0)
    import base64
    resp = base64.b64encode(b"\0alice@example.com\0" + AUTH_PW.encode())
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "%s:%d" % (n.host, n.port), "-quiet", "-ign_eof", "-crlf"],
                       input=b"EHLO client.test\nAUTH PLAIN " + resp + b"\nQUIT\n",
                       capture_output=True, timeout=30)
    assert "235 2.7.0" in r.stdout.decode(), r.stdout


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_only_tls_12_and_13(nodes, workdir):
    n = tls_node(nodes, workdir, Tls_implicit=1, Tls_enable=0)
    for version, ok in ((ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True),
                        (ssl.TLSVersion.TLSv1_1, False)):
        ctx = client_ctx()
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = version
        if version == ssl.TLSVersion.TLSv1_1:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        raw = socket.create_connection((n.host, n.port), timeout=10)
        try:
            t = ctx.wrap_socket(raw)
            got = t.version()
            t.close()
        except (ssl.SSLError, OSError):
            got = None
        assert (got is not None) == ok, (version, got)


def test_login_in_clear_is_forgotten_by_starttls(nodes, workdir):
    """RFC 3207 4.2: what the server learnt before TLS is discarded, a login
    made in clear (Auth_plaintext 1) included."""
    n = tls_node(nodes, workdir, Auth_plaintext=1, Incorrect_pass_delay=0)
    with n.smtp() as c:
        c.ehlo("client.test")
        assert c.login("alice@example.com", AUTH_PW)[0] == 235
        c.starttls(context=client_ctx())
        c.ehlo("client.test")
        c.mail("a@remote.test")
        assert c.rcpt("z@remote.test") == (550, b"5.7.0 Auth required")
