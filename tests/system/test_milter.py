"""Milters (issue 12): Selor's milter client against real milters.

The milters are tests/system/testmilter.py processes: a libmilter one
(python3-milter) that changes what its spec says and logs what it saw, and
a raw-protocol one that misbehaves (answers tempfail, closes in the middle
of the body, never answers).  Delivered mail goes to a sink behind
Relay_host: fwd@example.com is an alias of fwd@remote.test.
"""
import os
import re
import socket
import subprocess
import time

import pytest

import selortest
from selortest import parse_lfile, wait_for
from testmilter import TestMilter

TEMPFAIL = "451 4.7.1 Service unavailable - try again later\r\n"
REJECT = "550 5.7.1 Command rejected\r\n"
PASSWD = selortest.DEFAULT_PASSWD + "fwd@example.com:{ALIAS}fwd@remote.test\n"
BODY = b"Subject: milter test\r\nFrom: A <a@remote.test>\r\n\r\nhello\r\n"


@pytest.fixture
def milters(workdir):
    """milters(kind, spec=..., mode=..., ...): a started TestMilter, stopped
    at the end of the test."""
    started = []

    def start(kind="lib", **kw):
        m = TestMilter(os.path.join(workdir, "milters"), kind, **kw)
        started.append(m)
        return m
    yield start
    for m in started:
        m.stop()


