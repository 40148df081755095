"""Outbound SMTP connection reuse (Smtp_reuse_time, Smtp_reuse_max): the
queue process parks a healthy session after a transaction and the next
delivery to the same destination takes it, as Postfix's scache does.  The
sink counts the connections it accepts; the summary log says conn=new or
conn=reused for every delivery."""
import re
import time

from selortest import wait_for
from test_delivery import World, fwd


def send_many(w, n, to, tag):
    """n messages to `to`, 50 a client connection (Max_msgs_per_cnx is
    100); their Message-IDs."""
    ids = []
    for first in range(0, n, 50):
        with w.node.smtp() as c:
            c.ehlo("client.test")
            for i in range(first, min(n, first + 50)):
                mid = "<%s.%d@client.test>" % (tag, i)
                code, msg = c.mail("someone@sender.test")
                assert code == 250, msg
                code, msg = c.rcpt(fwd(to))
                assert code == 250, msg
                code, msg = c.data("Subject: %s %d\r\nMessage-ID: %s\r\n\r\nhello\r\n"
                                   % (tag, i, mid))
                assert code == 250, msg
                ids.append(mid)
    return ids


def message_ids(sink):
    out = []
    for _, content in sink.messages():
        m = re.search(rb"^Message-ID: (<[^>]*>)", content, re.M | re.I)
        out.append(m.group(1).decode() if m else None)
    return out


def delivered(node, conn=None, to=""):
    lines = [l for l in node.log("summary").splitlines() if " delivered to=<%s" % to in l]
    return [l for l in lines if conn is None or (" conn=%s " % conn) in l]


def no_deferral(node):
    summary, warnings = node.log("summary"), node.log("warning")
    assert "deferred" not in summary, summary
    assert "deferred" not in warnings.lower(), warnings


def test_200_messages_few_connections(nodes, procs):
    # Connections = the most deliveries to the domain at once, plus new ones
    # after Smtp_reuse_max transactions or an idle time.  Dremote_max_procs
    # (default 20) bounds the first: a burst that outruns the deliveries
    # can legitimately hold 20 connections at once, so it is 10 here.
    w = World(nodes, procs, remote=["bob@remote.test"],
              options={"Dremote_max_procs": 10})
    ids = send_many(w, 200, "bob@remote.test", "many")
    wait_for(lambda: len(w.sink.messages()) >= 200, timeout=120, what="200 deliveries")
    wait_for(lambda: len(delivered(w.node)) >= 200, timeout=30, what="200 summary lines")
    time.sleep(0.5)                   # a duplicate would arrive now
    seen = message_ids(w.sink)
    assert sorted(seen) == sorted(ids)            # every one, exactly once
    conns = w.sink.stats()["total_connections"]
    new, reused = len(delivered(w.node, "new")), len(delivered(w.node, "reused"))
    print("connections=%d conn=new %d conn=reused %d" % (conns, new, reused))
    assert conns < 20, w.sink.stats()
    assert new + reused == 200 and new <= conns
    assert w.sink.stats()["max_transactions"] <= 100       # Smtp_reuse_max
    no_deferral(w.node)
    w.node.stop()             # the parked sessions say QUIT
    wait_for(lambda: w.sink.stats()["connections"] == 0, what="connections closed")
    assert w.sink.stats()["quits"] == conns, w.sink.stats()


