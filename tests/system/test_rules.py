"""The rules engine, as a client sees it: every session event at its place,
the example rules of the original's documentation, Def! per connection,
programs with a time limit, the cluster-wide Rate?, and reloading.

Clients choose their source address on loopback (127.0.0.x) so Ip? rules
can tell them apart; every rule's effect is a reply or a queue file only
that rule can have made.
"""
import base64
import os
import socket
import subprocess
import time

import pytest

import selortest
from selortest import recv_reply, wait_for


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def connect(node, src="127.0.0.1"):
    s = socket.create_connection((node.host, node.port), timeout=30,
                                 source_address=(src, 0))
    return selortest.SmtpConn(s)


def cmd(s, line):
    s.sendall(line + b"\r\n")
    return s.reply().decode()


def greeted(node, src="127.0.0.1", helo=b"client.test"):
    s = connect(node, src)
    assert s.reply().startswith(b"220")
    assert cmd(s, b"EHLO " + helo).startswith("250")
    return s


def send(s, sender, rcpts, body=b"Subject: t\r\n\r\nhello\r\n"):
    """MAIL, RCPTs, DATA: the replies (RCPT replies as a list)."""
    r = {"mail": cmd(s, b"MAIL FROM:<%s>" % sender.encode()), "rcpt": []}
    for rc in rcpts:
        r["rcpt"].append(cmd(s, b"RCPT TO:<%s>" % rc.encode()))
    r["data"] = cmd(s, b"DATA")
    if r["data"].startswith("354"):
        s.sendall(body + b".\r\n")
        r["end"] = s.reply().decode()
    return r


def rules_node(nodes, files, options=None, **kw):
    """A node whose Event.X options hold the given rules: a text of several
    lines goes into a file, one line stays an inline rule."""
    opts = dict(options or {})
    d = os.path.join(nodes.base, "rules")
    os.makedirs(d, exist_ok=True)
    for ev, text in files.items():
        opts["Event." + ev] = write(os.path.join(d, ev + ".rules"), text) \
            if "\n" in text else text
    return nodes(options=opts, **kw)


# ---- the examples of the original's documentation ----

def test_reject_one_sender_with_a_custom_text(nodes):
    n = rules_node(nodes, {"from": '# one sender\n'
                           'From? "bad@example.org" Reply! "550 Sender refused here" Deny!\n'}
                   ).start()
    s = greeted(n)
    assert cmd(s, b"MAIL FROM:<bad@example.org>") == "550 5.7.1 Sender refused here\r\n"
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("503")
    assert cmd(s, b"MAIL FROM:<good@example.org>").startswith("250")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")
    wait_for(lambda: "Sender refused here" in n.log("refused"), what="refusal logged")


def test_limit_accept_exempts_one_address(nodes):
    n = rules_node(nodes, {"limit": 'Ip? "127.0.0.9" Accept!'},
                   options={"Limit_cnx": 2, "Limit_time": 60, "Limit_buf": 100,
                            "Msg_perm_deny": "421 Slow down"}).start()
    time.sleep(0.2)
    for _ in range(5):
        s = connect(n, "127.0.0.9")
        assert s.reply().startswith(b"220"), "127.0.0.9 is exempted"
        s.close()
    replies = []
    for _ in range(4):
        s = connect(n, "127.0.0.10")
        replies.append(s.reply().decode())
        s.close()
    assert any(r.startswith("421 ") and "Slow down" in r for r in replies), replies
    wait_for(lambda: "exempted by Event.limit" in n.log(), what="the exemption logged")


def test_connection_close_and_deny(nodes):
    n = rules_node(nodes, {"connection": 'Ip? "127.0.0.7" Close!\n'
                           'Ip? "127.0.0.8" Reply! "554 Not from you" Deny!\n'}).start()
    s = connect(n, "127.0.0.7")
    assert s.reply().startswith(b"421")
    assert s.recv(100) == b""
    s = connect(n, "127.0.0.8")
    assert s.reply() == b"554 mx.n1.test Not from you\r\n"
    assert cmd(s, b"EHLO x.test").startswith("503")
    assert cmd(s, b"MAIL FROM:<a@b.test>").startswith("503")
    assert cmd(s, b"QUIT").startswith("221")
    s = connect(n, "127.0.0.1")
    assert s.reply().startswith(b"220")


def test_copies_to_an_auditor_and_two_copies(nodes):
    n = rules_node(nodes, {"rcpt":
                           'From? "carol@remote.test" To? "bob@example.com" Cp! "alice@example.com"\n'
                           'To? "team@example.com" Cp! "postmaster@example.com" '
                           'Cp! "audit@elsewhere.test"\n'}).start()
    s = greeted(n)
    r = send(s, "carol@remote.test", ["bob@example.com"])
    assert r["end"].startswith("250")
    r = send(s, "dave@remote.test", ["bob@example.com"])
    assert r["end"].startswith("250")
    r = send(s, "dave@remote.test", ["team@example.com"])
    assert r["end"].startswith("250")
    files = {q: selortest.parse_lfile(n.read_qf(q)) for q in n.queue_files()}
    got = sorted(sorted((rc[3], rc[6]) for rc in f[1]) for f in files.values())
    assert sorted([("alice@example.com", "cp"), ("bob@example.com", "mailbox:passwd")]) in got
    assert [("bob@example.com", "mailbox:passwd")] in got
    assert sorted([("alice@example.com", "alias:passwd"), ("audit@elsewhere.test", "cp"),
                   ("bob@example.com", "alias:passwd"),
                   ("postmaster@example.com", "cp")]) in got


