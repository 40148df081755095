#!/usr/bin/python3
"""testmilter.py - mail filters (milters) for Selor's tests, as real processes.

Two kinds, both serving many connections at once (one thread each) and
printing "READY <port or path>" on standard output once they listen:

    /usr/bin/python3 testmilter.py lib (--port N | --unix PATH) --log FILE
        [--spec JSON]
    /usr/bin/python3 testmilter.py raw --port N --log FILE --mode MODE
        [--only-from TEXT]

lib: a libmilter milter (Debian's python3-milter, `import Milter`), doing
what --spec says (a JSON object, every key optional):

    "log"        false: write nothing; "eom": only {"conn", "ev": "eom"} at
                 each end of message (the bench counts them); default true
    "accept_all" true: CONTINUE at every step, ACCEPT at the end of the
                 message, no change; the other keys are ignored
    "at"         {"connect"|"helo"|"mail"|"rcpt"|"data"|"eoh"|"eom":
                 "continue"|"accept"|"reject"|"tempfail"|"discard"}: the
                 answer at that step (default continue; accept at eom)
    "rcpt_reject" [addr, ...]: REJECT for those recipients only
    "reply"      {"at": STEP, "code": "554", "xcode": "5.7.0", "text":
                 "..."}: setreply() at that step, then REJECT (5xx) or
                 TEMPFAIL (4xx)
    end-of-message changes, made in this order:
    "chgfrom"    "<new@sender>"
    "addrcpt"    ["<rcpt>", ...]
    "delrcpt"    ["<rcpt>", ...]
    "addheader"  [[name, value], ...]
    "insheader"  [[index, name, value], ...]
    "chgheader"  [[name, index, value], ...]  (index from 1; value "" deletes)
    "replacebody" "text"
    "quarantine" "reason"

    Only the actions the spec uses are negotiated (Milter.set_flags, and
    the negotiate callback keeps the MTA's offer to those).

raw: the milter wire protocol written by hand (a 4-byte big-endian length,
a command byte, its data; negotiation 'O', version 6, no step skipped, a
reply expected at every step) for what libmilter will not do.  MODE:

    continue      'c' at every step (a well-behaved milter)
    tempfail-eom  't' at the end of the message
    close-body    closes the connection at the first body chunk
    hang-eom      never answers the end of the message (keeps reading)
    hang-connect  never answers the connect step
    garbage-eom   answers the end of the message with an unknown reply ('Z')
    oversize-eom  answers it with a packet header announcing 2 GB, then
                  nothing
    unasked-eom   adds a header ('h') although it negotiated no action,
                  then 'c'

With --only-from TEXT the misbehaviour is kept for transactions whose
MAIL FROM contains TEXT (the connect step always misbehaves).

The log (both kinds) is JSON, one object per line, flushed at once:
{"conn": N, "ev": STEP, ...}, STEP one of negotiate, connect, helo, mail,
rcpt, data, header, eoh, body, eom, abort, close (lib), or the command
letter's name (raw: also "macro" with the macros the MTA defined, and
"quit"). The lib milter's "eom" record holds the whole message as it saw
it: from, rcpts, headers ([name, value]), body, and the macros it could
read ("macros", name -> value).

From a test, TestMilter (below) starts one, gives its Milters address and
reads its log.
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading

MACROS = ["j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}",
          "{client_name}", "{client_port}", "{tls_version}", "{cipher}",
          "{cipher_bits}", "{auth_type}", "{auth_authen}", "{mail_addr}",
          "{mail_host}", "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}",
          "{rcpt_mailer}", "i"]


class Log:
    """JSON lines, one write per record, from any thread."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a") if path else None

    def __call__(self, **rec):
        if not self.f:
            return
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()


# ---------------------------------------------------------------- libmilter

