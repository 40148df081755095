"""Every limit a client can hit is answered with its Msg_* text.

The node runs with its own reply texts, so a reply can only have come
from the option.
"""
import time

import pytest

from selortest import recv_reply, recv_replies, wait_for

TEXTS = {
    "Msg_toomany_rcpts": "452 Too many recipients here",
    "Msg_mail_toobig": "552 That is too big for us",
    "Msg_header_toobig": "554 Header section too big here",
    "Msg_perm_deny": "421 Go away for now",
    "Msg_invalid_param": "501 Bad parameter here",
    "Msg_invalid_cmd": "500 Unknown or too long here",
    "Msg_transaction_falied": "554 Transaction failed here",
    "Msg_allowed_rcpt": "250 Recipient fine",
}


@pytest.fixture
def limited(nodes):
    opts = dict(TEXTS)
    opts.update({"Max_rcpts": 3, "Max_mail_size": 4096, "Max_header_size": 512,
                 "Max_msgs_per_cnx": 2, "Timeout": 3, "Proto_level_check": 1})
    return nodes(options=opts).start()


def session(node):
    s = node.connect()
    s.sendall(b"EHLO limits.test\r\n")
    recv_reply(s)
    return s


def cmd(s, line):
    s.sendall(line + b"\r\n")
    return recv_reply(s).decode()


def test_max_rcpts(limited):
    s = session(limited)
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    for rcpt in (b"alice", b"bob", b"team"):
        assert cmd(s, b"RCPT TO:<%s@example.com>" % rcpt) == "250 2.1.5 Recipient fine\r\n"
    assert cmd(s, b"RCPT TO:<alice@example.com>") == \
        "452 4.5.3 Too many recipients here\r\n"
    s.close()


def test_size_parameter_above_max_mail_size(limited):
    s = session(limited)
    assert cmd(s, b"MAIL FROM:<a@remote.test> SIZE=5000") == \
        "552 5.3.4 That is too big for us\r\n"
    assert cmd(s, b"MAIL FROM:<a@remote.test> SIZE=100").startswith("250")
    s.close()


def test_real_size_above_max_mail_size(limited):
    s = session(limited)
    cmd(s, b"MAIL FROM:<a@remote.test>")
    cmd(s, b"RCPT TO:<alice@example.com>")
    assert cmd(s, b"DATA").startswith("354")
    s.sendall(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100 + b".\r\n")
    assert recv_reply(s).decode() == "552 5.3.4 That is too big for us\r\n"
    # the session goes on, and nothing was queued
    assert cmd(s, b"NOOP").startswith("250")
    s.close()
    assert limited.queue_files("l") == [] and limited.queue_files("c") == []


def test_header_above_max_header_size(limited):
    s = session(limited)
    cmd(s, b"MAIL FROM:<a@remote.test>")
    cmd(s, b"RCPT TO:<alice@example.com>")
    cmd(s, b"DATA")
    s.sendall(b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(10)) +
              b"\r\nbody\r\n.\r\n")
    assert recv_reply(s).decode() == "554 5.6.0 Header section too big here\r\n"
    s.close()
    assert limited.queue_files("l") == []


def test_max_msgs_per_cnx(limited):
    s = session(limited)
    for i in range(2):
        cmd(s, b"MAIL FROM:<a@remote.test>")
        cmd(s, b"RCPT TO:<alice@example.com>")
        cmd(s, b"DATA")
        s.sendall(b"Subject: %d\r\n\r\nx\r\n.\r\n" % i)
        assert "Msg accepted" in recv_reply(s).decode()
    assert cmd(s, b"MAIL FROM:<a@remote.test>") == "421 4.7.0 Go away for now\r\n"
    assert s.recv(100) == b""  # closed after the 421
    s.close()


def test_idle_timeout(limited):
    s = session(limited)
    start = time.monotonic()
    assert recv_reply(s, timeout=20).decode() == "421 4.4.2 Go away for now\r\n"
    assert time.monotonic() - start >= 2.5
    assert s.recv(100) == b""
    s.close()
    wait_for(lambda: "timeout in state command" in limited.log("selor"),
             what="timeout logged")


def test_timeout_in_data_leaves_nothing(limited):
    s = session(limited)
    cmd(s, b"MAIL FROM:<a@remote.test>")
    cmd(s, b"RCPT TO:<alice@example.com>")
    cmd(s, b"DATA")
    s.sendall(b"Subject: never finished\r\n\r\npartial")
    assert recv_reply(s, timeout=20).startswith(b"421 ")
    s.close()
    assert limited.queue_files("l") == [] and limited.queue_files("c") == []
    import os
    wait_for(lambda: os.listdir(limited.tmp) == [], what="Temp_path cleaned")


def test_proto_level_check_needs_brackets(limited):
    s = session(limited)
    assert cmd(s, b"MAIL FROM:a@remote.test") == "501 5.5.4 Bad parameter here\r\n"
    assert cmd(s, b"MAIL FROM:<a@remote.test>").startswith("250")
    assert cmd(s, b"RCPT TO:alice@example.com") == "501 5.5.4 Bad parameter here\r\n"
    s.close()


def test_without_proto_level_check_brackets_are_optional(node):
    s = node.connect()
    s.sendall(b"EHLO x.test\r\nMAIL FROM: a@remote.test\r\nRCPT TO: alice@example.com\r\n")
    r = recv_replies(s, 3)
    assert [x[:3] for x in r] == ["250", "250", "250"]
    s.close()


def test_command_line_longer_than_512(limited):
    s = session(limited)
    long_line = b"MAIL FROM:<" + b"a" * 600 + b"@remote.test>"
    assert cmd(s, long_line) == "500 5.5.2 Unknown or too long here\r\n"
    # exactly 512 with CRLF is still a command
    line = b"NOOP " + b"x" * (512 - 7)
    assert len(line) + 2 == 512
    assert cmd(s, line).startswith("250")
    assert cmd(s, line + b"y") == "500 5.5.2 Unknown or too long here\r\n"
    s.close()


def test_text_line_longer_than_1000(limited):
    s = limited.open_data()
    s.sendall(b"Subject: long\r\n\r\n" + b"y" * 1001 + b"\r\n.\r\n")
    assert recv_reply(s).decode() == "554 5.6.0 Transaction failed here\r\n"
    s.close()
    assert limited.queue_files("l") == []


def test_text_line_of_exactly_1000_is_fine(limited):
    s = limited.open_data()
    s.sendall(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
    assert "Msg accepted" in recv_reply(s).decode()
    s.close()


def test_too_many_bad_commands_hang_up(limited):
    s = session(limited)
    s.sendall(b"WHAT\r\n" * 25)
    replies = recv_replies(s, 21)
    assert replies[:20] == ["500 5.5.2 Unknown or too long here\r\n"] * 20
    assert replies[20] == "421 4.7.0 Go away for now\r\n"
    s.close()


def test_unknown_mail_parameter(limited):
    s = session(limited)
    assert cmd(s, b"MAIL FROM:<a@remote.test> FOO=BAR") == "501 5.5.4 Bad parameter here\r\n"
    assert cmd(s, b"MAIL FROM:<a@remote.test> BODY=8BITMIME").startswith("250")
    s.close()
