"""Selor's milter client against Debian's own filters: rspamd (its proxy
worker in milter mode), OpenDKIM and clamav-milter (with clamd and a
one-signature database), real daemons started by the test
(tests/system/filters.py), real clients, a Sink behind Relay_host.

- rspamd refuses GTUBE at the end of the content with its own reply, and
  adds its headers to clean mail;
- OpenDKIM signs the mail of an authenticated client ({auth_type}) and
  only that: the signature at the sink verifies with python3-dkim against
  the key the test's DNS server (dnsmasq) publishes;
- both in one Milters line, each seeing the message as the one before
  left it;
- a Def! in the rules gives the signing milter to authenticated clients
  only;
- clamav-milter refuses a message carrying EICAR (OnInfected Reject) with
  its own 5xx, or has Selor hold it (OnInfected Quarantine); clean mail
  gets its X-Virus-Scanned header.

rspamd takes seconds to start: one per module, as are OpenDKIM and the
DNS server; nodes and sinks are per test.
"""
import re
import shutil
import smtplib
import subprocess
import time

import pytest

import filters
import selortest
from selortest import wait_for

USER, PW = "user@local.test", "userpw"
PASSWD = selortest.DEFAULT_PASSWD + "%s:{PLAIN}%s::::::\n" % (USER, PW)


# ---- the filters, once per module ----

@pytest.fixture(scope="module")
def base():
    d = selortest.make_workdir("selor-filters-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def opendkim(base):
    k = filters.OpenDkim(base)
    yield k
    k.stop()


@pytest.fixture(scope="module")
def opendkim_all(base):
    """A second opendkim (selector sel2) that signs everything from the
    loopback, authenticated or not: it shows which mail a milter saw."""
    k = filters.OpenDkim(base, selector="sel2", name="opendkim-all",
                         internal_hosts="127.0.0.1")
    yield k
    k.stop()


@pytest.fixture(scope="module")
def dns(base, opendkim, opendkim_all):
    """The test's DNS server: the DKIM keys of local.test, and (as rspamd's
    resolver) quick answers for every other name."""
    txt = dict(opendkim.dns_txt())
    txt.update(opendkim_all.dns_txt())
    d = selortest.Dns(base, txt=txt, tcp_fork=True)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def clamav(base):
    c = filters.ClamAv(base, reject_msg="Virus found: %v")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def clamav_quarantine(base):
    c = filters.ClamAv(base, name="clamav-quarantine", on_infected="Quarantine")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def rspamd(base, dns):
    r = filters.Rspamd(base, dns=dns.server)
    yield r
    r.stop()


# ---- helpers ----

def milter_node(nodes, sink, milters=None, name="n1", **options):
    """A node that relays authenticated mail to the sink, delivers local
    mail to an MDA script (its output file is node.mda_out), with Milters."""
    script, out = selortest.mda_script(nodes.base, "cat >> %(out)s", name="mda-" + name)
    opts = {"Auth_plaintext": 1, "Incorrect_pass_delay": 0, "Immed_delivery": 2,
            "Relay_host": "127.0.0.1:%d" % sink.port, "Dlocal": script,
            "Dlocal_type": 0, "Milter_timeout": 20}
    if milters is not None:
        opts["Milters"] = milters
    opts.update(options)
    n = nodes(name, options=opts, passwd=PASSWD).start()
    n.mda_out = out
    return n


def message(subject, body="Hello, this is a clean test message.\r\n", frm=USER,
            to="z@remote.test"):
    return ("From: Some User <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Sun, 29 Nov 2026 14:00:00 +0000\r\n"
            "Message-ID: <%s@local.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n%s"
            % (frm, to, subject, re.sub(r"\W", "", subject), body)).encode()


def send(node, msg, rcpts=("z@remote.test",), frm=USER, auth=True):
    """Sends msg; an SMTP error is returned, not raised: (code, text)."""
    with node.smtp() as c:
        c.ehlo("client.test")
        if auth:
            assert c.login(USER, PW)[0] == 235
        try:
            c.sendmail(frm, list(rcpts), msg)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = list(e.recipients.values())[0]
            return code, text.decode(errors="replace")
    return 250, ""


def at_sink(sink, subject, timeout=30):
    """The content of the message with that Subject, once the sink has it."""
    def find():
        for _, content in sink.messages():
            if ("\r\nSubject: %s\r\n" % subject).encode() in content:
                return content
        return None
    return wait_for(find, timeout=timeout, what="%r at the sink" % subject)


def at_mda(node, subject, timeout=30):
    """The text the MDA got (LF line ends) for the message with that Subject."""
    def find():
        with open(node.mda_out, "rb") as f:
            data = f.read()
        i = data.find(("\nSubject: %s\n" % subject).encode())
        return data if i >= 0 else None
    return wait_for(find, timeout=timeout, what="%r at the MDA" % subject)


def headers(content):
    """The header block, folded lines joined."""
    head = re.split(rb"\r?\n\r?\n", content, maxsplit=1)[0]
    return re.sub(rb"\r?\n[ \t]", b" ", head)


def header_names(content):
    return [m.group(1).lower() for m in
            re.finditer(rb"^([A-Za-z0-9-]+):", headers(content), re.M)]


def assert_crlf_only(content):
    """What reached the sink went over SMTP: every line ends in CR LF, also
    the lines of headers a milter folded with a bare LF."""
    assert re.search(rb"(?<!\r)\n", content) is None, content[:2000]


def assert_signed(content, dns, selector="sel1"):
    # OpenDKIM takes a client as logged in when MAIL's macros hold
    # {auth_type}: without it (and outside InternalHosts) it does not sign.
    assert b"dkim-signature" in header_names(content), \
        "no DKIM-Signature (was {auth_type} sent at MAIL?):\n%s" % content[:2000].decode()
    sig = re.search(rb"^DKIM-Signature:(.*)$", headers(content), re.M | re.I).group(1)
    assert re.search(rb"\bd=local\.test;", sig), sig
    assert re.search(rb"\bs=%s;" % selector.encode(), sig), sig
    ok, err = filters.dkim_verify(content, dns.server)
    assert ok, "DKIM signature does not verify: %s\n%s" % (err, content.decode())
    # The check itself can fail: a changed body no longer verifies.
    forged = content.replace(b"clean test message", b"CLEAN test message")
    assert forged != content
    assert not filters.dkim_verify(forged, dns.server)[0]


# ---- rspamd ----

def test_rspamd_rejects_gtube_at_end_of_data(nodes, procs, rspamd):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, rspamd.milter)
    code, text = send(n, message("gtube", "spam " + filters.GTUBE + "\r\n",
                                 to="alice@example.com"),
                      rcpts=["alice@example.com"], frm="a@remote.test", auth=False)
    # rspamd 3.4 answers a GTUBE message with SMFIR_REPLYCODE
    # "554 5.7.1 Gtube pattern", passed on as given.
    assert (code, text) == (554, "5.7.1 Gtube pattern"), (code, text)
    assert n.queue_files("l") == [] and n.queue_files("c") == []
    # A clean message right after it, on the same node, goes through.
    code, text = send(n, message("clean after gtube", to="alice@example.com"),
                      rcpts=["alice@example.com"], frm="a@remote.test", auth=False)
    assert code == 250, (code, text)
    got = at_mda(n, "clean after gtube")
    assert b"GTUBE" not in got and b"X-Spamd-Result: default: False" in got


