"""The ops process (selor-ops): HAProxy's agent-check on Agent_port, and
GET /metrics and /health on Metrics_port.

The agent's one line follows the node's state: ready (with a weight when
the load average is over Lavg_queue), drain (selorctl drain with Redis, or
a spool User cannot write), down (the node is stopping, until its workers
are gone).  The HTTP side answers only small, well-formed GET requests and
closes everything else cleanly, without holding up other clients.
"""
import os
import signal
import socket
import subprocess
import time

import pytest

import selortest
from selortest import wait_for


def agent(n, timeout=5):
    """The agent's reply: what HAProxy reads before the agent closes."""
    with socket.create_connection((n.host, n.options["Agent_port"]), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while True:
            chunk = s.recv(256)
            if not chunk:
                return data.decode()
            data += chunk


def http(n, request, timeout=10):
    """Raw request -> raw response bytes (up to the server's close)."""
    with socket.create_connection(("127.0.0.1", n.options["Metrics_port"]),
                                  timeout=timeout) as s:
        s.settimeout(timeout)
        if request:
            s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def get(n, path):
    """(status, headers dict with lower-case names, body)."""
    raw = http(n, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def ops_node(nodes, **options):
    opts = {"Agent_port": selortest.free_port(), "Metrics_port": selortest.free_port()}
    opts.update(options)
    n = nodes(options=opts).start()
    wait_for(lambda: selortest.process_by_name(n.proc.pid, "selor-ops"),
             what="the ops process")
    wait_for(lambda: agent_or_none(n) is not None, what="the agent to answer")
    return n


def agent_or_none(n):
    try:
        return agent(n)
    except OSError:
        return None


def test_no_ops_process_without_the_ports(node):
    assert not selortest.process_by_name(node.proc.pid, "selor-ops")


def test_agent_ready_and_health_ok(nodes):
    n = ops_node(nodes, Lavg_queue=0)
    assert agent(n) == "up ready 100%\n"
    status, headers, body = get(n, "/health")
    assert (status, body) == (200, b"ok\n")
    assert headers["connection"] == "close"
    # the node itself still takes mail
    c = n.smtp()
    assert c.ehlo("client.test")[0] == 250
    c.quit()


def test_metrics_port_is_loopback_when_bind_address_is_any(nodes):
    n = ops_node(nodes, Bind_address="")
    status, _, _ = get(n, "/health")
    assert status == 200
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % n.options["Metrics_port"]],
                         capture_output=True, text=True).stdout
    assert "127.0.0.1:%d" % n.options["Metrics_port"] in out, out
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % n.options["Agent_port"]],
                         capture_output=True, text=True).stdout
    assert "*:%d" % n.options["Agent_port"] in out or \
        "0.0.0.0:%d" % n.options["Agent_port"] in out, out


def test_agent_weight_under_load(nodes):
    n = ops_node(nodes, Lavg_queue=1)
    busy = None
    try:
        if os.getloadavg()[0] <= 1.5:
            busy = selortest.BusyCpu()
            wait_for(lambda: os.getloadavg()[0] > 1.5, timeout=80, interval=1,
                     what="the load average over 1.5")
        reply = agent(n)
        load = os.getloadavg()[0]
    finally:
        if busy:
            busy.stop()
    assert reply.startswith("up ready ") and reply.endswith("%\n"), reply
    weight = int(reply[len("up ready "):-2])
    # 100% * Lavg_queue / load, the load read at about the same time
    assert 1 <= weight < 100, reply
    assert abs(weight - 100.0 / load) <= 15, (reply, load)


def test_spool_not_writable_drains(nodes):
    n = ops_node(nodes)
    os.chmod(n.tmp, 0o500)
    try:
        wait_for(lambda: agent(n) == "up drain\n", timeout=5, what="the agent to drain")
        status, _, body = get(n, "/health")
        assert status == 503
        assert body.startswith(b"spool not writable: " + n.tmp.encode()), body
    finally:
        os.chmod(n.tmp, 0o750)
    wait_for(lambda: agent(n) == "up ready 100%\n" or agent(n).startswith("up ready"),
             timeout=5, what="the agent to be ready again")
    assert get(n, "/health")[0] == 200
    assert "spool not writable" in n.log("warning")