def lib_main(args):
    import Milter

    spec = json.loads(args.spec or "{}")
    log = Log(args.log if spec.get("log", True) else None)
    eom_only = spec.get("log") == "eom"
    accept_all = bool(spec.get("accept_all"))
    results = {"continue": Milter.CONTINUE, "accept": Milter.ACCEPT,
               "reject": Milter.REJECT, "tempfail": Milter.TEMPFAIL,
               "discard": Milter.DISCARD}

    needed = 0
    if not accept_all:
        for key, flag in (("chgfrom", Milter.CHGFROM), ("addrcpt", Milter.ADDRCPT),
                          ("delrcpt", Milter.DELRCPT), ("addheader", Milter.ADDHDRS),
                          ("insheader", Milter.ADDHDRS), ("chgheader", Milter.CHGHDRS),
                          ("replacebody", Milter.MODBODY),
                          ("quarantine", Milter.QUARANTINE)):
            if key in spec:
                needed |= flag
    counter = [0]
    counter_lock = threading.Lock()

    class TestMilter(Milter.Base):
        def __init__(self):
            with counter_lock:
                counter[0] += 1
                self.conn = counter[0]
            self.reset()

        def reset(self):
            self.mail_from, self.rcpts, self.headers, self.body_parts = None, [], [], []

        def macros(self):
            if eom_only:
                return {}
            out = {}
            for m in MACROS:
                v = self.getsymval(m)
                if v is not None:
                    out[m] = v
            return out

        def note(self, **rec):
            if not eom_only or rec["ev"] == "eom":
                log(conn=self.conn, **rec)

        def answer(self, step):
            if accept_all:
                return Milter.ACCEPT if step == "eom" else Milter.CONTINUE
            r = spec.get("reply")
            if r and r.get("at") == step:
                self.setreply(r["code"], r.get("xcode"), r.get("text"))
                return Milter.REJECT if r["code"].startswith("5") else Milter.TEMPFAIL
            default = "accept" if step == "eom" else "continue"
            return results[spec.get("at", {}).get(step, default)]

        def negotiate(self, opts):
            offered = opts[0]
            rc = Milter.Base.negotiate(self, opts)
            opts[0] = self._actions = offered & needed
            self.note(ev="negotiate", offered_actions=offered, protocol=opts[1],
                      needed=needed, missing=needed & ~offered)
            return rc

        def connect(self, hostname, family, hostaddr):
            self.note(ev="connect", hostname=hostname,
                      hostaddr=list(hostaddr) if isinstance(hostaddr, tuple) else hostaddr,
                      macros=self.macros())
            return self.answer("connect")

        def hello(self, name):
            self.note(ev="helo", helo=name, macros=self.macros())
            return self.answer("helo")

        def envfrom(self, f, *params):
            self.reset()
            self.mail_from = f
            self.note(ev="mail", mail_from=f, params=list(params), macros=self.macros())
            return self.answer("mail")

        def envrcpt(self, to, *params):
            self.rcpts.append(to)
            self.note(ev="rcpt", rcpt=to, params=list(params), macros=self.macros())
            if not accept_all and to.strip("<>") in [
                    a.strip("<>") for a in spec.get("rcpt_reject", [])]:
                return Milter.REJECT
            return self.answer("rcpt")

        def data(self):
            self.note(ev="data", macros=self.macros())
            return self.answer("data")

        def header(self, name, value):
            self.headers.append([name, value])
            return self.answer("header")

        def eoh(self):
            self.note(ev="eoh", macros=self.macros())
            return self.answer("eoh")

        def body(self, chunk):
            self.body_parts.append(chunk)
            return self.answer("body")

        def eom(self):
            if eom_only:
                self.note(ev="eom")
            else:
                body = b"".join(self.body_parts)
                self.note(ev="eom", mail_from=self.mail_from, rcpts=self.rcpts,
                          headers=self.headers,
                          body=body.decode("utf-8", "surrogateescape"),
                          macros=self.macros())
            if not accept_all:
                self.changes()
            return self.answer("eom")

        def changes(self):
            if "chgfrom" in spec:
                self.chgfrom(spec["chgfrom"])
            for a in spec.get("addrcpt", []):
                self.addrcpt(a)
            for a in spec.get("delrcpt", []):
                self.delrcpt(a)
            for name, value in spec.get("addheader", []):
                self.addheader(name, value)
            for idx, name, value in spec.get("insheader", []):
                self.addheader(name, value, idx)
            for name, idx, value in spec.get("chgheader", []):
                self.chgheader(name, idx, value)
            if "replacebody" in spec:
                self.replacebody(spec["replacebody"].encode())
            if "quarantine" in spec:
                self.quarantine(spec["quarantine"])

        def abort(self):
            self.note(ev="abort")
            return Milter.CONTINUE

        def close(self):
            self.note(ev="close")
            return Milter.CONTINUE

    Milter.factory = TestMilter
    Milter.set_flags(needed)
    lib_run(Milter, args)