def test_rspamd_adds_its_headers_to_clean_mail(nodes, procs, rspamd):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, rspamd.milter)
    assert send(n, message("rspamd clean")) == (250, "")
    content = at_sink(sink, "rspamd clean")
    names = header_names(content)
    for h in (b"x-spamd-result", b"x-rspamd-server", b"x-rspamd-queue-id"):
        assert h in names, (h, content.decode())
    result = re.search(rb"^X-Spamd-Result: (.*)$", headers(content), re.M).group(1)
    assert result.startswith(b"default: False ["), result
    # rspamd saw Selor's queue ID (the i macro at end of data), the one
    # of Selor's Received: header.
    qid = re.search(rb"^X-Rspamd-Queue-Id: (\S+)", headers(content), re.M).group(1)
    received = re.search(rb"^Received: (.*)$", headers(content), re.M).group(1)
    assert b" id " + qid in received, (qid, received)
    # Selor's own Received: stays the first header.
    assert names[0] == b"received", names
    assert_crlf_only(content)


# ---- OpenDKIM ----

def test_opendkim_signs_authenticated_mail(nodes, procs, opendkim, dns):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, opendkim.milter)
    assert send(n, message("dkim signed")) == (250, "")
    content = at_sink(sink, "dkim signed")
    assert_signed(content, dns)
    assert_crlf_only(content)


def test_opendkim_does_not_sign_unauthenticated_mail(nodes, procs, opendkim):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, opendkim.milter)
    # The same From: user@local.test, but no AUTH: a local mailbox.
    code, text = send(n, message("dkim unauth", to="alice@example.com"),
                      rcpts=["alice@example.com"], frm=USER, auth=False)
    assert code == 250, (code, text)
    got = at_mda(n, "dkim unauth")
    assert b"DKIM-Signature" not in got, got.decode()


# ---- both ----

def test_rspamd_then_opendkim(nodes, procs, rspamd, opendkim, dns):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, "%s %s" % (rspamd.milter, opendkim.milter))
    assert send(n, message("both milters")) == (250, "")
    content = at_sink(sink, "both milters")
    names = header_names(content)
    assert b"x-spamd-result" in names and b"dkim-signature" in names, content.decode()
    assert_signed(content, dns)
    assert_crlf_only(content)
    # GTUBE is still refused by the first milter, whoever sends it.
    code, text = send(n, message("both gtube", "x " + filters.GTUBE + "\r\n"))
    assert (code, text) == (554, "5.7.1 Gtube pattern"), (code, text)


# ---- Def!: signing for authenticated clients only ----

