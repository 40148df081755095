"""Redis failover through Sentinel, and Redis host names resolved on the loop.

Real parts: a redis-server primary with one replica and three
redis-sentinel processes, each on free loopback ports with its own
configuration file in the test's directory (a sentinel rewrites its file).
The nodes are given Redis_sentinels only; the primary is killed (-9) while
mail flows, and the test checks that the nodes follow the new primary and
that every accepted message is delivered exactly once.
"""
import os
import shutil
import signal
import subprocess
import threading
import time

import selortest
from selortest import free_port, wait_for
from test_cluster import Cluster

SENTINEL = shutil.which("redis-sentinel")
MASTER = "mymaster"
LEASE = 30      # above the failover gap: no lease lapses while Redis is gone


def redis_cli(port, *args, timeout=10):
    try:
        r = subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


class RedisProc:
    """redis-server (or, sentinel=True, redis-sentinel) with its own config."""

    def __init__(self, base, lines, sentinel=False):
        self.port = free_port()
        self.dir = os.path.join(base, ("sentinel-%d" if sentinel else "redis-%d")
                                % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"
                    % (self.port, self.dir, os.path.join(self.dir, "log")))
            if not sentinel:
                f.write('save ""\nappendonly no\n')
            f.write("".join(line + "\n" for line in lines))
        if sentinel:
            cmd = [SENTINEL, self.conf] if SENTINEL else \
                  ["redis-server", self.conf, "--sentinel"]
        else:
            cmd = ["redis-server", self.conf]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: redis_cli(self.port, "PING") == "PONG", timeout=10,
                 what="redis on %d" % self.port)

    def cmd(self, *args):
        return redis_cli(self.port, *args)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class SentinelSet:
    """A primary, `replicas` replicas and `n` sentinels watching them."""

    def __init__(self, procs, replicas=1, n=3, quorum=2):
        base = procs.base
        self.primary = RedisProc(base, [])
        procs.items.append(self.primary)
        self.replicas = []
        for _ in range(replicas):
            r = RedisProc(base, ["replicaof 127.0.0.1 %d" % self.primary.port])
            procs.items.append(r)
            self.replicas.append(r)
        for r in self.replicas:
            wait_for(lambda r=r: "master_link_status:up" in (r.cmd("INFO", "replication")
                                                            or ""),
                     timeout=15, what="replica in sync")
        self.sentinels = []
        for _ in range(n):
            s = RedisProc(base, [
                "sentinel monitor %s 127.0.0.1 %d %d" % (MASTER, self.primary.port, quorum),
                "sentinel down-after-milliseconds %s 1000" % MASTER,
                "sentinel failover-timeout %s 3000" % MASTER,
                "sentinel parallel-syncs %s 1" % MASTER], sentinel=True)
            procs.items.append(s)
            self.sentinels.append(s)
        for s in self.sentinels:   # each knows the others and the replicas
            wait_for(lambda s=s: self.known(s, "sentinels") >= n - 1 and
                     self.known(s, "replicas") >= replicas,
                     timeout=30, what="sentinels to discover each other")

    @staticmethod
    def known(s, what):
        out = s.cmd("SENTINEL", what, MASTER) or ""
        return out.count("\nip\n")

    def addresses(self, host="127.0.0.1"):
        return " ".join("%s:%d" % (host, s.port) for s in self.sentinels)

    def primary_port(self):
        out = (self.sentinels[0].cmd("SENTINEL", "get-master-addr-by-name", MASTER)
               or "").split()
        return int(out[1]) if len(out) == 2 else None


def sentinel_cluster(nodes, procs, sset, n=2, host="127.0.0.1", extra=None):
    # Redis starts empty; the pause that follows (docs/cluster.md) is not
    # what is tested here: an epoch long past lets claims start at once.
    sset.primary.cmd("SET", "selor:epoch", "1")
    options = {"Redis_server": None, "Redis_sentinels": sset.addresses(host),
               "Redis_master_name": MASTER, "Lock_lease": LEASE}
    options.update(extra or {})
    return Cluster(nodes, procs, n=n, options=options)


