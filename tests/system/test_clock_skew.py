"""Two nodes of one cluster whose clocks are 3 seconds apart.

One node runs under libfaketime (its wall clock 3 s ahead or behind; its
monotonic clock untouched, as a node whose NTP is off); the other, Redis
and the test run on the real clock.  Leases are short (Lock_lease 3, so the
skew is a whole lease) and every delivery outlasts a third of a lease, so
locks and slots are renewed while the work goes on.  This file shows:

- over a few hundred messages sent to both nodes, with a sink that
  answers each message's content late, every message is delivered exactly
  once, and no lock is stolen: each queue file's lock in Redis only ever
  names the one holder that claimed it, and no node logs a lost or lapsed
  lock;
- Dlocal_max_procs 1 holds across both nodes although one node's clock is
  off: MDAs that run longer than a lease, two on each node, the nodes
  asking for the one slot while the other holds it, never overlap;
  the slot of the skewed node, after each of its renewals, ends a lease
  after Redis's own time (TIME), not a lease after the node's clock
  (cluster/coord_redis.c: the SLOT and SLOT_RENEW scripts).
"""
import os
import re
import time

import pytest

import selortest
from selortest import wait_for
from redis_watcher import RedisWatcher
from test_cluster import Cluster, all_delivered_once, holders, send_many

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
LEASE = 3
SKEW = 3