def test_def_max_rcpts_for_one_ip_only(nodes):
    n = rules_node(nodes, {"connection": 'Ip? "127.0.0.6" Def! "Max_rcpts 2"'},
                   options={"Max_rcpts": 5}).start()
    s = greeted(n, "127.0.0.6")
    r = send(s, "a@remote.test", ["alice@example.com", "bob@example.com", "team@example.com"])
    assert [x[:3] for x in r["rcpt"]] == ["250", "250", "452"]
    s = greeted(n, "127.0.0.1")
    r = send(s, "a@remote.test", ["alice@example.com", "bob@example.com", "team@example.com"])
    assert [x[:3] for x in r["rcpt"]] == ["250", "250", "250"]


def test_def_event_rcpt_switches_the_rules_file(nodes, workdir):
    internal = write(os.path.join(workdir, "internal.rules"),
                     'To? "bob@example.com" Reply! "550 Not for internal clients" Deny!\n')
    n = rules_node(nodes, {"connection": 'Ip? "127.0.0.4/32" Def! "Event.rcpt \'%s\'"'
                           % internal}).start()
    s = greeted(n, "127.0.0.4")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<bob@example.com>") == "550 5.7.1 Not for internal clients\r\n"
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<bob@example.com>").startswith("250")


def plain(user, pw):
    return base64.b64encode(("\0%s\0%s" % (user, pw)).encode())


def test_def_auth_relay_0_by_prefix(nodes):
    n = rules_node(nodes, {"connection": 'Ip? "127.0.0." Def! "Auth_relay 0"'},
                   options={"Auth_plaintext": 1, "Incorrect_pass_delay": 0}).start()
    s = greeted(n, "127.0.0.3")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("235")
    assert cmd(s, b"MAIL FROM:<alice@example.com>").startswith("250")
    assert cmd(s, b"RCPT TO:<x@remote.test>").startswith("550")


# ---- each session event at its place ----

def test_helo_event(nodes):
    n = rules_node(nodes, {"helo": 'Helo? "*.bad.test" Reply! "550 Bad HELO" Deny!'}).start()
    s = connect(n)
    s.reply()
    assert cmd(s, b"EHLO host.bad.test") == "550 5.7.1 Bad HELO\r\n"
    assert cmd(s, b"MAIL FROM:<a@b.test>").startswith("503")
    assert cmd(s, b"EHLO good.test").startswith("250")


def test_auth_event_sees_the_outcome(nodes):
    n = rules_node(nodes, {"auth": 'Auth? "alice@*" Ip? "127.0.0.5" Reply! "535 Not from '
                           'there" Deny!\n!Auth? Log! "failed login from %I"\n'},
                   options={"Auth_plaintext": 1, "Incorrect_pass_delay": 0}).start()
    s = greeted(n, "127.0.0.5")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")) == \
        "535 5.7.1 Not from there\r\n"
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("235")
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "nope")).startswith("535")
    wait_for(lambda: "failed login from 127.0.0.1" in n.log("warning"), what="Log!")


def test_lrcpt_refused_event(nodes):
    n = rules_node(nodes, {"lrcpt_refused":
                           'To? "*@example.com" Ip? "127.0.0.2" Defer!\n'
                           'To? "*@example.com" Reply! "550 Nobody by that name here" Deny!\n'}
                   ).start()
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<nobody@example.com>") == "550 5.1.1 Nobody by that name here\r\n"
    assert cmd(s, b"RCPT TO:<bob@example.com>").startswith("250")
    s = greeted(n, "127.0.0.2")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<nobody@example.com>").startswith("450")


def test_rcpt_event_local_and_accept(nodes):
    n = rules_node(nodes, {"rcpt": '!Local? Reply! "550 Only our users here" Deny!'},
                   options={"Auth_plaintext": 1}).start()
    s = greeted(n)
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("235")
    assert cmd(s, b"MAIL FROM:<alice@example.com>").startswith("250")
    assert cmd(s, b"RCPT TO:<x@remote.test>") == "550 5.7.1 Only our users here\r\n"
    assert cmd(s, b"RCPT TO:<bob@example.com>").startswith("250")


def test_data_cmd_and_data_events(nodes):
    n = rules_node(nodes, {
        "data_cmd": 'From? "late@remote.test" Reply! "554 No data from you" Deny!\n'
                    'Add_hits! "2" Header! "X-Rules: hits=%H ip=%I"\n',
        "data": 'Size? "300" Reply! "552 Too big for our rules" Deny!\n'
                'Itest? "%H>=2" Data_reply! "250 Taken with hits %H"\n'}).start()
    s = greeted(n)
    r = send(s, "late@remote.test", ["alice@example.com"])
    assert r["data"] == "554 5.7.1 No data from you\r\n"
    assert cmd(s, b"RSET").startswith("250")
    r = send(s, "a@remote.test", ["alice@example.com"], body=b"Subject: big\r\n\r\n" +
             b"x" * 400 + b"\r\n")
    assert r["end"] == "552 5.7.1 Too big for our rules\r\n", r
    assert n.queue_files() == []
    r = send(s, "a@remote.test", ["alice@example.com"])
    assert r["end"].startswith("250") and "Taken with hits 4" in r["end"], r
    (q,) = n.queue_files()
    assert b"X-Rules: hits=4 ip=127.0.0.1" in n.read_content(q)


