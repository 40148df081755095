"""A Redis that answers one node late.

Node mx1 reaches Redis through tests/system/delayproxy.py, which passes its
requests on at once and its answers back late (the delay can be changed
while it runs); mx2 reaches Redis directly.  A holder renews its lock every
third of Lock_lease, counts its lease from when each claim or renewal was
*asked for* (src/queue/lease.c), starts nothing and writes nothing unless a
quarter of a lease is surely left, and stops when the lease has run out by
its own count.  Renewals go out every third of a lease whether or not the
earlier ones were answered, so answers late by more than a third of a
lease (up to five twelfths: a quarter is then still left just before the
next answer) keep the lease sure.  This file shows:

- answers late by more than a third of a lease but less than five twelfths,
  while mx1 holds deliveries: nobody stops, mx1 finishes what it holds (its
  locks renewed), everything is delivered exactly once;
- answers late by more than two thirds of a lease (the newest answered
  renewal is then a whole lease old before the next answer comes) or by a
  whole lease, while mx1 holds deliveries: mx1 logs that it stops, and
  stops before its lock can lapse in Redis (mx2 only takes a file over
  after mx1 stopped); mx2 delivers everything, nothing is lost.  With MDAs
  (killed when their holder stops, so a cut run has delivered nothing)
  every message is delivered exactly once and two runs of one message
  never overlap; with SMTP, a session cut after its content went out may
  leave a copy at the remote server, and mx2 sends a second one
  (docs/cluster.md: such answers cannot be told from a Redis that is gone);
- a claim answered after its lease could have lapsed starts nothing: the
  node that took the file over meanwhile delivers it, once.
"""
import os
import re
import time

import pytest

import selortest
from selortest import wait_for
from redis_watcher import RedisWatcher
from test_cluster import Cluster, all_delivered_once, holders

LEASE = 4


def add_node(cl, sid, options=None, passwd=None):
    opts = dict(cl.options)
    opts.update(options or {})
    passwd = passwd or selortest.DEFAULT_PASSWD + "@fwd.test:{ALIAS}all@remote.test\n"
    n = cl.nodes_factory(sid, sid=sid, passwd=passwd, options=opts)
    n.start()
    cl.members.append(n)
    return n


def slow_cluster(nodes, procs, lease=LEASE, sink_args=(), options=None, passwd=None,
                 per_node=None):
    """mx1 through a delaying proxy (no delay yet), mx2 direct; mx2 drained,
    so mx1 takes the work until a test lets mx2 in.  per_node: {sid: options}."""
    opts = {"Lock_lease": lease, "Qsleep_time": 3600}
    opts.update(options or {})
    cl = Cluster(nodes, procs, n=0, sink_args=sink_args, options=opts)
    cl.proxy = procs.delayproxy("tcp", cl.redis.server)
    per_node = per_node or {}
    slow = add_node(cl, "mx1", dict(per_node.get("mx1", {}), Redis_server=cl.proxy.server),
                    passwd)
    fast = add_node(cl, "mx2", per_node.get("mx2"), passwd)
    set_drained(cl, "mx2")
    wait_startup_pause(cl, lease)
    return cl, slow, fast


def set_drained(cl, drain, undrain=None):
    """selorctl through mx2 (whose Redis is fast); waits for the registry."""
    fast = cl.members[1]
    if undrain:
        assert cl.ctl("undrain", undrain, node=fast)[0] == 0
    if drain:
        assert cl.ctl("drain", drain, node=fast)[0] == 0

    def done():
        out = cl.ctl("nodes", node=fast)[1]
        return ((not drain or re.search(r"\b%s\s+draining" % drain, out)) and
                (not undrain or re.search(r"\b%s\s+active" % undrain, out)))
    wait_for(done, timeout=15, what="the drain states")


def wait_startup_pause(cl, lease):
    def over():
        epoch = cl.redis.cmd("GET", "selor:epoch")
        sec, usec = cl.redis.cmd("TIME").split()
        return epoch and int(sec) * 1000 + int(usec) // 1000 > int(epoch) + lease * 1000 + 300
    wait_for(over, timeout=30, what="the start-up pause")


STOP = re.compile(r"lock (could not be renewed|lapsed without a renewal|was lost)")


def stop_times(node):
    """qid -> unix time (whole seconds, the node's log) when the node logged
    that it stopped (or started nothing more) for want of a renewal."""
    import calendar
    out = {}
    for line in node.log("warning").splitlines():
        if STOP.search(line):
            f = line.split()
            t = calendar.timegm(time.strptime(f[0][:19], "%Y-%m-%dT%H:%M:%S"))
            out.setdefault(f[5].rstrip(":"), t)
    return out


def delivered_by(cl):
    """qid -> [Sid, ...] of the nodes that logged its delivery."""
    out = {}
    for n in cl.members:
        for line in n.log("summary").splitlines():
            if " delivered to=" in line:
                out.setdefault(line.split()[2], []).append(n.name)
    return out


