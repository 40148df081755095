"""Redis round trips per delivered message (issue 13; docs/performance.md,
"### Redis").

One node with Redis_server relays a few hundred messages, sent by several
client sessions at once, to a sink.  MONITOR (tests/bench/benchlib.py's
`monitor`, the bench's own counter) records every command the node sends
while it does.  Counted: every command the node sent (scripts and plain
commands: claims, releases, renewals, slots, heartbeats), except what is
paid per accepted message or connection, not per delivery: ANNOUNCE (one
per accepted message) and CONN (one per client connection).  The target of
the issue is at most 1.5 per delivered message; each message must arrive
once.
"""
import json
import os
import subprocess
import sys
import threading
import time

from selortest import wait_for
from test_cluster import Cluster, all_delivered_once, send_many

BENCHLIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench",
                        "benchlib.py")
COUNT = 300
SESSIONS = 6
TARGET = 1.5
PER_DELIVERY = ("ANNOUNCE(main)", "CONN")   # not counted: per accepted message/connection


def monitor_phase(redis, workdir, phase, body):
    """Runs body() while benchlib's MONITOR records `phase`: its counts."""
    out = os.path.join(workdir, "monitor.json")
    mon = subprocess.Popen([sys.executable, BENCHLIB, "monitor", str(redis.port), out])
    try:
        wait_for(lambda: any("monitor" in l.lower()
                             for l in (redis.cmd("CLIENT", "LIST") or "").splitlines()),
                 timeout=10, what="MONITOR on")
        redis.cmd("ECHO", "bench-phase:" + phase)
        body()
        redis.cmd("ECHO", "bench-phase:END")
        mon.wait(timeout=60)
    finally:
        if mon.poll() is None:
            mon.kill()
            mon.wait()
    with open(out) as f:
        return json.load(f)[phase]


def test_round_trips_per_delivered_message(nodes, procs, workdir):
    cluster = Cluster(nodes, procs, n=1, options={"Qsleep_time": 60, "Lock_lease": 5})
    cluster.wait_startup_pause()
    per = COUNT // SESSIONS
    result = {}

    def relay():
        threads = [threading.Thread(target=send_many, args=(cluster, per, k * per))
                   for k in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result["check"] = all_delivered_once(cluster, 0, COUNT, timeout=240)
        time.sleep(1.0)      # the last releases (they wait a moment for a claim)

    ph = monitor_phase(cluster.redis, workdir, "relay", relay)
    missing, doubled = result["check"]
    assert not missing and not doubled, (missing[:20], doubled)
    assert sum(cluster.subjects().values()) == COUNT
    sent = sum(ph["sent"].values())
    excluded = sum(ph["scripts"].get(k, 0) for k in PER_DELIVERY)
    per_msg = (sent - excluded) / COUNT
    report = "%.2f round trips per delivered message (scripts: %s; all commands: %s)" % (
        per_msg, ph["scripts"], ph["sent"])
    print(report)
    assert ph["scripts"].get("ANNOUNCE(main)", 0) >= COUNT, report   # MONITOR saw the run
    assert per_msg <= TARGET, report