class World:
    """A node calling the given milters (Milters "a b ..."), a sink behind its
    Relay_host."""

    def __init__(self, nodes, procs, ms=(), options=None, milters_value=None):
        self.sink = procs.sink("127.0.0.1", 0)
        opts = {"Relay_host": "127.0.0.1:%d" % self.sink.port, "Qsleep_time": 3600,
                "Auth_plaintext": 1, "Incorrect_pass_delay": 0, "Milter_timeout": 5}
        if milters_value is not None:
            opts["Milters"] = milters_value
        elif ms:
            opts["Milters"] = " ".join(m.addr for m in ms)
        opts.update(options or {})
        self.node = nodes(options=opts, passwd=PASSWD).start()

    def ctl(self, *args):
        r = subprocess.run([selortest.SELORCTL, "-c", self.node.conf] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def session(self, src="127.0.0.1", helo=b"client.test", auth=None):
        s = selortest.SmtpConn(socket.create_connection(
            (self.node.host, self.node.port), timeout=30, source_address=(src, 0)))
        assert s.reply().startswith(b"220")
        assert cmd(s, b"EHLO " + helo).startswith("250")
        if auth:
            import base64
            tok = base64.b64encode(b"\0%s\0%s" % (auth[0].encode(), auth[1].encode()))
            assert cmd(s, b"AUTH PLAIN " + tok).startswith("235")
        return s

    def send(self, sender="a@remote.test", rcpts=("fwd@example.com",), body=BODY, **kw):
        """One transaction on a new session (QUIT at the end): its replies."""
        s = self.session(**kw)
        r = transaction(s, sender, rcpts, body)
        cmd(s, b"QUIT")
        s.close()
        return r

    def spool_clean(self):
        n = self.node
        return n.queue_files("l") == [] and n.queue_files("c") == [] and \
            os.listdir(n.tmp) == []

    def delivered(self):
        return self.sink.messages()


def cmd(s, line, timeout=30):
    s.sendall(line + b"\r\n")
    return s.reply(timeout).decode()


def transaction(s, sender, rcpts, body=BODY):
    """MAIL, RCPTs, DATA, content: the replies; "end" the reply to the
    content, "qid" the queue ID of a 250."""
    r = {"mail": cmd(s, b"MAIL FROM:<%s>" % sender.encode()), "rcpt": []}
    if not r["mail"].startswith("250"):
        return r
    for rc in rcpts:
        r["rcpt"].append(cmd(s, b"RCPT TO:<%s>" % rc.encode()))
    r["data"] = cmd(s, b"DATA")
    if r["data"].startswith("354"):
        t = time.monotonic()
        s.sendall(body + b".\r\n")
        r["end"] = s.reply(60).decode()
        r["took"] = time.monotonic() - t
        m = re.match(r"250 .*?(\d+(?:_\d+)+)", r["end"])
        r["qid"] = m.group(1) if m else None
    return r


def header_section(content):
    return content.split(b"\r\n\r\n", 1)[0]


# ---- failures and Milter_default_action ----

END_OF_DATA_FAILURES = ["close-body", "hang-eom", "garbage-eom", "oversize-eom",
                        "unasked-eom"]
BEFORE_MAIL_FAILURES = ["hang-connect", "refused"]


@pytest.mark.parametrize("action", ["tempfail", "reject", "accept"])
@pytest.mark.parametrize("mode", END_OF_DATA_FAILURES + BEFORE_MAIL_FAILURES)
def test_failure_follows_default_action(nodes, procs, milters, mode, action):
    if mode == "refused":
        addr = "inet:127.0.0.1:%d" % selortest.free_port()     # nobody listens there
        m = None
    else:
        m = milters("raw", mode=mode)
        addr = m.addr
    w = World(nodes, procs, milters_value=addr, options={
        "Milter_default_action": action, "Milter_timeout": 2, "Immed_delivery": 2})
    t = time.monotonic()
    r = w.send()
    took = time.monotonic() - t
    if mode.startswith("hang"):
        assert 1.8 <= took < 15, (took, r)
    if action == "accept":
        assert r.get("end", "").startswith("250"), r
        wait_for(w.delivered, timeout=30, what="delivery of the accepted message")
        env, content = w.delivered()[0]
        assert env["rcpts"] == ["fwd@remote.test"] and b"hello" in content
        wait_for(lambda: w.node.queue_files("l") == [], timeout=30, what="queue emptied")
    else:
        want = TEMPFAIL if action == "tempfail" else REJECT
        if mode in END_OF_DATA_FAILURES:
            assert r["mail"].startswith("250") and r["data"].startswith("354"), r
            assert r["end"] == want, r
        else:
            assert r["mail"] == want, r
        time.sleep(1)
        assert w.delivered() == []
    wait_for(w.spool_clean if action != "accept" else
             lambda: os.listdir(w.node.tmp) == [], timeout=10,
             what="no queue or temp files left (queue %s, tmp %s)" % (
                 os.listdir(w.node.spool), os.listdir(w.node.tmp)))
    if m and mode != "refused":
        assert m.events("negotiate"), "the milter was never contacted"
    assert w.node.proc.poll() is None


@pytest.mark.parametrize("action", ["tempfail", "reject", "accept"])
def test_tempfail_answer_is_451_whatever_the_default_action(nodes, procs, milters, action):
    """'t' is an answer, not a failure: Milter_default_action does not apply."""
    m = milters("raw", mode="tempfail-eom")
    w = World(nodes, procs, [m], options={"Milter_default_action": action})
    r = w.send()
    assert r["end"] == TEMPFAIL, r
    assert m.events("eom")
    wait_for(w.spool_clean, timeout=10, what="no queue or temp files left")


def test_failed_milter_is_skipped_the_next_one_runs(nodes, procs, milters):
    """Milter_default_action accept: the milter that cannot be reached is
    left out, the one after it still sees and changes the message."""
    down = "inet:127.0.0.1:%d" % selortest.free_port()
    up = milters("lib", spec={"addheader": [["X-Second", "ran"]]})
    w = World(nodes, procs, milters_value="%s %s" % (down, up.addr),
              options={"Milter_default_action": "accept", "Immed_delivery": 0})
    r = w.send()
    assert r["end"].startswith("250"), r
    assert len(up.messages()) == 1
    head, _ = split(w.node.read_content(r["qid"]))
    assert re.search(rb"^X-Second: ?ran$", head, re.M), head


def test_client_leaving_while_the_milter_is_asked(nodes, procs, milters):
    """The client goes away while the milter hangs at the end of the
    message: the wait is cancelled (the milter connection is closed long
    before Milter_timeout), nothing stays in the spool, the node serves on."""
    m = milters("raw", mode="hang-eom", only_from="leaving@")
    w = World(nodes, procs, [m], options={"Milter_timeout": 30})
    s = w.session()
    for line in (b"MAIL FROM:<leaving@remote.test>", b"RCPT TO:<fwd@example.com>", b"DATA"):
        cmd(s, line)
    s.sendall(BODY + b".\r\n")
    wait_for(lambda: m.events("hanging"), timeout=10, what="the milter to hang")
    t = time.monotonic()
    s.close()
    wait_for(lambda: m.events("closed_by_mta") or m.events("error"), timeout=10,
             what="Selor to close the milter connection")
    assert time.monotonic() - t < 10
    wait_for(w.spool_clean, timeout=10, what="no queue or temp files left (tmp %s)"
             % os.listdir(w.node.tmp))
    r = w.send(sender="after@remote.test")
    assert r["end"].startswith("250"), r


def test_hanging_milter_does_not_stall_the_worker(nodes, procs, milters):
    m = milters("raw", mode="hang-eom", only_from="hang@")
    w = World(nodes, procs, [m], options={"Smtp_workers": 1, "Milter_timeout": 4,
                                          "Milter_default_action": "tempfail"})
    hung = w.session()
    r = {"mail": cmd(hung, b"MAIL FROM:<hang@remote.test>"),
         "rcpt": cmd(hung, b"RCPT TO:<fwd@example.com>"),
         "data": cmd(hung, b"DATA")}
    assert r["data"].startswith("354"), r
    t0 = time.monotonic()
    hung.sendall(BODY + b".\r\n")
    wait_for(lambda: m.events("hanging"), timeout=10, what="the milter to hang")
    # meanwhile another client completes a whole transaction on the same worker
    other = w.send(sender="ok@remote.test")
    done = time.monotonic() - t0
    assert other["end"].startswith("250"), other
    assert done < 3.5, "the other session waited %.1f s" % done
    reply = hung.reply(30).decode()
    took = time.monotonic() - t0
    assert reply == TEMPFAIL, reply
    assert 3.5 <= took < 15, took
    # the session goes on: the next transaction, not misbehaved against, is taken
    r2 = transaction(hung, "ok2@remote.test", ["fwd@example.com"])
    assert r2["end"].startswith("250"), r2
    cmd(hung, b"QUIT")
    hung.close()
    assert sorted(w.node.queue_files("l")) == sorted([other["qid"], r2["qid"]])
    wait_for(lambda: os.listdir(w.node.tmp) == [], timeout=10, what="no temp files left")


def test_one_milter_connection_per_session(nodes, procs, milters):
    """Several transactions of a session share one milter connection, with
    an abort between them; concurrent sessions get their own connections."""
    m = milters("lib", spec={})
    w = World(nodes, procs, [m])
    a, b = w.session(), w.session()
    for i in range(2):
        for s in (a, b):
            r = transaction(s, "s%d@remote.test" % i, ["fwd@example.com"])
            assert r["end"].startswith("250"), r
    for s in (a, b):
        cmd(s, b"QUIT")
        s.close()
    wait_for(lambda: len(m.events("close")) == 2, timeout=10, what="both milter sessions closed")
    eoms = m.messages()
    assert len(eoms) == 4
    assert len(m.events("negotiate")) == 2
    per_conn = {}
    for e in eoms:
        per_conn.setdefault(e["conn"], []).append(e["mail_from"].strip("<>"))
    assert sorted(per_conn.values()) == [["s0@remote.test", "s1@remote.test"]] * 2


# ---- changes made by the milter ----

def test_added_recipient_and_new_sender(nodes, procs, milters):
    m = milters("lib", spec={"chgfrom": "<new@remote.test>",
                             "addrcpt": ["<extra@remote.test>"]})
    w = World(nodes, procs, [m], options={"Immed_delivery": 0, "Qsleep_time": 3600})
    r = w.send()
    assert r["end"].startswith("250"), r
    qid = r["qid"]
    missing = [e for e in m.events("negotiate") if e["missing"]]
    assert not missing, "Selor did not offer the actions %s" % missing
    recs, rcpts = parse_lfile(w.node.read_qf(qid))
    assert recs["from"] == ["new@remote.test"]
    # (the alias fwd@example.com is expanded when the message is queued)
    assert sorted((rc[3], rc[6]) for rc in rcpts) == [("extra@remote.test", "milter"),
                                                      ("fwd@remote.test", "alias:passwd")]
    code, out = w.ctl("queue", "show", qid)
    assert code == 0, out
    assert "<new@remote.test>" in out and "<extra@remote.test>" in out, out
    assert w.ctl("flush", qid)[0] == 0
    wait_for(lambda: sum(len(e["rcpts"]) for e, _ in w.delivered()) >= 2, timeout=30,
             what="delivery to both recipients")
    got = w.delivered()
    assert {e["mail_from"] for e, _ in got} == {"new@remote.test"}
    assert sorted(rc for e, _ in got for rc in e["rcpts"]) == \
        ["extra@remote.test", "fwd@remote.test"]


def queued_and_delivered(w, qid, check):
    """check(content, where) on the c file, then on what the sink got."""
    content = w.node.read_content(qid)
    check(content, "c file")
    recs, _ = parse_lfile(w.node.read_qf(qid))
    assert int(recs["size"][0]) == len(content)
    assert w.ctl("flush", qid)[0] == 0
    wait_for(w.delivered, timeout=30, what="delivery")
    check(w.delivered()[0][1], "at the sink")


def split(content):
    """(header section, body) with LF line ends: the c file has LF, the
    sink gets CR LF."""
    head, _, body = content.replace(b"\r\n", b"\n").partition(b"\n\n")
    return head, body


def test_header_changes(nodes, procs, milters):
    m = milters("lib", spec={
        "addheader": [["X-Added", "added value"]],
        "insheader": [[0, "X-Inserted", "first"]],
        "chgheader": [["Subject", 1, "changed subject"], ["X-Drop", 1, ""]]})
    w = World(nodes, procs, [m], options={"Immed_delivery": 0, "Qsleep_time": 3600})
    r = w.send(body=b"Subject: original\r\nX-Drop: me\r\nX-Keep: kept\r\n\r\n"
               b"original body\r\n")
    assert r["end"].startswith("250"), r

    def check(content, where):
        head, body = split(content)
        assert body == b"original body\n", (where, body)
        assert re.search(rb"^X-Added: ?added value$", head, re.M), (where, head)
        assert re.search(rb"^Subject: ?changed subject$", head, re.M), (where, head)
        assert b"original" not in head, (where, head)
        assert not re.search(rb"^X-Drop:", head, re.M | re.I), (where, head)
        assert re.search(rb"^X-Keep: kept$", head, re.M), (where, head)
        # inserted at index 0: before Selor's own Received:, the first header
        # the milter saw
        ins = head.find(b"X-Inserted: first")
        rcv = head.find(b"by mx.n1.test")
        assert 0 <= ins < rcv, (where, head)
    queued_and_delivered(w, r["qid"], check)


@pytest.mark.parametrize("final", ["accept", "continue"])
def test_body_replacement(nodes, procs, milters, final):
    """The milter replaces the body, then answers accept (what most
    milters do, libmilter's SMFIS_ACCEPT) or continue at the end of the
    message: the same for the MTA."""
    m = milters("lib", spec={"replacebody": "replaced body\r\nline two\r\n",
                             "at": {"eom": final}})
    w = World(nodes, procs, [m], options={"Immed_delivery": 0, "Qsleep_time": 3600})
    r = w.send(body=b"Subject: body\r\n\r\noriginal body\r\n")
    assert r["end"].startswith("250"), r

    def check(content, where):
        head, body = split(content)
        assert body == b"replaced body\nline two\n", (where, body)
        assert re.search(rb"^Subject: body$", head, re.M), (where, head)
    queued_and_delivered(w, r["qid"], check)


def test_quarantine_holds_until_release(nodes, procs, milters):
    m = milters("lib", spec={"quarantine": "suspicious attachment"})
    w = World(nodes, procs, [m], options={"Immed_delivery": 2})
    r = w.send()
    assert r["end"].startswith("250"), r
    qid = r["qid"]
    recs, _ = parse_lfile(w.node.read_qf(qid))
    assert int(recs["flags"][0]) & 1, recs
    code, out = w.ctl("queue")
    assert code == 0 and re.search(r"^%s .*\(held\)" % qid, out, re.M), out
    code, out = w.ctl("queue", "show", qid)
    assert code == 0 and re.search(r"^flags: +1 \(held\)$", out, re.M), out
    wait_for(lambda: "%s: queued held: suspicious attachment by %s" % (qid, m.addr)
             in w.node.log("warning"), timeout=10, what="the quarantine reason logged")
    assert w.ctl("flush")[0] == 0
    time.sleep(3)
    assert w.delivered() == []
    assert qid in w.node.queue_files("l")
    code, out = w.ctl("release", qid)
    assert code == 0, out
    wait_for(w.delivered, timeout=30, what="delivery after release")
    assert w.delivered()[0][0]["rcpts"] == ["fwd@remote.test"]


def test_discard_answers_250_and_drops(nodes, procs, milters):
    m = milters("lib", spec={"at": {"eom": "discard"}})
    w = World(nodes, procs, [m], options={"Immed_delivery": 2})
    r = w.send()
    assert r["end"].startswith("250"), r
    wait_for(w.spool_clean, timeout=10, what="nothing in the spool")
    time.sleep(3)
    assert w.delivered() == []
    wait_for(lambda: "discarded by a milter" in w.node.log("summary"), timeout=10,
             what="the discard in Sumary_log")


def test_reject_and_tempfail_with_custom_replies(nodes, procs, milters):
    eom = milters("lib", spec={"reply": {"at": "eom", "code": "554", "xcode": "5.7.0",
                                         "text": "Rejected by the test policy"}})
    w = World(nodes, procs, [eom])
    r = w.send()
    assert r["end"] == "554 5.7.0 Rejected by the test policy\r\n", r
    wait_for(w.spool_clean, timeout=10, what="nothing in the spool")

    mail = milters("lib", spec={"reply": {"at": "mail", "code": "451", "xcode": "4.7.2",
                                          "text": "Not now, later"}})
    w2 = World(nodes, procs, [mail])
    r = w2.send()
    assert r["mail"] == "451 4.7.2 Not now, later\r\n", r


def test_reject_at_rcpt_refuses_that_recipient_only(nodes, procs, milters):
    m = milters("lib", spec={"rcpt_reject": ["bob@example.com"]})
    w = World(nodes, procs, [m], options={"Immed_delivery": 0, "Qsleep_time": 3600})
    r = w.send(rcpts=["bob@example.com", "alice@example.com"])
    assert r["rcpt"][0] == REJECT, r
    assert r["rcpt"][1].startswith("250"), r
    assert r["end"].startswith("250"), r
    _, rcpts = parse_lfile(w.node.read_qf(r["qid"]))
    assert [rc[3] for rc in rcpts] == ["alice@example.com"]
    # the milter was asked about both (it refused one)
    assert [e["rcpt"].strip("<>") for e in m.events("rcpt")] == \
        ["bob@example.com", "alice@example.com"]


def test_reject_at_end_of_data_is_550(nodes, procs, milters):
    m = milters("lib", spec={"at": {"eom": "reject"}})
    w = World(nodes, procs, [m])
    r = w.send()
    assert r["end"] == REJECT, r
    wait_for(w.spool_clean, timeout=10, what="nothing in the spool")


# ---- what the milter is told ----

def test_macros_envelope_and_headers(nodes, procs, milters):
    m = milters("lib", spec={})
    w = World(nodes, procs, [m])
    r = w.send(sender="alice@example.com", rcpts=["z@remote.test"],
               auth=("alice@example.com", "alicepw"),
               body=b"Subject: macro test\r\nX-Folded: one\r\n\ttwo\r\n\r\nline\r\n")
    assert r["end"].startswith("250"), r
    qid = r["qid"]
    wait_for(lambda: m.events("close"), timeout=10, what="the milter session to close")
    conn = m.events("connect")[0]
    assert conn["macros"].get("{client_addr}") == "127.0.0.1", conn
    assert conn["macros"].get("j") == w.node.options["Server_name"], conn
    assert conn["hostaddr"][0] == "127.0.0.1", conn
    assert m.events("helo")[0]["helo"] == "client.test"
    mail = m.events("mail")[0]
    assert mail["mail_from"].strip("<>") == "alice@example.com"
    assert mail["macros"].get("{auth_authen}") == "alice@example.com", mail
    eom = m.messages()[0]
    assert eom["macros"].get("i") == qid, (eom["macros"], qid)
    assert [x.strip("<>") for x in eom["rcpts"]] == ["z@remote.test"]
    names = [h[0] for h in eom["headers"]]
    assert names[0] == "Received", names
    assert ["Subject", "macro test"] in eom["headers"], eom["headers"]
    assert ["X-Folded", "one\n\ttwo"] in eom["headers"], eom["headers"]
    assert eom["body"] == "line\r\n"
    # a client that did not authenticate has no {auth_authen}
    r = w.send()
    assert r["end"].startswith("250"), r
    wait_for(lambda: len(m.messages()) == 2, timeout=10, what="the second message")
    assert not m.events("mail")[1]["macros"].get("{auth_authen}")


# docs/milter.md: the client's port, {daemon_addr} and {rcpt_mailer} are
# not sent (the interface first announced them)
SPEC_MACROS = {
    "C": ["j", "{daemon_name}", "v", "_", "{client_addr}", "{client_name}"],
    "M": ["{auth_type}", "{auth_authen}", "{mail_addr}", "{mail_host}", "{mail_mailer}"],
    "R": ["{rcpt_addr}", "{rcpt_host}"],
    "T": ["i"], "N": ["i"], "E": ["i"],
}


def test_protocol_steps_as_sent(nodes, procs, milters):
    """What goes over the wire, seen by the raw milter: the steps in order
    (a recipient Selor refused is not sent, RSET aborts, QUIT at the end),
    the macros of each step, the connect data, header values and the body."""
    m = milters("raw", mode="continue")
    w = World(nodes, procs, [m])
    s = w.session(auth=("alice@example.com", "alicepw"))
    port = s.sock.getsockname()[1]
    r1 = transaction(s, "alice@example.com", ["fwd@example.com", "nobody@example.com"],
                     body=b"Subject: steps\r\nX-Folded: one\r\n  two\r\n\r\n"
                     b"line1\r\n..dot\r\n")
    assert r1["rcpt"][1].startswith("550") and r1["end"].startswith("250"), r1
    assert cmd(s, b"MAIL FROM:<alice@example.com>").startswith("250")
    assert cmd(s, b"RCPT TO:<fwd@example.com>").startswith("250")
    assert cmd(s, b"RSET").startswith("250")
    r3 = transaction(s, "alice@example.com", ["bob@example.com"])
    assert r3["end"].startswith("250"), r3
    cmd(s, b"QUIT")
    s.close()
    wait_for(lambda: m.events("quit") or m.events("closed_by_mta"), timeout=10,
             what="the end of the milter session")
    ev = m.events()
    steps = [e["ev"] for e in ev if e["ev"] != "macro"]
    msg_steps = ["data", "header", "header", "header", "eoh", "body", "eom"]
    want = (["negotiate", "connect", "helo", "mail", "rcpt"] + msg_steps +
            ["mail", "rcpt", "abort", "mail", "rcpt", "data", "header", "header",
             "header", "eoh", "body", "eom", "quit"])
    wrong = []
    if steps != want:
        wrong.append("steps %s, expected %s" % (steps, want))
    if ev[0].get("version") != 6:
        wrong.append("negotiation %s" % ev[0])
    conn = [e for e in ev if e["ev"] == "connect"][0]
    if conn.get("address") != "127.0.0.1" or conn.get("port") not in (0, port):
        wrong.append("connect %s, the client is 127.0.0.1 port %d" % (conn, port))
    for step, names in SPEC_MACROS.items():
        got = [e["macros"] for e in ev if e["ev"] == "macro" and e["for"] == step]
        if not got:
            wrong.append("no macros before %s" % step)
            continue
        absent = [n for n in names if n not in got[0]]
        if absent:
            wrong.append("macros before %s lack %s (got %s)" % (step, absent, got[0]))
    cm = ([e["macros"] for e in ev if e["ev"] == "macro" and e["for"] == "C"] or [{}])[0]
    if cm.get("{daemon_name}") != w.node.options["Server_name"] or \
            cm.get("{client_addr}") != "127.0.0.1":
        wrong.append("connect macros %s" % cm)
    for step in "TNE":
        iv = [e["macros"].get("i") for e in ev if e["ev"] == "macro" and e["for"] == step]
        if iv[:1] != [r1["qid"]] or iv[-1:] != [r3["qid"]]:
            wrong.append("i before %s: %s, queue IDs %s %s" % (step, iv, r1["qid"], r3["qid"]))
    rcpts = [e["args"][0] for e in ev if e["ev"] == "rcpt"]
    if "<nobody@example.com>" in rcpts:
        wrong.append("a recipient Selor refused was sent: %s" % rcpts)
    headers = [e["args"] for e in ev if e["ev"] == "header"]
    if headers[0][0] != "Received":
        wrong.append("first header %s" % headers[0])
    # folded lines joined with LF and their whitespace, as Postfix sends them
    if ["X-Folded", "one\n  two"] not in headers:
        wrong.append("folded header sent as %r, expected 'one\\n  two'" % [
            h for h in headers if h[0] == "X-Folded"])
    if ["Subject", "steps"] not in headers:
        wrong.append("Subject sent as %r" % [h for h in headers if h[0] == "Subject"])
    body = "".join(e["data"] for e in ev if e["ev"] == "body")
    if not body.startswith("line1\r\n.dot\r\n"):
        wrong.append("body %r" % body)
    assert not wrong, "\n".join(wrong)


def test_two_milters_in_order(nodes, procs, milters):
    first = milters("lib", spec={"addheader": [["X-First-Milter", "one"]]})
    second = milters("lib", spec={"addheader": [["X-Second-Milter", "two"]]}, unix=True)
    w = World(nodes, procs, milters_value="%s, %s" % (first.addr, second.addr),
              options={"Immed_delivery": 2})
    r = w.send()
    assert r["end"].startswith("250"), r
    assert ["X-First-Milter", "one"] in second.messages()[0]["headers"]
    assert not any(h[0] == "X-Second-Milter" for h in first.messages()[0]["headers"])
    wait_for(w.delivered, timeout=30, what="delivery")
    head = header_section(w.delivered()[0][1])
    assert b"X-First-Milter: one" in head and b"X-Second-Milter: two" in head, head


# ---- choosing the milters per client with Def! ----

def test_def_chooses_milters_per_client(nodes, procs, milters):
    per_ip = milters("lib", spec={})
    per_sender = milters("lib", spec={})
    d = os.path.join(nodes.base, "rules")
    os.makedirs(d, exist_ok=True)
    conn_rules = os.path.join(d, "connection.rules")
    with open(conn_rules, "w") as f:
        f.write("# the milter of one client address\n"
                "Ip? \"127.0.0.5\" Def! \"Milters '%s'\"\n" % per_ip.addr)
    from_rules = os.path.join(d, "from.rules")
    with open(from_rules, "w") as f:
        f.write("# the milter of one sender's transactions\n"
                "From? \"bulk@remote.test\" Def! \"Milters '%s'\"\n" % per_sender.addr)
    w = World(nodes, procs, options={"Event.connection": conn_rules,
                                     "Event.from": from_rules})
    assert w.send(src="127.0.0.5", sender="x@remote.test")["end"].startswith("250")
    assert w.send(src="127.0.0.6", sender="y@remote.test")["end"].startswith("250")
    s = w.session(src="127.0.0.6")
    assert transaction(s, "bulk@remote.test", ["fwd@example.com"])["end"].startswith("250")
    assert transaction(s, "other@remote.test", ["fwd@example.com"])["end"].startswith("250")
    cmd(s, b"QUIT")
    s.close()
    time.sleep(0.5)
    assert [e["mail_from"].strip("<>") for e in per_ip.messages()] == ["x@remote.test"]
    assert [e["macros"].get("{client_addr}") for e in per_ip.messages()] == ["127.0.0.5"]
    assert [e["mail_from"].strip("<>") for e in per_sender.messages()] == ["bulk@remote.test"]
    assert len(w.node.queue_files("l")) == 4


def test_starttls_and_a_new_ehlo_reopen_the_milters(nodes, procs, milters, workdir):
    """The milters learn what changed in the session: after STARTTLS (and
    after a new EHLO) the next MAIL opens new connections, whose connect
    and helo steps carry the TLS macros and the new name."""
    import ssl
    from test_tls import TLS_MOD, make_cert
    cert, key = make_cert(workdir, "mx.n1.test")
    m = milters("lib", spec={})
    w = World(nodes, procs, [m], options={"Tls_module": TLS_MOD, "Tls_enable": 1,
                                          "Tls_pubkey": cert, "Tls_privkey": key})
    s = w.session()
    assert transaction(s, "a@remote.test", ["fwd@example.com"])["end"].startswith("250")
    assert cmd(s, b"STARTTLS").startswith("220")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.sock = ctx.wrap_socket(s.sock)
    assert cmd(s, b"EHLO after-tls.test").startswith("250")
    assert transaction(s, "a@remote.test", ["fwd@example.com"])["end"].startswith("250")
    assert cmd(s, b"EHLO again.test").startswith("250")
    assert transaction(s, "a@remote.test", ["fwd@example.com"])["end"].startswith("250")
    cmd(s, b"QUIT")
    wait_for(lambda: len(m.events("close")) == 3, timeout=10,
             what="three milter connections, each closed")
    helos = m.events("helo")
    assert [h["helo"] for h in helos] == ["client.test", "after-tls.test", "again.test"]
    assert not helos[0]["macros"].get("{tls_version}"), helos[0]
    assert helos[1]["macros"].get("{tls_version}") in ("TLSv1.2", "TLSv1.3"), helos[1]
    assert helos[1]["macros"].get("{cipher}"), helos[1]
    assert len(m.messages()) == 3


@pytest.mark.parametrize("size", [60 * 1024, 3 * 1024 * 1024])
def test_changes_to_a_big_message(nodes, procs, milters, size):
    """A small message's body goes to the milter from memory, a big one's
    from its file in chunks; either way the milter gets it whole, with CR LF,
    and a header change rewrites the file with the body byte for byte."""
    m = milters("lib", spec={"addheader": [["X-Big", "seen"]]})
    w = World(nodes, procs, [m], options={"Max_mail_size": 10 * 1024 * 1024})
    lines = [b"line %07d " % i + b"x" * 60 for i in range(size // 72)]
    body = b"\r\n".join(lines) + b"\r\n"
    r = w.send(body=b"Subject: big\r\n\r\n" + body)
    assert r["end"].startswith("250"), r
    wait_for(lambda: m.messages(), timeout=30, what="the milter's end of message")
    assert m.messages()[0]["body"].encode() == body
    head, got = split(w.node.read_content(r["qid"]))
    assert re.search(rb"^X-Big: ?seen$", head, re.M), head
    assert got == body.replace(b"\r\n", b"\n")
    assert w.spool_clean() is False and os.listdir(w.node.tmp) == []


@pytest.mark.parametrize("option,value,says", [
    ("Milters", "tcp:127.0.0.1:1234", "is not inet:HOST:PORT or unix:PATH"),
    ("Milters", "inet:mx.example.com:1234", "is not an IP address"),
    ("Milters", "unix:relative/path", "must be absolute"),
    ("Milters", " ".join("inet:127.0.0.1:%d" % p for p in range(9000, 9009)), "more than 8"),
    ("Milter_default_action", "continue", "must be accept, tempfail or reject"),
])
def test_bad_milter_settings_are_config_errors(nodes, option, value, says):
    n = nodes(options={option: value})
    rc, out = n.check()
    assert rc != 0 and "selor.conf:" in out and option in out and says in out, out


def test_def_of_a_bad_milter_setting_is_a_load_error(nodes, workdir):
    """A Def! is checked as selor.conf is: FILE:LINE:COLUMN."""
    path = os.path.join(workdir, "c.rules")
    n = nodes(options={"Event.connection": path})
    for rule, says in [
            ('Ip? "10.1.1.1" Def! "Milters \'inet:10.1.1.1\'"\n', "Milters: no port"),
            ('Ip? "10.1.1.1" Def! "Milter_default_action \'maybe\'"\n',
             "must be accept, tempfail or reject")]:
        with open(path, "w") as f:
            f.write(rule)
        rc, out = n.check()
        assert rc == 1 and "%s:1:16: Def!: " % path in out and says in out, out
    with open(path, "w") as f:
        f.write('Ip? "10.1.1.1" Def! "Milters \'unix:/run/x.sock inet:127.0.0.1:1\'"\n')
    rc, out = n.check()
    assert rc == 0, out