def test_header_added_by_the_data_event(nodes, workdir):
    """Header! in Event.data: the content is rewritten before the commit,
    the field on top, the rest byte for byte as it came."""
    prog = write(os.path.join(workdir, "scan.sh"),
                 "#!/bin/sh\ngrep -q VIRUS-TEST \"$1\" && echo found\n")   # $1: the file
    os.chmod(prog, 0o755)
    n = rules_node(nodes, {
        "data_cmd": 'Header! "X-Early: before data"\n',
        "data": 'Exec? "%s" Header! "X-Scan: %%X (%%Q)"\n'
                'Header! "X-Second: %%I"\n' % prog}).start()
    body = b"Subject: scan me\r\n\r\nVIRUS-TEST here\r\n..dot line\r\n"   # stuffed
    s = greeted(n)
    r = send(s, "a@remote.test", ["alice@example.com"], body=body)
    assert r["end"].startswith("250"), r
    (q,) = n.queue_files()
    content = n.read_content(q)
    top, _, rest = content.partition(b"Received: ")
    assert top.startswith(b"X-Scan: found (%s)\n" % q.encode()), content
    assert b"\nX-Second: 127.0.0.1\n" in top
    assert b"X-Early: before data\n" in rest
    assert rest.endswith(b"Subject: scan me\n\nVIRUS-TEST here\n.dot line\n"), content
    assert "size %d\n" % len(content) in n.read_qf(q)
    assert os.listdir(n.tmp) == []


def test_exec_condition_with_a_time_limit(nodes, workdir):
    prog = write(os.path.join(workdir, "check.sh"),
                 "#!/bin/sh\ncase \"$1\" in slow*) sleep 10;; bad*) echo listed; exit 0;; esac\n"
                 "exit 1\n")
    os.chmod(prog, 0o755)
    n = rules_node(nodes, {"rcpt": 'Exec? "%s %%r" Reply! "550 Refused by %%X" Deny!\n'
                           % prog},
                   options={"Rules_exec_timeout": 2}).start()
    s = greeted(n)
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")
    t0 = time.time()
    s.sendall(b"RCPT TO:<slow@example.com>\r\n")
    # meanwhile another client is served at once
    other = greeted(n)
    assert cmd(other, b"MAIL FROM:<b@remote.test>").startswith("250")
    assert time.time() - t0 < 1.5
    r = s.reply().decode()
    assert r.startswith("550") and "No such user" in r, r  # the program timed out: false
    assert time.time() - t0 >= 1.9
    wait_for(lambda: "Exec? timed out" in n.log("warning"), what="timeout logged")
    r = cmd(s, b"RCPT TO:<bad@example.com>")
    assert r == "550 5.7.1 Refused by listed\r\n", r


def test_reload_under_load_and_a_broken_edit(nodes, workdir):
    path = write(os.path.join(workdir, "from.rules"),
                 'From? "one@remote.test" Reply! "550 Version one" Deny!\n')
    n = rules_node(nodes, {"from": path}).start()
    s = greeted(n)
    assert cmd(s, b"MAIL FROM:<one@remote.test>") == "550 5.7.1 Version one\r\n"
    write(path, 'From? "two@remote.test" Reply! "550 Version two" Deny!\n')
    t0 = time.time()

    def new_rules():
        c = greeted(n)
        r = cmd(c, b"MAIL FROM:<two@remote.test>")
        c.close()
        return r.startswith("550 5.7.1 Version two")
    wait_for(new_rules, timeout=5, what="the edited rules")
    assert time.time() - t0 < 3.5
    # the session opened before keeps the rules it started with
    assert cmd(s, b"MAIL FROM:<one@remote.test>") == "550 5.7.1 Version one\r\n"
    # every worker has looked within 3 s: each has version two now
    time.sleep(max(0.0, t0 + 3.0 - time.time()))
    for _ in range(6):
        assert new_rules()
    write(path, 'From? "three@remote.test" Reply! "550 Version three" Deny!\n'
                'Bogus? "x"\n')
    wait_for(lambda: "from.rules:2:1: unknown condition Bogus?" in n.log("warning"),
             timeout=6, what="the broken edit logged with file:line:column")
    c = greeted(n)
    assert cmd(c, b"MAIL FROM:<two@remote.test>") == "550 5.7.1 Version two\r\n"
    assert cmd(c, b"RSET").startswith("250")
    assert cmd(c, b"MAIL FROM:<three@remote.test>").startswith("250")


@pytest.mark.parametrize("text,where", [
    ('Bogus? "x"\n', "1:1: unknown condition Bogus?"),
    ('Ip? "1.2.3.4" Close!\nFrom? "a@b" Deny! Exec! "relative/prog"\n',
     "2:25: the program must be an absolute path"),
    ('Ip? "10.0.0.0/33" Deny!\n', "1:5: Ip? needs"),
    ('Def! "Port 2525"\n', "1:6: Def!: Port cannot be changed per connection"),
    ('Itest? "%Z>2" Deny!\n', "1:8: unknown variable %Z"),
    ('From? "a@b" Reply! "hello" Deny!\n', "1:20: a reply starts with a 3-digit code"),
])
def test_load_errors_have_file_line_column(nodes, workdir, text, where):
    path = write(os.path.join(workdir, "bad.rules"), text)
    n = nodes(options={"Event.from": path})
    rc, out = n.check()
    assert rc == 1 and "%s:%s" % (path, where) in out, out