def send_one(node, i):
    """One message with its own Message-ID: True when accepted (250)."""
    import smtplib
    msg = ("From: someone@sender.test\r\nTo: m%d@fwd.test\r\nSubject: m%d\r\n"
           "Message-ID: <m%d@sentinel.test>\r\n\r\nbody %d\r\n" % (i, i, i, i))
    try:
        with smtplib.SMTP(node.host, node.port, timeout=30) as c:
            c.ehlo("client.test")
            c.sendmail("someone@sender.test", ["m%d@fwd.test" % i], msg)
        return True
    except (smtplib.SMTPException, OSError):
        return False


def message_ids(sink):
    out = {}
    for env, content in sink.messages():
        for line in content.split(b"\r\n"):
            if line.lower().startswith(b"message-id: "):
                mid = line[12:].decode().strip()
                out[mid] = out.get(mid, 0) + 1
                break
    return out


def test_failover_under_load(nodes, procs):
    sset = SentinelSet(procs)
    old, new = sset.primary.port, sset.replicas[0].port
    cl = sentinel_cluster(nodes, procs, sset)
    for n in cl.members:
        wait_for(lambda n=n: "Redis 127.0.0.1:%d (Sentinel master %s) reachable" % (old, MASTER)
                 in n.log("warning"), timeout=20, what="node on the primary")

    total, threads, accepted, lock = 200, 4, [], threading.Lock()
    sent = [0]

    def worker(t):
        for i in range(t, total, threads):
            if send_one(cl.members[i % 2], i):
                with lock:
                    accepted.append(i)
            with lock:
                sent[0] += 1
            time.sleep(0.02)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    wait_for(lambda: sent[0] >= 60, timeout=60, what="load under way")
    sset.primary.kill()
    for t in ts:
        t.join(timeout=300)
    assert len(accepted) == total, "accepting stops without Redis: %d of %d" % (
        len(accepted), total)

    line = "Redis primary is now 127.0.0.1:%d (was 127.0.0.1:%d)" % (new, old)
    for n in cl.members:
        wait_for(lambda n=n: line in n.log("warning"), timeout=30,
                 what="the switch in %s's Warning_log" % n.name)
        wait_for(lambda n=n: "resumes" in n.log("warning"), timeout=30,
                 what="coordination resumes on %s" % n.name)
    assert sset.primary_port() == new

    def done():
        return len(message_ids(cl.sink)) >= len(accepted) and not cl.queued()
    try:
        wait_for(done, timeout=180, interval=0.5, what="every message delivered")
    finally:
        print("queued:", cl.queued()[:10], "delivered:", len(message_ids(cl.sink)))
    ids = message_ids(cl.sink)
    want = {"<m%d@sentinel.test>" % i for i in accepted}
    assert set(ids) == want
    dups = {k: v for k, v in ids.items() if v != 1}
    assert not dups, "delivered more than once: %s" % dups
    assert not cl.queued()
    # the new primary holds the cluster: the nodes' heartbeats go there (the
    # first ones may not have reached the replica before the kill)
    wait_for(lambda: set((redis_cli(new, "HKEYS", "selor:nodes") or "").split())
             >= {"mx1", "mx2"}, timeout=10, what="both nodes' heartbeats")


def test_switch_while_connected_leaves_the_old_primary(nodes, procs):
    """SENTINEL FAILOVER: the old primary stays up and becomes a replica;
    the node leaves it at "+switch-master" (it would otherwise keep a
    connection to a Redis that refuses writes) and delivers through the
    new one."""
    sset = SentinelSet(procs)
    old, new = sset.primary.port, sset.replicas[0].port
    cl = sentinel_cluster(nodes, procs, sset, n=1)
    n = cl.members[0]
    wait_for(lambda: "reachable: cluster coordination starts" in n.log("warning"),
             timeout=20, what="Redis reached")
    assert sset.sentinels[1].cmd("SENTINEL", "FAILOVER", MASTER) == "OK"
    line = "Redis primary is now 127.0.0.1:%d (was 127.0.0.1:%d)" % (new, old)
    wait_for(lambda: n.log("warning").count(line) == 3, timeout=30,
             what="every process of the node on the new primary")
    wait_for(lambda: "role:slave" in (sset.primary.cmd("INFO", "replication") or ""),
             timeout=30, what="the old primary demoted")
    for i in range(5):
        assert send_one(n, i)
    wait_for(lambda: len(message_ids(cl.sink)) == 5 and not cl.queued(), timeout=60,
             what="mail delivered after the switch")
    # nothing of the node's is connected to the old primary any more
    clients = sset.primary.cmd("CLIENT", "LIST") or ""
    assert "cmd=evalsha" not in clients and "cmd=role" not in clients, clients