class SkewedNode(selortest.Node):
    """A node whose wall clock is `skew` seconds off (libfaketime)."""

    skew = 0

    def env(self):
        e = super().env()
        # ASan wants its runtime first among the loaded libraries; with
        # libfaketime preloaded it must be told not to check.
        e["ASAN_OPTIONS"] += ":verify_asan_link_order=0"
        e["LD_PRELOAD"] = FAKETIME
        e["FAKETIME"] = "%+d" % self.skew
        e["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        return e


def add_node(cl, sid, skew=0, passwd=None, options=None):
    passwd = passwd or selortest.DEFAULT_PASSWD + "@fwd.test:{ALIAS}all@remote.test\n"
    opts = dict(cl.options)
    opts.update(options or {})
    if skew:
        n = SkewedNode(cl.nodes_factory.base, sid, sid=sid, passwd=passwd, options=opts)
        n.skew = skew
        cl.nodes_factory.nodes.append(n)     # stopped and checked by the fixture
    else:
        n = cl.nodes_factory(sid, sid=sid, passwd=passwd, options=opts)
    n.start()
    cl.members.append(n)
    return n


def wait_startup_pause(cl):
    """Redis starts empty: nobody claims for a lease (docs/cluster.md)."""
    def over():
        epoch = cl.redis.cmd("GET", "selor:epoch")
        return epoch and redis_ms(cl.redis) > int(epoch) + LEASE * 1000 + 300
    wait_for(over, timeout=30, what="the start-up pause")


def redis_ms(redis):
    sec, usec = redis.cmd("TIME").split()
    return int(sec) * 1000 + int(usec) // 1000


def assert_skewed(node, qid):
    """The node's clock really is off: its queue IDs carry its own time."""
    now = time.time()
    assert abs(int(qid.split("_")[0]) - (now + node.skew)) <= 1.5, (qid, now, node.skew)


@pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_no_duplicate_no_loss_no_stolen_lock(nodes, procs, skew):
    # No periodic scan (Qsleep_time): a scan that listed a file just before
    # its delivery ended announces it again, and the claim of that gone file
    # would look like a second holder here.
    cl = Cluster(nodes, procs, n=0, sink_args=["--delay-data", "1.5"],
                 options={"Lock_lease": LEASE, "Qsleep_time": 3600})
    add_node(cl, "mx1")
    skewed = add_node(cl, "mx2", skew=skew)
    wait_startup_pause(cl)
    assert_skewed(skewed, cl.send(skewed, 0))
    watcher = RedisWatcher(cl.redis)
    watcher.start()
    try:
        send_many(cl, 299, 1)
        missing, doubled = all_delivered_once(cl, 0, 300, timeout=120)
    finally:
        watcher.stop()
    assert missing == [] and doubled == {}, (missing, doubled)
    assert watcher.errors == [], watcher.errors[:3]
    # Selor's own record: one delivery per message, by one of the nodes
    delivered = {}
    for n in cl.members:
        for line in n.log("summary").splitlines():
            if "delivered to=<all@remote.test>" in line:
                qid = line.split()[2]
                delivered.setdefault(qid, []).append(n.name)
    assert len(delivered) == 300 and all(len(v) == 1 for v in delivered.values()), \
        {q: v for q, v in delivered.items() if len(v) > 1}
    by = [sum(1 for v in delivered.values() if v == [n.name]) for n in cl.members]
    assert all(by), "one node delivered nothing: %s" % by
    # No lock stolen: every lock ever seen names the one holder that took it
    locks = watcher.locks()
    assert len(locks) >= 100, "the watcher saw too few locks: %d" % len(locks)
    stolen = {q: list(v) for q, v in locks.items() if len(v) > 1}
    assert stolen == {}, stolen
    assert set(locks) <= set(delivered), set(locks) - set(delivered)
    # and the locks were renewed while the slow sink held the deliveries:
    # a lock's remaining life went up again, on both nodes
    renewed = {v.split()[0] for holders in locks.values() for v, ttls in holders.items()
               if any(b > a + 200 for a, b in zip(ttls, ttls[1:]))}
    assert renewed == {"mx1", "mx2"}, renewed
    for n in cl.members:
        warn = n.log("warning")
        for what in ("lost", "lapse", "newer holder", "could not be renewed"):
            assert what not in warn, "%s: %s" % (n.name, warn)


def recording_mda(workdir, sleep):
    """An MDA that records "<start> <end> <recipient> <LD_PRELOAD> <FAKETIME>"
    on the real clock (Selor gives it a fixed environment: no libfaketime)."""
    log = os.path.join(workdir, "mda.log")
    script = os.path.join(workdir, "mda.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\ns=$(date +%%s.%%N)\ncat >/dev/null\nsleep %s\n'
                'echo "$s $(date +%%s.%%N) $1 ${LD_PRELOAD:-none} ${FAKETIME:-none}" >> %s\n'
                'exit 0\n' % (sleep, log))
    os.chmod(script, 0o755)
    open(log, "w").close()
    os.chmod(log, 0o666)
    return script, log


def mda_runs(log):
    with open(log) as f:
        return [line.split() for line in f if line.strip()]


def set_drained(cl, drain, undrain=None, via=None):
    """Drains one node (it claims nothing new), undrains another, and waits
    until both say so in the registry (their heartbeats saw it).  via: the
    node whose configuration selorctl reads (default the first)."""
    if undrain:
        assert cl.ctl("undrain", undrain, node=via)[0] == 0
    assert cl.ctl("drain", drain, node=via)[0] == 0

    def done():
        out = cl.ctl("nodes", node=via)[1]
        return re.search(r"\b%s\s+draining" % drain, out) and (
            not undrain or re.search(r"\b%s\s+active" % undrain, out))
    wait_for(done, timeout=10, what="%s draining" % drain)


def send_local(node, to):
    with node.smtp() as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        assert c.rcpt(to)[0] == 250
        code, msg = c.data("Subject: local\r\n\r\nhello\r\n")
        assert code == 250, msg
        return msg.decode().split()[1]


@pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_dlocal_max_procs_holds_across_skewed_clocks(nodes, procs, workdir, skew):
    mda_time = LEASE + 1.5          # longer than a lease: the slot is renewed
    script, log = recording_mda(workdir, mda_time)
    users = ["u%d" % i for i in range(4)]
    passwd = "".join("%s@example.com:{PLAIN}pw::::%s::\n" % (u, workdir) for u in users)
    options = {"Lock_lease": LEASE, "Dlocal": script + " %r", "Dlocal_type": 0,
               "Dlocal_max_procs": 1, "Immed_delivery": 2, "Qsleep_time": 3600}
    cl = Cluster(nodes, procs, n=0, options=options)
    plain = add_node(cl, "mx1", passwd=passwd)
    skewed = add_node(cl, "mx2", skew=skew, passwd=passwd)
    wait_startup_pause(cl)
    watcher = RedisWatcher(cl.redis)
    watcher.start()
    try:
        # The skewed node takes the first two messages (the other is
        # drained): one MDA runs, the other run waits for the slot.  Then
        # the roles turn: the plain node takes the last two and asks for
        # the slot while the skewed node's runs hold it or wait for it.
        set_drained(cl, "mx1")
        held = [send_local(skewed, "%s@example.com" % u) for u in users[:2]]
        assert_skewed(skewed, held[0])
        wait_for(lambda: all(holders(cl).get(q) == "mx2" for q in held), timeout=15,
                 what="mx2 holding the first two")
        set_drained(cl, "mx2", "mx1")
        for u in users[2:]:
            send_local(plain, "%s@example.com" % u)
        wait_for(lambda: len(mda_runs(log)) == len(users), timeout=len(users) * 12,
                 interval=0.2, what="every MDA run")
        wait_for(lambda: not cl.queued(), timeout=15, what="the queue empty")
    finally:
        watcher.stop()
    runs = mda_runs(log)
    # the MDAs ran on the real clock, without libfaketime
    assert all(r[3:] == ["none", "none"] for r in runs), runs
    assert sorted(r[2] for r in runs) == sorted("%s@example.com" % u for u in users)
    spans = sorted((float(r[0]), float(r[1])) for r in runs)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1] - 0.01]
    assert overlaps == [], "MDAs ran at the same time: %s" % overlaps
    by_node = [n.log("summary").count("relay=local") for n in cl.members]
    assert by_node == [2, 2], "MDAs per node: %s" % by_node
    # The slots lived on Redis's clock.  At every sample a slot ends at most
    # a lease after Redis's TIME (a node 3 s ahead adding its own clock would
    # end it 3 s later); right after each grant or renewal by the skewed
    # node, its slot ends about a lease after Redis's TIME (a node 3 s behind
    # would end it at once).
    slots = watcher.slots()
    assert watcher.errors == [], watcher.errors[:3]
    lease_ms = LEASE * 1000
    too_long = [(m, now, end) for m, seq in slots.items() for now, end in seq
                if end - now > lease_ms + 100]
    assert too_long == [], too_long
    renewals = []
    for member, seq in slots.items():
        if not member.startswith("mx2 "):
            continue
        for (_, a), (now, b) in zip([(0, 0)] + seq, seq):
            if b > a:      # granted or renewed since the previous sample
                renewals.append((member, now, b, b - now))
    short = [r for r in renewals if r[3] < lease_ms - 1000]
    assert short == [], short
    assert len(renewals) >= 3, "too few grants and renewals seen: %s" % renewals
    # at most one slot at any time: Dlocal_max_procs is the cluster's
    crowded = [(now, [i[1] for i in items if i[0] == "slot"]) for now, items in watcher.samples
               if sum(1 for i in items if i[0] == "slot" and int(float(i[2])) > now) > 1]
    assert crowded == [], crowded[:5]