def lib_run(Milter, args):
    """Milter.runmilter's registration, with the socket opened (and made
    usable by the node's User) before READY is printed."""
    milter = sys.modules["milter"]
    M = Milter
    milter.set_connect_callback(M.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(M.close_callback)
    if args.unix:
        milter.setconn("unix:" + args.unix)
    else:
        milter.setconn("inet:%d@127.0.0.1" % args.port)
    milter.setbacklog(128)
    milter.register("selor-testmilter",
                    data=lambda ctx: ctx.getpriv().data(),
                    unknown=lambda ctx, cmd: M.CONTINUE,
                    negotiate=M.negotiate_callback)
    milter.opensocket(True)
    if args.unix:
        os.chmod(args.unix, 0o777)
    print("READY %s" % (args.unix or args.port), flush=True)
    milter.main()


# ---------------------------------------------------------------- raw

NAMES = {b"O": "negotiate", b"D": "macro", b"C": "connect", b"H": "helo",
         b"M": "mail", b"R": "rcpt", b"T": "data", b"L": "header", b"N": "eoh",
         b"B": "body", b"E": "eom", b"A": "abort", b"Q": "quit", b"K": "quit_nc",
         b"U": "unknown"}
NO_REPLY = (b"D", b"A", b"Q", b"K")
MAX_PACKET = 1 << 20


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_packet(sock):
    """(command byte, data), or None when the MTA closed."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    if length < 1 or length > MAX_PACKET:
        raise ValueError("bad packet length %d" % length)
    body = recv_exact(sock, length)
    if body is None:
        return None
    return body[:1], body[1:]


def send_packet(sock, cmd, data=b""):
    sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)


def nul_fields(data):
    return [f.decode("utf-8", "surrogateescape") for f in data.split(b"\0")[:-1]]


def describe(cmd, data):
    """The log record's fields for one command from the MTA."""
    if cmd == b"O" and len(data) >= 12:
        v, a, p = struct.unpack(">III", data[:12])
        return {"version": v, "actions": a, "protocol": p}
    if cmd == b"D" and data:
        f = nul_fields(data[1:])
        return {"for": data[:1].decode(), "macros": dict(zip(f[0::2], f[1::2]))}
    if cmd == b"C":
        f = data.split(b"\0", 1)
        rest = f[1] if len(f) > 1 else b""
        out = {"hostname": f[0].decode("utf-8", "surrogateescape"),
               "family": rest[:1].decode("latin-1")}
        if rest[:1] in (b"4", b"6") and len(rest) >= 3:
            out["port"] = struct.unpack(">H", rest[1:3])[0]
            out["address"] = rest[3:].rstrip(b"\0").decode("latin-1")
        return out
    if cmd in (b"H", b"M", b"R", b"L"):
        return {"args": nul_fields(data)}
    if cmd == b"B":
        return {"size": len(data), "data": data[:2000].decode("utf-8", "surrogateescape")}
    return {}


def raw_conn(sock, conn, args, log):
    bad_txn = not args.only_from
    try:
        while True:
            pkt = recv_packet(sock)
            if pkt is None:
                log(conn=conn, ev="closed_by_mta")
                return
            cmd, data = pkt
            log(conn=conn, ev=NAMES.get(cmd, "cmd_" + cmd.decode("latin-1")),
                **describe(cmd, data))
            if cmd == b"O":
                # version 6, no actions, every step sent and answered
                send_packet(sock, b"O", struct.pack(">III", 6, 0, 0))
                continue
            if cmd == b"M" and args.only_from:
                bad_txn = args.only_from in data.decode("utf-8", "replace")
            if cmd in NO_REPLY:
                if cmd in (b"Q",):
                    return
                continue
            mode = args.mode
            if cmd == b"C" and mode == "hang-connect":
                log(conn=conn, ev="hanging", at="connect")
                continue       # reads on, never answers
            if bad_txn and cmd == b"E" and mode == "hang-eom":
                log(conn=conn, ev="hanging", at="eom")
                continue
            if bad_txn and cmd == b"E" and mode == "tempfail-eom":
                send_packet(sock, b"t")
                continue
            if bad_txn and cmd == b"E" and mode == "garbage-eom":
                send_packet(sock, b"Z", b"nonsense")
                continue
            if bad_txn and cmd == b"E" and mode == "oversize-eom":
                sock.sendall(struct.pack(">I", 0x7FFFFFFF) + b"h")
                continue
            if bad_txn and cmd == b"E" and mode == "unasked-eom":
                send_packet(sock, b"h", b"X-Unasked\0value\0")
                send_packet(sock, b"c")
                continue
            if bad_txn and cmd == b"B" and mode == "close-body":
                log(conn=conn, ev="closing", at="body")
                return
            send_packet(sock, b"c")
    except (OSError, ValueError) as e:
        log(conn=conn, ev="error", error=str(e))
    finally:
        sock.close()


def raw_main(args):
    log = Log(args.log)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(128)
    print("READY %d" % srv.getsockname()[1], flush=True)
    conn = 0
    while True:
        sock, _ = srv.accept()
        conn += 1
        threading.Thread(target=raw_conn, args=(sock, conn, args, log),
                         daemon=True).start()


# ---------------------------------------------------------------- for tests

class TestMilter:
    """One test milter process in directory base; stop() ends it.

    kind "lib" (spec: the dict described above; unix=True listens on a
    unix socket in base) or "raw" (mode, only_from)."""

    __test__ = False       # not a pytest test class

    def __init__(self, base, kind="lib", spec=None, mode=None, only_from=None,
                 unix=False, name=None):
        self.dir = base
        os.makedirs(base, exist_ok=True)
        self.name = name or "%s-%d" % (kind, len(os.listdir(base)))
        self.logpath = os.path.join(base, self.name + ".jsonl")
        argv = ["/usr/bin/python3", os.path.abspath(__file__), kind, "--log", self.logpath]
        if unix:
            self.path = os.path.join(base, self.name + ".sock")
            argv += ["--unix", self.path]
        else:
            self.path = None
            argv += ["--port", str(free_port())]
        if kind == "lib":
            argv += ["--spec", json.dumps(spec or {})]
        else:
            argv += ["--mode", mode or "continue"]
            if only_from:
                argv += ["--only-from", only_from]
        self.err = open(os.path.join(base, self.name + ".stderr"), "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY"), "test milter did not start: %r %s" % (
            line, open(self.err.name).read())
        self.port = None if unix else int(line.split()[1])

    @property
    def addr(self):
        """Its entry for Selor's Milters option."""
        return "unix:%s" % self.path if self.path else "inet:127.0.0.1:%d" % self.port

    def events(self, ev=None):
        try:
            with open(self.logpath) as f:
                recs = [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []
        return [r for r in recs if ev is None or r["ev"] == ev]

    def messages(self):
        """The lib milter's end-of-message records, in order."""
        return self.events("eom")

    def stderr(self):
        with open(self.err.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()       # libmilter's main() does not end on SIGTERM quickly
            self.proc.wait(timeout=10)
        self.err.close()
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=["lib", "raw"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unix")
    p.add_argument("--log", default="")
    p.add_argument("--spec")
    p.add_argument("--mode", default="continue",
                   choices=["continue", "tempfail-eom", "close-body", "hang-eom",
                            "hang-connect", "garbage-eom", "oversize-eom",
                            "unasked-eom"])
    p.add_argument("--only-from")
    args = p.parse_args()
    if args.kind == "lib":
        if not args.unix and not args.port:
            args.port = free_port()
        lib_main(args)
    else:
        raw_main(args)


if __name__ == "__main__":
    main()