def test_idle_session_quits_after_reuse_time(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test"], options={"Smtp_reuse_time": 2})
    send_many(w, 1, "bob@remote.test", "idle")
    wait_for(lambda: len(delivered(w.node)) == 1, timeout=30, what="delivery")
    assert w.sink.stats()["connections"] == 1          # parked
    wait_for(lambda: w.sink.stats()["connections"] == 0, timeout=8, what="idle QUIT")
    assert w.sink.stats()["quits"] == 1


def dead_cached_connection(nodes, procs, sink_args, options=None):
    """One message parks a session; the sink closes it after 1 s idle; the
    next message, 2 s later (within Smtp_reuse_time), still goes."""
    opts = {"Smtp_reuse_time": 30}
    opts.update(options or {})
    w = World(nodes, procs, remote=["bob@remote.test"], sink_args=sink_args, options=opts)
    send_many(w, 1, "bob@remote.test", "first")
    wait_for(lambda: len(delivered(w.node)) == 1, timeout=30, what="first delivery")
    time.sleep(2.0)
    send_many(w, 1, "bob@remote.test", "second")
    wait_for(lambda: len(delivered(w.node)) == 2, timeout=30, what="second delivery")
    assert message_ids(w.sink) == ["<first.0@client.test>", "<second.0@client.test>"]
    st = w.sink.stats()
    assert st["total_connections"] == 2 and st["idle_closed"] == 1, st
    assert len(delivered(w.node, "new")) == 2, w.node.log("summary")
    no_deferral(w.node)
    return w


def test_sink_drops_idle_connection_found_dead_on_use(nodes, procs):
    # the sink says nothing until the next MAIL, then closes: the cached
    # session is found dead on use and replaced by a fresh connection
    dead_cached_connection(nodes, procs, ["--idle-drop", "1"])


def test_sink_hangs_on_idle_connection(nodes, procs):
    # the sink stops answering: the reused session times out at MAIL
    # (Timeout 2) and a fresh connection takes the message
    dead_cached_connection(nodes, procs, ["--idle-hang", "1"], {"Timeout": 2})


def test_sink_closes_idle_connection(nodes, procs):
    # the sink closes at once: the cache forgets the session while idle
    dead_cached_connection(nodes, procs, ["--idle-close", "1"])


def test_refused_transaction_keeps_the_connection(nodes, procs):
    # PIPELINING: MAIL, RCPT and DATA go in one write; the RCPT is refused
    # and DATA's 554 is read before the session is parked; the next
    # message goes on it, after RSET
    w = World(nodes, procs, remote=["nobody@remote.test", "bob@remote.test"],
              sink_args=["--rcpt-rule", "nobody@remote.test=550"],
              options={"Smtp_reuse_time": 30})
    send_many(w, 1, "nobody@remote.test", "refused")
    wait_for(lambda: "failed to=<nobody@remote.test>" in w.node.log("summary"),
             timeout=30, what="the refusal")
    send_many(w, 1, "bob@remote.test", "after")
    wait_for(lambda: delivered(w.node, to="bob@"), timeout=30, what="delivery")
    assert len(delivered(w.node, "reused", "bob@")) == 1, w.node.log("summary")
    assert w.sink.stats()["total_connections"] == 1
    assert message_ids(w.sink) == ["<after.0@client.test>"]


def one_by_one(w, n):
    for i in range(n):
        send_many(w, 1, "bob@remote.test", "one%d" % i)
        wait_for(lambda: len(delivered(w.node)) == i + 1, timeout=30, what="delivery")


def test_reuse_max_1_is_one_connection_per_message(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test"],
              options={"Smtp_reuse_max": 1, "Smtp_reuse_time": 30})
    one_by_one(w, 6)
    assert w.sink.stats()["total_connections"] == 6
    assert len(delivered(w.node, "new")) == 6


def test_reuse_time_0_is_off(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test"], options={"Smtp_reuse_time": 0})
    one_by_one(w, 4)
    assert w.sink.stats()["total_connections"] == 4
    assert len(delivered(w.node, "new")) == 4


def test_reuse_max_bounds_transactions_per_connection(nodes, procs):
    w = World(nodes, procs, remote=["bob@remote.test"],
              options={"Smtp_reuse_max": 3, "Smtp_reuse_time": 30})
    one_by_one(w, 7)
    st = w.sink.stats()
    assert st["max_transactions"] == 3 and st["total_connections"] == 3, st
    assert len(delivered(w.node, "reused")) == 4


def test_reused_session_keeps_its_tls(nodes, procs, workdir):
    # Tls_delivery 2: the certificate is verified once, on the connection
    # that is then reused; the second message goes under the same TLS
    from test_tls import tls_world
    w = tls_world(nodes, procs, workdir, 2)
    one_by_one(w, 2)
    lines = delivered(w.node)
    assert " conn=new" in lines[0] and " conn=reused" in lines[1], lines
    assert all(" tls=TLSv1.3/" in l and "/verified " in l for l in lines), lines
    assert [e.get("tls") for e in w.sink.log()] == ["TLSv1.3", "TLSv1.3"]
    assert w.sink.stats()["total_connections"] == 1
