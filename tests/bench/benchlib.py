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
  run OUTFILE CMD [ARGS...] [--- CMD [ARGS...]]...
                                 runs CMD (several, separated by ---, in
                                 parallel) and writes "<wall s> <CPU s>
                                 <start>" to OUTFILE (wall clock from the
                                 start to the end of the last, monotonic;
                                 CPU user+sys of all, their children
                                 included; start: CLOCK_MONOTONIC when they
                                 were started); exits with the first
                                 non-zero status; SIGTERM, SIGINT and SIGHUP
                                 are passed on to them
  count-queue DIR                "<l files> <c files>" named like Selor's
                                 queue files (l<digits>_<digits>...)
  fsync DIR WRITERS SECONDS      raw ceiling: WRITERS processes each doing
                                 write(1 KB)+fsync+close+rename in DIR for
                                 SECONDS; prints "<files> <seconds> <files/s>"
                                 (files/s: the sum of the writers' rates)
  sink-count FILE                messages smtp-sink -c has received so far
                                 (the last "mesg=N" of its output FILE)
  sink-wait FILE TARGET STALL    waits until sink-count FILE reaches TARGET
                                 and prints "<time> <count>" (time:
                                 CLOCK_MONOTONIC when it was seen, polled
                                 every 5 ms); exits 1 with the count it got
                                 to when nothing arrived for STALL seconds
  pg-start DIR NKEYS DOMAIN      a private PostgreSQL (tests/system/pgserver.py)
                                 under DIR with the schema of docs/modules.md,
                                 the domain DOMAIN, mailboxes bench@DOMAIN,
                                 sender@DOMAIN and u0..u<NKEYS-1>@DOMAIN;
                                 prints its port
  pg-stop DIR                    stops it
  rcpt-load PORT SECONDS SESSIONS NKEYS DOMAIN
                                 SESSIONS sessions sending pipelined RCPT TO
                                 (20 at a time, random u<k>@DOMAIN, a new
                                 transaction every 100) for SECONDS; prints
                                 "<rcpts> <seconds> <rcpts/s> <not 250>"
  monitor PORT OUTFILE           counts what Redis on 127.0.0.1:PORT runs
                                 (MONITOR), in phases started by
                                 "ECHO bench-phase:NAME" and ended by
                                 "ECHO bench-phase:END" (which also ends the
                                 monitor); writes the counts to OUTFILE
                                 (JSON): per phase, the commands clients
                                 sent (round trips; an EVALSHA is one, and is
                                 named after the Selor script it runs), and
                                 the commands the scripts ran inside Redis
  monitor-report OUTFILE PHASE N "<round trips per message> <those of
                                 selorctl flush (CLAIM_ID, RELEASE due now)>
                                 <breakdown>" of one phase, for N messages
  cmdstats-diff BEFORE AFTER N   from two "redis-cli INFO commandstats"
                                 outputs: "<calls per message> <breakdown>"
                                 (calls of every command, those the scripts
                                 ran included; INFO and ECHO, the
                                 benchmark's own, left out)
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


def run(outfile, *args):
    import signal
    import subprocess
    cmds, cur = [], []
    for a in args:
        if a == "---":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    cmds.append(cur)
    t0 = time.monotonic()
    procs = [subprocess.Popen(c) for c in cmds if c]

    def forward(signum, frame):
        for p in procs:
            try:
                p.send_signal(signum)
            except OSError:
                pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    cpu_s, code = 0.0, 0
    left = {p.pid for p in procs}
    while left:
        try:
            pid, status, ru = os.wait4(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if pid not in left:
            continue
        left.discard(pid)
        cpu_s += ru.ru_utime + ru.ru_stime
        c = os.waitstatus_to_exitcode(status)
        c = c if c >= 0 else 128 - c
        if code == 0:
            code = c
    t1 = time.monotonic()
    with open(outfile, "w") as f:
        f.write("%.6f %.2f %.6f\n" % (t1 - t0, cpu_s, t0))
    return code


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


# ---- smtp-sink -c counters

SINK_MESG = re.compile(rb"mesg=(\d+)")


def sink_read(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 512))
            tail = f.read()
    except OSError:
        return 0
    m = SINK_MESG.findall(tail)
    return int(m[-1]) if m else 0


def sink_count(path):
    print(sink_read(path))


def sink_wait(path, target, stall):
    target, stall = int(target), float(stall)
    last, last_t = -1, time.monotonic()
    while True:
        n = sink_read(path)
        now = time.monotonic()
        if n >= target:
            print("%.6f %d" % (now, n))
            return 0
        if n != last:
            last, last_t = n, now
        elif now - last_t > stall:
            print("%.6f %d" % (now, n))
            return 1
        time.sleep(0.005)


# ---- Redis: MONITOR and INFO commandstats

MON_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
KEY_KIND = re.compile(r"(?:^|:)(conns|due|lock|slots)(?::|$)")


def script_name(args):
    """The Selor script an EVALSHA runs (cluster/coord_redis.c), from the
    shape of its arguments: sha numkeys keys... argv..."""
    try:
        nkeys = int(args[1])
    except (IndexError, ValueError):
        return "?"
    keys, argv = args[2:2 + nkeys], args[2 + nkeys:]
    m = KEY_KIND.search(keys[0]) if keys else None
    kind = m.group(1) if m else "?"
    if kind == "conns":
        return "CONN"
    if kind == "slots":
        return "SLOT"
    # the key counts of cluster/coord_redis.c's calls: announce 2 and claim 5
    # (first key "due"), claim by ID 5, renew 3 and release 4 (first key "lock");
    # BATCH has CLAIM's keys and more than its 5 arguments (argv[5]: the files
    # wanted; 0 when it only gives files back)
    if kind == "due":
        queue = keys[0].rsplit(":", 1)[-1]
        if nkeys == 5 and len(argv) > 5:
            return "BATCH(%s)" % ("releases" if argv[5] == "0" else queue)
        return "%s(%s)" % ({5: "CLAIM", 2: "ANNOUNCE"}.get(nkeys, "?"), queue)
    if kind == "lock":
        if nkeys == 5:
            return "CLAIM_ID"
        if nkeys == 3:
            return "RENEW"
        if nkeys == 4 and len(argv) >= 2:
            due = argv[1]
            return "RELEASE(%s)" % ("done" if due == "-1" else "due now" if due == "0"
                                    else "later")
    return "?"


def monitor(port, outfile):
    import json
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(b"MONITOR\r\n")
    phases, phase, buf, done = {}, None, b"", False
    while not done:
        data = s.recv(1 << 20)
        if not data:
            break
        buf += data
        lines = buf.split(b"\r\n")
        buf = lines.pop()
        for raw in lines:
            if not raw.startswith(b"+") or b"] " not in raw:
                continue
            line = raw.decode("utf-8", "replace")
            head, _, rest = line.partition("] ")
            who = head.rsplit(" ", 1)[-1]
            sp = rest.find(" ")
            cmd = (rest if sp < 0 else rest[:sp]).strip('"').lower()
            if cmd == "echo" and "bench-phase:" in rest:
                name = rest.split("bench-phase:", 1)[1].rstrip('"')
                if name == "END":
                    done = True
                    break
                phase = name
                phases.setdefault(phase, {"sent": {}, "scripts": {}, "lua": {}})
                continue
            if phase is None or cmd in ("info", "echo", "monitor"):
                continue
            ph = phases[phase]
            if who == "lua":
                ph["lua"][cmd] = ph["lua"].get(cmd, 0) + 1
                continue
            ph["sent"][cmd] = ph["sent"].get(cmd, 0) + 1
            if cmd in ("evalsha", "eval"):
                name = script_name(MON_ARG.findall(rest)[1:])
                ph["scripts"][name] = ph["scripts"].get(name, 0) + 1
    with open(outfile, "w") as f:
        json.dump(phases, f)
    return 0


def per_msg(d, n, limit=8):
    items = sorted(d.items(), key=lambda kv: -kv[1])
    out = ["%s %.2f" % (k, v / n) for k, v in items[:limit]]
    rest = sum(v for _, v in items[limit:])
    if rest:
        out.append("others %.2f" % (rest / n))
    return ", ".join(out)


def monitor_report(path, phase, n):
    import json
    n = int(n)
    with open(path) as f:
        ph = json.load(f).get(phase)
    if not ph or n <= 0:
        print("? (nothing recorded)")
        return 1
    sent = sum(ph["sent"].values())
    scripts = sum(ph["scripts"].values())
    # what selorctl flush does to each file: CLAIM_ID, then RELEASE due now
    flush = ph["scripts"].get("CLAIM_ID", 0) + ph["scripts"].get("RELEASE(due now)", 0)
    other = {k: v for k, v in ph["sent"].items() if k not in ("evalsha", "eval")}
    parts = [per_msg(ph["scripts"], n, 10)]
    if other:
        parts.append("other commands: " + per_msg(other, n, 6))
    print("%.2f %.2f scripts %.2f (%s); inside the scripts %.2f commands" % (
        sent / n, flush / n, scripts / n, "; ".join(parts), sum(ph["lua"].values()) / n))
    return 0


def cmdstats(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line.strip())
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def cmdstats_diff(before, after, n):
    n = int(n)
    a, b = cmdstats(before), cmdstats(after)
    d = {k: v - a.get(k, 0) for k, v in b.items()
         if k not in ("info", "echo") and not k.startswith("config")}
    d = {k: v for k, v in d.items() if v > 0}
    print("%.2f %s" % (sum(d.values()) / n, per_msg(d, n, 12)))
    return 0


def tls_one(port, ctx, body, sender, rcpt):
    """One message over STARTTLS, one connection: True when queued."""
    import socket
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = raw.makefile("rb")

    def reply(fh):
        while True:
            line = fh.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line
    try:
        reply(f)
        raw.sendall(b"EHLO tls.bench.test\r\n")
        reply(f)
        raw.sendall(b"STARTTLS\r\n")
        if not reply(f).startswith(b"220"):
            return False
        t = ctx.wrap_socket(raw)
        g = t.makefile("rb")
        t.sendall(b"EHLO tls.bench.test\r\n")
        reply(g)
        t.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, rcpt))
        codes = [reply(g)[:3] for _ in range(3)]
        if codes != [b"250", b"250", b"354"]:
            return False
        t.sendall(body + b".\r\nQUIT\r\n")
        ok = reply(g).startswith(b"250")
        reply(g)
        t.close()
        return ok
    finally:
        raw.close()


