"""selortest - helpers for Selor's system tests.

Everything here starts real processes (Selor nodes, and later DNS servers,
sinks, Redis, PostgreSQL) in a private directory with free loopback ports,
and stops them again.  The directory is world-traversable because a node
started as root drops to the user "selor".
"""
import os
import re
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SELOR = os.environ.get("SELOR_BIN", os.path.join(ROOT, "build", "asan", "selor"))
SELORCTL = os.environ.get("SELORCTL_BIN", os.path.join(ROOT, "build", "asan", "selorctl"))
MOD_DIR = os.environ.get("SELOR_MOD_DIR", os.path.join(ROOT, "build", "asan", "mod"))
TESTMOD_DIR = os.environ.get("SELOR_TESTMOD_DIR",
                             os.path.join(ROOT, "build", "asan", "testmod"))
RUN_USER = "selor" if os.geteuid() == 0 else None


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind to 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mda_script(workdir, action, name="mda"):
    """A Dlocal script running `action` on each message, and the file it
    writes to (both usable by the node's User): (script, output file).
    In action, %(out)s is the output file."""
    script = os.path.join(workdir, name + ".sh")
    out = os.path.join(workdir, name + ".out")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n%s\nexit 0\n" % (action % {"out": out}))
    os.chmod(script, 0o755)
    open(out, "w").close()
    os.chmod(out, 0o666)
    return script, out


