"""The PROXY protocol (HAProxy's, versions 1 and 2): a node behind a load
balancer sees, and uses, the client's address the balancer's header names.

The balancer is the test itself on 127.0.0.1 (Proxy_protocol "127.0.0.0/8"),
writing headers by hand, and a real haproxy with send-proxy-v2.  The client
address a header names shows in Central_log, in Received: and in the l
file's client record; rules and limits judge it; a balancer's connection
without a valid header in time is closed without a greeting; a peer outside
Proxy_protocol is a plain SMTP client, whose PROXY line is a bad command.
"""
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

import selortest
from selortest import SmtpConn, parse_lfile, wait_for

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PROXIED = {"Proxy_protocol": "127.0.0.0/8"}


def v1(src, sport, dst="127.0.0.1", dport=25, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src=None, sport=0, dst="127.0.0.1", dport=25, tlvs=b"", local=False):
    """A v2 header: PROXY over TCP (IPv4 or IPv6 by src), or LOCAL."""
    if local:
        return SIG + b"\x20\x00" + struct.pack(">H", len(tlvs)) + tlvs
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    body = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst if fam == socket.AF_INET
                                                         else "::1")
    body += struct.pack(">HH", sport, dport) + tlvs
    return SIG + (b"\x21\x11" if fam == socket.AF_INET else b"\x21\x21") + \
        struct.pack(">H", len(body)) + body


def proxied_greeting(n, header=b"PROXY UNKNOWN\r\n"):
    """The greeting after a header, or b"" (the node does not answer yet)."""
    try:
        with socket.create_connection((n.host, n.port), timeout=2) as s:
            s.settimeout(5)
            s.sendall(header)
            return s.recv(512)
    except OSError:
        return b""


def proxied_node(nodes, **options):
    """A node that takes PROXY headers from 127.0.0.0/8: started and
    probed with a header (a plain probe would get no greeting)."""
    opts = dict(PROXIED)
    opts.update(options)
    n = nodes(options=opts)
    n.start(wait=False)
    wait_for(lambda: proxied_greeting(n).startswith(b"220"), timeout=20,
             what="the node to greet after a PROXY header")
    wait_for(lambda: len(n.children()) >= n.options["Smtp_workers"] + 1, timeout=20,
             what="the node's children")
    return n


def connect(n, header, src="127.0.0.1"):
    s = SmtpConn(socket.create_connection((n.host, n.port), timeout=30,
                                          source_address=(src, 0)))
    s.sendall(header)
    return s


def cmd(s, line):
    s.sendall(line + b"\r\n")
    return s.reply().decode()


def mail(s, helo=b"client.test"):
    """A whole transaction; the queue ID."""
    assert cmd(s, b"EHLO " + helo).startswith("250")
    assert cmd(s, b"MAIL FROM:<sender@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")
    assert cmd(s, b"DATA").startswith("354")
    s.sendall(b"Subject: proxied\r\n\r\nhello\r\n.\r\n")
    r = s.reply().decode()
    m = re.match(r"250 2\.0\.0 (\S+) Msg accepted", r)
    assert m, r
    return m.group(1)


def check_client(n, qid, ip, port, balancer="127.0.0.1"):
    shown = "[%s]" % ip if ":" in ip else ip
    wait_for(lambda: "proxied from %s: client %s:%d" % (balancer, shown, port) in n.log(),
             what="the substitution in Central_log")
    assert "(unknown [%s])" % ip in n.read_content(qid).decode()
    recs, _ = parse_lfile(n.read_qf(qid))
    assert recs["client"][0] == ip
    # every line of the session after the header names the client
    cid = re.search(r" (c\d+\.\d+) \S+ \* proxied from %s: client %s:%d" %
                    (re.escape(balancer), re.escape(shown), port), n.log()).group(1)
    lines = [l for l in n.log().splitlines() if " %s " % cid in l]
    after = lines[[i for i, l in enumerate(lines) if "proxied from" in l][0]:]
    assert all(" %s %s " % (cid, ip) in l for l in after), after


