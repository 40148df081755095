"""A node takes mail for a local mailbox and makes it durable in its spool."""
import re
import subprocess

from selortest import parse_lfile, recv_reply, wait_for

ID_RE = r"\d+(?:_\d+)+"


def send(node, to, frm="sender@remote.test", body="Subject: hi\r\n\r\nhello\r\n"):
    with node.smtp() as s:
        s.ehlo("client.test")
        code, msg = s.docmd("MAIL FROM:<%s>" % frm)
        assert code == 250, msg
        code, msg = s.docmd("RCPT TO:<%s>" % to)
        assert code == 250, msg
        code, msg = s.data(body)
        return code, msg.decode()


def test_accepted_message_is_in_the_spool(node):
    code, msg = send(node, "alice@example.com")
    assert code == 250
    m = re.match(r"2\.0\.0 (%s) Msg accepted$" % ID_RE, msg)
    assert m, msg
    qid = m.group(1)
    assert node.queue_files("l") == [qid]
    assert node.queue_files("c") == [qid]
    recs, rcpts = parse_lfile(node.read_qf(qid))
    assert recs["id"] == [qid]
    assert recs["sid"] == ["n1"]
    assert recs["from"] == ["sender@remote.test"]
    assert recs["end"] == ["1"]
    assert rcpts == [["P", "0", "0", "alice@example.com", "alice@example.com", "-",
                      "mailbox:passwd"]]
    content = node.read_content(qid)
    assert int(recs["size"][0]) == len(content)
    assert content.startswith(b"Received: from client.test (unknown [127.0.0.1])\n")
    assert b"by mx.n1.test (Selor) with ESMTP id " + qid.encode() in content
    assert b"for <alice@example.com>;" in content
    assert content.endswith(b"Subject: hi\n\nhello\n")
    assert b"\r" not in content
    # nothing is left behind in Temp_path
    assert [n for n in __import__("os").listdir(node.tmp)] == []


def test_summary_and_central_logs(node):
    code, msg = send(node, "bob@example.com")
    qid = msg.split()[1]
    wait_for(lambda: "accepted from=" in node.log("summary"), what="summary line")
    summary = node.log("summary")
    assert re.search(r" n1 %s smtp\[\d+\] accepted from=<sender@remote.test> "
                     r"to=<bob@example.com> size=\d+ bytes=\d+" % qid, summary), summary
    wait_for(lambda: "Msg accepted" in node.log("selor"), what="central log line")
    central = node.log("selor")
    assert "< MAIL FROM:<sender@remote.test>" in central
    assert re.search(r" n1 %s smtp\[\d+\] c\d+\.\d+ 127.0.0.1 > 250 2.0.0 %s Msg accepted"
                     % (qid, qid), central), central


def test_alias_expands_to_its_targets(node):
    code, msg = send(node, "team@example.com")
    assert code == 250
    qid = msg.split()[1]
    recs, rcpts = parse_lfile(node.read_qf(qid))
    assert sorted(r[3] for r in rcpts) == ["alice@example.com", "bob@example.com"]
    assert {r[4] for r in rcpts} == {"team@example.com"}


def test_postmaster_without_domain(nodes):
    n = nodes(options={"Postmaster": "postmaster@example.com"}).start()
    code, msg = send(n, "Postmaster")
    assert code == 250
    recs, rcpts = parse_lfile(n.read_qf(msg.split()[1]))
    assert rcpts[0][3] == "alice@example.com"


def test_swaks_delivers_to_demo_style_mailbox(node):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % node.port,
                        "--to", "alice@example.com", "--from", "x@remote.test",
                        "--helo", "swaks.test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"<-  250 2\.0\.0 (%s) Msg accepted" % ID_RE, r.stdout)
    assert m, r.stdout
    assert node.queue_files("l") == [m.group(1)]


def test_unique_ids_across_two_nodes_on_one_spool(nodes, workdir):
    a = nodes("a", sid="mx1")
    b = nodes("b", sid="mx2", options={"Queue_path": a.spool, "Temp_path": a.tmp})
    a.start()
    b.start()
    ids = set()
    for n in (a, b):
        for _ in range(20):
            code, msg = send(n, "alice@example.com")
            assert code == 250
            ids.add(msg.split()[1])
    assert len(ids) == 40
    assert set(a.queue_files("l")) == ids


def test_greeting_and_ehlo(node):
    s = node.connect()
    s.sendall(b"EHLO me.test\r\n")
    r = recv_reply(s).decode()
    assert r.splitlines() == ["250-mx.n1.test", "250-PIPELINING", "250-SIZE 10485760",
                              "250-8BITMIME", "250 ENHANCEDSTATUSCODES"]
    s.sendall(b"VRFY alice\r\n")
    assert recv_reply(s).startswith(b"252 ")
    s.sendall(b"HELP\r\n")
    assert recv_reply(s).startswith(b"214 ")
    s.sendall(b"NOOP\r\n")
    assert recv_reply(s) == b"250 2.0.0 Ok\r\n"
    s.sendall(b"QUIT\r\n")
    assert recv_reply(s) == b"221 2.0.0 Ok\r\n"
    s.close()


def test_helo_gets_no_enhanced_codes(node):
    s = node.connect()
    s.sendall(b"HELO me.test\r\nMAIL FROM:<a@remote.test>\r\n")
    assert recv_reply(s) == b"250 mx.n1.test\r\n"
    assert recv_reply(s) == b"250 Sender allowed\r\n"
    s.close()


def test_queue_listing_with_selorctl(node):
    import selortest
    code, msg = send(node, "alice@example.com")
    qid = msg.split()[1]
    r = subprocess.run([selortest.SELORCTL, "-c", node.conf, "queue"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert qid in r.stdout
    assert "<alice@example.com>" in r.stdout
    assert "-- 1 message(s)" in r.stdout


def test_mail_needs_helo_and_order(node):
    s = node.connect()
    s.sendall(b"MAIL FROM:<a@remote.test>\r\n")
    assert recv_reply(s) == b"503 Invalid sequence\r\n"
    s.sendall(b"EHLO x.test\r\n")
    recv_reply(s)
    s.sendall(b"RCPT TO:<alice@example.com>\r\n")
    assert recv_reply(s) == b"503 5.5.1 Invalid sequence\r\n"
    s.sendall(b"DATA\r\n")
    assert recv_reply(s) == b"503 5.5.1 Invalid sequence\r\n"
    s.sendall(b"BOGUS\r\n")
    assert recv_reply(s) == b"500 5.5.2 Invalid command\r\n"
    s.close()
    wait_for(lambda: "disconnect" in node.log("selor"), what="disconnect logged")
