"""Outbound SMTP connection reuse (Smtp_reuse_time, Smtp_reuse_max): the
queue process parks a healthy session after a transaction and the next
delivery to the same destination takes it, as Postfix's scache does.  The
sink counts the connections it accepts; the summary log says conn=new or
conn=reused for every delivery."""
import re
import time

from selortest import loopback_addr, wait_for
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
    # At the defaults: up to 20 deliveries to the domain at once
    # (Dremote_max_procs), on at most 10 connections (Smtp_dest_conns), the
    # others waiting for a session another delivery hands back; new ones
    # come after Smtp_reuse_max transactions or an idle time.
    w = World(nodes, procs, remote=["bob@remote.test"])
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


def test_busy_destination_does_not_hold_up_another(nodes, procs):
    # remote.test's sink takes 1.5 s per message: of its 20 deliveries
    # at once, 10 have a connection and 10 wait in line for one; other.test
    # meanwhile gets its message at once, on its own connection
    other_ip = loopback_addr()
    other = procs.sink(other_ip, 25)
    w = World(nodes, procs, remote=["bob@remote.test", "carol@other.test"],
              sink_args=["--delay-data", "1.5"], options={"Connect_timeout": 60},
              extra_mx={"other.test": [(10, "mx.other.test")]},
              extra_hosts={"mx.other.test": other_ip})
    ids = send_many(w, 40, "bob@remote.test", "busy")
    wait_for(lambda: w.sink.stats()["max_connections"] >= 10, timeout=30,
             what="10 connections to the busy sink")
    start = time.monotonic()
    send_many(w, 1, "carol@other.test", "other")
    wait_for(lambda: len(other.messages()) == 1, timeout=30, what="other.test delivery")
    took = time.monotonic() - start
    busy_left = 40 - len(w.sink.messages())
    assert took < 1.5 and busy_left > 0, (took, busy_left)
    wait_for(lambda: len(delivered(w.node, to="bob@")) == 40, timeout=120,
             what="40 deliveries")
    st = w.sink.stats()
    assert st["max_connections"] == 10 and st["total_connections"] == 10, st
    assert sorted(message_ids(w.sink)) == sorted(ids)
    assert len(delivered(w.node, "reused", "bob@")) == 30
    no_deferral(w.node)


def test_waiting_run_gets_the_session_handed_back(nodes, procs):
    # Smtp_dest_conns 1: every delivery waits for the one connection
    w = World(nodes, procs, remote=["bob@remote.test"], sink_args=["--delay-data", "0.2"],
              options={"Smtp_dest_conns": 1, "Connect_timeout": 60})
    ids = send_many(w, 8, "bob@remote.test", "one")
    wait_for(lambda: len(delivered(w.node)) == 8, timeout=60, what="8 deliveries")
    st = w.sink.stats()
    assert st["total_connections"] == 1 and st["max_transactions"] == 8, st
    assert sorted(message_ids(w.sink)) == sorted(ids)
    no_deferral(w.node)


def test_wait_for_a_connection_is_bounded(nodes, procs):
    # the one connection is busy for 4 s; the second delivery waits
    # Connect_timeout (1 s), then connects anyway: no deferral
    w = World(nodes, procs, remote=["bob@remote.test"], sink_args=["--delay-data", "4"],
              options={"Smtp_dest_conns": 1, "Connect_timeout": 1})
    start = time.monotonic()
    ids = send_many(w, 2, "bob@remote.test", "two")
    wait_for(lambda: len(delivered(w.node)) == 2, timeout=30, what="2 deliveries")
    took = time.monotonic() - start
    st = w.sink.stats()
    assert st["total_connections"] == 2 and st["max_connections"] == 2, st
    assert took < 7.5, took           # side by side, not one after the other
    assert sorted(message_ids(w.sink)) == sorted(ids)
    assert len(delivered(w.node, "new")) == 2
    no_deferral(w.node)


def test_stop_with_deliveries_in_line(nodes, procs):
    # Smtp_dest_conns 1, a sink that takes 30 s a message: one delivery
    # holds the connection and the others wait in line when the node
    # stops; at the end of the queue's grace time (15 s) every run goes,
    # those in line too, cleanly (the sanitizers watch).  After a restart,
    # to a quick sink, the messages that were in line arrive (the one cut
    # in DATA is deferred: it is not looked at)
    w = World(nodes, procs, remote=["bob@remote.test"], sink_args=["--delay-data", "30"],
              options={"Smtp_dest_conns": 1, "Connect_timeout": 60, "Timeout": 60})
    ids = send_many(w, 4, "bob@remote.test", "line")
    wait_for(lambda: w.sink.stats()["in_data"] == 1, timeout=30, what="one in DATA")
    time.sleep(1.0)
    assert w.sink.stats()["total_connections"] == 1, w.sink.stats()
    assert w.node.stop() == 0
    assert message_ids(w.sink) == []
    assert delivered(w.node) == []
    w.sink.stop()
    w.sink = procs.sink(w.sink_ip, 25)
    w.node.start()
    wait_for(lambda: len(message_ids(w.sink)) >= 3, timeout=60, what="3 deliveries")
    seen = message_ids(w.sink)
    assert len(set(seen)) == len(seen) and set(seen) <= set(ids), seen


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
