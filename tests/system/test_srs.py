"""SRS at work (docs/srs.md): an alias that forwards to a remote address
sends with an SRS0 sender of the alias's domain; a report sent back to that
address reaches the original sender; a forged or expired one is refused.
The address format itself is checked against postsrsd in
test_srs_interop.py."""
import os
import re
import subprocess
import time

import selortest
from selortest import loopback_addr, parse_lfile, wait_for

KEY = "a secret for the tests"
SRS_TOOL = os.path.join(os.path.dirname(selortest.SELOR), "tools", "srs_tool")
PASSWD = selortest.DEFAULT_PASSWD + """\
fwd@example.com:{ALIAS}x@r1.test
both@example.com:{ALIAS}x@r1.test,bob@example.com
"""
SRS0_RE = r"^SRS0=[A-Za-z0-9+/]{4}=[a-z2-7]{2}=sender\.test=someone@example\.com$"


class World:
    def __init__(self, nodes, procs, options=None):
        self.r1_ip, self.sender_ip = loopback_addr(), loopback_addr()
        self.r1 = procs.sink(self.r1_ip, 25)
        self.sender = procs.sink(self.sender_ip, 25)
        dns = procs.dns(mx={"r1.test": [(10, "mx.r1.test")],
                            "sender.test": [(10, "mx.sender.test")]},
                        hosts={"mx.r1.test": self.r1_ip, "mx.sender.test": self.sender_ip})
        opts = {"Dns_servers": dns.server, "Immed_delivery": 2, "Qsleep_time": 2,
                "Srs_key": KEY}
        opts.update(options or {})
        self.node = nodes(options=opts, passwd=PASSWD).start()

    def send(self, frm, rcpt, subject="srs"):
        with self.node.smtp() as c:
            c.ehlo("client.test")
            assert c.mail(frm)[0] == 250
            code, msg = c.rcpt(rcpt)
            if code != 250:
                return code, msg
            return c.data("Subject: %s\r\n\r\nhello\r\n" % subject)


def forged_stamp(addr, days):
    """addr's SRS0 made again with a stamp `days` old (a real hash)."""
    m = re.match(r"^SRS0=[^=]+=[^=]+=([^=]+)=(.*)@(.*)$", addr)
    sender = "%s@%s" % (m.group(2), m.group(1))
    p = subprocess.run([SRS_TOOL, "forward", KEY, "0", sender, m.group(3),
                        str(int(time.time() - days * 86400))],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()[1]


def test_forward_with_srs0_and_the_report_comes_back(nodes, procs):
    w = World(nodes, procs)
    code, _ = w.send("someone@sender.test", "fwd@example.com")
    assert code == 250
    wait_for(lambda: w.r1.messages(), timeout=30, what="the forwarded message")
    env, _ = w.r1.messages()[0]
    assert env["rcpts"] == ["x@r1.test"]
    srs = env["mail_from"]
    assert re.match(SRS0_RE, srs, re.I), srs
    # r1.test bounces it: the report goes to the SRS address, which goes
    # back to the original sender
    code, msg = w.send("", srs, subject="bounce")
    assert code == 250, msg
    qid = msg.decode().split()[1]
    try:   # unless already delivered: how the recipient came
        rcpts = parse_lfile(w.node.read_qf(qid))[1]
    except (FileNotFoundError, AssertionError):
        rcpts = None
    wait_for(lambda: w.sender.messages(), timeout=30, what="the report back")
    env, content = w.sender.messages()[0]
    assert env["rcpts"] == ["someone@sender.test"] and env["mail_from"] == ""
    assert b"Subject: bounce" in content
    if rcpts:
        assert rcpts[0][3] == "someone@sender.test" and rcpts[0][6] == "srs"


def test_local_targets_and_reports_keep_their_sender(nodes, procs):
    w = World(nodes, procs)
    code, msg = w.send("someone@sender.test", "both@example.com")
    assert code == 250
    wait_for(lambda: w.r1.messages(), timeout=30, what="the forwarded message")
    assert re.match(SRS0_RE, w.r1.messages()[0][0]["mail_from"], re.I)
    # a report through the alias: the null sender stays null
    code, msg = w.send("", "fwd@example.com", subject="report")
    assert code == 250
    wait_for(lambda: len(w.r1.messages()) == 2, timeout=30, what="the second message")
    assert w.r1.messages()[1][0]["mail_from"] == ""


def test_forged_and_expired_srs_refused(nodes, procs):
    w = World(nodes, procs)
    w.send("someone@sender.test", "fwd@example.com")
    wait_for(lambda: w.r1.messages(), timeout=30, what="the forwarded message")
    srs = w.r1.messages()[0][0]["mail_from"]
    h = srs[5:9]
    tampered = srs[:5] + ("A" if h[0] != "A" else "B") + srs[6:]
    assert w.send("", tampered)[0] == 550
    assert w.send("", forged_stamp(srs, 30))[0] == 550
    assert w.send("", forged_stamp(srs, 20))[0] == 250      # still valid
    assert "invalid SRS address" in w.node.log("refused")
    # with another key, the same address is not ours to honour
    other = nodes(name="n2", options={"Srs_key": "another key"}, passwd=PASSWD).start()
    with other.smtp() as c:
        c.ehlo("client.test")
        c.mail("")
        assert c.rcpt(srs)[0] == 550


def test_srs_alias_redir_0_keeps_the_sender(nodes, procs):
    w = World(nodes, procs, {"Srs_alias_redir": 0})
    w.send("someone@sender.test", "fwd@example.com")
    wait_for(lambda: w.r1.messages(), timeout=30, what="the forwarded message")
    assert w.r1.messages()[0][0]["mail_from"] == "someone@sender.test"


def test_no_srs_key_no_rewrite(nodes, procs):
    w = World(nodes, procs, {"Srs_key": None})
    w.send("someone@sender.test", "fwd@example.com")
    wait_for(lambda: w.r1.messages(), timeout=30, what="the forwarded message")
    assert w.r1.messages()[0][0]["mail_from"] == "someone@sender.test"
