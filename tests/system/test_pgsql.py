"""The pgsql account module (selor_pgsql.so) against a real PostgreSQL 15
that these tests start themselves (tests/system/pgserver.py): lookups and
logins from tables, the order against the passwd module, keys that look
like SQL, the database stopped under load and restarted, a query slower
than Pgsql_timeout, the cache, and the module's own checks through
build/asan/tests/test_pgsql (cancel, detach, broadcast lists).
"""
import os
import re
import subprocess
import threading
import time
import warnings

import pytest

import selortest
from pgserver import PgServer
from selortest import recv_reply, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

PGSQL = os.path.join(selortest.MOD_DIR, "selor_pgsql.so")
PASSWD = os.path.join(selortest.MOD_DIR, "selor_passwd.so")
UNIT = os.path.join(os.path.dirname(selortest.SELOR), "tests", "test_pgsql")

QUOTED = '"o\'brien;--\\\\x"@local.test'   # "o'brien;--\\x"@local.test

SCHEMA = r"""
CREATE TABLE domains (domain text PRIMARY KEY);
CREATE TABLE mailboxes (address text PRIMARY KEY, password text, home text,
                        uid integer, gid integer, dlocal text, quota bigint);
CREATE TABLE aliases (address text NOT NULL, target text NOT NULL);
CREATE TABLE lookup_log (kind text, key text);
-- Every mailbox lookup is counted (the cache tests), and a key starting
-- with "slow" takes 3 s (the timeout tests).
CREATE FUNCTION mailbox_lookup(k text)
RETURNS TABLE ("user" text, home text, uid integer, gid integer, dlocal text,
               quota bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO lookup_log VALUES ('mailbox', k);
    IF k LIKE 'slow%' THEN
        PERFORM pg_sleep(3);
    END IF;
    RETURN QUERY SELECT m.address, m.home, m.uid, m.gid, m.dlocal, m.quota
                 FROM mailboxes m WHERE m.address = k;
END $$;
"""

QUERIES = {
    "Pgsql_query_domain": "SELECT 1 FROM domains WHERE domain = $1",
    "Pgsql_query_mailbox": "SELECT * FROM mailbox_lookup($1)",
    "Pgsql_query_alias": "SELECT target FROM aliases WHERE address = $1",
    "Pgsql_query_auth": 'SELECT address AS "user", password FROM mailboxes '
                        "WHERE address = $1",
    "Pgsql_query_domain_mailboxes": "SELECT address FROM mailboxes WHERE "
                                    "substring(address from '@([^@]*)$') = $1 "
                                    "ORDER BY address",
}


def hashes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return {
            "sha512": "{SHA512-CRYPT}" + crypt.crypt("pw-sha512", crypt.mksalt(crypt.METHOD_SHA512)),
            "sha256": "{SHA256-CRYPT}" + crypt.crypt("pw-sha256", crypt.mksalt(crypt.METHOD_SHA256)),
            "blf": "{BLF-CRYPT}" + crypt.crypt("pw-blf", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)),
            "crypt": "{CRYPT}" + crypt.crypt("pw-crypt", crypt.mksalt(crypt.METHOD_SHA512)),
            "plain": "{PLAIN}pw-plain",
        }


def q(s):
    return "'" + s.replace("'", "''") + "'"


@pytest.fixture(scope="module")
def pg():
    base = selortest.make_workdir("selor-pg-")
    server = PgServer(base)
    try:
        server.sql(SCHEMA)
        rows = ["('%s@local.test', %s, '/home/%s', NULL, NULL, NULL, NULL)" % (k, q(h), k)
                for k, h in hashes().items()]
        rows.append("('alice@local.test', '{PLAIN}alicepw', '/home/alice', 1001, 1002, "
                    "NULL, 1048576)")
        rows.append("('nopw@local.test', NULL, NULL, NULL, NULL, NULL, NULL)")
        rows.append("(%s, '{PLAIN}quoted', '/home/quoted', NULL, NULL, NULL, NULL)"
                    % q(QUOTED))
        rows.append("('dual@both.test', '{PLAIN}pgpw', '/pg/dual', NULL, NULL, NULL, NULL)")
        rows.append("('slow@local.test', NULL, NULL, NULL, NULL, NULL, NULL)")
        for i in range(8):
            rows.append("('load%d@local.test', NULL, NULL, NULL, NULL, NULL, NULL)" % i)
        server.sql("INSERT INTO domains VALUES ('local.test'), ('both.test');"
                   "INSERT INTO mailboxes VALUES %s;"
                   "INSERT INTO aliases VALUES ('team@local.test', 'alice@local.test'),"
                   " ('team@local.test', 'ext@remote.test'),"
                   " ('fwd@local.test', 'ext2@remote.test'),"
                   " ('all@local.test', '@local.test');" % ",".join(rows))
        yield server
    finally:
        server.cleanup()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def pg_node(nodes, pg, options=None, modules=(PGSQL,), **kw):
    opts = {"Module": list(modules), "Pgsql_conninfo": pg.conninfo}
    opts.update(QUERIES)
    opts.update(options or {})
    return nodes(options=opts, **kw)