def test_host_names_and_selorctl_through_sentinel(nodes, procs):
    """"localhost" in Redis_sentinels (and Redis_server) is resolved with
    c-ares; selorctl finds the primary through the sentinels; Redis_server
    is ignored (with a warning) when Redis_sentinels is set."""
    sset = SentinelSet(procs, replicas=0, n=1, quorum=1)
    port = sset.primary.port
    cl = sentinel_cluster(nodes, procs, sset, n=1, host="localhost",
                          extra={"Redis_server": "127.0.0.1:1"})
    n = cl.members[0]
    wait_for(lambda: "Redis primary is 127.0.0.1:%d, from Sentinel localhost:%d"
             % (port, sset.sentinels[0].port) in n.log("selor") + n.log("warning"),
             timeout=20, what="the primary found through localhost")
    wait_for(lambda: "reachable" in n.log("warning"), timeout=20, what="Redis reached")
    assert "Redis_server is not used: Redis_sentinels is set" in \
        n.log("warning") + n.log("selor")
    wait_for(lambda: "mx1" in (sset.primary.cmd("HKEYS", "selor:nodes") or ""),
             timeout=20, what="the heartbeat in the primary")
    code, out = cl.ctl("nodes")
    assert code == 0, out
    assert "mx1" in out
    code, out = cl.ctl("drain", "mx1")
    assert code == 0, out
    assert sset.primary.cmd("EXISTS", "selor:drain:mx1") == "1"
    # with no sentinel answering, selorctl says so (and does not hang)
    sset.sentinels[0].stop()
    code, out = cl.ctl("nodes")
    assert code != 0
    assert "Sentinel localhost:%d" % sset.sentinels[0].port in out


def test_redis_server_host_name(nodes, procs):
    redis = procs.redis()
    redis.cmd("SET", "selor:epoch", "1")
    n = nodes(options={"Redis_server": "localhost:%d" % redis.port}).start()
    wait_for(lambda: "Redis localhost:%d reachable" % redis.port in n.log("warning"),
             timeout=20, what="Redis reached by name")
    wait_for(lambda: (redis.cmd("HKEYS", "selor:nodes") or "") != "", timeout=20,
             what="the heartbeat")
    # a name that does not resolve: logged, the node goes on (and retries)
    n2 = nodes(options={"Redis_server": "no-such-host.invalid:6379"}).start()
    wait_for(lambda: "no-such-host.invalid:6379 unreachable (cannot resolve the name"
             in n2.log("warning"), timeout=30, what="the failed lookup logged")
    assert n2.accepting()


def test_bad_sentinel_entry_is_a_config_error(workdir):
    path = os.path.join(workdir, "t.conf")
    for value, why in (("127.0.0.1:26379 localhost:0", '"localhost:0"'),
                       ("127.0.0.1:26379, host:99999", '"host:99999"'),
                       ("[::1", '"[::1"')):
        with open(path, "w") as f:
            f.write('Port 2525\n\nRedis_sentinels "%s"\n' % value)
        r = subprocess.run([selortest.SELOR, "-t", "-c", path], capture_output=True,
                           text=True, timeout=30)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 1, out
        assert out.startswith("%s:3: Redis_sentinels: %s" % (path, why)), out
    with open(path, "w") as f:
        f.write('Redis_sentinels "127.0.0.1:26379 localhost"\nRedis_master_name "a b"\n')
    r = subprocess.run([selortest.SELOR, "-t", "-c", path], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "%s:2: Redis_master_name must be one word" % path in r.stdout + r.stderr
