"""Operating the queue (issue 11): `selorctl flush` once for a cluster, not
once per node, and `selorctl queue --summary` (counts by state, age and
destination domain, like Postfix's qshape)."""
import os
import re
import subprocess
import threading

from selortest import SELORCTL, wait_for
from test_cluster import Cluster, all_delivered_once, send_many


def ctl(node, *args):
    r = subprocess.run([SELORCTL, "-c", node.conf] + list(args), capture_output=True,
                       text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def flushed_lines(node):
    return [l for l in node.log("warning").splitlines() + node.log().splitlines()
            if "flushed by the operator" in l]


def test_flush_on_every_node_walks_the_spool_once(nodes, procs):
    cl = Cluster(nodes, procs, n=3, options={"Immed_delivery": 0, "Qsleep_time": 3600})
    cl.wait_startup_pause()
    send_many(cl, 30)
    wait_for(lambda: len(cl.queued()) == 30, timeout=30, what="30 queued messages")
    # an operator's cron runs a flush on every node at the same time
    results = {}

    def flush(n):
        results[n.name] = ctl(n, "flush")
    threads = [threading.Thread(target=flush, args=(n,)) for n in cl.members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r[0] == 0 for r in results.values()), results
    walked = [name for name, r in results.items() if "not repeated" not in r[1]]
    assert len(walked) == 1, results
    others = [r[1] for name, r in results.items() if name not in walked]
    assert all(re.search(r"node mx\d (started|finished) the cluster's flush", o)
               for o in others), others
    missing, doubled = all_delivered_once(cl, 0, 30, timeout=120)
    assert missing == [] and doubled == {}
    counts = {n.name: len(flushed_lines(n)) for n in cl.members}
    assert counts[walked[0]] == 30 and sum(counts.values()) == 30, counts
    # shortly after, a flush elsewhere is still not repeated ...
    code, out, err = ctl(cl.members[1], "flush")
    assert code == 0 and "finished the cluster's flush" in out, out + err
    # ... and once the quiet period is over, it runs again (nothing queued)
    cl.redis.cmd("DEL", "selor:flush")
    code, out, err = ctl(cl.members[2], "flush")
    assert code == 0 and "not repeated" not in out, out + err


def test_flush_of_one_message_is_never_held_back(nodes, procs):
    cl = Cluster(nodes, procs, n=2, options={"Immed_delivery": 0, "Qsleep_time": 3600})
    cl.wait_startup_pause()
    qid = cl.send(cl.members[0], 0)
    assert ctl(cl.members[0], "flush")[0] == 0          # the cluster's flush
    qid2 = cl.send(cl.members[1], 1)
    code, out, err = ctl(cl.members[1], "flush", qid2)  # one message: always done
    assert code == 0 and "not repeated" not in out, out + err
    missing, doubled = all_delivered_once(cl, 0, 2, timeout=60)
    assert missing == [] and doubled == {} and qid


def test_flush_with_redis_gone_fails_clearly_and_leaves_no_marker(nodes, procs):
    cl = Cluster(nodes, procs, n=1, options={"Immed_delivery": 0, "Qsleep_time": 3600})
    cl.wait_startup_pause()
    cl.send(cl.members[0], 0)
    cl.redis.stop()
    code, out, err = ctl(cl.members[0], "flush")
    assert code == 1 and "coordination (Redis) unavailable" in err, out + err
    cl.redis.start()
    assert cl.redis.cmd("EXISTS", "selor:flush") == "0"
    cl.wait_startup_pause()
    wait_for(lambda: ctl(cl.members[0], "flush")[0] == 0, timeout=30, what="a flush")
    missing, doubled = all_delivered_once(cl, 0, 1, timeout=60)
    assert missing == [] and doubled == {}


def summary_rows(text):
    """The rows of the first queue's table (main)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("queue ") and rows:
            break
        parts = line.split()
        if len(parts) == 13 and parts[1].isdigit():
            rows[parts[0]] = [int(x) for x in parts[1:]]
    return rows


def test_queue_summary_counts_states_domains_and_ages(nodes, procs):
    n = nodes(options={"Immed_delivery": 0, "Qsleep_time": 3600, "Relay_host": "",
                       "Auth_relay": 1}).start()
    ids = []
    for i, rcpts in enumerate([["alice@example.com"], ["alice@example.com", "bob@example.com"],
                               ["alice@example.com"], ["bob@example.com"]]):
        c = n.smtp()
        c.ehlo("client.test")
        c.sendmail("s%d@sender.test" % i, rcpts, "Subject: %d\r\n\r\nbody\r\n" % i)
        c.quit()
    ids = n.queue_files()
    assert len(ids) == 4
    code, out, err = ctl(n, "hold", ids[0])
    assert code == 0, out + err
    # one message is old: 2 hours (its l file says when it was accepted)
    path = os.path.join(n.spool, "l" + ids[1])
    text = open(path).read()
    created = re.search(r"^created (\d+)", text, re.M)
    if created:
        old = int(created.group(1)) - 7200
        open(path, "w").write(text.replace(created.group(0), "created %d" % old, 1))
    code, out, err = ctl(n, "queue", "--summary")
    assert code == 0, out + err
    head = out.splitlines()[0]
    assert head.startswith("queue main: 4 message(s): 3 due, 0 deferred, 1 held"), out
    rows = summary_rows(out)
    assert rows["TOTAL"][0] == 5, out
    assert rows["example.com"][0] == 5, out
    if created:
        # 120 minutes old: the column of 80 to 160 minutes (headed 160)
        assert rows["example.com"][6] == 2, out
    assert "qlimit" in out


def test_queue_summary_escapes_what_clients_chose(nodes):
    n = nodes(options={"Immed_delivery": 0, "Qsleep_time": 3600}).start()
    c = n.smtp()
    c.ehlo("client.test")
    c.sendmail("a@remote.test", ["alice@example.com"], "Subject: x\r\n\r\nbody\r\n")
    c.quit()
    qid = n.queue_files()[0]
    path = os.path.join(n.spool, "l" + qid)
    text = open(path).read().replace("alice@example.com", "alice@exa%1B[31mmple.com")
    open(path, "w").write(text)
    code, out, err = ctl(n, "queue", "--summary")
    assert code == 0, out + err
    assert "\x1b" not in out
    assert "(unprintable)" in out, out
