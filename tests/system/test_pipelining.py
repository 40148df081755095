"""Pipelined sessions (RFC 2920): every reply, in order, for whole batches."""
import re

from selortest import recv_replies


def test_several_transactions_in_one_write(node):
    s = node.connect()
    batch = b"EHLO pipe.test\r\n"
    expected = ["250"]
    for i in range(5):
        batch += (b"MAIL FROM:<s%d@remote.test>\r\n"
                  b"RCPT TO:<alice@example.com>\r\n"
                  b"RCPT TO:<nobody@example.com>\r\n"
                  b"RCPT TO:<bob@example.com>\r\n"
                  b"DATA\r\n"
                  b"Subject: %d\r\n\r\nbody %d\r\n.\r\n" % (i, i, i))
        expected += ["250", "250", "550", "250", "354", "250"]
    batch += b"RSET\r\nNOOP\r\nQUIT\r\n"
    expected += ["250", "250", "221"]
    s.sendall(batch)
    replies = recv_replies(s, len(expected))
    s.close()
    codes = [r[:3] for r in replies]
    assert codes == expected, replies
    ids = [re.search(r"(\d+(?:_\d+)+) Msg accepted", r).group(1)
           for r in replies if "Msg accepted" in r]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert sorted(ids) == node.queue_files("l")
    for i, qid in enumerate(ids):
        assert node.read_content(qid).endswith(b"Subject: %d\n\nbody %d\n" % (i, i))


def test_all_replies_come_back_when_recipients_fail(node):
    """With every RCPT refused, DATA is refused and the text that follows
    is taken as commands, each answered in order."""
    s = node.connect()
    s.sendall(b"EHLO pipe.test\r\nMAIL FROM:<a@remote.test>\r\n"
              b"RCPT TO:<x@elsewhere.test>\r\nDATA\r\nNOOP\r\nQUIT\r\n")
    replies = recv_replies(s, 6)
    s.close()
    assert [r[:3] for r in replies] == ["250", "250", "550", "554", "250", "221"]
    assert replies[3] == "554 5.5.1 Transaction error\r\n"


def test_many_commands_in_one_segment_are_not_lost(node):
    s = node.connect()
    n = 300
    s.sendall(b"EHLO x.test\r\n" + b"NOOP\r\n" * n + b"QUIT\r\n")
    replies = recv_replies(s, n + 2)
    s.close()
    assert len(replies) == n + 2
    assert all(r == "250 2.0.0 Ok\r\n" for r in replies[1:-1])
    assert replies[-1].startswith("221")