def test_action_that_makes_no_sense_in_an_event_is_a_load_error(nodes, workdir):
    path = write(os.path.join(workdir, "q.rules"), 'Ip? "1.2.3.4" Close!\n')
    n = nodes(options={"Event.qend_process": path})
    rc, out = n.check()
    assert rc == 1 and "%s:1:15: Close! cannot be used in Event.qend_process" % path in out, out


def test_selor_t_checks_rules_reached_through_def(nodes, workdir):
    bad = write(os.path.join(workdir, "other.rules"), 'Nope! "x"\n')
    n = nodes(options={"Event.connection": 'Ip? "10.0.0.1" Def! "Event.rcpt \'%s\'"' % bad})
    rc, out = n.check()
    assert rc == 1 and "%s:1:1: unknown action Nope!" % bad in out, out


def test_rate_per_user_across_three_nodes(nodes, procs):
    redis = procs.redis()
    opts = {"Redis_server": redis.server, "Auth_plaintext": 1, "Incorrect_pass_delay": 0,
            "Event.data_cmd": 'Rate? "%U 5/60" Reply! "450 Too many messages from %U" Deny!'}
    members = [nodes(options=dict(opts)).start() for _ in range(3)]
    replies = []
    for i in range(7):
        s = greeted(members[i % 3])
        assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("235")
        replies.append(send(s, "alice@example.com", ["bob@example.com"]))
        s.close()
    assert [r.get("end", r["data"])[:3] for r in replies] == ["250"] * 5 + ["450"] * 2, replies
    assert "Too many messages from alice@example.com" in replies[5]["data"]
    # another user is counted apart
    s = greeted(members[0])
    assert cmd(s, b"AUTH PLAIN " + plain("bob@example.com", "bobpw")).startswith("235")
    assert send(s, "bob@example.com", ["alice@example.com"])["end"].startswith("250")


def test_selorctl_rules_test_prints_rules_and_verdicts(nodes, workdir):
    rcpt = write(os.path.join(workdir, "rcpt.rules"),
                 'Ip? "192.0.2.0/24" Add_hits! "3"\n'
                 'Itest? "%H>2" To? "alice@example.com" Reply! "550 Score %H too high" Deny!\n'
                 'To? "bob@example.com" Cp! "carol@example.com"\n')
    n = nodes(options={"Event.rcpt": rcpt, "Event.from": 'From? "*@b.test" Add_hits! "1"'})
    n.write_conf()
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "rules", "test", "--ip", "192.0.2.1",
                        "--helo", "x.test", "--from", "a@b.test", "--rcpt", "alice@example.com",
                        "--rcpt", "bob@example.com"], capture_output=True, text=True,
                       env=n.env(), timeout=30)
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert "Event.from: 1 rule ran, hits 1" in out
    assert "%s:2: Itest? \"%%H>2\"" % rcpt in out
    assert "Event.rcpt: 2 rules ran, hits 4, verdict deny, reply 550 Score 4 too high" in out
    assert "Event.rcpt: copy to carol@example.com" in out
    assert n.queue_files() == [], "a dry run queues nothing"
    # another client: the score stays low
    r = subprocess.run([selortest.SELORCTL, "-c", n.conf, "rules", "test", "--ip", "198.51.100.1",
                        "--from", "a@c.test", "--rcpt", "alice@example.com"],
                       capture_output=True, text=True, env=n.env(), timeout=30)
    assert "Event.rcpt: 0 rules ran, hits 0, verdict none" in r.stdout, r.stdout


# ---- DNS: SPF, reverse names, DNSBL (a real dnsmasq on loopback) ----

SCORING = ('Spf_resp "2" Add_hits! "1"\n'
           'Spf_resp "3" Add_hits! "2"\n'
           'Rev_fail? Add_hits! "2"\n'
           'Itest? "%H>2" Reply! "550 Score too high (%H, SPF %S)" Deny!\n')


@pytest.fixture
def spf_dns(procs):
    return procs.dns(
        txt={"spf-soft.test": ["v=spf1 -ip4:192.0.2.1 ~all"],
             "spf-fail.test": ["v=spf1 ip4:192.0.2.0/24 -all"],
             "spf-pass.test": ["v=spf1 ip4:127.0.0.0/8 -all"]},
        hosts={"good.ptr.test": "127.0.0.21",
               "22.0.0.127.dnsbl.test": "127.0.0.2",
               "23.0.0.127.dnsbl.test": "127.255.255.254"},
        ptrs={"127.0.0.21": "good.ptr.test"},
        mx={"spf-soft.test": [(10, "mx.spf-soft.test")]})


