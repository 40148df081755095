#!/usr/bin/python3
"""idle.py - memory of one node holding many idle SMTP connections.

Starts a node (the optimised build), opens N connections that only read the
greeting, and prints the resident memory of all the node's processes:

    idle: 10000 connections, 36 MB resident (2.8 KB each); target well under 300 MB

Usage: idle.py [N]   (default 10000; the design brief's target)
"""
import os
import resource
import shutil
import socket
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
import selortest  # noqa: E402

selortest.SELOR = os.path.join(ROOT, "build", "selor")
MOD = os.path.join(ROOT, "build", "mod", "selor_passwd.so")


def rss_kb(node):
    total = 0
    for pid in [node.proc.pid] + node.children():
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
    base = selortest.make_workdir("selor-idle-")
    node = selortest.Node(base, "idle", options={"Module": MOD, "Timeout": 600})
    socks = []
    try:
        node.start()
        before = rss_kb(node)
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", node.port)))
        for s in socks[-50:]:
            s.settimeout(30)
            assert s.recv(100).startswith(b"220"), "no greeting"
        time.sleep(1)
        after = rss_kb(node)
        print("idle: %d connections, %d MB resident (%.1f KB each above the %d MB of "
              "an idle node); target well under 300 MB"
              % (n, after // 1024, (after - before) / n, before // 1024))
    finally:
        for s in socks:
            s.close()
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
