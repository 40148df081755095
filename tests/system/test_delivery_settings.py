"""Settings a connection's rules left in the l file (version 3 "set"
records, see docs/spool.md) are applied by the delivery run, logged to
Central_log; a bad one is skipped with a warning and the rest still apply.
The l file is written here by hand, as the SMTP session will once the rules
engine sets them: no rules are needed to test the delivery side."""
import os

import selortest
from selortest import parse_lfile, wait_for


def enc(v):
    """A field as the l file writes it (percent-encoded, "-" when empty)."""
    if v == "":
        return "-"
    if v == "-":
        return "%2D"
    out = []
    for b in v.encode():
        out.append("%%%02X" % b if b <= 0x20 or b >= 0x7f or b == 0x25 else chr(b))
    return "".join(out)


def send(node, to):
    with node.smtp() as c:
        c.ehlo("client.test")
        assert c.mail("someone@sender.test")[0] == 250
        assert c.rcpt(to)[0] == 250
        code, msg = c.data("Subject: settings\r\n\r\nhello\r\n")
        assert code == 250, msg
        return msg.decode().split()[1]


def add_records(node, qid, lines):
    """Inserts records before the first rcpt line of qid's l file (the node
    is stopped: nothing else writes it)."""
    path = os.path.join(node.spool, "l" + qid)
    with open(path) as f:
        text = f.read()
    at = text.index("\nrcpt ") + 1
    with open(path, "w") as f:
        f.write(text[:at] + "".join(l + "\n" for l in lines) + text[at:])


def test_settings_from_the_connection_apply_at_delivery(nodes, workdir):
    normal, normal_out = selortest.mda_script(workdir, "cat >> %(out)s", name="normal")
    other, other_out = selortest.mda_script(workdir, "echo \"$1\" >> %(out)s; cat >> %(out)s",
                                            name="other")
    n = nodes(options={"Dlocal": normal + " %l", "Dlocal_type": 0}).start()
    qid = send(n, "alice@example.com")
    recs, _ = parse_lfile(n.read_qf(qid))
    assert recs["hits"] == ["0"] and "set" not in recs
    n.stop()
    add_records(n, qid, [
        "set Dlocal " + enc("%s from-rule-%%l" % other),
        "set Max_attempts 1",
        "set No_such_option 1",
        "set Queue_time " + enc("not a number"),
    ])
    n.options["Immed_delivery"] = 2   # the start's scan makes it due at once
    n.start()
    wait_for(lambda: "hello" in open(other_out).read(), timeout=30,
             what="the MDA the connection chose")
    assert "from-rule-alice" in open(other_out).read()
    assert open(normal_out).read() == ""
    wait_for(lambda: qid not in n.queue_files("l"), what="removed")
    central = n.log("selor")
    assert ("%s" % qid) in central
    line = [l for l in central.splitlines() if "settings from the connection" in l]
    assert len(line) == 1, central
    assert qid in line[0]
    assert 'Dlocal="%s from-rule-%%l"' % other in line[0]
    assert "Max_attempts=1" in line[0]
    assert "No_such_option" not in line[0] and "Queue_time" not in line[0]
    warn = n.log("warning")
    assert "setting No_such_option=\"1\" from the connection is skipped" in warn
    assert "setting Queue_time=\"not a number\" from the connection is skipped" in warn


def test_max_attempts_from_the_connection(nodes, workdir):
    """Max_attempts 1 from the connection: a temporary failure is final at
    the first try (the node's own Max_attempts would retry)."""
    mda, _ = selortest.mda_script(workdir, "cat >/dev/null; echo busy >&2; exit 75",
                                  name="busy")
    n = nodes(options={"Dlocal": mda, "Dlocal_type": 0, "Max_attempts": 48}).start()
    qid = send(n, "alice@example.com")
    n.stop()
    add_records(n, qid, ["set Max_attempts 1"])
    n.options["Immed_delivery"] = 2
    n.start()
    wait_for(lambda: "failed to=<alice@example.com>" in n.log("summary"), timeout=30,
             what="the recipient given up at once")
    assert "deferred to=<alice@example.com>" not in n.log("summary")
    assert "Max_attempts=1" in n.log("selor")


def test_malformed_setting_refuses_the_file(nodes, workdir):
    """A v3 file with a malformed set record is refused and left alone."""
    n = nodes().start()
    qid = send(n, "alice@example.com")
    n.stop()
    add_records(n, qid, ["set Dlocal"])
    n.options["Immed_delivery"] = 2
    n.start()
    wait_for(lambda: "queue file %s cannot be used" % qid in n.log("warning"), timeout=30,
             what="the file refused")
    assert "bad set record" in n.log("warning")
    assert qid in n.queue_files("l")