def test_drain_with_redis(nodes, procs):
    redis = procs.redis()
    n = ops_node(nodes, Redis_server=redis.server, Lavg_queue=0)
    wait_for(lambda: get(n, "/health")[0] == 200, what="Redis reachable")
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "drain", n.options["Sid"]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    t0 = time.monotonic()
    wait_for(lambda: agent(n) == "up drain\n", timeout=2, interval=0.05,
             what="the agent to say drain")
    assert time.monotonic() - t0 < 1.0
    status, _, body = get(n, "/health")
    assert (status, body) == (503, b"draining\n")
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "undrain", n.options["Sid"]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: agent(n) == "up ready 100%\n", timeout=2, what="ready again")
    # Redis gone: the node still accepts (the agent says ready), /health says why
    redis.stop()
    wait_for(lambda: get(n, "/health")[2] == b"coordination backend unreachable\n",
             timeout=10, what="/health to report Redis")
    assert get(n, "/health")[0] == 503
    assert agent(n) == "up ready 100%\n"


def test_agent_says_down_while_stopping(nodes):
    n = ops_node(nodes, Lavg_queue=0)
    ops_pid = selortest.process_by_name(n.proc.pid, "selor-ops")[0]
    s = n.open_data()            # an open transaction keeps its worker a while
    s.sendall(b"Subject: late\r\n\r\nbody\r\n")
    n.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: agent(n) == "down #stopping\n", timeout=5, what="the agent to say down")
    status, _, body = get(n, "/health")
    assert (status, body) == (503, b"stopping\n")
    time.sleep(1)
    assert agent(n) == "down #stopping\n"      # the worker still runs
    assert selortest.pid_alive(ops_pid)
    s.sendall(b".\r\n")
    assert s.reply().startswith(b"250")
    s.close()
    assert n.proc.wait(timeout=40) == 0
    assert not selortest.pid_alive(ops_pid)
    assert "ops: node stopping" in n.log("warning")


def test_metrics_content_type_and_format(nodes):
    from prometheus_client.parser import text_string_to_metric_families
    n = ops_node(nodes)
    c = n.smtp()
    c.ehlo("client.test")
    c.quit()
    status, headers, body = get(n, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body)
    list(text_string_to_metric_families(body.decode()))   # raises if malformed
    head = http(n, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
    (b"GET /health?x=1 HTTP/1.0\r\n\r\n", 200),
    (b"hello\r\n\r\n", 400),
    (b"GET /health SMTP/1.0\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\n\x00\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", 431),
])
def test_bad_requests_are_answered_and_closed(nodes, request_bytes, status):
    n = ops_node(nodes)
    raw = http(n, request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert b"Connection: close\r\n" in raw
    assert get(n, "/health")[0] == 200


def test_silent_and_slow_clients_do_not_hold_others(nodes):
    n = ops_node(nodes)
    port = n.options["Metrics_port"]
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /health HTTP/1.1\r\n")
    try:
        t0 = time.monotonic()
        assert get(n, "/health")[0] == 200      # answered while the others wait
        assert agent(n).startswith("up ready")
        c = n.smtp()                             # and the node's mail goes on
        assert c.ehlo("client.test")[0] == 250
        c.quit()
        assert time.monotonic() - t0 < 3
        # the silent ones are closed after the read timeout (a 408)
        for s in silent + [half]:
            s.settimeout(15)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 "), data
    finally:
        for s in silent + [half]:
            s.close()


def test_too_many_clients_are_closed_not_queued(nodes):
    n = ops_node(nodes)
    port = n.options["Metrics_port"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        time.sleep(0.5)
        closed = 0
        for s in held:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 8, closed          # over the cap of 32
    finally:
        for s in held:
            s.close()
    # the flood's connections go as the server sees them closed
    wait_for(lambda: http(n, b"GET /health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 "),
             what="/health after the flood")


def test_ops_process_restarts(nodes):
    n = ops_node(nodes)
    pid = selortest.process_by_name(n.proc.pid, "selor-ops")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: [p for p in selortest.process_by_name(n.proc.pid, "selor-ops")
                      if p != pid], timeout=10, what="a new ops process")
    wait_for(lambda: agent_or_none(n) == "up ready 100%\n" or
             (agent_or_none(n) or "").startswith("up ready"), timeout=10,
             what="the agent back")
    assert "ops process (pid %d) killed by signal 9" % pid in n.log("warning")


def test_check_selor_script_reads_health(nodes):
    n = ops_node(nodes)
    script = os.path.join(selortest.ROOT, "ha", "check_selor.sh")
    args = [script, n.host, str(n.port), n.conf]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("OK: 220") and "health: ok" in r.stdout, \
        r.stdout + r.stderr
    os.chmod(n.tmp, 0o500)
    try:
        wait_for(lambda: get(n, "/health")[0] == 503, timeout=5, what="/health 503")
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    finally:
        os.chmod(n.tmp, 0o750)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("WARNING: node not ready: spool not writable"), r.stdout