def test_scoring_spf_and_reverse_name(nodes, spf_dns):
    n = rules_node(nodes, {"rcpt": SCORING},
                   options={"Dns_servers": spf_dns.server, "Resolve_all": 0}).start()

    def rcpt(src, sender):
        s = greeted(n, src)
        assert cmd(s, b"MAIL FROM:<%s>" % sender.encode()).startswith("250")
        r = cmd(s, b"RCPT TO:<alice@example.com>")
        s.close()
        return r
    # softfail (1) + no reverse name (2) = 3 > 2
    assert rcpt("127.0.0.22", "a@spf-soft.test") == \
        "550 5.7.1 Score too high (3, SPF softfail)\r\n"
    # fail (2) + no reverse name (2)
    assert rcpt("127.0.0.22", "a@spf-fail.test").startswith("550 5.7.1 Score too high (4")
    # pass + no reverse name: 2, not over 2
    assert rcpt("127.0.0.22", "a@spf-pass.test").startswith("250")
    # fail, but a confirmed reverse name: 2
    assert rcpt("127.0.0.21", "a@spf-fail.test").startswith("250")
    # the clean client: its message carries Received-SPF
    s = greeted(n, "127.0.0.21")
    assert send(s, "a@spf-pass.test", ["alice@example.com"])["end"].startswith("250")
    (q,) = n.queue_files()
    content = n.read_content(q)
    assert b"Received-SPF: pass" in content and b"client-ip=127.0.0.21" in content, content


def test_rbl_listing_and_error_answers(nodes, spf_dns):
    n = rules_node(nodes, {"connection": 'Rbl? "dnsbl.test" Reply! "554 Listed in dnsbl.test" '
                           'Deny!'}, options={"Dns_servers": spf_dns.server}).start()
    s = connect(n, "127.0.0.22")
    assert s.reply() == b"554 mx.n1.test Listed in dnsbl.test\r\n"
    s = connect(n, "127.0.0.23")    # 127.255.255.x: the list's error, not a listing
    assert s.reply().startswith(b"220")
    s = connect(n, "127.0.0.24")    # not listed (NXDOMAIN)
    assert s.reply().startswith(b"220")
    wait_for(lambda: "DNSBL dnsbl.test answers an error code for 127.0.0.23" in
             n.log("warning"), what="the error answer logged")


def test_qlimit_action_and_deprecated_qlimit_senders(nodes):
    n = rules_node(nodes, {"from": 'From? "@bulk.test" Qlimit!'},
                   options={"Qlimit_senders": "old@remote.test"}).start()
    s = greeted(n)
    for sender in ("a@bulk.test", "old@remote.test", "c@remote.test"):
        assert send(s, sender, ["alice@example.com"])["end"].startswith("250")
    qdir = os.path.join(n.spool, "qlimit")
    in_qlimit = [f for f in os.listdir(qdir) if f.startswith("l")]
    assert len(in_qlimit) == 2 and len(n.queue_files()) == 1, (in_qlimit, n.queue_files())


# ---- Def! reaching delivery, and the delivery events ----

def mda(workdir, name, body):
    """A Dlocal program: cat the message, run body ($1 the recipient), and
    record "name recipient" in name.out."""
    out = os.path.join(workdir, name + ".out")
    open(out, "w").close()
    os.chmod(out, 0o666)
    script = write(os.path.join(workdir, name + ".sh"),
                   '#!/bin/sh\ncat >/dev/null\necho "%s $1" >> %s\n%s\nexit 0\n'
                   % (name, out, body))
    os.chmod(script, 0o755)
    return script, out


def delivering_node(nodes, workdir, files, options=None):
    one, out1 = mda(workdir, "one", "")
    opts = {"Dlocal": one + " %r", "Dlocal_type": 0, "Immed_delivery": 2, "Qsleep_time": 2}
    opts.update(options or {})
    passwd = selortest.DEFAULT_PASSWD + \
        "".join("%s@example.com:{PLAIN}pw::::%s::\n" % (u, workdir)
                for u in ("temp", "someone", "quiet", "nope"))
    return rules_node(nodes, files, options=opts, passwd=passwd), out1


def test_def_dlocal_and_max_attempts_reach_delivery(nodes, workdir):
    two, out2 = mda(workdir, "two", "")
    tempfail, _ = mda(workdir, "tempfail", 'echo "try later" >&2; exit 75')
    n, out1 = delivering_node(nodes, workdir, {
        "connection": 'Ip? "127.0.0.31" Def! "Dlocal \'%s %%r\'"\n'
                      'Ip? "127.0.0.32" Def! "Dlocal \'%s %%r\'" Def! "Max_attempts 1"\n'
                      'Ip? "127.0.0.33" Def! "Dlocal \'%s %%r\'"\n' % (two, tempfail, tempfail)})
    n.start()
    for src in ("127.0.0.1", "127.0.0.31", "127.0.0.32", "127.0.0.33"):
        s = greeted(n, src)
        assert send(s, "someone@example.com", ["alice@example.com"])["end"].startswith("250")
        s.close()
    wait_for(lambda: "one alice@example.com" in open(out1).read(), timeout=30, what="one")
    wait_for(lambda: "two alice@example.com" in open(out2).read(), timeout=30, what="two")
    assert open(out1).read().count("alice") == 1
    # Max_attempts 1: the first temporary failure is the last
    wait_for(lambda: "giving up after 1 attempts" in n.log("summary"), timeout=30,
             what="Max_attempts 1 applied")
    wait_for(lambda: n.log("summary").count("deferred to=<alice@example.com>") >= 1,
             timeout=30, what="the other one deferred")
    log = n.log()
    assert "settings from the connection:" in log and "Max_attempts=1" in log
    assert "two.sh %r" in log