def rcpt(node, addr, frm="a@remote.test", timeout=30):
    s = node.connect()
    s.sendall(b"EHLO c.test\r\n")
    recv_reply(s)
    s.sendall(("MAIL FROM:<%s>\r\n" % frm).encode())
    assert recv_reply(s).startswith(b"250")
    s.sendall(("RCPT TO:<%s>\r\n" % addr).encode())
    r = recv_reply(s, timeout).decode()
    s.close()
    return r


def send(node, to, frm="someone@sender.test", body="Subject: t\r\n\r\nhello\r\n"):
    with node.smtp() as c:
        c.ehlo("client.test")
        code, msg = c.mail(frm)
        assert code == 250, msg
        for t in (to if isinstance(to, list) else [to]):
            code, msg = c.rcpt(t)
            assert code == 250, (t, msg)
        code, msg = c.data(body)
        assert code == 250, msg
        return msg.decode().split()[1]


def lookups(pg, key):
    return int(pg.sql("SELECT count(*) FROM lookup_log WHERE key = %s" % q(key))[0][0])


# ---- lookups, aliases, logins ------------------------------------------------


def test_mailboxes_domains_aliases(nodes, procs, pg):
    sink = procs.sink("127.0.0.1", 0)
    n = pg_node(nodes, pg, {"Relay_host": "127.0.0.1:%d" % sink.port}).start()
    assert rcpt(n, "alice@local.test").startswith("250")
    assert rcpt(n, "ALICE@Local.Test").startswith("250")
    assert rcpt(n, "nobody@local.test").startswith("550")
    # a domain no table names is remote: relaying is refused
    assert rcpt(n, "alice@other.test").startswith("550 5.7.1")
    # an alias to a local and a remote address; one only remote
    assert rcpt(n, "team@local.test").startswith("250")
    assert rcpt(n, "fwd@local.test").startswith("250")
    qid = send(n, "fwd@local.test")
    recs, rcpts = selortest.parse_lfile(n.read_qf(qid))
    assert any("ext2@remote.test" in r for r in rcpts), rcpts
    n.options["Immed_delivery"] = 2
    n.stop()
    n.start()
    send(n, "fwd@local.test", body="Subject: out\r\n\r\nto the sink\r\n")
    wait_for(lambda: any("ext2@remote.test" in m[0]["rcpts"] for m in sink.messages()),
             timeout=30, what="the remote alias delivered to the sink")


def auth(node, user, pw):
    import base64
    s = node.connect()
    s.sendall(b"EHLO c.test\r\n")
    recv_reply(s)
    tok = base64.b64encode(("\0%s\0%s" % (user, pw)).encode())
    s.sendall(b"AUTH PLAIN " + tok + b"\r\n")
    r = recv_reply(s).decode()
    s.close()
    return r


def test_logins_with_each_scheme(nodes, pg):
    n = pg_node(nodes, pg, {"Auth_plaintext": 1, "Incorrect_pass_delay": 0}).start()
    for k in hashes():
        assert auth(n, "%s@local.test" % k, "pw-%s" % k).startswith("235"), k
        assert auth(n, "%s@local.test" % k, "pw-%sX" % k).startswith("535"), k
    assert auth(n, "alice@local.test", "alicepw").startswith("235")
    assert auth(n, "alice@local.test", "Alicepw").startswith("535")
    assert auth(n, "nopw@local.test", "").startswith(("535", "501"))
    assert auth(n, "nopw@local.test", "x").startswith("535")
    assert auth(n, "ghost@local.test", "x").startswith("535")


def recorder(workdir, name="mda.sh"):
    """A Dlocal program that writes "%l %C" and the message to a file each."""
    out = os.path.join(workdir, "delivered")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    script = os.path.join(workdir, name)
    with open(script, "w") as f:
        f.write('#!/bin/sh\nf=%s/m.$$.$(date +%%s%%N)\n'
                '{ echo "$1 $2"; cat; } > "$f.tmp" && mv "$f.tmp" "$f"\n' % out)
    os.chmod(script, 0o755)
    return script, out


def delivered(out):
    texts = []
    for name in sorted(os.listdir(out)):
        if not name.endswith(".tmp"):
            with open(os.path.join(out, name), errors="replace") as f:
                texts.append(f.read())
    return texts


@pytest.mark.parametrize("order,home", [("pgsql passwd", "/pg/dual"),
                                        ("passwd pgsql", "/pw/dual")])
