"""Recipient and sender checks that depend on the accounts (issue 9):
what the l file records about how a recipient came to be one (via),
Rcpt_level_check 1 and -1, local senders that must exist (From_level_check,
-1 turns it off), and broadcast aliases (Allow_broadcasts)."""
import base64
import re

import selortest
from selortest import parse_lfile, wait_for

PASSWD = selortest.DEFAULT_PASSWD + """\
carol@example.com:{PLAIN}carolpw::::::
fwd@example.com:{ALIAS}x@remote.test
"""


def plain(user, pw):
    return base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()


def world(nodes, procs, options=None):
    dns = procs.dns(mx={"remote.test": [(10, "mx.remote.test")]},
                    hosts={"mx.remote.test": "127.0.0.1", "a-only.test": "127.0.0.1"})
    opts = {"Dns_servers": dns.server, "Auth_plaintext": 1, "Incorrect_pass_delay": 0}
    opts.update(options or {})
    return nodes(options=opts, passwd=PASSWD).start()


def send(node, frm, rcpts, login=None):
    """(list of RCPT codes, DATA reply or None)."""
    with node.smtp() as c:
        c.ehlo("client.test")
        if login:
            assert c.docmd("AUTH PLAIN", plain(*login))[0] == 235
        code, msg = c.mail(frm)
        if code != 250:
            return [code], None
        codes = [c.rcpt(r)[0] for r in rcpts]
        if 250 not in codes:
            return codes, None
        return codes, c.data(b"Subject: t\r\n\r\nhello\r\n")


def lfile_rcpts(node, reply):
    qid = reply[1].decode().split()[1]
    return {r[3]: r for r in parse_lfile(node.read_qf(qid))[1]}


def test_l_file_says_which_module_answered(nodes, procs):
    n = world(nodes, procs)
    codes, reply = send(n, "someone@sender.test",
                        ["bob@example.com", "team@example.com", "fwd@example.com"])
    assert codes == [250, 250, 250] and reply[0] == 250
    r = lfile_rcpts(n, reply)
    assert r["bob@example.com"][6] == "mailbox:passwd"
    assert r["alice@example.com"][6] == "alias:passwd"       # from team@
    assert r["x@remote.test"][6] == "alias:passwd"
    assert r["x@remote.test"][4] == "fwd@example.com"
    codes, reply = send(n, "someone@sender.test", ["z@remote.test"],
                        login=("alice@example.com", "alicepw"))
    assert lfile_rcpts(n, reply)["z@remote.test"][6] == "-"   # the client's own


def test_rcpt_level_check_1_needs_the_domain_in_dns(nodes, procs):
    n = world(nodes, procs, {"Rcpt_level_check": 1})
    login = ("alice@example.com", "alicepw")
    codes, _ = send(n, "alice@example.com", ["x@nowhere.test"], login=login)
    assert codes == [553]
    codes, reply = send(n, "alice@example.com",
                        ["x@remote.test", "y@a-only.test", "z@nowhere.test"], login=login)
    assert codes == [250, 250, 553] and reply[0] == 250
    assert "recipient domain" in n.log("refused")


def test_rcpt_level_check_0_does_not_ask_dns(nodes, procs):
    n = world(nodes, procs)
    codes, _ = send(n, "alice@example.com", ["x@nowhere.test"],
                    login=("alice@example.com", "alicepw"))
    assert codes == [250]


def test_rcpt_level_check_minus_1_accepts_then_reports(nodes, procs):
    sink = procs.sink("127.0.0.1", 0)
    n = world(nodes, procs, {"Rcpt_level_check": -1, "Immed_delivery": 2,
                             "Relay_host": "127.0.0.1:%d" % sink.port})
    codes, reply = send(n, "someone@sender.test", ["nobody@example.com"])
    assert codes == [250] and reply[0] == 250
    # checked again at delivery: a report to the sender (through Relay_host)
    wait_for(lambda: sink.messages(), timeout=30, what="the delivery report")
    env, content = sink.messages()[0]
    assert env["mail_from"] == "" and env["rcpts"] == ["someone@sender.test"]
    assert b"nobody@example.com" in content


def test_unknown_local_sender_refused(nodes, procs):
    n = world(nodes, procs)
    assert send(n, "nobody@example.com", ["bob@example.com"])[0] == [550]
    assert "unknown local sender" in n.log("refused")
    codes, reply = send(n, "alice@example.com", ["bob@example.com"])
    assert codes == [250]
    codes, reply = send(n, "team@example.com", ["bob@example.com"])   # an alias
    assert codes == [250]
    # a logged-in user may send as any address
    codes, reply = send(n, "nobody@example.com", ["bob@example.com"],
                        login=("alice@example.com", "alicepw"))
    assert codes == [250]


def test_from_level_check_minus_1_turns_the_sender_check_off(nodes, procs):
    n = world(nodes, procs, {"From_level_check": -1})
    codes, reply = send(n, "nobody@example.com", ["bob@example.com"])
    assert codes == [250] and reply[0] == 250


# ---- broadcast aliases ----

def broadcast_node(nodes, workdir, options=None):
    script, got = selortest.mda_script(workdir, 'cat >/dev/null\necho "$1" >> %(out)s')
    passwd = PASSWD + "all@example.com:{ALIAS}@example.com\n"
    opts = {"Dlocal": script + " %r", "Dlocal_type": 0, "Immed_delivery": 2,
            "Auth_plaintext": 1, "Incorrect_pass_delay": 0}
    opts.update(options or {})
    return nodes(options=opts, passwd=passwd).start(), got


def test_broadcast_reaches_every_mailbox_of_the_domain(nodes, workdir):
    n, got = broadcast_node(nodes, workdir)
    codes, reply = send(n, "alice@example.com", ["all@example.com"])
    assert codes == [250] and reply[0] == 250
    r = lfile_rcpts(n, reply)
    assert sorted(r) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert {v[6] for v in r.values()} == {"broadcast:passwd"}
    assert {v[4] for v in r.values()} == {"all@example.com"}
    wait_for(lambda: len(open(got).read().split()) == 3, timeout=30, what="3 deliveries")
    assert sorted(open(got).read().split()) == sorted(r)


def test_broadcast_refuses_outside_senders(nodes, workdir):
    n, _ = broadcast_node(nodes, workdir)
    codes, _ = send(n, "someone@sender.test", ["all@example.com"])
    assert codes == [550]
    assert "broadcast from outside" in n.log("refused")
    # a logged-in user may, whatever the sender
    codes, reply = send(n, "someone@sender.test", ["all@example.com"],
                        login=("bob@example.com", "bobpw"))
    assert codes == [250] and reply[0] == 250


def test_broadcasts_off(nodes, workdir):
    n, _ = broadcast_node(nodes, workdir, {"Allow_broadcasts": 0})
    codes, _ = send(n, "alice@example.com", ["all@example.com", "bob@example.com"])
    assert codes == [550, 250]
