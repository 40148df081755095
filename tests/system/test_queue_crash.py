"""The queue process killed with SIGKILL in the middle of a batch: after its
restart every recipient is delivered, and none that was recorded delivered
is sent again."""
import collections
import os
import signal

from selortest import parse_lfile, process_by_name, wait_for
from test_delivery import World, fwd

N = 200


def snapshot(node):
    """For each message still queued: the states of its recipients."""
    out = {}
    for qid in node.queue_files("l"):
        try:
            recs, rcpts = parse_lfile(node.read_qf(qid))
        except FileNotFoundError:
            continue
        out[qid] = {r[3]: r[0] for r in rcpts}
    return out


def test_sigkill_queue_process_mid_batch(nodes, procs):
    rcpts = ["k%d@remote.test" % i for i in range(N)]
    w = World(nodes, procs, remote=rcpts, sink_args=["--delay-data", "0.03"],
              options={"Immed_delivery": 0, "Qsleep_time": 3600, "Max_qprocs": 8})
    ids = {}
    with w.node.smtp() as c:
        c.ehlo("batch.test")
        for i, r in enumerate(rcpts):
            c.mail("someone@sender.test")
            c.rcpt(fwd(r))
            code, msg = c.data("Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
            assert code == 250
            ids[msg.decode().split()[1]] = r
            if (i + 1) % 90 == 0:   # Max_msgs_per_cnx is 100
                c.rset()
                c.quit()
                c.connect("127.0.0.1", w.node.port)
                c.ehlo("batch.test")
    assert w.ctl("flush")[0] == 0
    wait_for(lambda: len(w.sink.messages()) >= N // 3, timeout=120, what="a third delivered")

    master = w.node.proc.pid
    queue = process_by_name(master, "selor-queue")
    assert len(queue) == 1
    os.kill(master, signal.SIGSTOP)        # no restart until we have looked
    try:
        os.kill(queue[0], signal.SIGKILL)
        wait_for(lambda: not os.path.exists("/proc/%d/status" % queue[0]) or
                 "Z" in open("/proc/%d/status" % queue[0]).read().split("State:")[1][:4],
                 what="queue process dead")
        before = snapshot(w.node)
        delivered_at_kill = len(w.sink.messages())
    finally:
        os.kill(master, signal.SIGCONT)
    assert delivered_at_kill < N, "the batch finished before the kill"

    wait_for(lambda: len(process_by_name(master, "selor-queue")) == 1, timeout=30,
             what="queue process restarted")
    w.ctl("flush")
    wait_for(lambda: w.node.queue_files("l") == [], timeout=180, what="queue empty")

    counts = collections.Counter(r for env, _ in w.sink.messages() for r in env["rcpts"])
    missing = [r for r in rcpts if counts[r] == 0]
    assert missing == [], "never delivered: %s" % missing
    recorded = set()
    for qid, r in ids.items():
        if qid not in before:               # removed: delivered and recorded
            recorded.add(r)
        elif before[qid].get(r) == "D":
            recorded.add(r)
    again = [r for r in recorded if counts[r] > 1]
    assert again == [], "recorded delivered, sent again: %s" % again
    duplicates = sum(c - 1 for c in counts.values())
    print("delivered at kill: %d, duplicates (in flight at the kill): %d"
          % (delivered_at_kill, duplicates))
    assert duplicates <= 8 * 1   # at most what was in flight (Max_qprocs)
    assert "queue process (pid %d) killed by signal 9; restarting" % queue[0] in \
        w.node.log("warning")
