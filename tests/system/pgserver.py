"""pgserver - a private PostgreSQL server for the pgsql module's tests.

initdb in a directory of the test's own, owned by an unprivileged user
(the tests run as root; PostgreSQL refuses to), a postmaster on a free
port of 127.0.0.1 and a Unix socket in that directory, and helpers to run
SQL, stop and start it.  Must not: touch the machine's own clusters
(/var/lib/postgresql, port 5432) or leave a postmaster running.
"""
import os
import pwd
import shutil
import subprocess
import time

import selortest


def bindir():
    for d in ("/usr/lib/postgresql/15/bin",):
        if os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    try:
        return subprocess.run(["pg_config", "--bindir"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "/usr/lib/postgresql/15/bin"


class PgServer:
    USER = "postgres"

    def __init__(self, base):
        self.bin = bindir()
        self.dir = os.path.join(base, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        self.logfile = os.path.join(self.dir, "server.log")
        self.port = selortest.free_port()
        self.as_user = []
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", self.USER, "--"]
        os.chmod(self.dir, 0o755)
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        self.start()

    def _run(self, args, check=True, timeout=60):
        r = subprocess.run(self.as_user + args, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s failed: %s%s" % (args[0], r.stdout, r.stderr))
        return r

    def start(self):
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200" % (self.port, self.sock))
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                   "-o", opts, "-w", "-t", "30", "start"])

    def stop(self, mode="fast"):
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode,
                   "-w", "-t", "30", "stop"], check=False)

    def running(self):
        r = self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "status"],
                      check=False)
        return r.returncode == 0

    @property
    def conninfo(self):
        """Addresses only: libpq never resolves a name (see docs/modules.md)."""
        return "hostaddr=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port

    def sql(self, text, db="postgres"):
        """Runs SQL with psql; the rows as a list of tuples of strings."""
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-c", text], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise AssertionError("psql: %s" % r.stderr)
        return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line]

    def cleanup(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until_up(server, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            server.sql("SELECT 1")
            return
        except AssertionError:
            time.sleep(0.1)
    raise AssertionError("postgres did not come up")
