"""The relay decision: local mailboxes must exist, nothing else relays."""
import time

from selortest import recv_reply, wait_for


def rcpt(node, addr, frm=b"a@remote.test"):
    s = node.connect()
    s.sendall(b"EHLO relay.test\r\n")
    recv_reply(s)
    s.sendall(b"MAIL FROM:<" + frm + b">\r\n")
    assert recv_reply(s).startswith(b"250")
    t = time.monotonic()
    s.sendall(b"RCPT TO:<" + addr + b">\r\n")
    r = recv_reply(s).decode()
    took = time.monotonic() - t
    s.close()
    return r, took


def test_remote_domain_is_refused(node):
    r, _ = rcpt(node, b"someone@elsewhere.test")
    assert r == "550 5.7.1 Relay denied\r\n"
    wait_for(lambda: "relay: someone@elsewhere.test" in node.log("refused"),
             what="the refusal logged")


def test_relay_tricks_are_refused(node):
    for trick in (b"someone%elsewhere.test@example.com",
                  b"@example.com:someone@elsewhere.test",
                  b"someone@elsewhere.test@example.com",
                  b"\"someone@elsewhere.test\"@example.com",
                  b"someone!elsewhere.test@example.com"):
        r, _ = rcpt(node, trick)
        assert r[:3] in ("550", "501", "553"), (trick, r)
    assert node.queue_files("l") == []


def test_unknown_local_mailbox_after_delay(nodes):
    n = nodes(options={"No_mailbox_delay": 2,
                       "Msg_no_mailbox": "550 Nobody by that name"}).start()
    r, took = rcpt(n, b"nobody@example.com")
    assert r == "550 5.1.1 Nobody by that name\r\n"
    assert took >= 1.9
    wait_for(lambda: "no mailbox: nobody@example.com" in n.log("refused"),
             what="the refusal logged")


def test_delay_does_not_stall_other_sessions(nodes):
    n = nodes(options={"No_mailbox_delay": 3, "Smtp_workers": 1}).start()
    slow = n.connect()
    slow.sendall(b"EHLO a.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.com>\r\n")
    recv_reply(slow)
    recv_reply(slow)
    t = time.monotonic()
    r, _ = rcpt(n, b"alice@example.com")
    assert r.startswith("250")
    assert time.monotonic() - t < 2.5
    assert recv_reply(slow).startswith(b"550")
    slow.close()


def test_case_of_local_addresses(node):
    r, _ = rcpt(node, b"Alice@EXAMPLE.com")
    assert r.startswith("250")


def test_bad_domain_syntax(node):
    r, _ = rcpt(node, b"a@exa..mple.com")
    assert r.startswith("553 5.1.2 Invalid domain: exa..mple.com") or r.startswith("501"), r


def test_bare_name_without_df_domain_is_refused(node):
    r, _ = rcpt(node, b"alice")
    assert r.startswith("553 5.1.3 Invalid domain:"), r


def test_bare_name_with_df_domain(nodes):
    n = nodes(options={"Df_domain": "example.com"}).start()
    r, _ = rcpt(n, b"alice")
    assert r.startswith("250"), r