def test_def_queue_path_spool_and_delivery_from_there(nodes, workdir):
    alt = os.path.join(workdir, "alt-spool")
    n, out1 = delivering_node(nodes, workdir, {
        "from": 'From? "bulk@remote.test" Def! "Queue_path \'%s\'"' % alt},
        options={"Immed_delivery": 0, "Qsleep_time": 3600})
    n.start()
    assert os.path.isdir(alt), "the node made the directory a rule names"
    s = greeted(n)
    r = send(s, "bulk@remote.test", ["alice@example.com"])
    assert r["end"].startswith("250")
    qid = r["end"].split()[2]
    assert [f for f in os.listdir(alt) if f.startswith("l")] == ["l" + qid]
    assert n.queue_files() == []
    # a Def! of a transaction's event lasts for that transaction
    r = send(s, "other@remote.test", ["bob@example.com"])
    assert r["end"].startswith("250") and len(n.queue_files()) == 1
    listing = subprocess.run([selortest.SELORCTL, "-c", n.conf, "queue"], capture_output=True,
                             text=True, env=n.env(), timeout=30).stdout
    assert qid in listing, listing
    rc = subprocess.run([selortest.SELORCTL, "-c", n.conf, "flush"], capture_output=True,
                        text=True, env=n.env(), timeout=30)
    assert rc.returncode == 0, rc.stderr
    wait_for(lambda: "one alice@example.com" in open(out1).read(), timeout=30,
             what="delivered from the other spool")
    wait_for(lambda: not [f for f in os.listdir(alt) if f.startswith(("l", "c"))],
             timeout=30, what="the other spool emptied")


def test_delivery_events(nodes, workdir, procs):
    qend_out = os.path.join(workdir, "qend.out")
    open(qend_out, "w").close()
    os.chmod(qend_out, 0o666)
    rec = write(os.path.join(workdir, "rec.sh"), '#!/bin/sh\necho "$@" >> %s\n' % qend_out)
    os.chmod(rec, 0o755)
    n, out1 = delivering_node(nodes, workdir, {
        "connection": 'Ip? "127.0.0.1" Add_hits! "3"',
        "qstart_process": 'From? "hold@remote.test" Defer!\n'
                          'From? "nope@example.com" Reply! "550 5.7.1 Not by policy" Deny!\n',
        "error_report": 'From? "quiet@example.com" Deny!\n',
        "qend_process": 'Exec! "%s end %%d hits=%%H"\n' % rec})
    n.start()
    s = greeted(n)
    ids = {}
    for sender in ("hold@remote.test", "nope@example.com", "quiet@example.com",
                   "someone@example.com"):
        r = send(s, sender, ["alice@example.com"])
        ids[sender] = r["end"].split()[2]
    wait_for(lambda: "one alice@example.com" in open(out1).read(), timeout=30,
             what="ordinary delivery")
    wait_for(lambda: "deferred by Event.qstart_process" in n.log("summary"), timeout=30,
             what="qstart Defer!")
    assert ids["hold@remote.test"] in n.queue_files()
    wait_for(lambda: "Not by policy" in n.log("summary"), timeout=30, what="qstart Deny!")
    wait_for(lambda: "end %s hits=3" % ids["someone@example.com"] in open(qend_out).read(),
             timeout=30, what="qend Exec!, with the connection's hits from the l file")
    wait_for(lambda: "one nope@example.com" in open(out1).read(), timeout=30,
             what="the report of the refused message, to its sender")
    # someone's and quiet's messages only: held and refused mail was not delivered
    assert open(out1).read().count("alice") == 2


def test_error_report_deny_sends_no_report(nodes, workdir):
    tempfail, _ = mda(workdir, "perm", 'echo "gone" >&2; exit 67')
    n, _ = delivering_node(nodes, workdir, {
        "error_report": 'From? "quiet@example.com" Deny!\n'},
        options={"Dlocal": tempfail + " %r"})
    n.start()
    s = greeted(n)
    assert send(s, "quiet@example.com", ["alice@example.com"])["end"].startswith("250")
    assert send(s, "someone@example.com", ["bob@example.com"])["end"].startswith("250")
    wait_for(lambda: "no report to=<alice@example.com> (Event.error_report)" in
             n.log("summary"), timeout=30, what="no report")
    wait_for(lambda: "queued to=<someone@example.com>" in n.log("summary"), timeout=30,
             what="the other one reported")
    assert "queued to=<quiet@example.com>" not in n.log("summary")


def test_data_event_program_reads_the_message(nodes, workdir):
    scan = write(os.path.join(workdir, "scan.sh"),
                 '#!/bin/sh\n# last argument: the message file\n'
                 'for f; do :; done\ngrep -q EICAR-TEST "$f" && { echo "found EICAR"; exit 0; }\n'
                 'exit 1\n')
    os.chmod(scan, 0o755)
    n = rules_node(nodes, {"data": 'Exec? "%s" Reply! "554 Virus: %%X" Deny!' % scan}).start()
    s = greeted(n)
    big = b"Subject: big\r\n\r\n" + (b"y" * 900 + b"\r\n") * 600   # past the spool's buffer
    r = send(s, "a@remote.test", ["alice@example.com"], body=big + b"EICAR-TEST\r\n")
    assert r["end"] == "554 5.7.1 Virus: found EICAR\r\n", r
    r = send(s, "a@remote.test", ["alice@example.com"], body=big)
    assert r["end"].startswith("250"), r
    assert len(n.queue_files()) == 1


