"""filters - Debian's own milters (rspamd, OpenDKIM, clamav-milter) for Selor's
system tests.

Each class starts the real daemon as a process of the test, listening on a
free loopback port, with every file it writes (configuration, keys, pid,
logs, databases) in a directory of its own under the test's work directory,
and stops it again (its whole process group).  The Debian services of the
same packages stay stopped: nothing here touches /etc or /var.

    rs = Rspamd(workdir)            # rs.milter  == "inet:127.0.0.1:PORT"
    dk = OpenDkim(workdir)          # dk.txt_name, dk.txt_value: the DNS key
    av = ClamAv(workdir)            # clamd + clamav-milter, EICAR only
    ...
    rs.stop(); dk.stop()

The configurations are the ones docs/milter.md gives operators, with ports
and paths of the test's own.
"""
import os
import signal
import socket
import subprocess

import selortest
from selortest import free_port, wait_for


def _listening(port, proc, name, log):
    if proc.poll() is not None:
        raise AssertionError("%s exited with %s:\n%s" % (name, proc.returncode, _tail(log)))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no %s)" % path


def _stop_group(proc, timeout=15):
    """SIGTERM to the daemon's process group (rspamd forks workers), then
    SIGKILL for whatever is left."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


# ---- rspamd ----

# rspamd compiles its URL matcher (some 10000 TLD suffixes) into a
# Hyperscan database whatever disable_hyperscan says, about 11 s on the
# test machine, and keeps it in hs_cache_dir under a hash of the patterns
# and the CPU (a file it cannot load it removes and builds again).  Kept
# in the tree's build directory (make clean removes it), each start after
# the first loads it.
RSPAMD_HS_CACHE = os.path.join(selortest.ROOT, "build", "rspamd-hs-cache")

GTUBE = ("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")

# The top level: Debian's common.conf (all modules, scores, actions) and
# options, one proxy worker and nothing else (no normal worker: the proxy
# scans itself; no controller; no fuzzy storage).
RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"

options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}

logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/logging.inc"
}

worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%(port)d";
    .include "$CONFDIR/worker-proxy.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/worker-proxy.inc"
}
"""

# The local.d files, as docs/milter.md gives them.
RSPAMD_LOCAL = {
    "worker-proxy.inc": """\
milter = yes;
timeout = 120s;
upstream "local" {
  default = yes;
  self_scan = yes;
}
count = 1;
""",
    "milter_headers.conf": """\
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "authentication-results"];
extended_spam_headers = true;
skip_local = false;
skip_authenticated = false;
""",
    # The test's own DNS server; scans never wait on the Internet.
    "options.inc": """\
dns {
  nameserver = ["%(dns)s"];
  timeout = 1s;
  retransmits = 1;
}
disable_hyperscan = true;
tempdir = "%(tmp)s";
hs_cache_dir = "%(hs_cache)s";
""",
    "logging.inc": "level = \"info\";\n",
    # Modules that ask servers on the Internet (or Redis) for every message.
    "fuzzy_check.conf": "enabled = false;\n",
    "rbl.conf": "enabled = false;\n",
    "asn.conf": "enabled = false;\n",
    "emails.conf": "enabled = false;\n",
    "dcc.conf": "enabled = false;\n",
}


class _Daemon:
    """What the filters' classes share: a process group and a log file.
    stop_wait: how long stop() gives the daemon after SIGTERM before
    SIGKILL."""
    proc = None
    logfile = None
    stop_wait = 15

    @property
    def milter(self):
        """The Milters entry of a daemon on its loopback port."""
        return "inet:127.0.0.1:%d" % self.port

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        _stop_group(self.proc, self.stop_wait)
        self.proc = None


