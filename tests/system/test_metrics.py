"""The node's metrics (src/core/metrics.c) at GET /metrics on Metrics_port:
the text parses with the Prometheus parser (Debian's python3-prometheus-client),
the counters match what the test sent and what was delivered, and killing
the SMTP workers (the master restarts them in their slots) loses nothing.

The HTTP side is the ops process's; on a build without Metrics_port these
tests are skipped."""
import base64
import os
import signal
import urllib.request

import pytest

import selortest
from selortest import loopback_addr, wait_for

parser = pytest.importorskip("prometheus_client.parser")


def fwd(addr):
    """The local alias forwarding to a remote address (as test_delivery.py)."""
    local, domain = addr.split("@")
    return "%s.%s@fwd.test" % (local, domain)


def metrics_node(nodes, options=None, passwd=None):
    """A node with Metrics_port set, or a skip when the build has no such option."""
    opts = {"Metrics_port": selortest.free_port()}
    opts.update(options or {})
    n = nodes(options=opts, passwd=passwd)
    code, out = n.check()
    if code != 0 and "Metrics_port" in out:
        pytest.skip("no Metrics_port in this build: %s" % out.strip())
    assert code == 0, out
    return n.start()


def scrape(node):
    """GET /metrics: {(name, ((label, value), ...)): value} of every sample,
    after the text went through the Prometheus parser."""
    url = "http://127.0.0.1:%d/metrics" % node.options["Metrics_port"]
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith("text/plain")
        text = r.read().decode()
    out, types = {}, {}
    for fam in parser.text_string_to_metric_families(text):
        assert fam.name not in types, "family %s twice" % fam.name
        types[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))))


def session(node, *lines):
    """One SMTP session: EHLO, then each line with its reply; QUIT."""
    with node.smtp() as c:
        c.ehlo("client.test")
        return [c.docmd(line) for line in lines]


def send(node, to, frm="someone@sender.test"):
    with node.smtp() as c:
        c.ehlo("client.test")
        assert c.mail(frm)[0] == 250
        code, msg = c.rcpt(to)
        assert code == 250, msg
        code, msg = c.data("Subject: metrics\r\n\r\nhello\r\n")
        assert code == 250, msg


def test_counters_match_what_was_sent_and_delivered(nodes, procs, workdir):
    sink_ip, bounce_ip = loopback_addr(), loopback_addr()
    procs.sink(sink_ip, 25, ["--rcpt-rule", "later@remote.test=450",
                             "--rcpt-rule", "gone@remote.test=550"])
    reports = procs.sink(bounce_ip, 25)
    dns = procs.dns(mx={"remote.test": [(10, "mx.remote.test")],
                        "sender.test": [(10, "mx.sender.test")]},
                    hosts={"mx.remote.test": sink_ip, "mx.sender.test": bounce_ip})
    mda, got = selortest.mda_script(workdir, "cat >> %(out)s")
    remote = ["ok@remote.test", "gone@remote.test", "later@remote.test"]
    passwd = selortest.DEFAULT_PASSWD + "".join("%s:{ALIAS}%s\n" % (fwd(a), a) for a in remote)
    n = metrics_node(nodes, passwd=passwd, options={
        "Dns_servers": dns.server, "Immed_delivery": 2, "Qsleep_time": 2,
        "Connect_timeout": 5, "Timeout": 10, "Dlocal": mda + " %l", "Dlocal_type": 0,
        "Auth_plaintext": 1, "Incorrect_pass_delay": 0,
        "Event.rcpt": 'To? "bob@example.com" Reply! "550 Not here" Deny!'})
    before = scrape(n)
    for name in ("selor_messages_accepted_total", "selor_smtpd_auth_failures_total",
                 "selor_redis_commands_total", "selor_fencing_aborts_total"):
        assert val(before, name) == 0, name

    for _ in range(3):
        send(n, fwd("ok@remote.test"))
    for _ in range(2):
        send(n, "alice@example.com")
    send(n, fwd("gone@remote.test"))       # bounced; its report is delivered
    send(n, fwd("later@remote.test"))      # deferred; stays in the queue
    r = session(n, "MAIL FROM:<x@sender.test>", "RCPT TO:<bob@example.com>")
    assert r[1][0] == 550
    plain = base64.b64encode(b"\0alice@example.com\0wrong").decode()
    assert session(n, "AUTH PLAIN " + plain)[0][0] == 535

    def deliveries(m, transport, status):
        return val(m, "selor_deliveries_total", transport=transport, status=status)

    def settled():
        m = scrape(n)
        return (deliveries(m, "remote", "delivered") == 4 and
                deliveries(m, "local", "delivered") == 2 and
                deliveries(m, "remote", "bounced") == 1 and
                deliveries(m, "remote", "deferred") == 1 and
                val(m, "selor_queue_messages", queue="main") == 1 and m)
    m = wait_for(settled, timeout=60, interval=0.5, what="deliveries in the metrics")
    assert len(reports.messages()) == 1
    with open(got) as f:
        assert f.read().count("Subject: metrics") == 2

    for transport in ("local", "remote", "none"):
        for status in ("delivered", "deferred", "bounced"):
            want = {("remote", "delivered"): 4, ("local", "delivered"): 2,
                    ("remote", "bounced"): 1, ("remote", "deferred"): 1}
            assert deliveries(m, transport, status) == want.get((transport, status), 0), \
                (transport, status)
    conns = "selor_smtpd_connections_total"
    assert val(m, conns) - val(before, conns) == 9      # 7 messages, RCPT, AUTH
    assert val(m, "selor_messages_accepted_total") == 7
    assert val(m, "selor_recipients_accepted_total") == 7
    assert val(m, "selor_message_size_bytes_count") == 7
    assert val(m, "selor_message_size_bytes_bucket", le="+Inf") == 7
    assert val(m, "selor_message_size_bytes_sum") > 7 * len("Subject: metrics")
    assert val(m, "selor_delivery_delay_seconds_count") == 6
    assert val(m, "selor_smtpd_auth_failures_total") == 1
    assert val(m, "selor_rules_verdicts_total", event="rcpt", verdict="deny") == 1
    assert val(m, "selor_rules_verdicts_total", event="rcpt", verdict="none") == 7
    assert val(m, "selor_rules_verdicts_total", event="rcpt", verdict="accept") == 0
    for reason in ("limit", "rules", "tls", "auth", "proxy"):
        assert val(m, "selor_smtpd_connections_refused_total", reason=reason) == 0
    assert val(m, "selor_queue_messages", queue="qlimit") == 0
    assert val(m, "selor_tls_handshakes_total", direction="in") == 0
    assert val(m, "selor_redis_commands_total") == 0      # embedded coordination
    assert val(m, "selor_fencing_aborts_total") == 0
    assert val(m, "selor_lease_renewals_missed_total") == 0