class BusyCpu:
    """Busy loops (a context manager), so the one-minute load average climbs
    for tests of load-dependent behaviour.  Each loop runs in its own process
    group, killed whole at the end: killing `timeout` alone would leave its
    shell spinning for the rest of the suite."""

    def __init__(self, n=4, seconds=90):
        self.procs = [subprocess.Popen(["timeout", str(seconds), "sh", "-c",
                                        "while :; do :; done"], start_new_session=True)
                      for _ in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.procs = []


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it is true; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def make_workdir(prefix="selor-test-"):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def quote(v):
    return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')


class Node:
    """One Selor node: its directory, its selor.conf, its processes."""

    def __init__(self, base, name="n1", options=None, passwd=None, sid=None):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        spool = os.path.join(self.dir, "spool")
        self.logdir = os.path.join(self.dir, "log")
        self.sandir = os.path.join(self.dir, "sanitizer")
        os.makedirs(self.sandir, exist_ok=True)
        os.chmod(self.sandir, 0o777)
        self.conf = os.path.join(self.dir, "selor.conf")
        self.pidfile = os.path.join(self.dir, "run", "selor.pid")
        self.passwd = os.path.join(self.dir, "passwd")
        self.proc = None
        self.prefix = []      # e.g. ["ip", "netns", "exec", NAME]: where it runs
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        with open(self.passwd, "w") as f:
            f.write(passwd if passwd is not None else DEFAULT_PASSWD)
        os.chmod(self.passwd, 0o644)
        self.options = {
            "Port": free_port(),
            "Bind_address": "127.0.0.1",
            "Server_name": "mx.%s.test" % name,
            "Sid": sid if sid is not None else name,
            "Queue_path": spool,
            "Temp_path": os.path.join(spool, "tmp"),
            "Cp_errors_path": os.path.join(spool, "errors"),
            "Pid_file": self.pidfile,
            "Central_log": os.path.join(self.logdir, "selor.log"),
            "Sumary_log": os.path.join(self.logdir, "summary.log"),
            "Warning_log": os.path.join(self.logdir, "warning.log"),
            "Refused_log": os.path.join(self.logdir, "refused.log"),
            "Module": os.path.join(MOD_DIR, "selor_passwd.so"),
            "Passwd_file": self.passwd,
            "Resolve_all": 0,
            "From_level_check": 0,
            "No_mailbox_delay": 0,
            "Smtp_workers": 2,
            # Accepting tests look at the spool: no delivery unless a test asks.
            "Immed_delivery": 0,
            "Qsleep_time": 3600,
        }
        if RUN_USER:
            self.options["User"] = RUN_USER
            self.options["Group"] = RUN_USER
        self.options.update(options or {})

    @property
    def host(self):
        return self.options.get("Bind_address") or "127.0.0.1"

    @property
    def port(self):
        return self.options["Port"]

    @property
    def spool(self):
        return self.options["Queue_path"]

    @property
    def tmp(self):
        return self.options["Temp_path"]

    # ---- configuration ----

    def write_conf(self, extra_lines=""):
        lines = ["# written by the system tests"]
        for k, v in self.options.items():
            if v is None:
                continue
            values = v if isinstance(v, list) else [v]
            for one in values:
                lines.append("%s %s" % (k, one if isinstance(one, int) else quote(one)))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_lines)
        return self.conf

    # ---- processes ----

    def env(self):
        e = dict(os.environ)
        e["ASAN_OPTIONS"] = "log_path=%s/asan:detect_leaks=0:abort_on_error=0" % self.sandir
        e["UBSAN_OPTIONS"] = ("log_path=%s/ubsan:print_stacktrace=1:halt_on_error=1"
                              % self.sandir)
        return e

    def check(self):
        """selor -t on this node's configuration: (exit code, output)."""
        self.write_conf()
        r = subprocess.run([SELOR, "-t", "-c", self.conf], capture_output=True,
                           text=True, env=self.env(), timeout=30)
        return r.returncode, r.stdout + r.stderr

    def start(self, write=True, wait=True):
        if write:
            self.write_conf()
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.prefix + [SELOR, "-f", "-c", self.conf],
                                     stdout=err, stderr=err, env=self.env(),
                                     start_new_session=True)
        err.close()
        if wait:
            wait_for(self.accepting, timeout=20, what="node %s to accept" % self.name)
            wait_for(lambda: len(self.children()) >= self.options["Smtp_workers"] + 1,
                     timeout=20, what="node %s children" % self.name)
        return self

    def start_detached(self, write=True, timeout=60):
        """Starts the node without -f: selor detaches and its first process
        returns once the daemon runs (0) or failed (1); that code is returned.
        The daemon is nobody's child here: daemon_pid() reads it from the pid
        file and stop_detached() stops it (self.proc stays as it was)."""
        if write:
            self.write_conf()
        with open(self.stderr_path, "ab") as err:
            r = subprocess.run(self.prefix + [SELOR, "-c", self.conf], stdout=err,
                               stderr=err, env=self.env(), timeout=timeout)
        return r.returncode

    def daemon_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def stop_detached(self, pid=None, timeout=40):
        """SIGTERM to a detached node's master; waits until it is gone (a
        zombie nobody reaps counts as gone)."""
        pid = pid or self.daemon_pid()
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        wait_for(lambda: not pid_alive(pid), timeout=timeout,
                 what="detached node %s to stop" % self.name)

    def accepting(self):
        if self.proc and self.proc.poll() is not None:
            raise AssertionError("node %s exited with %s:\n%s" % (
                self.name, self.proc.returncode, self.stderr()))
        if self.prefix:   # in a network namespace: ask from in there
            return client_in(self.prefix, PROBE, self.host, self.port).startswith("220")
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                s.settimeout(5)
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def children(self):
        if not self.proc:
            return []
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)],
                                 capture_output=True, text=True).stdout
        except OSError:
            return []
        return [int(x) for x in out.split()]

    def stop(self, timeout=40):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("node %s did not stop on SIGTERM" % self.name)

    def kill(self, sig=signal.SIGKILL):
        """Signals every process of the node at once."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_reports(self):
        """What the sanitizers wrote, and any failed assertion (a library's
        abort()) on stderr: a node must never end that way."""
        out = [line for line in self.stderr().splitlines()
               if "Assertion `" in line or "Assertion '" in line]
        for n in sorted(os.listdir(self.sandir)):
            with open(os.path.join(self.sandir, n), errors="replace") as f:
                out.append("%s:\n%s" % (n, f.read()))
        return out

    # ---- spool and logs ----

    def queue_files(self, kind="l"):
        try:
            names = os.listdir(self.spool)
        except FileNotFoundError:
            return []
        return sorted(n[1:] for n in names if n.startswith(kind) and re.match(
            r"^[cl]\d+(_\d+)+$", n))

    def read_qf(self, qid):
        with open(os.path.join(self.spool, "l" + qid)) as f:
            return f.read()

    def read_content(self, qid):
        with open(os.path.join(self.spool, "c" + qid), "rb") as f:
            return f.read()

    def log(self, which="selor"):
        name = {"selor": "selor.log", "summary": "summary.log",
                "warning": "warning.log", "refused": "refused.log"}[which]
        try:
            with open(os.path.join(self.logdir, name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- clients ----

    def smtp(self, timeout=30):
        s = smtplib.SMTP(self.host, self.port, timeout=timeout)
        return s

    def open_data(self, rcpt=b"alice@example.com", sender=b"a@remote.test"):
        """A pipelined EHLO, MAIL, RCPT and DATA, all answered: the
        connection is in the DATA phase, ready for content."""
        s = self.connect()
        s.sendall(b"EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                  % (sender, rcpt))
        replies = [s.reply() for _ in range(4)]
        assert replies[-1].startswith(b"354"), replies
        return s

    def connect(self, timeout=30):
        """A raw socket with the greeting already read."""
        s = SmtpConn(socket.create_connection((self.host, self.port), timeout=timeout))
        greeting = s.reply(timeout)
        assert greeting.startswith(b"220"), greeting
        return s


DEFAULT_PASSWD = """\
alice@example.com:{PLAIN}alicepw::::::
bob@example.com:{PLAIN}bobpw::::::
postmaster@example.com:{ALIAS}alice@example.com
team@example.com:{ALIAS}alice@example.com,bob@example.com
"""


class SmtpConn:
    """A client socket that keeps what it read past the reply it returned,
    so pipelined replies arriving in one segment are not lost."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = b""

    def sendall(self, data):
        self.sock.sendall(data)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def recv(self, n):
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
            return data
        return self.sock.recv(n)

    def close(self):
        self.sock.close()

    def reply(self, timeout=30):
        """One whole (possibly multi-line) reply; b"" at end of stream."""
        self.sock.settimeout(timeout)
        while True:
            m = re.search(rb"^\d{3} [^\r\n]*\r\n", self.pending, re.M)
            if m:
                data, self.pending = self.pending[:m.end()], self.pending[m.end():]
                return data
            chunk = self.sock.recv(65536)
            if not chunk:
                data, self.pending = self.pending, b""
                return data
            self.pending += chunk