class Rspamd(_Daemon):
    """Debian's rspamd, its proxy worker in milter mode (self-scan).

    dns: "127.0.0.1:PORT" of a DNS server for rspamd's lookups; without it,
    a Dns of its own (dnsmasq answering nothing but *.test) is started.
    rspamd keeps a TCP connection to its DNS server open: a Dns given here
    needs tcp_fork=True, or that connection blocks it for every client.
    As root it runs with -i (workers as root), its files under dir."""

    def __init__(self, base, dns=None, name="rspamd"):
        self.dir = os.path.join(base, name)
        self.etc = os.path.join(self.dir, "etc")
        local = os.path.join(self.etc, "local.d")
        for d in ("etc/local.d", "db", "run", "log", "tmp"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        hs_cache = RSPAMD_HS_CACHE
        try:
            os.makedirs(hs_cache, exist_ok=True)
        except OSError:
            hs_cache = os.path.join(self.dir, "db")
        self.own_dns = None
        if dns is None:
            self.own_dns = selortest.Dns(self.dir, tcp_fork=True)
            dns = self.own_dns.server
        self.port = free_port()
        self.conf = os.path.join(self.etc, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write(RSPAMD_CONF % {"port": self.port})
        for n, text in RSPAMD_LOCAL.items():
            with open(os.path.join(local, n), "w") as f:
                f.write(text % {"dns": dns, "tmp": os.path.join(self.dir, "tmp"),
                                "hs_cache": hs_cache}
                        if "%(" in text else text)
        self.logfile = os.path.join(self.dir, "log", "rspamd.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        args = ["rspamd", "-f", "-c", self.conf]
        if os.geteuid() == 0:
            args.append("-i")
        for var, val in (("CONFDIR", "/etc/rspamd"), ("LOCAL_CONFDIR", self.etc),
                         ("DBDIR", os.path.join(self.dir, "db")),
                         ("RUNDIR", os.path.join(self.dir, "run")),
                         ("LOGDIR", os.path.join(self.dir, "log"))):
            args += ["--var", "%s=%s" % (var, val)]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=err, stderr=err,
                                         start_new_session=True)
        try:
            wait_for(lambda: _listening(self.port, self.proc, "rspamd", self.stderr_path),
                     timeout=60, interval=0.2, what="rspamd to listen")
            # The proxy's socket is bound by the main process before its
            # worker runs: wait for the worker's line in the log too.
            wait_for(lambda: "rspamd_proxy" in self.log(), timeout=60, interval=0.2,
                     what="rspamd's proxy worker")
        except AssertionError:
            self.stop()
            raise

    def stop(self):
        _Daemon.stop(self)
        if self.own_dns:
            self.own_dns.stop()
            self.own_dns = None


# ---- OpenDKIM ----

# OpenDKIM and clamav-milter run on libmilter, whose listener looks at the
# stop flag a SIGTERM sets only when its poll() times out, every 5 s
# (MI_CHK_TIME): a stop took 0 to 5 s, 5 s after a test's connections.
# Nothing of theirs is looked at once a test is over (their logs are
# written line by line), so SIGKILL follows soon.
MILTER_STOP_WAIT = 0.2


class OpenDkim(_Daemon):
    """opendkim signing for `domain` with a fresh RSA key (opendkim-genkey).

    It signs mail of `domain` only for clients in InternalHosts (by default
    192.0.2.1, not the loopback the tests connect from) or for clients that
    authenticated: OpenDKIM 2.11 looks at the {auth_type} macro of MAIL (the
    SASL mechanism), not at {auth_authen}; so a signature proves that the MTA
    sent it.  With internal_hosts="127.0.0.1" it signs whatever
    a local MTA hands it.  Mode "sv": it verifies what it does not sign.
    txt_name/txt_value are the DNS TXT record that publishes the key."""
    stop_wait = MILTER_STOP_WAIT

    def __init__(self, base, domain="local.test", selector="sel1", name="opendkim",
                 mode="sv", internal_hosts="192.0.2.1"):
        self.domain, self.selector = domain, selector
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, exist_ok=True)
        subprocess.run(["opendkim-genkey", "-b", "2048", "-d", domain, "-s", selector,
                        "-D", self.dir], check=True, capture_output=True, timeout=60)
        self.keyfile = os.path.join(self.dir, selector + ".private")
        os.chmod(self.keyfile, 0o600)
        self.txt_name = "%s._domainkey.%s" % (selector, domain)
        self.txt_value = self._public_key_record(os.path.join(self.dir, selector + ".txt"))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "opendkim.conf")
        self.logfile = os.path.join(self.dir, "opendkim.log")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "Syslog no",
                "LogWhy yes",
                "Background no",
                "Mode %s" % mode,
                "Canonicalization relaxed/simple",
                "Domain %s" % domain,
                "Selector %s" % selector,
                "KeyFile %s" % self.keyfile,
                "Socket inet:%d@127.0.0.1" % self.port,
                "PidFile %s" % os.path.join(self.dir, "opendkim.pid"),
                "InternalHosts %s" % internal_hosts,
                "UMask 007",
                # The key lies under /tmp (world-writable, sticky): opendkim
                # would refuse it as unsafe.
                "RequireSafeKeys no",
                # The verifying side would look up keys of other domains.
                "DNSTimeout 2",
                "",
            ]))
        args = ["opendkim", "-f", "-x", self.conf, "-v"]
        with open(self.logfile, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=err, stderr=err, start_new_session=True)
        try:
            wait_for(lambda: _listening(self.port, self.proc, "opendkim", self.logfile),
                     timeout=20, interval=0.1, what="opendkim to listen")
        except AssertionError:
            self.stop()
            raise

    @staticmethod
    def _public_key_record(path):
        """The value of the TXT record opendkim-genkey wrote as a zone file
        line: its quoted strings joined."""
        import re
        with open(path) as f:
            text = f.read()
        value = "".join(re.findall(r'"([^"]*)"', text))
        assert value.startswith("v=DKIM1;") and "p=" in value, text
        return value

    def dns_txt(self):
        """The key as a Dns(txt=...) entry: dnsmasq takes strings of at most
        255 bytes, so the value is cut into such pieces (a resolver joins
        them)."""
        v = self.txt_value
        return {self.txt_name: [tuple(v[i:i + 250] for i in range(0, len(v), 250))]}