@pytest.mark.parametrize("event", ["Event.from", "Event.auth"])
def test_def_milters_for_authenticated_clients(nodes, procs, opendkim_all, dns, event):
    """The milter here (opendkim_all) signs whatever it sees: unsigned mail
    is mail that did not go through it."""
    sink = procs.sink("127.0.0.1", 0)
    rule = "Auth? Def! \"Milters '%s'\"" % opendkim_all.milter
    n = milter_node(nodes, sink, None, **{event: rule})
    code, text = send(n, message("def unauth", to="alice@example.com"),
                      rcpts=["alice@example.com"], frm=USER, auth=False)
    assert code == 250, (code, text)
    assert b"DKIM-Signature" not in at_mda(n, "def unauth")
    assert send(n, message("def auth")) == (250, "")
    assert_signed(at_sink(sink, "def auth"), dns, "sel2")
    # Without the rule, the same milter signs the unauthenticated mail too.
    n2 = milter_node(nodes, sink, opendkim_all.milter, name="n2")
    code, text = send(n2, message("all unauth", to="alice@example.com"),
                      rcpts=["alice@example.com"], frm=USER, auth=False)
    assert code == 250, (code, text)
    assert b"DKIM-Signature" in at_mda(n2, "all unauth")


# ---- ClamAV ----

def infected_message(subject):
    """A MIME message whose attachment (base64, as mailers send files) is
    the EICAR test file: clamd finds it only by decoding the part."""
    import base64
    att = base64.encodebytes(filters.EICAR.encode()).decode().replace("\n", "\r\n")
    body = ("--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            "--b1\r\nContent-Type: application/octet-stream; name=eicar.com\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=eicar.com\r\n\r\n%s"
            "--b1--\r\n" % att)
    assert filters.EICAR not in body
    return message(subject, body).replace(
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n", 1)


def send_qid(node, msg, rcpts=("z@remote.test",)):
    """Sends msg after AUTH: (code, text) of the reply to the content."""
    with node.smtp() as c:
        c.ehlo("client.test")
        assert c.login(USER, PW)[0] == 235
        assert c.mail(USER)[0] == 250
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        code, text = c.data(msg)
    return code, text.decode(errors="replace")


def selorctl(node, *args):
    r = subprocess.run([selortest.SELORCTL, "-c", node.conf] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


VIRUS = filters.EICAR_SIG + ".UNOFFICIAL"


def test_clamav_rejects_eicar(nodes, procs, clamav):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, clamav.milter)
    code, text = send(n, infected_message("eicar attached"))
    # clamav-milter's RejectMsg ("Virus found: %v") as its 550 5.7.1 reply;
    # clamd names a signature of a database of one's own "NAME.UNOFFICIAL".
    assert (code, text) == (550, "5.7.1 Virus found: %s" % VIRUS), (code, text)
    wait_for(lambda: re.search(r"Message \S+ from <%s> to <z@remote.test> with subject "
                               r"'eicar attached' .* infected by %s$" % (USER, re.escape(VIRUS)),
                               clamav.log(), re.M),
             timeout=10, what="clamav-milter to log the virus")
    assert n.queue_files("l") == [] and n.queue_files("c") == []
    # Clean mail right after it, on the same node, is scanned and delivered.
    assert send(n, message("clamav clean")) == (250, "")
    content = at_sink(sink, "clamav clean")
    h = headers(content)
    assert re.search(rb"^X-Virus-Scanned: clamav-milter \d\S* at \S+\r?$", h, re.M), h
    assert re.search(rb"^X-Virus-Status: Clean\r?$", h, re.M), h
    assert_crlf_only(content)
    assert sink.messages() and all(b"eicar attached" not in c for _, c in sink.messages())


def test_clamav_quarantine_holds_eicar(nodes, procs, clamav_quarantine):
    sink = procs.sink("127.0.0.1", 0)
    n = milter_node(nodes, sink, clamav_quarantine.milter)
    code, text = send_qid(n, infected_message("eicar held"))
    assert code == 250, (code, text)
    qid = re.search(r"(\d+(?:_\d+)+)", text).group(1)
    code, out = selorctl(n, "queue", "show", qid)
    assert code == 0 and re.search(r"^flags: +1 \(held\)$", out, re.M), out
    # clamav-milter tags it (AddHeader) and logs it with Selor's queue ID
    # (the i macro), and Selor logs the reason it gave.
    head = n.read_content(qid).split(b"\n\n", 1)[0]
    assert re.search(rb"^X-Virus-Status: Infected \(%s\)$" % re.escape(VIRUS).encode(),
                     head, re.M), head
    wait_for(lambda: "Message %s from <%s>" % (qid, USER) in clamav_quarantine.log() and
             "infected by %s" % VIRUS in clamav_quarantine.log(),
             timeout=10, what="clamav-milter to log the virus")
    wait_for(lambda: "%s: queued held: quarantined by clamav-milter by %s" %
             (qid, clamav_quarantine.milter) in n.log("warning"),
             timeout=10, what="Selor to log the quarantine")
    # Held: a queue run does not deliver it.
    assert selorctl(n, "flush")[0] == 0
    time.sleep(2)
    assert sink.messages() == []
    assert qid in n.queue_files("l")
