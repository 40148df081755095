"""SMTP smuggling: only CR LF . CR LF ends a message.

A bare LF or a bare CR around a dot must neither end the message nor let
the text after it be taken as commands (which would queue a second,
forged message).
"""
import pytest

from selortest import recv_reply

ATTEMPTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("terminator", ATTEMPTS, ids=lambda t: repr(t))
def test_fake_terminator_does_not_split(node, terminator):
    s = node.open_data()
    smuggled = (b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                b"DATA\r\nSubject: forged\r\n\r\nforged\r\n")
    s.sendall(b"Subject: outer\r\n\r\nouter" + terminator + smuggled + b".\r\n")
    reply = recv_reply(s).decode()
    assert "Msg accepted" in reply, reply
    s.sendall(b"QUIT\r\n")
    assert recv_reply(s).startswith(b"221")
    s.close()
    ids = node.queue_files("l")
    assert len(ids) == 1, ids
    content = node.read_content(ids[0])
    assert b"Subject: forged" in content   # it stayed inside the one message
    assert b"bob@example.com" not in node.read_qf(ids[0]).encode()


def test_dot_stuffing_is_undone(node):
    s = node.open_data()
    s.sendall(b"Subject: dots\r\n\r\n..leading dot\r\n...\r\nend\r\n.\r\n")
    assert b"Msg accepted" in recv_reply(s)
    s.close()
    content = node.read_content(node.queue_files("l")[0])
    assert content.endswith(b"\n\n.leading dot\n..\nend\n")
