"""Local delivery through a real MDA (maildrop) into a Maildir, and no way
for a crafted address to run a command through Dlocal, with either
Dlocal_type."""
import os
import pwd
import random
import string
import subprocess

import pytest

import selortest
from selortest import wait_for


def own(path, user):
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def make_home(base, name):
    """A home with a Maildir and a maildrop filter, owned by the node's user
    (maildrop refuses a filter that others could change)."""
    home = os.path.join(base, name)
    for sub in ("", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
        os.chmod(os.path.join(home, sub), 0o700)
        own(os.path.join(home, sub), selortest.RUN_USER)
    filt = os.path.join(home, "mailfilter")
    with open(filt, "w") as f:
        f.write('to "$1"\n')
    os.chmod(filt, 0o600)
    own(filt, selortest.RUN_USER)
    return home


def maildir_messages(home):
    d = os.path.join(home, "Maildir", "new")
    out = []
    for n in sorted(os.listdir(d)):
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out


def send(node, to, frm="someone@sender.test", body="Subject: local\r\n\r\nhello\r\n"):
    with node.smtp() as c:
        c.ehlo("client.test")
        code, msg = c.mail(frm)
        assert code == 250, msg
        code, msg = c.rcpt(to)
        assert code == 250, msg
        code, msg = c.data(body)
        assert code == 250, msg
        return msg.decode().split()[1]


@pytest.mark.parametrize("dtype", [0, 1])
def test_maildrop_into_maildir(nodes, workdir, dtype):
    home = make_home(workdir, "box")
    passwd = "box@example.com:{PLAIN}pw::::%s::\n" % home
    n = nodes(passwd=passwd, options={
        "Dlocal": "/usr/bin/maildrop %C/mailfilter %C/Maildir/ <",
        "Dlocal_type": dtype, "Immed_delivery": 2}).start()
    qid = send(n, "box@example.com", body="Subject: to the box\r\n\r\nline 1\r\n.dot\r\n")
    wait_for(lambda: maildir_messages(home), timeout=30, what="the Maildir file")
    msg = maildir_messages(home)[0]
    assert msg.startswith(b"Received: from client.test")
    assert msg.endswith(b"Subject: to the box\n\nline 1\n.dot\n")
    wait_for(lambda: qid not in n.queue_files("l"), what="removed")
    assert "delivered to=<box@example.com> relay=local" in n.log("summary")


def test_mda_failures(nodes, workdir):
    script = os.path.join(workdir, "mda.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\ncat >/dev/null\ncase "$1" in\n'
                ' temp@*) echo "try later" >&2; exit 75;;\n'
                ' perm@*) echo "user is gone" >&2; exit 67;;\n'
                ' full@*) echo "mailbox over quota" >&2; exit 77;;\n'
                'esac\nexit 0\n')
    os.chmod(script, 0o755)
    passwd = "".join("%s@example.com:{PLAIN}pw::::%s::\n" % (u, workdir)
                     for u in ("temp", "perm", "full", "ok"))
    passwd += "someone@example.com:{PLAIN}pw::::%s::\n" % workdir
    n = nodes(passwd=passwd, options={"Dlocal": script + " %r", "Dlocal_type": 0,
                                      "Immed_delivery": 2}).start()
    ids = {u: send(n, "%s@example.com" % u, frm="someone@example.com")
           for u in ("temp", "perm", "full", "ok")}
    for what in ("deferred to=<temp@example.com>", "failed to=<perm@example.com>",
                 "failed to=<full@example.com>", "delivered to=<ok@example.com>"):
        wait_for(lambda: what in n.log("summary"), timeout=30, what=what)
    summary = n.log("summary")
    assert "failed to=<perm@example.com>" in summary and "user is gone" in summary
    assert "failed to=<full@example.com>" in summary and "over quota" in summary
    assert "delivered to=<ok@example.com>" in summary
    assert ids["temp"] in n.queue_files("l")
    # the reports for perm and full go to someone@example.com (local): one each
    wait_for(lambda: n.log("summary").count(" queued to=<someone@example.com>") == 2,
             timeout=30, what="two reports")


def marker_dir():
    name = "selor-pwned-" + "".join(random.choice(string.ascii_lowercase) for _ in range(10))
    d = os.path.join("/tmp", name)
    os.makedirs(d)
    os.chmod(d, 0o777)
    return d


@pytest.mark.parametrize("dtype", [0, 1])
def test_crafted_addresses_run_nothing(nodes, workdir, dtype):
    marks = marker_dir()
    try:
        calls = os.path.join(workdir, "calls")
        os.makedirs(calls)
        os.chmod(calls, 0o777)
        script = os.path.join(workdir, "record.sh")
        with open(script, "w") as f:
            # one file per call: every argument, NUL-terminated
            f.write('#!/bin/sh\nf="%s/call.$$"\nfor a in "$@"; do printf "%%s\\0" "$a" >> "$f";'
                    ' done\ncat >/dev/null\nexit 0\n' % calls)
        os.chmod(script, 0o755)
        # Quoted local parts allow every shell metacharacter; a bare
        # ">file" creates the file in sh, so no blank is needed to show
        # an injection (the accounts file allows none).
        quoted = ['"%s"@example.com' % e for e in (
            "x`>%s/a`y" % marks,
            "x$(>%s/b)" % marks,
            "x;>%s/c;" % marks,
            "x'$(>%s/d)'" % marks,
            "x|>%s/e" % marks,
            "x&>%s/f" % marks,
            "x\\\"$(>%s/g)" % marks)]
        passwd = "".join("%s:{PLAIN}pw::::%s::\n" % (q, workdir) for q in quoted)
        n = nodes(passwd=passwd, options={
            "Dlocal": script + " %r %f %l %p %m", "Dlocal_type": dtype,
            "Immed_delivery": 2}).start()
        sender = '"`>%s/s`"@evil.test' % marks
        for q in quoted:
            send(n, q, frm=sender)
        wait_for(lambda: len(os.listdir(calls)) == len(quoted), timeout=30,
                 what="every MDA call")
        got = []
        for name in os.listdir(calls):
            with open(os.path.join(calls, name), "rb") as f:
                got.append(f.read().split(b"\0")[:-1])
        assert os.listdir(marks) == [], "a command ran: %s" % os.listdir(marks)
        # each value arrived whole, as one argument, byte for byte
        assert sorted(a[0].decode() for a in got) == sorted(quoted)
        assert all(a[1].decode() == sender for a in got)
        assert all(len(a) == 5 for a in got)
    finally:
        for m in os.listdir(marks):
            os.unlink(os.path.join(marks, m))
        os.rmdir(marks)


def recording_mda(workdir, name="mda.sh", sleep=0.0):
    """An MDA that records when it ran: one line "<start> <end> <args>"."""
    log = os.path.join(workdir, name + ".log")
    script = os.path.join(workdir, name)
    with open(script, "w") as f:
        f.write('#!/bin/sh\ns=$(date +%%s.%%N)\ncat >/dev/null\nsleep %s\n'
                'echo "$s $(date +%%s.%%N) $*" >> %s\nexit 0\n' % (sleep, log))
    os.chmod(script, 0o755)
    open(log, "w").close()
    os.chmod(log, 0o666)
    return script, log


def test_dlocal_max_procs_bounds_mdas(nodes, workdir):
    script, log = recording_mda(workdir, sleep=0.3)
    users = ["u%d" % i for i in range(6)]
    passwd = "".join("%s@example.com:{PLAIN}pw::::%s::\n" % (u, workdir) for u in users)
    n = nodes(passwd=passwd, options={"Dlocal": script + " %r", "Dlocal_type": 0,
                                      "Dlocal_max_procs": 1, "Immed_delivery": 0,
                                      "Qsleep_time": 3600}).start()
    for u in users:
        send(n, "%s@example.com" % u)
    subprocess.run([selortest.SELORCTL, "-c", n.conf, "flush"], check=True,
                   capture_output=True, timeout=30)
    wait_for(lambda: len(open(log).read().splitlines()) == 6, timeout=60,
             what="six MDA runs")
    runs = sorted(tuple(map(float, line.split()[:2])) for line in open(log))
    overlaps = [(a, b) for a, b in zip(runs, runs[1:]) if b[0] < a[1] - 0.01]
    assert overlaps == [], "MDAs ran at the same time: %s" % overlaps


def test_adlocal_allowed(nodes, workdir):
    default, dlog = recording_mda(workdir, "default.sh")
    own, olog = recording_mda(workdir, "own.sh")
    other, xlog = recording_mda(workdir, "other.sh")
    passwd = ("a@example.com:{PLAIN}pw::::%s::dlocal=%s %%r\n" % (workdir, own) +
              "b@example.com:{PLAIN}pw::::%s::dlocal=%s %%r\n" % (workdir, other))
    n = nodes(passwd=passwd, options={"Dlocal": default + " %r", "Dlocal_type": 0,
                                      "Adlocal_allowed": own, "Immed_delivery": 2}).start()
    send(n, "a@example.com")
    send(n, "b@example.com")
    wait_for(lambda: open(olog).read() and open(dlog).read(), timeout=30,
             what="both deliveries")
    assert "a@example.com" in open(olog).read()        # its own, allowed MDA
    assert "b@example.com" in open(dlog).read()        # not allowed: Dlocal
    assert open(xlog).read() == ""
    wait_for(lambda: "Adlocal_allowed does not list" in n.log("warning"),
             what="the refusal logged")


def test_mailbox_that_is_also_an_alias(nodes, workdir):
    """Force_alias_seek 1: box@ is a mailbox and an alias of other@.  Both
    get the message; a temporary failure of box's own MDA is retried."""
    script = os.path.join(workdir, "mda.sh")
    log = os.path.join(workdir, "mda.log")
    with open(script, "w") as f:
        f.write('#!/bin/sh\ncat >/dev/null\necho "$1" >> %s\n'
                'case "$1" in box@*) echo "busy" >&2; exit 75;; esac\nexit 0\n' % log)
    os.chmod(script, 0o755)
    open(log, "w").close()
    os.chmod(log, 0o666)
    passwd = ("box@example.com:{PLAIN}pw::::%s::\n" % workdir +
              "box@example.com:{ALIAS}other@example.com\n" +
              "other@example.com:{PLAIN}pw::::%s::\n" % workdir)
    n = nodes(passwd=passwd, options={"Dlocal": script + " %r", "Dlocal_type": 0,
                                      "Force_alias_seek": 1, "Immed_delivery": 2}).start()
    qid = send(n, "box@example.com")
    wait_for(lambda: "deferred to=<box@example.com>" in n.log("summary") and
             "delivered to=<other@example.com>" in n.log("summary"), timeout=30,
             what="both recipients tried")

    def states():
        # the run logs each result, then writes the l file once at its end
        recs, rcpts = selortest.parse_lfile(n.read_qf(qid))
        return {r[3]: r[0] for r in rcpts}
    want = {"box@example.com": "P", "other@example.com": "D"}
    try:
        wait_for(lambda: states() == want, timeout=10, what="the l file written")
    except AssertionError:
        assert states() == want
