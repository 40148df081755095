"""The pgsql account module (selor_pgsql.so) against a real PostgreSQL 15
that these tests start themselves (tests/system/pgserver.py): lookups and
logins from tables, the order against the passwd module, keys that look
like SQL, the database stopped under load and restarted, a query slower
than Pgsql_timeout, the cache, and the module's own checks through
build/asan/tests/test_pgsql (cancel, detach, broadcast lists).
"""
import os
import socket
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