def hold_then_slow_down(cl, slow, count, delay, in_flight):
    """count messages to mx1, held by it (in_flight() true), then its Redis
    answers `delay` s late and mx2 may take work.  The qids."""
    ids = [cl.send(slow, i) for i in range(count)]
    wait_for(lambda: all(holders(cl).get(q) == "mx1" for q in ids) and in_flight(),
             timeout=30, what="mx1 holding every message")
    cl.proxy.set(delay=delay)
    set_drained(cl, None, "mx2")
    return ids


# ---- answers later than a third of a lease ----

def check_stopped_in_time(cl, slow, ids, watcher):
    """mx1 stopped each of ids before its lock could lapse; mx2 took over."""
    stopped = stop_times(slow)
    assert set(ids) <= set(stopped), "mx1 did not stop: %s\n%s" % (
        set(ids) - set(stopped), slow.log("warning"))
    for q in ids:
        taken = watcher.first_seen(q, "mx2")
        assert taken is not None, "mx2 never held %s" % q
        # the log has whole seconds: stopped in the second before, or earlier
        assert stopped[q] + 1 <= taken, (q, stopped[q], taken)


@pytest.mark.parametrize("delay", [3.3, 4.0])
def test_smtp_holders_stop_before_their_lease_can_lapse(nodes, procs, delay):
    """SMTP deliveries that wait 10 s for the sink's answer to their
    content; mx1's answers then come 3.3 s (more than two thirds of the
    lease) or 4 s (a whole lease) late: mx1's lease runs out by its own
    count before the next answer can come, and mx1 stops then, before the
    lock, renewed on time in Redis, can lapse there."""
    cl, slow, fast = slow_cluster(nodes, procs, sink_args=["--delay-data", "10"])
    watcher = RedisWatcher(cl.redis)
    watcher.start()
    try:
        ids = hold_then_slow_down(cl, slow, 4, delay,
                                  lambda: cl.sink.stats().get("in_data") == 4)
        missing, doubled = all_delivered_once(cl, 0, 4, timeout=60)
    finally:
        watcher.stop()
    assert missing == []
    check_stopped_in_time(cl, slow, ids, watcher)
    # mx1 wrote nothing after it stopped: it recorded none of them; mx2 did
    by = delivered_by(cl)
    assert all(by.get(q) == ["mx2"] for q in ids), by
    # The sink got each message from mx2 once; a second copy can only come
    # from mx1's session that was cut after its content went out.
    sessions = [(e.get("helo"), e.get("data_code")) for e in cl.sink.log()]
    assert sessions.count(("mx.mx2.test", 250)) == 4, sessions
    assert sessions.count(("mx.mx1.test", 250)) == sum(v - 1 for v in doubled.values()), \
        (sessions, doubled)
    assert all(v <= 2 for v in doubled.values()), doubled


def heartbeat_mda(workdir, seconds):
    """An MDA that appends the time to runs/<rcpt>.<node>.<pid> every 0.2 s
    for `seconds`, then writes "<node> <rcpt>" to done (killed before: no
    delivery, as an MDA that writes the mailbox last)."""
    d = os.path.join(workdir, "mda")
    os.makedirs(os.path.join(d, "runs"))
    os.chmod(d, 0o777)
    os.chmod(os.path.join(d, "runs"), 0o777)
    script = os.path.join(workdir, "mda.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\nf="%s/runs/$2.$1.$$"\ncat >/dev/null\n'
                'end=$(( $(date +%%s) + %d ))\n'
                'while [ "$(date +%%s)" -lt "$end" ]; do date +%%s.%%N >> "$f"; sleep 0.2; done\n'
                'echo "$1 $2" >> "%s/done"\nexit 0\n' % (d, seconds, d))
    os.chmod(script, 0o755)
    return script, d


def mda_runs(d):
    """[(rcpt, node, first beat, last beat)]"""
    out = []
    for name in os.listdir(os.path.join(d, "runs")):
        rcpt, node, _ = name.rsplit(".", 2)
        with open(os.path.join(d, "runs", name)) as f:
            beats = [float(x) for x in f.read().split()]
        if beats:
            out.append((rcpt, node, beats[0], beats[-1]))
    return out