def test_dl_rcpt_sees_each_remote_answer(nodes, workdir, procs):
    sink_ip = selortest.loopback_addr()
    procs.sink(sink_ip, 25, ["--rcpt-rule", "full@remote.test=452",
                             "--rcpt-rule", "odd@remote.test=550"])
    dns = procs.dns(mx={"remote.test": [(10, "mx.remote.test")]},
                    hosts={"mx.remote.test": sink_ip})
    passwd = selortest.DEFAULT_PASSWD + "".join(
        "%s.fwd@example.com:{ALIAS}%s@remote.test\n" % (u, u) for u in ("ok", "full", "odd"))
    n = rules_node(nodes, {"dl_rcpt": 'Log! "answer for %r: %T"\n'
                           'To? "full@remote.test" Reply! "552 5.2.2 Full for good here" '
                           'Deny!\nTo? "odd@remote.test" Defer!\n'},
                   options={"Dns_servers": dns.server, "Immed_delivery": 2,
                            "Connect_timeout": 5, "Timeout": 10}, passwd=passwd).start()
    s = greeted(n)
    r = send(s, "someone@example.org", ["ok.fwd@example.com", "full.fwd@example.com",
                                          "odd.fwd@example.com"])
    assert r["end"].startswith("250")
    wait_for(lambda: "delivered to=<ok@remote.test>" in n.log("summary"), timeout=30,
             what="delivery")
    wait_for(lambda: "failed to=<full@remote.test>" in n.log("summary"), timeout=30,
             what="452 made permanent")
    assert "Full for good here" in n.log("summary")
    wait_for(lambda: "deferred to=<odd@remote.test>" in n.log("summary"), timeout=30,
             what="550 made temporary")
    w = n.log("warning")
    assert "answer for ok@remote.test: 250" in w and "answer for full@remote.test: 452" in w


def test_from_accept_takes_an_unknown_domain(nodes, procs):
    dns = procs.dns(mx={"known.test": [(10, "mx.known.test")]})
    n = rules_node(nodes, {"from": 'From? "*@partner-nodns.test" Accept!'},
                   options={"Dns_servers": dns.server, "From_level_check": 1}).start()
    s = greeted(n)
    assert cmd(s, b"MAIL FROM:<a@other-nodns.test>").startswith("553")
    assert cmd(s, b"MAIL FROM:<a@partner-nodns.test>").startswith("250")
    # never a relay
    assert cmd(s, b"RCPT TO:<x@remote.test>").startswith("550")
    assert cmd(s, b"RCPT TO:<alice@example.com>").startswith("250")


def test_sighup_reads_the_rules_at_once(nodes, workdir):
    path = write(os.path.join(workdir, "helo.rules"), 'Helo? "one.test" Reply! "550 One" Deny!\n')
    n = rules_node(nodes, {"helo": path}).start()
    s = connect(n)
    s.reply()
    assert cmd(s, b"EHLO one.test") == "550 5.7.1 One\r\n"
    write(path, 'Helo? "two.test" Reply! "550 Two" Deny!\n')
    os.kill(n.proc.pid, 1)   # SIGHUP
    t0 = time.time()

    def two():
        c = connect(n)
        c.reply()
        r = cmd(c, b"EHLO two.test")
        c.close()
        return r == "550 5.7.1 Two\r\n"
    wait_for(two, timeout=5, what="the rules after SIGHUP")
    assert time.time() - t0 < 1.5


def test_selorctl_nodes_shows_each_nodes_rules(nodes, procs):
    redis = procs.redis()
    a = nodes(options={"Redis_server": redis.server, "Event.from": 'From? "a@b" Deny!'}).start()
    b = nodes(options={"Redis_server": redis.server, "Event.from": 'From? "c@d" Deny!'}).start()

    def rows():
        r = subprocess.run([selortest.SELORCTL, "-c", a.conf, "nodes"], capture_output=True,
                           text=True, env=a.env(), timeout=30)
        return {line.split()[0]: line.split()[-1] for line in r.stdout.splitlines()[1:]
                if line.strip()}
    wait_for(lambda: rows().get("n1", "-") != "-" and rows().get("n2", "-") != "-",
             timeout=20, what="both nodes' rules in the heartbeat")
    got = rows()
    assert got["n1"] != got["n2"] and len(got["n1"]) == 16, got


def test_def_modseq_naming_a_module_not_loaded_is_a_load_error(nodes, workdir):
    path = write(os.path.join(workdir, "c.rules"), 'Ip? "10.1.1.1" Def! "Modseq_auth \'ldap mysql\'"\n')
    n = nodes(options={"Event.connection": path})
    rc, out = n.check()
    assert rc == 1 and "%s:1:16: Def!: Modseq_auth names a module that is not loaded: ldap" \
        % path in out, out
    write(path, 'Ip? "10.1.1.1" Def! "Modseq_auth \'passwd\'"\n')
    rc, out = n.check()
    assert rc == 0, out


def test_delay_is_a_timer_not_a_sleep(nodes):
    n = rules_node(nodes, {"rcpt": 'Ip? "127.0.0.51" Delay! "2"'}).start()
    s = greeted(n, "127.0.0.51")
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    t0 = time.time()
    s.sendall(b"RCPT TO:<alice@example.com>\r\n")
    other = greeted(n, "127.0.0.1")
    assert cmd(other, b"MAIL FROM:<b@remote.test>").startswith("250")
    assert cmd(other, b"RCPT TO:<bob@example.com>").startswith("250")
    assert time.time() - t0 < 1.5, "another client is served meanwhile"
    assert s.reply().startswith(b"250")
    assert time.time() - t0 >= 1.9


