"""Three nodes behind a real HAProxy (Debian's package, started here):
send-proxy-v2 carries the client's address, agent-check the nodes' state.

HAProxy connects to the nodes from 127.0.0.2 (its `source`), the only
address the nodes take PROXY headers from; each test client comes from an
address of its own (127.0.x.y).  Shown here: the nodes log and limit the
real client, not HAProxy; `Limit_cnx` trips for that client only;
`selorctl drain mx2` stops new connections to mx2 within two agent
intervals; killing mx1 outright moves new connections to the others and
every message a node accepted with 250 is delivered.
"""
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import selortest
from selortest import wait_for
from test_cluster import Cluster

HAPROXY = shutil.which("haproxy")
BALANCER = "127.0.0.2"
AGENT_INTER = 0.5            # seconds (agent-inter, and the health check's inter)

pytestmark = pytest.mark.skipif(HAPROXY is None,
                                reason="haproxy is not installed (make deps)")

_client_ips = ("127.0.%d.%d" % (a, b) for a, b in itertools.product(range(20, 40),
                                                                     range(2, 254)))


def client_ip():
    """A loopback address no other connection of the test used."""
    return next(_client_ips)


class LbCluster(Cluster):
    """The test_cluster cluster, each node with an Agent_port of its own."""

    def add(self, sid):
        self.options = dict(self.options, Agent_port=selortest.free_port())
        return super().add(sid)


def haproxy_cfg(path, port, members, stats=None):
    servers = "".join(
        "    server %s %s:%d weight 100 send-proxy-v2 check check-send-proxy inter %dms "
        "fall 2 rise 1 agent-check agent-port %d agent-inter %dms\n"
        % (n.name, n.host, n.port, AGENT_INTER * 1000, n.options["Agent_port"],
           AGENT_INTER * 1000) for n in members)
    with open(path, "w") as f:
        f.write("global\n    maxconn 500\n%s\n"
                "defaults\n    mode tcp\n    timeout connect 2s\n"
                "    timeout client 30s\n    timeout server 30s\n"
                "    retries 3\n    option redispatch\n\n"
                "frontend smtp\n    bind 127.0.0.1:%d\n    default_backend selor\n\n"
                "backend selor\n    balance roundrobin\n    source %s\n%s"
                % ("    stats socket %s level admin\n" % stats if stats else "",
                   port, BALANCER, servers))


