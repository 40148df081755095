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