def test_v1_header_names_the_client(nodes):
    n = proxied_node(nodes)
    s = connect(n, v1("192.0.2.10", 40000))
    assert s.reply().startswith(b"220 mx.n1.test")
    qid = mail(s)
    s.close()
    check_client(n, qid, "192.0.2.10", 40000)


def test_v1_tcp6_and_smtp_in_the_same_segment(nodes):
    n = proxied_node(nodes)
    s = connect(n, v1("2001:db8::7", 1234, "::1") + b"EHLO pipelined.test\r\n")
    assert s.reply().startswith(b"220")
    assert s.reply().startswith(b"250-mx.n1.test")
    assert cmd(s, b"MAIL FROM:<sender@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")
    assert cmd(s, b"DATA").startswith("354")
    s.sendall(b"Subject: v6\r\n\r\nhello\r\n.\r\n")
    qid = s.reply().decode().split()[2]
    s.close()
    check_client(n, qid, "2001:db8::7", 1234)


def test_v2_header_with_tlvs_names_the_client(nodes):
    n = proxied_node(nodes)
    tlvs = b"\x01\x00\x04smtp" + b"\x04\x00\x03abc"   # ALPN, NOOP: skipped
    s = connect(n, v2("198.51.100.20", 65001, tlvs=tlvs))
    assert s.reply().startswith(b"220")
    qid = mail(s)
    s.close()
    check_client(n, qid, "198.51.100.20", 65001)


def test_v2_inet6_header_cut_in_pieces(nodes):
    n = proxied_node(nodes)
    h = v2("2001:db8::1:2", 587) + b"EHLO cut.test\r\n"
    s = SmtpConn(socket.create_connection((n.host, n.port), timeout=30))
    prev = 0
    for i in (5, 13, 17, 40, len(h)):   # each piece its own segment
        s.sendall(h[prev:i])
        prev = i
        time.sleep(0.1)
    assert s.reply().startswith(b"220")
    assert s.reply().startswith(b"250-")
    assert cmd(s, b"MAIL FROM:<sender@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")
    assert cmd(s, b"DATA").startswith("354")
    s.sendall(b"Subject: v6\r\n\r\nhello\r\n.\r\n")
    qid = s.reply().decode().split()[2]
    check_client(n, qid, "2001:db8::1:2", 587)


@pytest.mark.parametrize("header,what", [(b"PROXY UNKNOWN\r\n", "v1 UNKNOWN"),
                                         (v2(local=True), "v2 LOCAL")])
def test_no_address_in_the_header_keeps_the_peer(nodes, header, what):
    n = proxied_node(nodes)
    s = connect(n, header, src="127.0.0.3")
    assert s.reply().startswith(b"220")
    qid = mail(s)
    wait_for(lambda: "proxied from 127.0.0.3: no client address (%s)" % what in n.log(),
             what="the header logged")
    recs, _ = parse_lfile(n.read_qf(qid))
    assert recs["client"][0] == "127.0.0.3"


