"""benchlib.py - small helpers for tests/bench/bench.sh.

Run with /usr/bin/python3, one sub-command per call:

  freeport                       a TCP port on 127.0.0.1 nobody listens on
  wait-smtp PORT TIMEOUT         wait until 127.0.0.1:PORT greets with 220
  cpu PID                        CPU seconds used so far by PID and all its
                                 live descendants, plus the children they
                                 have reaped (utime+stime+cutime+cstime)
  tree PID                       PID and its live descendants, one a line
  stat                           machine-wide CPU seconds from /proc/stat:
                                 "<busy> <idle> <iowait>" since boot
  run OUTFILE CMD [ARGS...]      runs CMD and writes "<wall s> <CPU s>" to
                                 OUTFILE (wall clock from its start to its
                                 end, monotonic; CPU user+sys, its children
                                 included); exits with its status; SIGTERM,
                                 SIGINT and SIGHUP are passed on to it
  count-queue DIR                "<l files> <c files>" named like Selor's
                                 queue files (l<digits>_<digits>...)
  fsync DIR WRITERS SECONDS      raw ceiling: WRITERS processes each doing
                                 write(1 KB)+fsync+close+rename in DIR for
                                 SECONDS; prints "<files> <seconds> <files/s>"
                                 (files/s: the sum of the writers' rates)
"""
import os
import re
import socket
import sys
import time


def freeport():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_smtp(port, timeout):
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
                s.settimeout(5)
                data = s.recv(512)
                if data.startswith(b"220"):
                    try:
                        s.sendall(b"QUIT\r\n")
                        s.recv(512)
                    except OSError:
                        pass
                    return 0
        except OSError:
            pass
        time.sleep(0.1)
    print("no SMTP greeting on 127.0.0.1:%s after %ss" % (port, timeout), file=sys.stderr)
    return 1


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu(pid):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    print("%.2f" % (total / tick))


def run(outfile, *cmd):
    import signal
    import subprocess
    t0 = time.monotonic()
    p = subprocess.Popen(list(cmd))

    def forward(signum, frame):
        try:
            p.send_signal(signum)
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status, ru = os.wait4(p.pid, 0)
            break
        except InterruptedError:
            continue
    t1 = time.monotonic()
    with open(outfile, "w") as f:
        f.write("%.6f %.2f\n" % (t1 - t0, ru.ru_utime + ru.ru_stime))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is in user)
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    print("%.2f %.2f %.2f" % (busy / tick, v[3] / tick, v[4] / tick))


QF = re.compile(r"^[cl]\d+(_\d+)+$")


def count_queue(d):
    nl = nc = 0
    with os.scandir(d) as it:
        for e in it:
            if QF.match(e.name):
                if e.name[0] == "l":
                    nl += 1
                else:
                    nc += 1
    print(nl, nc)


def fsync_writer(d, idx, seconds, conn):
    tmp = os.path.join(d, "tmp")
    data = b"x" * 1023 + b"\n"
    n = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        name = "w%d_%d" % (idx, n)
        t = os.path.join(tmp, name)
        fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(t, os.path.join(d, name))
        n += 1
    conn.send((n, time.monotonic() - start))
    conn.close()


def fsync_ceiling(d, writers, seconds):
    import multiprocessing as mp
    writers, seconds = int(writers), float(seconds)
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    procs = []
    t0 = time.monotonic()
    for i in range(writers):
        a, b = mp.Pipe(False)
        p = mp.Process(target=fsync_writer, args=(d, i, seconds, b))
        p.start()
        procs.append((p, a))
    total, rate = 0, 0.0
    for p, a in procs:
        n, el = a.recv()
        total += n
        rate += n / el
        p.join()
    print("%d %.3f %.0f" % (total, time.monotonic() - t0, rate))


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "freeport":
        freeport()
    elif cmd == "wait-smtp":
        return wait_smtp(*args)
    elif cmd == "cpu":
        cpu(args[0])
    elif cmd == "tree":
        print("\n".join(str(p) for p in tree(args[0])))
    elif cmd == "run":
        return run(*args)
    elif cmd == "stat":
        stat()
    elif cmd == "count-queue":
        count_queue(args[0])
    elif cmd == "fsync":
        fsync_ceiling(*args)
    else:
        print("unknown command %s" % cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
