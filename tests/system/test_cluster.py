"""Several nodes on one shared spool, coordinated through one redis-server.

Every node has its own Sid, logs, pid file and port; they share Queue_path
(and Temp_path), a DNS server and the sinks.  Mail for fwd.test is forwarded
(default alias) to all@remote.test, delivered to the sink; each message is
told apart by its Subject.
"""
import collections
import os
import signal
import subprocess
import threading
import time

import selortest
from selortest import loopback_addr, wait_for

LEASE = 4


class Cluster:
    def __init__(self, nodes, procs, n=3, sink_args=(), options=None, nfs=None):
        """nfs: None, every node on the one shared directory; or a dict of
        nfsfs behaviours (tests/nfsfs/nfsfs.py): each node then has the
        shared directory (the backing directory, still self.spool) through
        an nfsfs mount of its own, self.mounts[Sid], as NFS clients do."""
        self.nodes_factory = nodes
        self.procs = procs
        self.nfs = nfs
        self.mounts = {}
        self.redis = procs.redis()
        self.sink_ip = loopback_addr()
        self.sink = procs.sink(self.sink_ip, 25, sink_args)
        self.bounce_ip = loopback_addr()
        self.bounces = procs.sink(self.bounce_ip, 25)
        self.dns = procs.dns(mx={"remote.test": [(10, "mx.remote.test")],
                                 "sender.test": [(10, "mx.sender.test")]},
                             hosts={"mx.remote.test": self.sink_ip,
                                    "mx.sender.test": self.bounce_ip})
        self.spool = os.path.join(nodes.base, "shared-spool")
        os.makedirs(self.spool, exist_ok=True)
        os.chmod(self.spool, 0o777)
        self.options = {"Redis_server": self.redis.server, "Queue_path": self.spool,
                        "Temp_path": os.path.join(self.spool, "tmp"),
                        "Dns_servers": self.dns.server, "Immed_delivery": 2,
                        "Qsleep_time": 3, "Lock_lease": LEASE, "Connect_timeout": 5,
                        "Timeout": 20}
        self.options.update(options or {})
        self.members = [self.add("mx%d" % (i + 1)) for i in range(n)]

    def add(self, sid):
        passwd = selortest.DEFAULT_PASSWD + "@fwd.test:{ALIAS}all@remote.test\n"
        options = dict(self.options)
        if self.nfs is not None:
            options.update(self.mount(sid))
        node = self.nodes_factory(sid, sid=sid, passwd=passwd, options=options)
        node.start()
        return node

    def mount(self, sid):
        """sid's own nfsfs mount of the shared directory: its spool options.
        The mount is stopped with the test's processes (procs): a test that
        lists procs before nodes stops its nodes first."""
        from nfsmount import NfsMount
        m = NfsMount(self.spool, os.path.join(self.nodes_factory.base, "nfs-" + sid),
                     **self.nfs)
        self.mounts[sid] = m
        self.procs.items.insert(0, m)   # stopped after the test's other processes
        return {"Queue_path": m.mountpoint, "Temp_path": m.path("tmp")}

    def send(self, node, i, conn=None):
        c = conn or node.smtp()
        if conn is None:
            c.ehlo("client.test")
        c.mail("someone@sender.test")
        code, msg = c.rcpt("m%d@fwd.test" % i)
        assert code == 250, msg
        code, msg = c.data("Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
        assert code == 250, msg
        if conn is None:
            c.quit()
        return msg.decode().split()[1]

    def wait_startup_pause(self):
        """Redis starts empty: nobody claims for a lease (docs/cluster.md)."""
        def over():
            epoch = self.redis.cmd("GET", "selor:epoch")
            return epoch and time.time() * 1000 > int(epoch) + LEASE * 1000 + 500
        wait_for(over, timeout=30, what="the start-up pause")

    def subjects(self):
        out = collections.Counter()
        for env, content in self.sink.messages():
            for line in content.split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    out[line[9:].decode()] += 1
                    break
        return out

    def queued(self):
        return [n for n in os.listdir(self.spool) if n.startswith("l")]

    def ctl(self, *args, node=None):
        node = node or self.members[0]
        r = subprocess.run([selortest.SELORCTL, "-c", node.conf] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr


def send_many(cluster, count, start=0, nodes=None, pause=0.0):
    """count messages, round robin over the nodes, several per connection."""
    nodes = nodes or cluster.members
    conns = {}
    try:
        for i in range(start, start + count):
            node = nodes[i % len(nodes)]
            c = conns.get(node.name)
            if c is None or (i // len(nodes)) % 50 == 0:
                if c is not None:
                    c.quit()
                c = node.smtp()
                c.ehlo("client.test")
                conns[node.name] = c
            cluster.send(node, i, c)
            if pause:
                time.sleep(pause)
    finally:
        for c in conns.values():
            try:
                c.quit()
            except Exception:
                pass


def all_delivered_once(cluster, first, count, timeout=180):
    try:
        wait_for(lambda: len(cluster.subjects()) >= count and not cluster.queued(),
                 timeout=timeout, interval=0.5, what="%d messages delivered" % count)
    except AssertionError:
        print("still queued:", cluster.queued()[:20], "delivered:", len(cluster.subjects()))
        print("holders:", holders(cluster))
        for n in cluster.members:
            print(n.name, [l for l in n.log("summary").splitlines() if "deferred" in l][:5])
        print(cluster.redis.cmd("ZRANGE", "selor:due:main", "0", "5", "WITHSCORES"))
        print(cluster.ctl("nodes")[1])
        for n in cluster.members:
            print(n.name, n.log("warning")[-3000:])
        raise
    s = cluster.subjects()
    missing = [i for i in range(first, first + count) if s["m%d" % i] == 0]
    doubled = {k: v for k, v in s.items() if v > 1}
    return missing, doubled


def test_thousand_messages_round_robin_each_delivered_once(nodes, procs):
    cl = Cluster(nodes, procs)
    cl.wait_startup_pause()
    threads = [threading.Thread(target=send_many, args=(cl, 333, k * 333, [cl.members[k]]))
               for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    send_many(cl, 1, 999)
    missing, doubled = all_delivered_once(cl, 0, 1000)
    assert missing == [] and doubled == {}
    # the work was shared
    busy = [n.name for n in cl.members if "delivered to=<all@remote.test>" in n.log("summary")]
    assert len(busy) >= 2, busy
    code, out = cl.ctl("nodes")
    assert code == 0 and all(n.name in out for n in cl.members), out


def holders(cluster):
    """qid -> Sid of the node holding its lock."""
    out = {}
    keys = cluster.redis.cmd("--scan", "--pattern", "selor:lock:*") or ""
    for k in keys.split():
        v = cluster.redis.cmd("GET", k) or ""
        if v:
            out[k.split(":", 2)[2]] = v.split()[0]
    return out


def check_killed_node_takeover(cl, timeout=60):
    """Kills mx1 while it holds deliveries of 20 messages: the others take
    its files over within a lease and a scan, deliver each message (only
    what mx1 had in flight may go twice) and finish its files."""
    victim = cl.members[0]
    cl.wait_startup_pause()
    for i in range(20):
        cl.send(victim, i)
    # Frozen (SIGSTOP) before its locks are read, so that what it holds then
    # is what it dies with: a delivery that ends between a read and the
    # kill cannot empty the list.  Its locks outlive it by a lease.
    held = []
    for _ in range(20):
        wait_for(lambda: "mx1" in holders(cl).values(), timeout=20,
                 what="the victim holding deliveries")
        victim.kill(signal.SIGSTOP)
        held = [q for q, sid in holders(cl).items() if sid == "mx1"]
        if held:
            break
        victim.kill(signal.SIGCONT)
    t0 = time.monotonic()
    victim.kill(signal.SIGKILL)
    assert held
    missing, doubled = all_delivered_once(cl, 0, 20, timeout=timeout)
    took = time.monotonic() - t0
    assert missing == []
    # taken over within a lease and a queue scan (plus the slow sink)
    assert took < LEASE + cl.options["Qsleep_time"] + 20 * 1.5, took
    print("held by the victim: %d, duplicates: %s" % (len(held), doubled))
    assert sum(v - 1 for v in doubled.values()) <= len(held), (doubled, held)
    others = "".join(n.log("summary") for n in cl.members[1:])
    assert any(q in others for q in held), "nobody took over the victim's files: %s" % held
    # each said so, naming the victim (and counted selor_lock_takeovers_total)
    said = "".join(n.log("warning") + n.log() for n in cl.members[1:])
    taken = [q for q in held if "%s: taken over from node mx1" % q in said]
    assert taken, "no takeover logged for %s" % held
    wait_for(lambda: not any(q in n for q in held for n in os.listdir(cl.spool)),
             timeout=20, what="the victim's files removed")


def test_killed_node_work_is_taken_over(nodes, procs):
    check_killed_node_takeover(Cluster(nodes, procs, sink_args=["--delay-data", "1.5"]))


def test_paused_holder_does_not_overwrite_newer_holder(nodes, procs):
    cl = Cluster(nodes, procs, n=2, sink_args=["--delay-data", str(LEASE + 3)])
    a, b = cl.members
    cl.wait_startup_pause()
    qid = cl.send(a, 0)
    wait_for(lambda: holders(cl).get(qid) == "mx1" and cl.sink.stats().get("in_data"),
             timeout=20, what="mx1 in the middle of the delivery")
    code, out = cl.ctl("queue", node=b)     # the cluster-wide view, from mx2
    assert code == 0 and qid in out and "held by node mx1" in out, out
    a.kill(signal.SIGSTOP)
    try:
        wait_for(lambda: holders(cl).get(qid) == "mx2", timeout=LEASE + 10,
                 what="mx2 taking the file over")
        wait_for(lambda: qid not in [n[1:] for n in cl.queued()], timeout=LEASE * 3 + 20,
                 what="mx2 finishing it")
    finally:
        a.kill(signal.SIGCONT)
    time.sleep(LEASE)
    # mx1 woke up past its lease: it wrote nothing, so the file stays gone
    assert qid not in [n[1:] for n in cl.queued()]
    assert not os.path.exists(os.path.join(cl.spool, "c" + qid))
    wait_for(lambda: "stops" in a.log("warning") or "lapse" in a.log("warning"),
             timeout=LEASE * 2, what="mx1 noticing its lost lease")
    assert cl.subjects()["m0"] >= 1


def test_connection_limit_holds_for_the_cluster(nodes, procs):
    cl = Cluster(nodes, procs, options={"Limit_buf": 100, "Limit_cnx": 6, "Limit_time": 5,
                                        "Msg_perm_deny": "421 Slow down"})
    cl.redis.cmd("DEL", "selor:conns")   # forget the fixture's start-up probes
    replies = []
    for i in range(6):
        n = cl.members[i % 3]
        s = __import__("socket").create_connection(("127.0.0.1", n.port), timeout=10)
        conn = selortest.SmtpConn(s)
        replies.append(conn.reply().decode())
        conn.close()
    refused = [r for r in replies if r.startswith("421")]
    assert len(refused) == 1 and replies[-1].startswith("421 ") and "Slow down" in replies[-1], \
        replies
    assert all(r.startswith("220") for r in replies[:-1])
    wait_for(lambda: "".join(n.log("refused") for n in cl.members).count(
        "connection limit") == 1, what="the refusal logged once")
    time.sleep(0.5)
    assert "".join(n.log("refused") for n in cl.members).count("connection limit") == 1


def test_max_qprocs_holds_across_nodes(nodes, procs):
    cl = Cluster(nodes, procs, sink_args=["--delay-data", "1"], options={"Max_qprocs": 3})
    cl.wait_startup_pause()
    send_many(cl, 30)
    missing, doubled = all_delivered_once(cl, 0, 30, timeout=120)
    assert missing == [] and doubled == {}
    stats = cl.sink.stats()
    assert stats["max_in_data"] == 3, stats
    # each node asks as soon as it accepts: the limit is what holds them back
    busy = [n.name for n in cl.members if "delivered to=" in n.log("summary")]
    assert len(busy) >= 2, busy


def test_redis_outage_under_load(nodes, procs):
    cl = Cluster(nodes, procs)
    errors, done_at = [], []

    def sending():
        try:
            send_many(cl, 300, 0, None, 0.1)
        except Exception as e:      # any refused or failed message fails the test
            errors.append(e)
        done_at.append(time.monotonic())

    sender = threading.Thread(target=sending)
    sender.start()
    time.sleep(5)
    cl.redis.stop()
    stopped = time.monotonic()
    time.sleep(20)
    cl.redis.start()
    sender.join()
    assert errors == [], errors
    assert done_at[0] > stopped + 20, "the load did not span the outage"
    missing, doubled = all_delivered_once(cl, 0, 300, timeout=240)
    assert missing == [] and doubled == {}, (missing, doubled)
    warn = "".join(n.log("warning") for n in cl.members)
    assert "unreachable" in warn and "resumes" in warn


def test_drain_stop_and_add_a_node(nodes, procs):
    cl = Cluster(nodes, procs, sink_args=["--delay-data", "0.05"])
    sender = threading.Thread(target=send_many, args=(cl, 150, 0, cl.members[1:], 0.02))
    sender.start()
    time.sleep(2)
    code, out = cl.ctl("drain", "mx1")
    assert code == 0, out
    wait_for(lambda: "draining" in cl.ctl("nodes")[1], timeout=10, what="mx1 draining")
    wait_for(lambda: "mx1" not in holders(cl).values(), timeout=30,
             what="mx1 finishing what it holds")
    assert cl.members[0].stop() == 0
    fourth = cl.add("mx4")
    sender.join()
    send_many(cl, 30, 150, [fourth])
    missing, doubled = all_delivered_once(cl, 0, 180, timeout=180)
    assert missing == [] and doubled == {}
    assert "delivered to=" in fourth.log("summary")


def test_redis_password_database_and_prefix(nodes, procs):
    """A Redis that asks for a password, a database other than 0 and a prefix
    of our own: the node works, and its keys are where they should be."""
    redis = procs.redis(password="s3cret")
    sink_ip = loopback_addr()
    sink = procs.sink(sink_ip, 25)
    dns = procs.dns(mx={"remote.test": [(10, "mx.remote.test")]},
                    hosts={"mx.remote.test": sink_ip})
    passwd = selortest.DEFAULT_PASSWD + "@fwd.test:{ALIAS}all@remote.test\n"
    n = nodes("mx1", sid="mx1", passwd=passwd, options={
        "Redis_server": redis.server, "Redis_password": "s3cret", "Redis_db": 3,
        "Redis_prefix": "mail1:", "Lock_lease": 2, "Dns_servers": dns.server,
        "Immed_delivery": 2}).start()
    with n.smtp() as c:
        c.sendmail("someone@sender.test", ["x@fwd.test"], "Subject: pw\r\n\r\nx\r\n")
    wait_for(lambda: sink.messages(), timeout=30, what="delivery")
    assert redis.cmd("-n", "3", "EXISTS", "mail1:epoch") == "1"
    assert redis.cmd("-n", "0", "DBSIZE") == "0"
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "nodes"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "mx1" in r.stdout, r.stdout + r.stderr
    # a wrong password is reported, not silently ignored
    bad = nodes("mx2", sid="mx2", options={"Redis_server": redis.server,
                                           "Redis_password": "wrong"}).start()
    wait_for(lambda: "Redis refused Redis_password" in bad.log("warning"), timeout=20,
             what="the refusal logged")