def done_runs(d):
    try:
        with open(os.path.join(d, "done")) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def test_mda_holders_stop_in_time_and_nothing_is_delivered_twice(nodes, procs, workdir):
    """MDAs that run 10 s; mx1's answers come 4 s late (a whole lease) while
    they run: mx1 stops (its MDAs killed before mx2 can take a message
    over), mx2 runs them again, and each message is delivered exactly once."""
    script, d = heartbeat_mda(workdir, 10)
    users = ["u%d" % i for i in range(3)]
    passwd = "".join("%s@example.com:{PLAIN}pw::::%s::\n" % (u, workdir) for u in users)
    cl, slow, fast = slow_cluster(
        nodes, procs, passwd=passwd, options={"Dlocal_type": 0, "Immed_delivery": 2},
        per_node={"mx1": {"Dlocal": script + " mx1 %r"}, "mx2": {"Dlocal": script + " mx2 %r"}})
    watcher = RedisWatcher(cl.redis)
    watcher.start()
    try:
        ids = []
        for u in users:
            with slow.smtp() as c:
                c.ehlo("client.test")
                c.mail("someone@sender.test")
                assert c.rcpt("%s@example.com" % u)[0] == 250
                code, msg = c.data("Subject: %s\r\n\r\nhello\r\n" % u)
                assert code == 250, msg
                ids.append(msg.decode().split()[1])
        wait_for(lambda: all(holders(cl).get(q) == "mx1" for q in ids) and
                 len({r[0] for r in mda_runs(d)}) == len(users), timeout=30,
                 what="mx1 running every MDA")
        cl.proxy.set(delay=4.0)
        set_drained(cl, None, "mx2")
        wait_for(lambda: len(done_runs(d)) >= len(users) and not cl.queued(), timeout=60,
                 interval=0.2, what="every message delivered")
        time.sleep(1)     # a run still going would finish and write now
    finally:
        watcher.stop()
    done = done_runs(d)
    assert sorted(r[1] for r in done) == sorted("%s@example.com" % u for u in users), done
    assert all(r[0] == "mx2" for r in done), done
    check_stopped_in_time(cl, slow, ids, watcher)
    # two runs of one message never overlap: mx1's cut runs were dead before
    # mx2's began
    runs = mda_runs(d)
    for u in users:
        mine = sorted((r for r in runs if r[0] == "%s@example.com" % u), key=lambda r: r[2])
        assert [r[1] for r in mine] == ["mx1", "mx2"], mine
        assert mine[0][3] + 0.2 < mine[1][2], "runs of %s overlap: %s" % (u, mine)


# ---- answers late, but sooner than five twelfths of a lease ----

def test_late_answers_within_five_twelfths_of_a_lease_stop_nobody(nodes, procs):
    """Lock_lease 8 (renewals every 2.7 s), answers 3 s late (more than a
    renewal's interval; just before each answer 2.3 s of the lease are
    still left, more than a quarter), deliveries that take 10 s: mx1 keeps its
    locks, renewed, and delivers what it holds, once."""
    cl, slow, fast = slow_cluster(nodes, procs, lease=8, sink_args=["--delay-data", "10"])
    watcher = RedisWatcher(cl.redis)
    watcher.start()
    try:
        ids = hold_then_slow_down(cl, slow, 4, 3.0,
                                  lambda: cl.sink.stats().get("in_data") == 4)
        missing, doubled = all_delivered_once(cl, 0, 4, timeout=60)
    finally:
        watcher.stop()
    assert missing == [] and doubled == {}, (missing, doubled)
    by = delivered_by(cl)
    assert all(by.get(q) == ["mx1"] for q in ids), by
    sessions = [(e.get("helo"), e.get("data_code")) for e in cl.sink.log()]
    assert sessions == [("mx.mx1.test", 250)] * 4, sessions
    assert set(ids) <= watcher.renewed("mx1"), "mx1's locks were not renewed"
    assert all(watcher.first_seen(q, "mx2") is None for q in ids)
    warn = slow.log("warning")
    for what in ("renew", "lapse", "lost", "unreachable", "starting nothing"):
        assert what not in warn, warn


# ---- a claim answered after its lease could have lapsed ----

def test_claim_answered_after_its_lease_starts_nothing(nodes, procs):
    """mx1's answers come 5 s late, its lease is 4 s: by the time it learns
    it holds a file, the lock has lapsed and mx2 is delivering it."""
    cl, slow, fast = slow_cluster(nodes, procs, sink_args=["--delay-data", "4"])
    cl.proxy.set(delay=5)
    qid = cl.send(slow, 0)
    wait_for(lambda: holders(cl).get(qid) == "mx1", timeout=15,
             what="mx1's claim reaching Redis")
    set_drained(cl, None, "mx2")
    missing, doubled = all_delivered_once(cl, 0, 1, timeout=60)
    assert missing == []
    # mx1 learns of its claim 5 s after asking; a start then would reach
    # the sink within a second or two
    wait_for(lambda: qid in slow.log("warning"), timeout=15, what="mx1 leaving the file")
    time.sleep(2)
    sessions = [(e.get("helo"), e.get("data_code")) for e in cl.sink.log()]
    assert cl.subjects()["m0"] == 1, "delivered %d times; sessions: %s" % (
        cl.subjects()["m0"], sessions)
    # mx1 did not even open a session: nothing started on its late claim
    assert sessions == [("mx.mx2.test", 250)], sessions
    assert delivered_by(cl) == {qid: ["mx2"]}