def test_modseq_order_with_passwd(nodes, workdir, pg, order, home):
    script, out = recorder(workdir)
    passwd = selortest.DEFAULT_PASSWD + "dual@both.test:{PLAIN}pwpw::::/pw/dual::\n"
    n = pg_node(nodes, pg, {"Modseq_mail": order, "Dlocal": script + " %l %C",
                            "Dlocal_type": 0, "Immed_delivery": 2},
                modules=(PASSWD, PGSQL), passwd=passwd).start()
    send(n, "dual@both.test")
    wait_for(lambda: delivered(out), timeout=30, what="local delivery")
    assert delivered(out)[0].split("\n")[0] == "dual@both.test " + home
    # each module still answers what only it knows
    assert rcpt(n, "alice@example.com").startswith("250")
    assert rcpt(n, "alice@local.test").startswith("250")


# ---- keys that look like SQL ------------------------------------------------------


def test_sql_in_keys_is_a_plain_key(nodes, pg):
    n = pg_node(nodes, pg, {"Auth_plaintext": 1, "Incorrect_pass_delay": 0}).start()
    for key in ['"x\';drop table mailboxes;--"@local.test',
                '"x\\\\\';drop table mailboxes;--"@local.test',
                "x'or'1'='1@local.test",
                "x--@local.test"]:
        assert rcpt(n, key).startswith("550"), key
    assert auth(n, "x' or '1'='1", "x' or '1'='1").startswith("535")
    assert auth(n, "alice@local.test'--", "alicepw").startswith("535")
    assert pg.sql("SELECT count(*) FROM mailboxes WHERE address = 'alice@local.test'") \
        == [("1",)]
    # such an address in the table is found
    assert rcpt(n, QUOTED).startswith("250")
    with open(pg.logfile, errors="replace") as f:
        assert "syntax error" not in f.read()


# ---- the database stopped under load and started again ------------------------------


class Loader(threading.Thread):
    """Sends one message a session, in a loop, and records every reply."""

    def __init__(self, node, rcpt_to, tag):
        super().__init__(daemon=True)
        self.node, self.to, self.tag = node, rcpt_to, tag
        self.stop_flag = threading.Event()
        self.accepted, self.temp, self.perm, self.errors = [], 0, [], []
        self.last_ok = 0.0
        self.seq = 0

    def one(self):
        self.seq += 1
        token = "%s-%d" % (self.tag, self.seq)
        s = self.node.connect(timeout=15)
        try:
            s.sendall(b"EHLO load.test\r\nMAIL FROM:<l@remote.test>\r\n")
            recv_reply(s, 15)
            recv_reply(s, 15)
            s.sendall(("RCPT TO:<%s>\r\n" % self.to).encode())
            r = recv_reply(s, 15).decode()
            if r.startswith("4"):
                self.temp += 1
                return
            if not r.startswith("250"):
                self.perm.append(r)
                return
            s.sendall(b"DATA\r\n")
            assert recv_reply(s, 15).startswith(b"354")
            s.sendall(("Subject: %s\r\n\r\n%s\r\n.\r\n" % (token, token)).encode())
            r = recv_reply(s, 15).decode()
            if r.startswith("250"):
                self.accepted.append(token)
                self.last_ok = time.monotonic()
            elif r.startswith("5"):
                self.perm.append(r)
        finally:
            s.close()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.one()
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
            time.sleep(0.02)


def test_database_down_under_load(nodes, workdir, pg):
    script, out = recorder(workdir)
    n = pg_node(nodes, pg, {"Pgsql_cache_ttl": 0, "Dlocal": script + " %l %C",
                            "Dlocal_type": 0, "Immed_delivery": 2,
                            "Qsleep_time": 2}).start()
    loaders = [Loader(n, "load%d@local.test" % i, "t%d" % i) for i in range(4)]
    for ld in loaders:
        ld.start()
    try:
        wait_for(lambda: all(ld.accepted for ld in loaders), timeout=20,
                 what="load accepted before the stop")
        pg.stop("fast")
        wait_for(lambda: all(ld.temp > 0 for ld in loaders), timeout=20,
                 what="4xx while the database is down")
        temps = sum(ld.temp for ld in loaders)
        time.sleep(1)
        restarted = time.monotonic()
        pg.start()
        wait_for(lambda: all(ld.last_ok > restarted for ld in loaders), timeout=40,
                 what="the same clients served again")
    finally:
        if not pg.running():
            pg.start()
        for ld in loaders:
            ld.stop_flag.set()
        for ld in loaders:
            ld.join(30)
    assert not [p for ld in loaders for p in ld.perm], [ld.perm for ld in loaders]
    assert temps > 0
    accepted = [t for ld in loaders for t in ld.accepted]

    # Deliveries the queue process deferred while the database was down
    # wait for their retry time: ask for them now.
    flushed = [0.0]

    def all_delivered():
        text = "".join(delivered(out))
        if all(t in text for t in accepted):
            return True
        if time.monotonic() - flushed[0] > 2:
            subprocess.run([selortest.SELORCTL, "-c", n.conf, "flush"],
                           capture_output=True, timeout=30)
            flushed[0] = time.monotonic()
        return False
    try:
        wait_for(all_delivered, timeout=60, what="every accepted message delivered")
    except AssertionError:
        text = "".join(delivered(out))
        missing = [t for t in accepted if t not in text]
        raise AssertionError("not delivered: %r (of %d); queue %r; summary:\n%s\n%s" % (
            missing[:10], len(accepted), n.queue_files("l")[:10],
            "\n".join(line for line in n.log("summary").splitlines()
                      if n.queue_files("l") and n.queue_files("l")[0] in line),
            n.log("warning")[-3000:]))
    warn = n.log("warning")
    # the module's own lines (Selor also logs each failed lookup's reason)
    down = len(re.findall(r"\] warning: pgsql: database unavailable \(", warn))
    back = len(re.findall(r"\] info: pgsql: database available again", warn))
    procs = len(n.children())
    lines = [x for x in warn.splitlines() if "] warning: pgsql: database" in x or
             "] info: pgsql: database" in x]
    assert 1 <= down <= procs, lines
    assert 1 <= back <= procs, lines
    assert down < sum(ld.temp for ld in loaders)


