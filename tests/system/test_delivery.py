"""Delivery to remote domains: MX lookup through a real DNS server (dnsmasq
on a loopback port), SMTP sinks on loopback addresses of their own, retries,
delivery reports, the qlimit queue and operator commands."""
import email
import email.policy
import os
import re
import subprocess
import time

import pytest

import selortest
from selortest import loopback_addr, parse_lfile, wait_for


def fwd(addr):
    """The local alias that forwards to a remote address.

    Relaying needs authentication, which is not offered yet: remote mail
    gets into the queue the way forwarding does, through an alias."""
    local, domain = addr.split("@")
    return "%s.%s@fwd.test" % (local, domain)


class World:
    """A node, a DNS server and two sinks: mx.remote.test and mx.sender.test.
    Every address in `remote` gets a forwarding alias (see fwd)."""

    def __init__(self, nodes, procs, remote=(), sink_args=(), options=None,
                 extra_mx=None, extra_hosts=None):
        self.sink_ip = loopback_addr()
        self.sink = procs.sink(self.sink_ip, 25, sink_args)
        self.bounce_ip = loopback_addr()
        self.bounces = procs.sink(self.bounce_ip, 25)
        mx = {"remote.test": [(10, "mx.remote.test")],
              "sender.test": [(10, "mx.sender.test")]}
        hosts = {"mx.remote.test": self.sink_ip, "mx.sender.test": self.bounce_ip}
        mx.update(extra_mx or {})
        hosts.update(extra_hosts or {})
        self.dns = procs.dns(mx=mx, hosts=hosts)
        opts = {"Dns_servers": self.dns.server, "Immed_delivery": 2, "Qsleep_time": 2,
                "Connect_timeout": 5, "Timeout": 10}
        opts.update(options or {})
        passwd = selortest.DEFAULT_PASSWD + "".join(
            "%s:{ALIAS}%s\n" % (fwd(a), a) for a in remote)
        self.node = nodes(options=opts, passwd=passwd).start()

    def send(self, to, frm="someone@sender.test", subject="test", body="hello\r\n"):
        to = to if isinstance(to, list) else [to]
        with self.node.smtp() as c:
            c.ehlo("client.test")
            c.mail(frm)
            for r in to:
                code, msg = c.rcpt(r if r.endswith("example.com") else fwd(r))
                assert code == 250, msg
            code, msg = c.data("Subject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n%s"
                               % (subject, subject.replace(" ", "."), body))
            assert code == 250, msg
            return msg.decode().split()[1]

    def ctl(self, *args):
        r = subprocess.run([selortest.SELORCTL, "-c", self.node.conf] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr


def gone(node, qid):
    return qid not in node.queue_files("l") and qid not in node.queue_files("c")


def test_remote_delivery_by_mx(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test", "carol@remote.test"])
    qid = w.send(["bob@remote.test", "carol@remote.test"], subject="by mx")
    wait_for(lambda: w.sink.messages(), timeout=30, what="delivery")
    env, content = w.sink.messages()[0]
    assert sorted(env["rcpts"]) == ["bob@remote.test", "carol@remote.test"]
    assert env["mail_from"] == "someone@sender.test"
    assert b"Subject: by mx\r\n" in content
    assert content.startswith(b"Received: from client.test")
    assert len(w.sink.log()) == 1            # one transaction for the domain
    wait_for(lambda: gone(w.node, qid), what="queue files removed")
    assert w.bounces.messages() == []
    summary = w.node.log("summary")
    assert re.search(r"delivered to=<bob@remote.test> relay=mx.remote.test\[%s\]:25"
                     % re.escape(w.sink_ip), summary), summary


def test_mx_preference_and_fallback(nodes, procs):
    dead = loopback_addr()   # nothing listens there: connection refused
    backup_ip = loopback_addr()
    backup = procs.sink(backup_ip, 25)
    w = World(nodes, procs, remote=["x@pref.test"], extra_mx={"pref.test": [(20, "backup.pref.test"),
                                                    (10, "primary.pref.test")]},
              extra_hosts={"primary.pref.test": dead, "backup.pref.test": backup_ip})
    qid = w.send("x@pref.test", subject="fallback")
    wait_for(lambda: backup.messages(), timeout=30, what="delivery via the backup MX")
    assert backup.messages()[0][0]["rcpts"] == ["x@pref.test"]
    wait_for(lambda: gone(w.node, qid), what="removed")


def test_domain_without_mx_uses_its_address(nodes, procs):
    ip = loopback_addr()
    w = World(nodes, procs, remote=["y@plain.test"], extra_hosts={"plain.test": ip})
    sink = procs.sink(ip, 25)
    w.send("y@plain.test", subject="no mx")
    wait_for(lambda: sink.messages(), timeout=30, what="delivery to the A record")
    assert w.sink.messages() == []


def test_temporary_failure_then_retry(nodes, procs):
    w = World(nodes, procs, remote=["later@remote.test"],
              sink_args=["--rcpt-rule", "later@remote.test=450x1"])
    qid = w.send("later@remote.test", subject="retry")
    wait_for(lambda: any(e["refused"] for e in w.sink.log()), timeout=30,
             what="the first, refused attempt")
    wait_for(lambda: "deferred to=<later@remote.test>" in w.node.log("summary"),
             what="deferral recorded")
    recs, rcpts = parse_lfile(w.node.read_qf(qid))
    assert rcpts[0][0] == "P" and rcpts[0][1] == "1"
    assert rcpts[0][5].startswith("450")
    assert int(rcpts[0][2]) > time.time() + 60     # Queue_time from now
    code, out = w.ctl("flush", qid)
    assert code == 0, out
    wait_for(lambda: w.sink.messages(), timeout=30, what="the retry")
    wait_for(lambda: gone(w.node, qid), what="removed after the retry")
    assert w.bounces.messages() == []


def parse_report(content):
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    groups = status.get_payload()
    return msg, parts, groups


def test_permanent_failure_bounces_to_sender(nodes, procs):
    w = World(nodes, procs, remote=["nobody@remote.test", "fine@remote.test"],
              sink_args=["--rcpt-rule", "nobody@remote.test=550"])
    qid = w.send(["nobody@remote.test", "fine@remote.test"], subject="bounce me")
    wait_for(lambda: w.bounces.messages(), timeout=30, what="the report")
    env, content = w.bounces.messages()[0]
    assert env["mail_from"] == ""
    assert env["rcpts"] == ["someone@sender.test"]
    msg, parts, groups = parse_report(content)
    recipients = [g for g in groups if g.get("Final-Recipient")]
    assert len(recipients) == 1
    assert "nobody@remote.test" in recipients[0]["Final-Recipient"]
    assert recipients[0]["Action"] == "failed"
    assert recipients[0]["Status"].startswith("5.")
    assert "550" in recipients[0]["Diagnostic-Code"]
    assert "Subject: bounce me" in parts[2].get_content() if hasattr(parts[2], "get_content") \
        else True
    # the other recipient was delivered once, and the message is gone
    assert [m[0]["rcpts"] for m in w.sink.messages()] == [["fine@remote.test"]]
    wait_for(lambda: gone(w.node, qid), what="removed")


def test_no_report_for_a_report(nodes, procs):
    w = World(nodes, procs, remote=["nobody@remote.test"],
              sink_args=["--rcpt-rule", "*@remote.test=550"])
    with w.node.smtp() as c:
        c.ehlo("x.test")
        c.mail("<>")
        c.rcpt(fwd("nobody@remote.test"))
        code, msg = c.data("Subject: a report\r\n\r\nx\r\n")
        qid = msg.decode().split()[1]
    wait_for(lambda: gone(w.node, qid), timeout=30, what="removed")
    assert "no report to=<nobody@remote.test> (null sender)" in w.node.log("summary")
    time.sleep(1)
    assert w.bounces.messages() == []


def test_max_attempts_gives_up_with_a_report(nodes, procs):
    w = World(nodes, procs, remote=["slow@remote.test"],
              sink_args=["--rcpt-rule", "slow@remote.test=451"],
              options={"Max_attempts": 2})
    qid = w.send("slow@remote.test", subject="give up")
    wait_for(lambda: "deferred to=<slow@remote.test>" in w.node.log("summary"),
             timeout=30, what="first deferral")
    w.ctl("flush", qid)
    wait_for(lambda: w.bounces.messages(), timeout=30, what="the report")
    msg, parts, groups = parse_report(w.bounces.messages()[0][1])
    rec = [g for g in groups if g.get("Final-Recipient")][0]
    assert "slow@remote.test" in rec["Final-Recipient"]
    assert "451" in rec["Diagnostic-Code"]
    wait_for(lambda: gone(w.node, qid), what="removed")


def test_max_qprocs_bounds_deliveries_in_flight(nodes, procs):
    w = World(nodes, procs, remote=["r%d@remote.test" % i for i in range(12)],
              sink_args=["--delay-data", "0.4"],
              options={"Max_qprocs": 2, "Immed_delivery": 0, "Qsleep_time": 3600})
    ids = [w.send("r%d@remote.test" % i, subject="q%d" % i) for i in range(12)]
    code, out = w.ctl("flush")
    assert code == 0, out
    wait_for(lambda: len(w.sink.messages()) == 12, timeout=60, what="12 deliveries")
    stats = w.sink.stats()
    assert stats["max_in_data"] == 2, stats
    assert stats["max_connections"] <= 2, stats
    wait_for(lambda: all(gone(w.node, q) for q in ids), what="all removed")


def test_tarpit_limit_splits_recipients(nodes, procs):
    w = World(nodes, procs, remote=["t%d@remote.test" % i for i in range(5)],
              options={"Tarpit_limit": 2, "Tarpit_sleep": 1})
    qid = w.send(["t%d@remote.test" % i for i in range(5)], subject="tarpit")
    wait_for(lambda: len(w.sink.messages()) == 3, timeout=30, what="three batches")
    assert [len(m[0]["rcpts"]) for m in w.sink.messages()] == [2, 2, 1]
    wait_for(lambda: gone(w.node, qid), what="removed")


def test_relay_host_takes_everything(nodes, procs):
    smarthost = procs.sink("127.0.0.1", 0)
    w = World(nodes, procs, remote=["z@remote.test"],
              options={"Relay_host": "127.0.0.1:%d" % smarthost.port})
    w.send("z@remote.test", subject="smarthost")
    wait_for(lambda: smarthost.messages(), timeout=30, what="delivery to Relay_host")
    assert w.sink.messages() == []


def test_unresolvable_domain_bounces(nodes, procs):
    w = World(nodes, procs, remote=["x@no-such-domain.test"])
    qid = w.send("x@no-such-domain.test", subject="nxdomain")
    wait_for(lambda: w.bounces.messages(), timeout=30, what="the report")
    msg, parts, groups = parse_report(w.bounces.messages()[0][1])
    rec = [g for g in groups if g.get("Final-Recipient")][0]
    assert "x@no-such-domain.test" in rec["Final-Recipient"]
    wait_for(lambda: gone(w.node, qid), what="removed")


def test_hold_release_delete(nodes, procs):
    w = World(nodes, procs, remote=["a@remote.test", "b@remote.test"],
              options={"Immed_delivery": 0, "Qsleep_time": 3600})
    a = w.send("a@remote.test", subject="held")
    b = w.send("b@remote.test", subject="deleted")
    assert w.ctl("hold", a)[0] == 0
    code, out = w.ctl("queue")
    assert "(held)" in out and a in out and b in out
    assert w.ctl("delete", b)[0] == 0
    assert gone(w.node, b)
    code, out = w.ctl("flush")
    assert code == 0, out
    time.sleep(2)
    assert w.sink.messages() == []            # held: not delivered
    assert w.ctl("release", a)[0] == 0
    wait_for(lambda: w.sink.messages(), timeout=30, what="delivery after release")
    assert w.sink.messages()[0][0]["rcpts"] == ["a@remote.test"]
    code, out = w.ctl("delete", b)
    assert code == 1 and "no message" in out
    code, out = w.ctl("queue", "show", a)


def test_qlimit_queue(nodes, procs):
    w = World(nodes, procs, remote=["q@remote.test"], options={"Qlimit_senders": "@bulk.test",
                                     "Immed_delivery": 0, "Qsleep_time": 3600})
    qid = w.send("q@remote.test", frm="news@bulk.test", subject="bulk")
    qdir = os.path.join(w.node.spool, "qlimit")
    assert os.path.exists(os.path.join(qdir, "l" + qid))
    assert not os.path.exists(os.path.join(w.node.spool, "l" + qid))
    recs, _ = parse_lfile(open(os.path.join(qdir, "l" + qid)).read())
    assert int(recs["flags"][0]) & 4
    code, out = w.ctl("queue")
    assert "(qlimit)" in out
    assert w.ctl("flush")[0] == 0
    wait_for(lambda: w.sink.messages(), timeout=30, what="qlimit delivery")
    wait_for(lambda: not os.path.exists(os.path.join(qdir, "l" + qid)), what="removed")


def test_undeliverable_report_is_kept_and_postmaster_told(nodes, procs, workdir):
    """The report itself fails: with Cp_errors 1 it is copied into
    Cp_errors_path, and Postmaster (a local mailbox) gets a notice."""
    mda, got = selortest.mda_script(workdir, "cat >> %(out)s", name="pm")
    w = World(nodes, procs, remote=["nobody@remote.test"],
              sink_args=["--rcpt-rule", "nobody@remote.test=550"],
              options={"Postmaster": "alice@example.com", "Dlocal": mda,
                       "Dlocal_type": 0, "Cp_errors": 1})
    w.bounces.stop()
    w.bounces = selortest.Sink(w.node.dir, w.bounce_ip, 25,
                               ["--rcpt-rule", "*@sender.test=550"])
    try:
        w.send("nobody@remote.test", subject="doubly failed")
        wait_for(lambda: "undeliverable delivery report" in open(got).read(), timeout=60,
                 what="the notice to Postmaster")
        errors = os.path.join(w.node.spool, "errors")
        wait_for(lambda: any(n.startswith("l") for n in os.listdir(errors)),
                 what="the copy in Cp_errors_path")
        copied = [n for n in os.listdir(errors) if n.startswith("c")]
        assert len(copied) == 1
        with open(os.path.join(errors, copied[0]), "rb") as f:
            assert b"multipart/report" in f.read()
        wait_for(lambda: w.node.queue_files("l") == [], timeout=30, what="queue empty")
        assert w.bounces.messages() == []
    finally:
        w.bounces.stop()


@pytest.mark.parametrize("alias_ip", [1, 0])
def test_mx_pointing_back_at_this_node(nodes, procs, alias_ip):
    """Mx_alias_ip 1: an MX that is this node's own address and port is a
    loop, deferred; with 0 Selor connects to itself, which refuses to relay."""
    me = loopback_addr()
    w = World(nodes, procs, remote=["x@loop.test"], extra_mx={"loop.test": [(10, "mx.loop.test")]},
              extra_hosts={"mx.loop.test": me},
              options={"Bind_address": me, "Port": 25, "Mx_alias_ip": alias_ip})
    w.send("x@loop.test", subject="loop")
    if alias_ip:
        wait_for(lambda: "deferred to=<x@loop.test>" in w.node.log("summary"), timeout=30,
                 what="the loop deferred")
        assert "points back to this server (loop)" in w.node.log("summary")
    else:
        wait_for(lambda: "failed to=<x@loop.test>" in w.node.log("summary"), timeout=30,
                 what="the relay refusal")
        assert "Relay denied" in w.node.log("summary")


def test_unreachable_domain_is_paused(nodes, procs):
    """No server of dead.test answers: the next message for it waits out a
    pause instead of trying to connect again."""
    dead = loopback_addr()
    w = World(nodes, procs, remote=["a@dead.test", "b@dead.test"],
              extra_mx={"dead.test": [(10, "mx.dead.test")]},
              extra_hosts={"mx.dead.test": dead}, options={"Connect_timeout": 2})
    w.send("a@dead.test", subject="first")
    wait_for(lambda: "deferred to=<a@dead.test>" in w.node.log("summary"), timeout=30,
             what="the first deferral")
    assert "Could not connect to remote server" in w.node.log("summary")
    w.send("b@dead.test", subject="second")
    wait_for(lambda: "deferred to=<b@dead.test>" in w.node.log("summary"), timeout=30,
             what="the second deferral")
    line = [l for l in w.node.log("summary").splitlines() if "to=<b@dead.test>" in l][-1]
    assert "domain paused after failures" in line


def test_stop_while_planning_waits_for_a_lookup(nodes, procs):
    """A run stopped (SIGTERM, after the queue's grace time) while a
    recipient's account lookup is still pending writes a file that can be
    read again: the recipients already planned for SMTP keep a real state,
    and after a restart they are delivered."""
    mods = [os.path.join(selortest.MOD_DIR, "selor_passwd.so"),
            os.path.join(selortest.TESTMOD_DIR, "selor_slow.so")]
    w = World(nodes, procs, remote=["bob@remote.test"],
              options={"Module": mods, "Slow_domains": "slow.test",
                       "Slow_delay_ms": 50, "Slow_others_ms": -1, "Immed_delivery": 0,
                       "Qsleep_time": 3600})
    with w.node.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt(fwd("bob@remote.test"))[0] == 250
        assert c.rcpt("u@slow.test")[0] == 250
        code, msg = c.data(b"Subject: planning\r\n\r\nbody\r\n")
        assert code == 250, msg
    qid = msg.decode().split()[1]
    assert w.node.stop() == 0
    # Now bob's domain is known at once ("not ours"), u@slow.test's lookup
    # outlasts the queue's grace time: the run is stopped while planning.
    w.node.options.update({"Slow_delay_ms": 60000, "Qsleep_time": 1})
    w.node.start()
    time.sleep(2)
    assert w.node.stop() == 0
    recs, rcpts = parse_lfile(w.node.read_qf(qid))
    assert sorted(r[0] for r in rcpts) == ["P", "P"], rcpts
    assert "cannot be used" not in w.node.log("warning")
    assert w.sink.messages() == []
    w.node.options["Slow_delay_ms"] = 50
    w.node.start()
    wait_for(lambda: w.sink.messages(), timeout=30, what="delivery after the restart")
    assert w.sink.messages()[0][0]["rcpts"] == ["bob@remote.test"]