class Haproxy:
    def __init__(self, workdir, members):
        self.port = selortest.free_port()
        self.stats = os.path.join(workdir, "haproxy.sock")
        cfg = os.path.join(workdir, "haproxy.cfg")
        haproxy_cfg(cfg, self.port, members, self.stats)
        r = subprocess.run([HAPROXY, "-c", "-f", cfg], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        self.log = open(os.path.join(workdir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=self.log,
                                     stderr=self.log)

    def server(self, name):
        """HAProxy's view of one server: {"status": "UP", "weight": "100", ...}."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.stats)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().splitlines()
        fields = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("svname") == name:
                return row
        return {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


def greet(port, src=None):
    """(socket, greeting) of a connection through HAProxy from src."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                 source_address=(src or client_ip(), 0))
    s.settimeout(10)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    return s, data.decode()


def greeted_by(port, src=None):
    """Which node greets a new connection ("mx2"), or the reply itself."""
    s, g = greet(port, src)
    s.close()
    m = re.match(r"220 mx\.(mx\d)\.test ", g)
    return m.group(1) if m else g


def send(port, subject, src=None):
    """One message through HAProxy: the node that accepted it, or None."""
    try:
        s, g = greet(port, src)
    except OSError:
        return None
    f = s.makefile("rb")

    def cmd(line):
        s.sendall(line + b"\r\n")
        while True:
            r = f.readline().decode()
            if r[3:4] != "-":
                return r

    try:
        m = re.match(r"220 mx\.(mx\d)\.test ", g)
        if not m:
            return None
        if not (cmd(b"EHLO client.test").startswith("250") and
                cmd(b"MAIL FROM:<someone@sender.test>").startswith("250") and
                cmd(b"RCPT TO:<%s@fwd.test>" % subject.encode()).startswith("250") and
                cmd(b"DATA").startswith("354")):
            return None
        s.sendall(b"Subject: %s\r\n\r\nbody\r\n.\r\n" % subject.encode())
        r = f.readline().decode()
        return m.group(1) if r.startswith("250") else None
    except OSError:
        return None
    finally:
        f.close()
        s.close()


def all_up(port, names):
    try:
        seen = set(greeted_by(port) for _ in range(2 * len(names)))
    except OSError:
        return False   # haproxy not listening yet
    return seen >= set(names)


def test_three_nodes_behind_haproxy(nodes, procs, workdir):
    cl = LbCluster(nodes, procs, options={
        "Proxy_protocol": BALANCER, "Limit_cnx": 3, "Limit_time": 60,
        "Limit_buf": 100, "Msg_perm_deny": "421 Slow down"})
    hap = Haproxy(workdir, cl.members)
    procs.items.append(hap)
    names = [n.name for n in cl.members]
    wait_for(lambda: all_up(hap.port, names), timeout=20, interval=0.3,
             what="haproxy sending to all three nodes")

    # 1. the nodes see, and log, the client's address, not HAProxy's
    src = "127.0.0.5"
    s, g = greet(hap.port, src)
    cport = s.getsockname()[1]
    s.sendall(b"QUIT\r\n")
    s.close()
    node = [n for n in cl.members if n.name == g.split()[1].split(".")[1]][0]
    wait_for(lambda: "proxied from %s: client %s:%d" % (BALANCER, src, cport) in node.log(),
             what="the client's address in the node's log")
    # the session starts as HAProxy's, then every line names the client
    cid = re.search(r" (c\d+\.\d+) \S+ \* proxied from %s: client %s:%d" %
                    (BALANCER, src, cport), node.log()).group(1)
    wait_for(lambda: " %s %s > 220 " % (cid, src) in node.log(),
             what="the greeting logged under the client's address")
    lines = [l for l in node.log().splitlines() if " %s " % cid in l]
    assert " %s %s * connect " % (cid, BALANCER) in lines[0]

    # 2. Limit_cnx (3 a minute) trips for 127.0.0.5, cluster-wide, and for it only
    replies = [greet(hap.port, src) for _ in range(4)]
    for sock, _ in replies:
        sock.close()
    texts = [r for _, r in replies]
    assert any(t.startswith("421 ") for t in texts), texts
    other = greeted_by(hap.port, "127.0.0.6")
    assert other in names, other
    logs = "".join(n.log() for n in cl.members)
    assert " 127.0.0.5 * connection limit (Limit_cnx) reached" in logs
    assert " 127.0.0.6 * connection limit" not in logs

    # 3. selorctl drain mx2: no new connection reaches it after two agent intervals
    assert "mx2" in [greeted_by(hap.port) for _ in range(6)]
    code, out = cl.ctl("drain", "mx2")
    assert code == 0, out
    time.sleep(2 * AGENT_INTER)
    after = [greeted_by(hap.port) for _ in range(12)]
    assert "mx2" not in after and set(after) == {"mx1", "mx3"}, after
    code, out = cl.ctl("undrain", "mx2")
    assert code == 0, out
    wait_for(lambda: "mx2" in [greeted_by(hap.port) for _ in range(3)], timeout=5,
             what="mx2 back after undrain")

    # 4. kill mx1 (master and children, SIGKILL) while mail flows: new
    # connections go to mx2 and mx3, and nothing accepted is lost
    cl.wait_startup_pause()
    accepted, failed = {}, []
    stop = threading.Event()

    def flow():
        for i in itertools.count():
            if stop.is_set():
                return
            who = send(hap.port, "m%d" % i)
            if who:
                accepted["m%d" % i] = (who, time.monotonic())
            else:
                failed.append(i)   # a real client tries again later

    t = threading.Thread(target=flow)
    t.start()
    try:
        wait_for(lambda: sum(1 for w, _ in accepted.values() if w == "mx1") >= 5,
                 timeout=30, what="mx1 accepting some of the flow")
        victim = cl.members[0]
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: sum(1 for _, at in accepted.values() if at > killed_at + 2) >= 20,
                 timeout=60, what="20 messages accepted after the kill")
    finally:
        stop.set()
        t.join(timeout=60)
    late = [w for w, at in accepted.values() if at > killed_at]
    assert "mx1" not in late and {"mx2", "mx3"} <= set(late), late
    # every message accepted with 250 is delivered (mx1's by the others)
    wait_for(lambda: set(accepted) <= set(cl.subjects()), timeout=120, interval=0.5,
             what="every accepted message delivered")
    assert len(failed) <= 10, failed



def test_haproxy_reads_every_agent_reply(nodes, procs, workdir):
    """What the agent says is what HAProxy does: a lower weight under load,
    DRAIN after selorctl drain, DOWN while the node stops."""
    cl = LbCluster(nodes, procs, n=1, options={"Proxy_protocol": BALANCER,
                                               "Lavg_queue": 0})
    hap = Haproxy(workdir, cl.members)
    procs.items.append(hap)
    n = cl.members[0]
    wait_for(lambda: os.path.exists(hap.stats) and
             hap.server("mx1").get("status") == "UP", timeout=20, what="mx1 UP")
    assert hap.server("mx1")["weight"] == "100"
    code, out = cl.ctl("drain", "mx1")
    assert code == 0, out
    wait_for(lambda: hap.server("mx1")["status"] == "DRAIN (agent)", timeout=2 * AGENT_INTER + 1,
             what="HAProxy to drain mx1")
    code, out = cl.ctl("undrain", "mx1")
    wait_for(lambda: hap.server("mx1")["status"] == "UP", timeout=3, what="mx1 UP again")
    # stopping, with a transaction open so that the worker stays a while
    s = n.open_data()
    n.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: hap.server("mx1")["status"] == "DOWN (agent)", timeout=3,
             what="HAProxy to see mx1 down")
    s.sendall(b"Subject: late\r\n\r\nbody\r\n.\r\n")
    assert s.reply().startswith(b"250")
    s.close()
    assert n.proc.wait(timeout=40) == 0


def test_haproxy_weight_follows_the_load(nodes, procs, workdir):
    cl = LbCluster(nodes, procs, n=1, options={"Proxy_protocol": BALANCER,
                                               "Lavg_queue": 1})
    hap = Haproxy(workdir, cl.members)
    procs.items.append(hap)
    busy = None
    try:
        if os.getloadavg()[0] <= 1.5:
            busy = selortest.BusyCpu()
            wait_for(lambda: os.getloadavg()[0] > 1.5, timeout=80, interval=1,
                     what="the load average over 1.5")
        wait_for(lambda: os.path.exists(hap.stats) and
                 hap.server("mx1").get("status") == "UP" and
                 0 < int(hap.server("mx1")["weight"]) < 70, timeout=5,
                 what="HAProxy to lower mx1's weight")
    finally:
        if busy:
            busy.stop()