# ---- ClamAV ----

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

# The name clamd reports for EICAR with the test's database: a name of our
# own, so a match proves that this database (and no other) was used.
EICAR_SIG = "Selor.Test.EICAR"


def _clamd_answers(sock, proc, log):
    """True once clamd answers PING on its unix socket."""
    if proc.poll() is not None:
        raise AssertionError("clamd exited with %s:\n%s" % (proc.returncode, _tail(log)))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


class ClamAv(_Daemon):
    """clamd and clamav-milter, each with a configuration of its own.

    No official database (freshclam cannot download here, and it would take
    clamd half a minute to load): DatabaseDirectory holds one body
    signature (.ndb, hex of the string) that finds EICAR anywhere in a
    file, named EICAR_SIG; clamd 1.4 starts with it alone in a second.
    clamav-milter hands each message to clamd over clamd's unix socket
    (INSTREAM), and listens for the MTA on a loopback port.
    on_infected: "Reject" or "Quarantine" (clamav-milter's OnInfected);
    reject_msg: its RejectMsg (%v: the virus name), or None for none (a
    bare reject: the MTA's own text).
    As root both stay root (no User line): no user of their own is needed,
    clamd reads nothing but the stream clamav-milter sends it.
    log() is clamav-milter's log (LogInfected/LogClean Full)."""
    stop_wait = MILTER_STOP_WAIT

    def __init__(self, base, name="clamav", on_infected="Reject", reject_msg=None):
        self.dir = os.path.join(base, name)
        self.db = os.path.join(self.dir, "db")
        os.makedirs(self.db, exist_ok=True)
        with open(os.path.join(self.db, "selor-test.ndb"), "w") as f:
            # Name:TargetType(0 = any file):Offset(* = anywhere):HexSignature
            f.write("%s:0:*:%s\n" % (EICAR_SIG, EICAR.encode().hex()))
        self.clamd_sock = os.path.join(self.dir, "clamd.sock")
        self.clamd_log = os.path.join(self.dir, "clamd.log")
        self.clamd_conf = os.path.join(self.dir, "clamd.conf")
        with open(self.clamd_conf, "w") as f:
            f.write("\n".join([
                "Foreground yes",
                "LocalSocket %s" % self.clamd_sock,
                "LocalSocketMode 660",
                "FixStaleSocket yes",
                "DatabaseDirectory %s" % self.db,
                "TemporaryDirectory %s" % self.dir,
                "PidFile %s" % os.path.join(self.dir, "clamd.pid"),
                "LogFile %s" % self.clamd_log,
                "LogTime yes",
                # Nothing to reload in a test run.
                "SelfCheck 0",
                "",
            ]))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "clamav-milter.conf")
        self.logfile = os.path.join(self.dir, "clamav-milter.log")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "Foreground yes",
                "MilterSocket inet:%d@127.0.0.1" % self.port,
                "ClamdSocket unix:%s" % self.clamd_sock,
                "PidFile %s" % os.path.join(self.dir, "clamav-milter.pid"),
                "TemporaryDirectory %s" % self.dir,
                "OnClean Accept",
                "OnInfected %s" % on_infected,
                "OnFail Defer",
            ] + (["RejectMsg %s" % reject_msg] if reject_msg else []) + [
                "ReadTimeout 15",   # below the tests' Milter_timeout (20)
                "AddHeader Replace",
                "LogFile %s" % self.logfile,
                "LogTime yes",
                "LogInfected Full",
                "LogClean Full",
                "",
            ]))
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.clamd = None
        try:
            with open(self.stderr_path, "ab") as err:
                self.clamd = subprocess.Popen(["clamd", "-c", self.clamd_conf],
                                              stdout=err, stderr=err, start_new_session=True)
            wait_for(lambda: _clamd_answers(self.clamd_sock, self.clamd, self.stderr_path),
                     timeout=60, interval=0.1, what="clamd to answer PING")
            with open(self.stderr_path, "ab") as err:
                self.proc = subprocess.Popen(["clamav-milter", "-c", self.conf],
                                             stdout=err, stderr=err, start_new_session=True)
            wait_for(lambda: _listening(self.port, self.proc, "clamav-milter",
                                        self.stderr_path),
                     timeout=20, interval=0.1, what="clamav-milter to listen")
        except AssertionError:
            self.stop()
            raise

    def stop(self):
        _Daemon.stop(self)
        _stop_group(self.clamd)
        self.clamd = None


# ---- DKIM verification against the test's DNS server ----

def dns_txt_lookup(server):
    """A dnsfunc for dkim.verify: asks the DNS server "127.0.0.1:PORT" (the
    test's dnsmasq) for TXT records, joining each record's strings."""
    import dns.message
    import dns.query
    import dns.rdatatype
    host, port = server.rsplit(":", 1)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        q = dns.message.make_query(name.rstrip(".") + ".", dns.rdatatype.TXT)
        r = dns.query.udp(q, host, port=int(port), timeout=timeout)
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rd in rrset:
                    return b"".join(rd.strings)
        return None
    return dnsfunc


def dkim_verify(message, server):
    """(ok, error text) of python3-dkim's verification of message's first
    DKIM-Signature, the key asked from the DNS server `server`."""
    import dkim
    d = dkim.DKIM(message)
    try:
        ok = d.verify(dnsfunc=dns_txt_lookup(server))
    except dkim.DKIMException as e:
        return False, str(e)
    return ok, "" if ok else "signature does not verify"

