#!/usr/bin/python3
"""idle.py - memory of one node holding many idle SMTP connections.

Starts a node (the optimised build), opens N connections that only read the
greeting, and prints the resident memory of all the node's processes:

    idle: 10000 connections, 36 MB resident (2.8 KB each); target well under 300 MB

Usage: idle.py [N] [--tls]   (default 10000; the design brief's target)
  --tls: each connection does STARTTLS first (selor_tls.so, a throw-away
         certificate); target: 5,000 such sessions under 150 MB
"""
import os
import resource
import shutil
import socket
import ssl
import subprocess
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


def starttls(port, ctx):
    """A session that did STARTTLS and EHLO inside it, then stays idle."""
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220"), "no STARTTLS"
    t = ctx.wrap_socket(s)
    t.sendall(b"EHLO idle.test\r\n")
    g = t.makefile("rb")
    while g.readline()[3:4] == b"-":
        pass
    return t


def tls_options(base):
    key, cert = os.path.join(base, "k.pem"), os.path.join(base, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=idle.test"], check=True, capture_output=True)
    return {"Tls_module": os.path.join(os.path.dirname(MOD), "selor_tls.so"),
            "Tls_enable": 1, "Tls_pubkey": cert, "Tls_privkey": key}


def main():
    args = [a for a in sys.argv[1:] if a != "--tls"]
    tls = "--tls" in sys.argv[1:]
    n = int(args[0]) if args else 10000
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
    base = selortest.make_workdir("selor-idle-")
    opts = {"Module": MOD, "Timeout": 600}
    if tls:
        opts.update(tls_options(base))
    node = selortest.Node(base, "idle", options=opts)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = []
    try:
        node.start()
        before = rss_kb(node)
        for _ in range(n):
            socks.append(starttls(node.port, ctx) if tls else
                         socket.create_connection(("127.0.0.1", node.port)))
        if not tls:
            for s in socks[-50:]:
                s.settimeout(30)
                assert s.recv(100).startswith(b"220"), "no greeting"
        time.sleep(1)
        after = rss_kb(node)
        what = "idle TLS: %d sessions after STARTTLS" if tls else "idle: %d connections"
        print((what + ", %d MB resident (%.1f KB each above the %d MB of an idle node); "
               "target %s") % (n, after // 1024, (after - before) / n, before // 1024,
                               "under 150 MB" if tls else "well under 300 MB"))
    finally:
        for s in socks:
            s.close()
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