def test_tls_handshakes_in_and_out(nodes, procs, workdir):
    from test_tls import TLS_MOD, client_ctx, make_cert
    cert, key = make_cert(workdir, "mx.n1.test")
    scert, skey = make_cert(workdir, "mx.remote.test", "sink")
    os.chmod(skey, 0o644)     # the sink runs as the test's user
    sink = procs.sink("127.0.0.1", 0, ["--tls-cert", scert, "--tls-key", skey])
    n = metrics_node(nodes, passwd=selortest.DEFAULT_PASSWD + "%s:{ALIAS}bob@remote.test\n"
                     % fwd("bob@remote.test"), options={
                         "Tls_module": TLS_MOD, "Tls_enable": 1, "Tls_pubkey": cert,
                         "Tls_privkey": key, "Tls_delivery": 1, "Immed_delivery": 2,
                         "Relay_host": "127.0.0.1:%d" % sink.port})
    with n.smtp() as c:
        c.ehlo("client.test")
        assert c.starttls(context=client_ctx())[0] == 220
        c.sendmail("someone@sender.test", [fwd("bob@remote.test")],
                   "Subject: over tls\r\n\r\nhello\r\n")
    s = n.connect()                      # no TLS hello after STARTTLS: a failure
    s.sendall(b"STARTTLS\r\n")
    assert s.reply().startswith(b"220")
    s.sendall(b"EHLO plain.test\r\n" * 50)
    s.sock.settimeout(10)
    try:
        while s.sock.recv(1000):
            pass
    except OSError:
        pass
    s.sock.close()

    def settled():
        m = scrape(n)
        return (val(m, "selor_deliveries_total", transport="remote", status="delivered") == 1
                and val(m, "selor_tls_handshake_failures_total", direction="in") == 1 and m)
    m = wait_for(settled, timeout=30, interval=0.5, what="delivery and the failed handshake")
    assert [e.get("tls") for e in sink.log()] == ["TLSv1.3"]
    assert val(m, "selor_tls_handshakes_total", direction="in") == 2
    assert val(m, "selor_smtpd_connections_refused_total", reason="tls") == 1
    assert val(m, "selor_tls_handshakes_total", direction="out") == 1
    assert val(m, "selor_tls_handshake_failures_total", direction="out") == 0


def test_redis_round_trips_and_errors(nodes, procs):
    redis = procs.redis()
    n = metrics_node(nodes, options={"Redis_server": redis.server})
    wait_for(lambda: val(scrape(n), "selor_redis_commands_total") > 0, timeout=20,
             interval=0.5, what="Redis round trips")
    assert val(scrape(n), "selor_redis_errors_total") == 0
    # Redis refuses every script that writes: each answer is an error
    redis.cmd("CONFIG", "SET", "maxmemory", "1")
    send(n, "alice@example.com")        # a connection check and an announcement
    wait_for(lambda: val(scrape(n), "selor_redis_errors_total") > 0, timeout=20,
             interval=0.5, what="Redis errors")
    m = scrape(n)
    assert val(m, "selor_redis_errors_total") <= val(m, "selor_redis_commands_total")


def test_counts_survive_a_worker_restart(nodes):
    n = metrics_node(nodes, options={"Smtp_workers": 2})
    for _ in range(3):
        send(n, "alice@example.com")
    assert val(scrape(n), "selor_messages_accepted_total") == 3
    old = selortest.process_by_name(n.proc.pid, "selor-smtp")
    assert len(old) == 2
    for pid in old:
        os.kill(pid, signal.SIGKILL)

    def restarted():
        now = selortest.process_by_name(n.proc.pid, "selor-smtp")
        return len(now) == 2 and not set(now) & set(old)
    wait_for(restarted, timeout=30, what="the workers restarted")
    wait_for(n.accepting, timeout=20, what="accepting again")
    assert val(scrape(n), "selor_messages_accepted_total") == 3
    send(n, "alice@example.com")
    assert val(scrape(n), "selor_messages_accepted_total") == 4