def tls_worker(port, n, threads, size, sender, rcpt, counter, errors):
    import ssl
    import threading
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = b"Subject: bench\r\n\r\n" + (b"x" * 70 + b"\r\n") * max(1, size // 72)

    def loop():
        while True:
            with counter.get_lock():
                if counter.value >= n:
                    return
                counter.value += 1
            try:
                if not tls_one(port, ctx, body, sender, rcpt):
                    with errors.get_lock():
                        errors.value += 1
            except OSError:
                with errors.get_lock():
                    errors.value += 1
    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def tls_load(port, n, sessions, size, sender, rcpt):
    """Sends n messages over STARTTLS with `sessions` connections at a time
    (processes of 5 threads each: Python's ssl holds the GIL less than its
    loop); prints "<seconds> <errors>"."""
    import multiprocessing
    port, n, sessions, size = int(port), int(n), int(sessions), int(size)
    counter, errors = multiprocessing.Value("l", 0), multiprocessing.Value("l", 0)
    procs = [multiprocessing.Process(target=tls_worker, args=(
        port, n, 5, size, sender.encode(), rcpt.encode(), counter, errors))
        for _ in range(max(1, sessions // 5))]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("%.3f %d" % (time.monotonic() - t0, errors.value))


def pg_server_module():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "system"))
    import pgserver
    return pgserver


def pg_start(d, nkeys, domain):
    server = pg_server_module().PgServer(d)
    # sender@DOMAIN: the bench's sender, which must exist (a local domain)
    keys = ["bench", "sender"] + ["u%d" % i for i in range(int(nkeys))]
    server.sql("CREATE TABLE domains (domain text PRIMARY KEY);"
               "CREATE TABLE mailboxes (address text PRIMARY KEY, password text,"
               " home text, uid integer, gid integer, dlocal text, quota bigint);"
               "INSERT INTO domains VALUES ('%s');"
               "INSERT INTO mailboxes (address, password) VALUES %s;"
               % (domain, ",".join("('%s@%s', '{PLAIN}x')" % (k, domain) for k in keys)))
    print(server.port)


def pg_stop(d):
    pgserver = pg_server_module()
    server = pgserver.PgServer.__new__(pgserver.PgServer)
    server.bin = pgserver.bindir()
    server.data = os.path.join(d, "pg", "data")
    server.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    server.stop("immediate")


async def rcpt_session(port, deadline, nkeys, domain, counts):
    import asyncio
    import random
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def replies(n):
        codes = []
        while len(codes) < n:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] == b" ":
                codes.append(line[:3])
        return codes
    await replies(1)
    writer.write(b"EHLO bench.test\r\nMAIL FROM:<s@sender.test>\r\n")
    await replies(2)
    sent = 0
    while time.monotonic() < deadline:
        batch = b"".join(b"RCPT TO:<u%d@%s>\r\n" % (random.randrange(nkeys), domain.encode())
                         for _ in range(20))
        writer.write(batch)
        codes = await replies(20)
        counts[0] += 20
        counts[1] += sum(1 for c in codes if c != b"250")
        sent += 20
        if sent >= 100:
            writer.write(b"RSET\r\nMAIL FROM:<s@sender.test>\r\n")
            await replies(2)
            sent = 0
    writer.write(b"QUIT\r\n")
    writer.close()


def rcpt_load(port, seconds, sessions, nkeys, domain):
    import asyncio
    counts = [0, 0]

    async def all_sessions():
        deadline = time.monotonic() + float(seconds)
        await asyncio.gather(*(rcpt_session(int(port), deadline, int(nkeys), domain, counts)
                               for _ in range(int(sessions))))
    t0 = time.monotonic()
    asyncio.run(all_sessions())
    took = time.monotonic() - t0
    print("%d %.3f %.0f %d" % (counts[0], took, counts[0] / took, counts[1]))


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
    elif cmd == "sink-count":
        sink_count(*args)
    elif cmd == "sink-wait":
        return sink_wait(*args)
    elif cmd == "monitor":
        return monitor(*args)
    elif cmd == "monitor-report":
        return monitor_report(*args)
    elif cmd == "cmdstats-diff":
        return cmdstats_diff(*args)
    elif cmd == "tls-load":
        tls_load(*args)
    elif cmd == "pg-start":
        pg_start(*args)
    elif cmd == "pg-stop":
        pg_stop(*args)
    elif cmd == "rcpt-load":
        rcpt_load(*args)
    else:
        print("unknown command %s" % cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
