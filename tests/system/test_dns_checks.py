"""SMTP-time DNS checks: From_level_check (the sender's domain must exist,
or have MX records) and Resolve_all (the client's reverse name, confirmed by
its addresses, in the Received header)."""
import pytest

from selortest import recv_reply, wait_for

MX = {"remote.test": [(10, "mx.remote.test")]}
HOSTS = {"mx.remote.test": "127.0.0.9", "plain.test": "127.0.0.10"}


def mail_reply(node, sender):
    s = node.connect()
    s.sendall(b"EHLO dns.test\r\n")
    recv_reply(s)
    s.sendall(b"MAIL FROM:<%s>\r\n" % sender.encode())
    r = recv_reply(s).decode()
    s.close()
    return r


@pytest.mark.parametrize("level,sender,expect", [
    (1, "a@remote.test", "250"),
    (1, "a@plain.test", "250"),
    (1, "a@nxdomain.test", "553 5.1.8 Invalid domain: nxdomain.test"),
    (2, "a@remote.test", "250"),
    (2, "a@plain.test", "553 5.1.8 Invalid domain: plain.test"),
    (0, "a@nxdomain.test", "250"),
])
def test_from_level_check(nodes, procs, level, sender, expect):
    dns = procs.dns(mx=MX, hosts=HOSTS)
    n = nodes(options={"Dns_servers": dns.server, "From_level_check": level}).start()
    assert mail_reply(n, sender).startswith(expect)


def test_null_sender_is_not_checked(nodes, procs):
    dns = procs.dns(mx=MX, hosts=HOSTS)
    n = nodes(options={"Dns_servers": dns.server, "From_level_check": 2}).start()
    assert mail_reply(n, "").startswith("250")


def received_header(node):
    with node.smtp() as c:
        c.sendmail("a@remote.test", ["alice@example.com"], "Subject: x\r\n\r\nx\r\n")
    qid = node.queue_files("l")[0]
    return node.read_content(qid).split(b"\n")[0].decode()


def test_resolve_all_confirmed_name(nodes, procs):
    dns = procs.dns(mx=MX, hosts=dict(HOSTS, **{"client.test": "127.0.0.1"}))
    n = nodes(options={"Dns_servers": dns.server, "Resolve_all": 1}).start()
    assert "(client.test [127.0.0.1])" in received_header(n)
    wait_for(lambda: "reverse name client.test" in n.log("selor"), what="logged")


def test_resolve_all_unconfirmed_name(nodes, procs):
    dns = procs.dns(mx=MX, hosts=HOSTS, ptrs={"127.0.0.1": "liar.test"})
    n = nodes(options={"Dns_servers": dns.server, "Resolve_all": 1}).start()
    assert "(unknown [127.0.0.1])" in received_header(n)
    wait_for(lambda: "not confirmed" in n.log("selor"), what="logged")