@pytest.mark.parametrize("first,why", [
    (b"EHLO client.test\r\n", "no PROXY header"),
    (b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n", "v1: bad port"),
    (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 25 extra\r\n", "v1: not six fields"),
    (b"PROXY " + b"x" * 200, "v1: unknown protocol"),
    (b"PROXY UNKNOWN " + b"x" * 200, "v1: header over 107 bytes"),
    (SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12, "v2: unknown command"),
    (SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12, "v2: not TCP"),
    (SIG + b"\x21\x11\x06\x01", "v2: header over 1552 bytes"),
])
def test_bad_header_closes_without_a_greeting(nodes, first, why):
    n = proxied_node(nodes)
    s = connect(n, first)
    assert s.reply(10) == b""       # closed, nothing said
    wait_for(lambda: "PROXY header refused: %s" % why in n.log(), what="the reason logged")
    assert "Invalid command" not in n.log()


def test_silent_balancer_connection_is_closed_after_the_time_limit(nodes):
    n = proxied_node(nodes, Timeout=60)
    silent = connect(n, b"")
    dripping = connect(n, b"PROXY TCP4 192.0.")   # a header that never ends
    start = time.monotonic()
    assert silent.reply(20) == b""
    assert dripping.reply(20) == b""
    took = time.monotonic() - start
    assert 4 <= took < 9, took
    wait_for(lambda: n.log().count("PROXY header refused: none within 5 s") == 2,
             what="both time-outs logged")
    assert "(17 bytes came)" in n.log()


def test_balancer_leaving_mid_header(nodes):
    n = proxied_node(nodes)
    s = connect(n, b"PROXY TCP4 192.0.2.1 ")
    time.sleep(0.2)
    s.close()
    wait_for(lambda: re.search(r"state proxy -> closed \(client closed the connection\)",
                               n.log()), what="the session closed")
    assert "proxied from 127.0.0.1: client" not in n.log()


def test_stop_while_a_header_is_awaited(nodes):
    n = proxied_node(nodes)
    s = connect(n, b"PROXY ")
    time.sleep(0.2)
    start = time.monotonic()
    assert n.stop() == 0
    assert time.monotonic() - start < 4
    assert s.reply(5) == b""
    assert "state proxy -> closed (node stopping)" in n.log()


def test_rules_and_limits_judge_the_client(nodes):
    n = proxied_node(nodes, **{"Event.connection": 'Ip? "192.0.2.66" Reply! "554 Not you" Deny!',
                               "Limit_cnx": 2, "Limit_time": 60, "Limit_buf": 100,
                               "Msg_perm_deny": "421 Slow down"})
    s = connect(n, v1("192.0.2.66", 1000))
    assert s.reply() == b"554 mx.n1.test Not you\r\n"
    s.close()
    replies = []
    for _ in range(4):
        s = connect(n, v2("203.0.113.5", 2000))
        replies.append(s.reply().decode())
        s.close()
    assert replies[0].startswith("220") and any(r.startswith("421 ") for r in replies), \
        replies
    # the balancer's own address, and other clients, are not counted
    s = connect(n, v2("203.0.113.6", 2000))
    assert s.reply().startswith(b"220")
    s.close()


def test_balancer_health_checks_are_not_counted_in_the_limits(nodes):
    """HAProxy's check-send-proxy sends v2 LOCAL on its checks: many of them
    from the balancer's address never trip Limit_cnx; v1 UNKNOWN (a client
    whose address the balancer lacks) is counted as the balancer."""
    n = proxied_node(nodes, **{"Limit_cnx": 2, "Limit_time": 60, "Limit_buf": 100,
                               "Msg_perm_deny": "421 Slow down"})
    for _ in range(6):
        s = connect(n, v2(local=True), src="127.0.0.4")
        assert s.reply().startswith(b"220")
        s.sendall(b"QUIT\r\n")
        s.close()
    assert "the balancer's own connection: not counted" in n.log()
    replies = []
    for _ in range(4):
        s = connect(n, b"PROXY UNKNOWN\r\n", src="127.0.0.4")
        replies.append(s.reply().decode())
        s.close()
    assert any(r.startswith("421 ") for r in replies), replies


@pytest.mark.parametrize("networks", ["", "10.0.0.0/8, 192.0.2.7"])
def test_peer_outside_proxy_protocol_is_plain_smtp(nodes, networks):
    n = nodes(options={"Proxy_protocol": networks}).start()
    s = n.connect()
    assert cmd(s, v1("192.0.2.10", 40000)[:-2]).startswith("500")
    assert cmd(s, b"EHLO client.test").startswith("250")
    s.close()
    assert "proxied" not in n.log()


def test_bad_network_is_a_config_error(nodes):
    n = nodes(options={"Proxy_protocol": "127.0.0.0/8 balancer.example"})
    rc, out = n.check()
    assert rc != 0
    assert re.search(r"selor\.conf:\d+: Proxy_protocol: bad network \"balancer\.example\"",
                     out), out


# ---- Tls_implicit: the header first, in clear, then the handshake ----

def tls_handshake(sock, ctx, first=b""):
    """A TLS client over sock by hand; first goes in the same write as the
    ClientHello.  The SSLObject and its BIOs."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    sock.sendall(first + out.read())
    while True:
        data = sock.recv(65536)
        assert data, "closed during the handshake"
        inc.write(data)
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
    sock.sendall(out.read())
    return tls, inc, out


def tls_read(sock, tls, inc):
    while True:
        try:
            return tls.read(4096)
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            assert data, "closed"
            inc.write(data)


@pytest.mark.parametrize("header", [v1("192.0.2.44", 4444), v2("192.0.2.44", 4444)])
def test_implicit_tls_after_the_header(nodes, workdir, header):
    from test_tls import TLS_MOD, client_ctx, make_cert
    cert, key = make_cert(workdir, "mx.n1.test")
    n = nodes(options=dict(PROXIED, Tls_module=TLS_MOD, Tls_implicit=1, Tls_pubkey=cert,
                           Tls_privkey=key))
    n.start(wait=False)

    def greeting():
        try:
            with socket.create_connection((n.host, n.port), timeout=2) as s:
                s.settimeout(5)
                tls, inc, _ = tls_handshake(s, client_ctx(), b"PROXY UNKNOWN\r\n")
                return tls_read(s, tls, inc)
        except (OSError, AssertionError, ssl.SSLError):
            return b""
    wait_for(lambda: greeting().startswith(b"220"), timeout=20, what="the node to greet")
    # the header and the ClientHello in one segment: no byte of the hello
    # may be taken for the header's
    s = socket.create_connection((n.host, n.port), timeout=30)
    tls, inc, out = tls_handshake(s, client_ctx(), header)
    assert tls_read(s, tls, inc).startswith(b"220 mx.n1.test")
    tls.write(b"QUIT\r\n")
    s.sendall(out.read())
    assert tls_read(s, tls, inc).startswith(b"221")
    s.close()
    wait_for(lambda: "proxied from 127.0.0.1: client 192.0.2.44:4444" in n.log(),
             what="the substitution")
    assert re.search(r" 192\.0\.2\.44 \* TLS TLSv1\.3 with cipher", n.log()), n.log()


# ---- a real haproxy in front ----

HAPROXY = shutil.which("haproxy")


def greets(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(5)
            return s.recv(512).startswith(b"220")
    except OSError:
        return False


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (make deps)")
def test_behind_a_real_haproxy(nodes, workdir):
    n = proxied_node(nodes)
    port = selortest.free_port()
    cfg = os.path.join(workdir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("global\n    maxconn 100\n\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n"
                "    timeout client 30s\n    timeout server 30s\n\n"
                "frontend smtp\n    bind 127.0.0.1:%d\n    default_backend selor\n\n"
                "backend selor\n    server n1 127.0.0.1:%d send-proxy-v2\n"
                % (port, n.port))
    r = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    log = open(os.path.join(workdir, "haproxy.log"), "wb")
    hap = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=log, stderr=log)
    try:
        wait_for(lambda: greets(port), timeout=20, what="haproxy to relay the greeting")
        with socket.create_connection(("127.0.0.1", port), timeout=30,
                                      source_address=("127.0.0.77", 0)) as raw:
            cport = raw.getsockname()[1]
            s = SmtpConn(raw)
            assert s.reply().startswith(b"220 mx.n1.test")
            qid = mail(s)
            assert cmd(s, b"QUIT").startswith("221")
        check_client(n, qid, "127.0.0.77", cport)
    finally:
        hap.terminate()
        hap.wait(timeout=10)
        log.close()