# ---- a query slower than Pgsql_timeout ------------------------------------------------


def test_slow_query_times_out_without_stalling(nodes, pg):
    n = pg_node(nodes, pg, {"Pgsql_timeout": 1, "Pgsql_cache_ttl": 0,
                            "Smtp_workers": 1}).start()
    assert rcpt(n, "alice@local.test").startswith("250")   # connections up
    result = {}

    def slow():
        t = time.monotonic()
        result["reply"] = rcpt(n, "slow@local.test")
        result["took"] = time.monotonic() - t
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.3)
    t = time.monotonic()
    assert rcpt(n, "alice@local.test").startswith("250")
    assert time.monotonic() - t < 0.8
    th.join(10)
    assert result["reply"].startswith("4"), result
    assert 0.8 <= result["took"] < 2.5, result
    # the connection is served again (drained or reconnected), many times
    for _ in range(5):
        assert rcpt(n, "alice@local.test").startswith("250")
    assert "database unavailable" not in n.log("warning")


def test_client_gone_during_lookup(nodes, pg):
    """Selor cancels the lookup of a client that went away: the late result
    must not reach it (ASan would see a use after free), and the worker
    goes on serving."""
    n = pg_node(nodes, pg, {"Pgsql_timeout": 2, "Pgsql_cache_ttl": 0,
                            "Smtp_workers": 1}).start()
    for _ in range(3):
        s = n.connect()
        s.sendall(b"EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\n"
                  b"RCPT TO:<slow@local.test>\r\n")
        recv_reply(s)
        recv_reply(s)
        time.sleep(0.2)
        s.close()
    time.sleep(3.5)    # the slow queries end (cancelled at 2 s) meanwhile
    assert rcpt(n, "alice@local.test").startswith("250")


# ---- the cache -------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [30, 0])
def test_cache(nodes, pg, ttl):
    n = pg_node(nodes, pg, {"Pgsql_cache_ttl": ttl, "Smtp_workers": 1}).start()
    for key, code in (("alice@local.test", "250"), ("ghost%d@local.test" % ttl, "550")):
        before = lookups(pg, key)
        assert rcpt(n, key).startswith(code)
        first = lookups(pg, key) - before
        assert first >= 1
        assert rcpt(n, key).startswith(code)
        second = lookups(pg, key) - before - first
        assert second == (0 if ttl else first), (key, first, second)


# ---- the module itself, through its ABI ---------------------------------------------------


def test_module_unit_checks(pg):
    """build/asan/tests/test_pgsql: broadcast lists, cancel, detach."""
    env = dict(os.environ, SELOR_PG_CONNINFO=pg.conninfo,
               SELOR_MOD_DIR=selortest.MOD_DIR)
    r = subprocess.run([UNIT], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SKIPPED" not in r.stdout + r.stderr, r.stdout + r.stderr


# ---- several hosts ----------------------------------------------------------------------


def test_second_host_takes_over(nodes, pg):
    """libpq walks the host list inside PQconnectPoll, closing one socket
    and opening the next (often with the same number): the module follows."""
    dead = selortest.free_port()
    info = ("hostaddr=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
            "target_session_attrs=read-write" % (dead, pg.port))
    n = pg_node(nodes, pg, {"Pgsql_conninfo": info, "Pgsql_cache_ttl": 0}).start()
    for _ in range(3):
        assert rcpt(n, "alice@local.test").startswith("250")
    assert "database unavailable" not in n.log("warning")