def test_client_leaving_while_rules_wait(nodes, workdir, procs):
    """A client that leaves while a rule waits (a program, a DNS answer that
    does not come) cancels what its rules asked: no late answer reaches the
    gone session (the sanitizers would say), the program is killed, and
    the node goes on serving."""
    marker = os.path.join(workdir, "still-running")
    slow = write(os.path.join(workdir, "slow.sh"),
                 "#!/bin/sh\nsleep 3\ntouch %s\nexit 0\n" % marker)
    os.chmod(slow, 0o755)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a DNS server that never answers
    silent.bind(("127.0.0.1", 0))
    n = rules_node(nodes, {"rcpt": 'Exec? "%s" Deny!' % slow,
                           "connection": 'Ip? "127.0.0.61" Rbl? "dnsbl.test" Deny!'},
                   options={"Dns_servers": "127.0.0.1:%d" % silent.getsockname()[1]}).start()
    for _ in range(3):
        s = greeted(n)
        assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
        s.sendall(b"RCPT TO:<alice@example.com>\r\n")
        time.sleep(0.2)
        s.close()
        c = connect(n, "127.0.0.61")
        time.sleep(0.2)
        c.close()
    time.sleep(3.5)
    assert not os.path.exists(marker), "the program of a gone session was killed"
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"MAIL FROM:<b@remote.test>").startswith("250")
    silent.close()


def test_def_modseq_auth_for_one_address(nodes):
    """Def! "Modseq_auth '...'": which modules check a login, per client."""
    mods = [os.path.join(selortest.MOD_DIR, "selor_passwd.so"),
            os.path.join(selortest.TESTMOD_DIR, "selor_slow.so")]
    n = rules_node(nodes, {"connection": 'Ip? "127.0.0.71" Def! "Modseq_auth \'slow\'"'},
                   options={"Module": mods, "Slow_domains": "slow.test", "Slow_delay_ms": 10,
                            "Auth_plaintext": 1, "Incorrect_pass_delay": 0,
                            "Modseq_auth": "passwd"}).start()
    s = greeted(n, "127.0.0.1")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("235")
    s = greeted(n, "127.0.0.71")
    assert cmd(s, b"AUTH PLAIN " + plain("alice@example.com", "alicepw")).startswith("535")


def test_stop_while_a_delivery_event_waits(nodes, workdir):
    """The node stops while Event.qstart_process waits for a program: when
    the queue process's grace (15 s) is over the run is stopped, its wait
    cancelled and the program killed (not waited for: 40 s), the message
    stays queued, and it is delivered after a restart."""
    slow = write(os.path.join(workdir, "slow.sh"), "#!/bin/sh\nsleep 40\nexit 1\n")
    os.chmod(slow, 0o755)
    n, out1 = delivering_node(nodes, workdir, {"qstart_process": 'Exec? "%s" Defer!\n' % slow},
                              options={"Rules_exec_timeout": 60})
    n.start()
    s = greeted(n)
    qid = send(s, "someone@example.com", ["alice@example.com"])["end"].split()[2]
    s.close()
    wait_for(lambda: "slow.sh" in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                 text=True).stdout,
             timeout=10, what="the program running")
    t0 = time.time()
    assert n.stop(timeout=60) == 0
    assert time.time() - t0 < 25, "the stop did not wait for the program"
    assert "sleep 40" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                            text=True).stdout
    assert qid in n.queue_files()
    write(os.path.join(n.dir, "..", "rules", "qstart_process.rules"), "# nothing now\n")
    n.start()
    wait_for(lambda: "one alice@example.com" in open(out1).read(), timeout=30,
             what="delivered after the restart")


def test_reload_while_a_delivery_event_waits(nodes, workdir):
    """The rules change (SIGHUP) while a delivery run's event waits for its
    program: the run finishes on the rules it started with (nothing freed
    under it: the sanitizers would say), later runs use the new ones."""
    slow = write(os.path.join(workdir, "slow.sh"), "#!/bin/sh\nsleep 2\nexit 0\n")
    os.chmod(slow, 0o755)
    n, out1 = delivering_node(nodes, workdir, {
        "qstart_process": 'Exec? "%s" Log! "old rules for %%d"\n' % slow})
    n.start()
    s = greeted(n)
    qid = send(s, "someone@example.com", ["alice@example.com"])["end"].split()[2]
    wait_for(lambda: "slow.sh" in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                 text=True).stdout,
             timeout=10, what="the program running")
    write(os.path.join(nodes.base, "rules", "qstart_process.rules"), 'Log! "new rules for %d"\n')
    os.kill(n.proc.pid, 1)
    wait_for(lambda: "old rules for %s" % qid in n.log("warning"), timeout=15,
             what="the waiting run finished on its rules")
    wait_for(lambda: "one alice@example.com" in open(out1).read(), timeout=15, what="delivery")
    qid2 = send(s, "someone@example.com", ["bob@example.com"])["end"].split()[2]
    wait_for(lambda: "new rules for %s" % qid2 in n.log("warning"), timeout=15,
             what="the next run on the new rules")