def recv_reply(sock, timeout=30):
    """Reads one whole (possibly multi-line) SMTP reply."""
    return sock.reply(timeout)


def recv_replies(sock, n, timeout=30):
    """Reads n SMTP replies (pipelined answers) and returns them as a list."""
    out = []
    while len(out) < n:
        r = sock.reply(timeout)
        if not r:
            break
        out.append(r.decode(errors="replace"))
    return out


def parse_lfile(text):
    """The l file as a dict of records plus a list of rcpt records; the
    settings of a version 3 file ("set" records) are recs["set"], a list of
    [name, value] (still percent-encoded)."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] in ("SELOR-L 1", "SELOR-L 2", "SELOR-L 3"), lines[0]
    recs, rcpts = {}, []
    for line in lines[1:]:
        f = line.split(" ")
        if f[0] == "rcpt":
            rcpts.append(f[1:])
        elif f[0] == "set":
            recs.setdefault("set", []).append(f[1:])
        else:
            recs[f[0]] = f[1:]
    return recs, rcpts


# ---- other real processes: DNS server, SMTP sinks ----

def loopback_addr():
    """A 127.0.x.y address nobody listens on at port 25 (for a sink)."""
    import random
    for _ in range(200):
        ip = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                               random.randint(2, 254))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, 25))
                return ip
            except OSError:
                continue
    raise AssertionError("no free loopback address")


class Dns:
    """dnsmasq on a loopback port, authoritative for the test's names.

    mx: {"domain": [(pref, "host"), ...]}, hosts: {"host": "ip"} or
    {"host": ["ip", "ip6", ...]}, ptrs: {"ip": "name"} or {"ip": ["name",
    ...]} (IPv4 or IPv6), txt: {"name": ["record", ...]}, one TXT record
    each; a record is one string, or a tuple of the strings it is made of
    (dnsmasq cuts strings longer than 255 bytes into several).
    tcp_fork: serve each TCP connection in a child process (dnsmasq's
    normal way) rather than in the one process, which a client that keeps
    an idle TCP connection open (rspamd) would block for every other query.
    """

    def __init__(self, base, mx=None, hosts=None, ptrs=None, prefix=(), txt=None,
                 tcp_fork=False):
        self.prefix = list(prefix)
        self.port = free_port()
        self.dir = os.path.join(base, "dns")
        os.makedirs(self.dir, exist_ok=True)
        args = ["dnsmasq", "--keep-in-foreground" if tcp_fork else "--no-daemon",
                "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--port=%d" % self.port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--user=root", "--log-facility=-", "--local=/test/",
                "--pid-file=%s/dnsmasq.pid" % self.dir]
        for dom, entries in (mx or {}).items():
            for pref, host in entries:
                args.append("--mx-host=%s,%s,%d" % (dom, host, pref))
        for host, ip in (hosts or {}).items():
            ips = [ip] if isinstance(ip, str) else list(ip)
            args.append("--host-record=%s,%s" % (host, ",".join(ips)))
        for ip, name in (ptrs or {}).items():
            for n in ([name] if isinstance(name, str) else name):
                args.append("--ptr-record=%s,%s" % (self._reverse(ip), n))
        if txt:
            self._txt_records(args, txt)
        self.log = open(os.path.join(self.dir, "dnsmasq.log"), "wb")
        self.proc = subprocess.Popen(self.prefix + args, stdout=self.log, stderr=self.log)
        if self.prefix:
            time.sleep(1)
        else:
            wait_for(self._ready, timeout=10, what="dnsmasq")

    def _txt_records(self, args, txt):
        # On its command line dnsmasq keeps quotes as text and splits at
        # commas; in a configuration file it takes quoted strings (commas,
        # escaped quotes) but no line past about 1000 bytes.
        conf = os.path.join(self.dir, "txt.conf")
        with open(conf, "w") as f:
            for name, records in txt.items():
                for rec in records:
                    strings = [rec] if isinstance(rec, str) else list(rec)
                    if not any(c in t for t in strings for c in ',"\\'):
                        args.append("--txt-record=%s,%s" % (name, ",".join(strings)))
                        continue
                    f.write("txt-record=%s,%s\n" % (name, ",".join(
                        '"%s"' % t.replace("\\", "\\\\").replace('"', '\\"')
                        for t in strings)))
        args[2] = "--conf-file=%s" % conf

    @staticmethod
    def _reverse(ip):
        if ":" not in ip:
            return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        packed = socket.inet_pton(socket.AF_INET6, ip).hex()
        return ".".join(reversed(packed)) + ".ip6.arpa"

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited: %s" % open(self.log.name).read())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0 and self._answers()

    def _answers(self):
        import struct
        q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + \
            b"\x04test\x00\x00\x06\x00\x01"
        # Connected: a query sent before dnsmasq binds fails at once
        # (ECONNREFUSED from the ICMP error) instead of after the timeout.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", self.port))
                s.send(q)
                return len(s.recv(512)) > 0
            except OSError:
                return False

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


class Sink:
    """tests/system/sink.py on ip:port, recording what Selor delivers."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sink.py")

    def __init__(self, base, ip="127.0.0.1", port=25, args=()):
        self.ip, self.port = ip, port
        self.dir = os.path.join(base, "sink-%s-%d" % (ip, port))
        os.makedirs(self.dir, exist_ok=True)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", self.SCRIPT, "--host", ip, "--port", str(port),
             "--dir", self.dir] + list(args),
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.dir, "stderr"), "wb"))
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY"), "sink did not start: %r" % line
        self.port = int(line.split()[1])

    def messages(self):
        """[(envelope dict, content bytes)] in arrival order."""
        import json
        d = os.path.join(self.dir, "messages")
        out = []
        if not os.path.isdir(d):
            return out
        for name in sorted(os.listdir(d)):
            if name.endswith(".json"):
                with open(os.path.join(d, name)) as f:
                    env = json.load(f)
                with open(os.path.join(d, name[:-5] + ".eml"), "rb") as f:
                    out.append((env, f.read()))
        return out

    def log(self):
        import json
        try:
            with open(os.path.join(self.dir, "log.jsonl")) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def stats(self):
        import json
        try:
            with open(os.path.join(self.dir, "stats.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def pid_alive(pid):
    """pid runs and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_by_name(parent_pid, name):
    """Pids of the children of parent_pid whose command name is name."""
    out = []
    for pid in subprocess.run(["pgrep", "-P", str(parent_pid)], capture_output=True,
                              text=True).stdout.split():
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() == name:
                    out.append(int(pid))
        except OSError:
            pass
    return out


class Redis:
    """redis-server on a free loopback port, without persistence (a restart
    loses everything, the hardest case for the cluster)."""

    def __init__(self, base, port=None, password=None):
        self.port = port or free_port()
        self.password = password
        self.dir = os.path.join(base, "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log")] +
            (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cmd("PING") == "PONG", timeout=10, what="redis-server")

    def cmd(self, *args):
        try:
            auth = ["--no-auth-warning", "-a", self.password] if self.password else []
            r = subprocess.run(["redis-cli", "-p", str(self.port)] + auth + list(args),
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class DelayProxy:
    """tests/system/delayproxy.py: a TCP (Redis) or DNS proxy that makes
    the server behind it answer late."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delayproxy.py")

    def __init__(self, base, kind, to, delay=0.0, per_type=None, prefix=()):
        os.makedirs(base, exist_ok=True)
        fd, self.control = tempfile.mkstemp(prefix="delayproxy-", dir=base)
        os.close(fd)
        self.seq = 0
        args = ["/usr/bin/python3", self.SCRIPT, kind, "--to", to, "--delay", str(delay),
                "--control", self.control]
        for t, s in (per_type or {}).items():
            args += ["--delay-type", "%s=%s" % (t, s)]
        self.proc = subprocess.Popen(list(prefix) + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY"), "delayproxy did not start: %r" % line
        self.port = int(line.split()[1])

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def set(self, delay=None, **per_type):
        """Changes the delays (seconds); returns once the proxy applies them
        (it acknowledges the file's sequence number)."""
        self.seq += 1
        lines = ["seq %d" % self.seq] + ([] if delay is None else ["delay %s" % delay]) + \
            ["%s %s" % (t, s) for t, s in per_type.items()]
        tmp = self.control + ".new"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.control)
        wait_for(lambda: self._acked() == str(self.seq), timeout=10, interval=0.02,
                 what="delayproxy to apply its new delays")

    def _acked(self):
        try:
            with open(self.control + ".ack") as f:
                return f.read().strip()
        except OSError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# ---- a network namespace of the test's own ----

PROBE = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.settimeout(5)
    print(s.recv(512).decode(errors="replace"))
except OSError:
    pass
"""


def client_in(prefix, code, *args, timeout=60):
    """Runs a small Python client where the node runs; its standard output."""
    r = subprocess.run(prefix + ["/usr/bin/python3", "-c", code] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout


class Netns:
    """A network namespace with only its loopback, up, and TCP buffers of
    4 KB (net.ipv4.tcp_wmem/tcp_rmem are per namespace): a client that stops
    reading leaves a server's write pending, as on a slow real network."""

    def __init__(self):
        self.name = "selor-t%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.prefix = ["ip", "netns", "exec", self.name]
        subprocess.run(self.prefix + ["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(self.prefix + ["sysctl", "-q", "-w",
                                      "net.ipv4.tcp_wmem=4096 4096 4096",
                                      "net.ipv4.tcp_rmem=4096 4096 4096"], check=True)

    def stop(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
