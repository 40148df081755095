"""Bad input gets an SMTP error, never a crash or a hang: random bytes,
overlong and broken commands, garbage inside DATA, abrupt disconnects.
The fixture fails the test if any process wrote a sanitizer report."""
import random
import socket

from selortest import wait_for

WORDS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP",
         b"QUIT", b"VRFY", b"HELP", b"BDAT", b"AUTH", b"STARTTLS", b"<", b">", b"@",
         b"\r\n", b"\n", b"\r", b".", b"\x00", b"\xff", b" ", b"SIZE=", b"BODY=8BITMIME",
         b"alice@example.com", b"\"q\\\"uoted\"@example.com", b"@a,@b:c@d"]


def garbage(rng, n):
    out = b""
    while len(out) < n:
        if rng.random() < 0.5:
            out += rng.choice(WORDS)
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    return out


def test_random_sessions_do_not_hurt(node):
    rng = random.Random(20261125)
    for i in range(500):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        try:
            s.recv(512)
            for _ in range(rng.randrange(1, 6)):
                s.sendall(garbage(rng, rng.randrange(1, 3000)))
            if rng.random() < 0.5:
                s.settimeout(0.2)
                try:
                    s.recv(65536)
                except OSError:
                    pass
        except OSError:
            pass   # the node may hang up on us: that is allowed
        finally:
            s.close()
    # still serving, and a normal message goes through
    with node.smtp() as c:
        c.sendmail("a@remote.test", ["alice@example.com"], "Subject: after\r\n\r\nok\r\n")
    assert len(node.children()) == 3, "a process died"


def test_garbage_inside_data(node):
    rng = random.Random(7)
    for i in range(40):
        c = node.open_data()
        body = garbage(rng, rng.randrange(1, 20000)).replace(b"\r\n.\r\n", b"")
        c.sendall(body + b"\r\n.\r\n")
        r = c.reply()
        assert r[:3] in (b"250", b"554", b"552"), r
        c.close()
    assert len(node.children()) == 3


def test_disconnect_at_every_stage(node):
    stages = [b"", b"EHLO x.test\r\n", b"EHLO x.test\r\nMAIL FROM:<a@remote.test>\r\n",
              b"EHLO x.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.com>\r\n",
              b"EHLO x.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.com>\r\n"
              b"DATA\r\nSubject: cut\r\n\r\npartial"]
    for st in stages * 5:
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        s.sendall(st)
        s.close()
    wait_for(lambda: node.log("selor").count("disconnect") >= len(stages) * 5,
             what="every session closed")
    assert node.queue_files("l") == []
    assert len(node.children()) == 3
