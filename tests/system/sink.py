#!/usr/bin/python3
"""sink.py - a real SMTP server that records what it receives, for tests.

Run it as a separate process (it is what Selor delivers to in the tests):

    /usr/bin/python3 tests/system/sink.py --host 127.0.0.1 --port N --dir DIR \\
        [--rcpt-rule PATTERN=ACTION ...] [--data-rule ACTION] [--greeting CODE] \\
        [--no-pipelining] [--no-esmtp] [--size N] [--delay-data SECONDS] \\
        [--idle-close SECONDS] [--idle-drop SECONDS] [--idle-hang SECONDS]

It prints "READY <port>" on standard output (flushed) once it listens, so a
fixture can start it and wait for that line; --port 0 picks a free port and
the line says which.  SIGTERM (or SIGINT) stops it cleanly, exit status 0.
Diagnostics go to standard error.

Options:
  --rcpt-rule PATTERN=ACTION  how RCPT TO:<addr> is answered when addr
        matches PATTERN (a shell glob, case-insensitive, e.g. "*@bad.test"
        or "bob@example.com").  Repeatable; the first matching rule counts;
        no match means accept.
  --data-rule ACTION    how the end of the content (the final ".") is
        answered; default accept.
  --greeting CODE       greeting code (default 220).  After a greeting that
        is not 2xx every command but QUIT gets 503.
  --no-pipelining       do not offer PIPELINING (commands sent pipelined are
        still answered in order, as any server does).
  --no-esmtp            refuse EHLO with 502 (the client must use HELO).
  --size N              offer SIZE N and refuse bigger messages with 552
        (at MAIL when SIZE= says so, else at the end of the content).
  --delay-data SECONDS  wait this long before answering the final ".".
  --tls-cert PEM --tls-key PEM  offer STARTTLS with this certificate.
  --tls-broken          offer STARTTLS, answer 220, then send garbage
                        instead of a TLS handshake (a broken TLS server).
  --idle-close SECONDS  a connection that sends no command for this long
                        is closed by the sink, at once (the client sees
                        EOF while idle).
  --idle-drop SECONDS   a command that comes after this long without one
                        gets no reply: the sink closes the connection then
                        (the client finds a cached connection dead only
                        when it uses it again).
  --idle-hang SECONDS   a command that comes after this long without one
                        gets no reply, nor does anything after it: the
                        connection stays open until the client closes it
                        (a peer that vanished behind a firewall).

ACTION is "accept", a reply code such as "450" or "550" (refuse every
time), or CODExN such as "450x2" (refuse the first N times it applies,
then accept).  For --rcpt-rule the count is kept per recipient address
(lower-cased) for the life of the sink, across connections; for
--data-rule it counts transactions.

What it writes into DIR:
  messages/NNNNNN.eml   the content exactly as received, after removing the
                        SMTP dot-stuffing: line ends kept as sent (CR LF),
                        without the terminating ".".  Written only for
                        messages the sink accepted.
  messages/NNNNNN.json  the envelope of that message: {"mail_from": ...,
                        "rcpts": [...], "helo": ..., "peer": ...,
                        "mail_params": [...]}
  log.jsonl             one JSON object per line, one per transaction (a
                        MAIL command until the end of its content, RSET,
                        a new MAIL, QUIT or the disconnect), keys:
                          time, peer, helo, mail_from, mail_params,
                          rcpts (accepted addresses),
                          refused ([{"rcpt": addr, "code": 550}, ...]),
                          data_code (the reply to the content; null if no
                          content came), data_size (bytes after
                          unstuffing; null), message (path of the .eml,
                          null when nothing was stored), tls (the TLS
                          version, null in clear)
  stats.json            concurrency counters, rewritten atomically (write
                        then rename) on every change: connections,
                        max_connections, in_data (transactions between
                        354 and the final reply), max_in_data,
                        total_connections, messages (stored),
                        idle_closed (connections closed by --idle-close
                        or --idle-drop), max_transactions (the most
                        transactions one connection carried), quits
                        (connections the client ended with QUIT).

Test authors: tests/unit/test_smtp_client.c (C, via fork/exec) shows the
whole cycle; from Python, start it with subprocess.Popen(stdout=PIPE),
read the READY line, and terminate() it at the end of the test.
"""
import argparse
import asyncio
import ssl
import fnmatch
import json
import os
import signal
import sys
import time

LINE_LIMIT = 1 << 20  # a command or content line; more ends the session


class Action:
    """accept, CODE, or CODExN (refuse N times, then accept)."""

    def __init__(self, text):
        self.text = text
        if text == "accept":
            self.code, self.times = None, 0
            return
        code, _, times = text.partition("x")
        if not (len(code) == 3 and code.isdigit() and code[0] in "2345"):
            raise ValueError("bad action %r" % text)
        self.code = int(code)
        self.times = int(times) if times else None  # None: always

    def decide(self, count):
        """The code to answer when this is the count-th use (from 0);
        None means accept."""
        if self.code is None or (self.times is not None and count >= self.times):
            return None
        return self.code


def parse_rule(text):
    pattern, sep, action = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError("rule must be PATTERN=ACTION: %r" % text)
    try:
        return pattern.lower(), Action(action)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def parse_action(text):
    try:
        return Action(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


class Sink:
    def __init__(self, args):
        self.args = args
        self.dir = args.dir
        self.msgdir = os.path.join(self.dir, "messages")
        os.makedirs(self.msgdir, exist_ok=True)
        self.rcpt_counts = {}
        self.data_count = 0
        self.seq = 0
        self.stats = {
            "connections": 0, "max_connections": 0,
            "in_data": 0, "max_in_data": 0,
            "total_connections": 0, "messages": 0,
            "idle_closed": 0, "max_transactions": 0, "quits": 0,
        }
        self.write_stats()

    # ---- records ----

    def write_stats(self):
        path = os.path.join(self.dir, "stats.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats, f, sort_keys=True)
        os.rename(tmp, path)

    def count(self, key, delta):
        self.stats[key] += delta
        mx = "max_" + key
        if mx in self.stats and self.stats[key] > self.stats[mx]:
            self.stats[mx] = self.stats[key]
        self.write_stats()

    def log(self, record):
        with open(os.path.join(self.dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def store(self, content, envelope):
        self.seq += 1
        base = os.path.join(self.msgdir, "%06d" % self.seq)
        # Both files appear whole: the envelope last, so a reader that sees
        # it finds the content too.
        with open(base + ".eml.tmp", "wb") as f:
            f.write(content)
        os.rename(base + ".eml.tmp", base + ".eml")
        with open(base + ".json.tmp", "w") as f:
            json.dump(envelope, f, sort_keys=True)
        os.rename(base + ".json.tmp", base + ".json")
        self.stats["messages"] += 1
        self.write_stats()
        return base + ".eml"

    # ---- rules ----

    def rcpt_code(self, addr):
        key = addr.lower()
        for pattern, action in self.args.rcpt_rule:
            if fnmatch.fnmatchcase(key, pattern):
                n = self.rcpt_counts.get(key, 0)
                self.rcpt_counts[key] = n + 1
                return action.decide(n)
        return None

    def data_code(self):
        n = self.data_count
        self.data_count += 1
        return self.args.data_rule.decide(n)

    async def handle(self, reader, writer):
        session = Session(self, reader, writer)
        self.stats["total_connections"] += 1
        self.count("connections", 1)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):
            pass
        finally:
            session.end_transaction()
            if session.in_data:
                self.count("in_data", -1)
            self.count("connections", -1)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


REPLY_TEXT = {
    250: "2.0.0 ok", 354: "end data with <CR><LF>.<CR><LF>",
    421: "4.3.0 service not available", 450: "4.2.0 mailbox unavailable",
    451: "4.3.0 local error in processing", 452: "4.3.1 insufficient storage",
    550: "5.1.1 mailbox unavailable", 552: "5.3.4 message too big",
    553: "5.1.3 mailbox name not allowed", 554: "5.0.0 transaction failed",
}


class Session:
    def __init__(self, sink, reader, writer):
        self.sink = sink
        self.args = sink.args
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        self.helo = None
        self.greeted_ok = True
        self.in_data = False
        self.txn = None
        self.tls = None
        self.transactions = 0
        self.last = time.monotonic()   # the last command's reply

    async def reply(self, code, text=None):
        self.writer.write(("%d %s\r\n" % (code, text or REPLY_TEXT.get(code, "ok"))).encode())
        await self.writer.drain()

    async def run(self):
        code = self.args.greeting
        self.greeted_ok = code // 100 == 2
        await self.reply(code, "sink.test ESMTP sink" if self.greeted_ok
                         else "sink.test service not available")
        while True:
            line = await self.next_line()
            if line is None:
                self.sink.count("idle_closed", 1)
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb, _, arg = cmd.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self.end_transaction()  # logged before the client sees 221
                self.sink.count("quits", 1)
                await self.reply(221, "2.0.0 bye")
                return
            if not self.greeted_ok:
                await self.reply(503, "5.5.1 no service")
                continue
            handler = getattr(self, "cmd_" + verb.lower(), None)
            if handler is None or verb in ("DATA",) and arg:
                await self.reply(500, "5.5.2 command not recognized")
                continue
            await handler(arg)
            self.last = time.monotonic()

    async def next_line(self):
        """The next command line, or None when the idle rules close."""
        if not self.args.idle_close:
            line = await self.reader.readuntil(b"\n")
        else:
            try:
                line = await asyncio.wait_for(self.reader.readuntil(b"\n"),
                                              self.args.idle_close)
            except asyncio.TimeoutError:
                return None
        idle = time.monotonic() - self.last
        if self.args.idle_drop and idle > self.args.idle_drop:
            return None
        if self.args.idle_hang and idle > self.args.idle_hang:
            while await self.reader.read(4096):
                pass
            return None
        return line

    # ---- transaction ----

    def end_transaction(self, data_code=None, data_size=None, message=None):
        t = self.txn
        if t is None:
            return
        self.txn = None
        self.sink.log({
            "time": time.time(), "peer": self.peer, "helo": self.helo,
            "mail_from": t["mail_from"], "mail_params": t["mail_params"],
            "rcpts": t["rcpts"], "refused": t["refused"],
            "data_code": data_code, "data_size": data_size, "message": message,
            "tls": self.tls,
        })

    # ---- commands ----

    async def cmd_ehlo(self, arg):
        if self.args.no_esmtp:
            await self.reply(502, "5.5.2 command not recognized")
            return
        self.end_transaction()
        self.helo = arg
        lines = ["sink.test greets %s" % arg]
        if not self.args.no_pipelining:
            lines.append("PIPELINING")
        if self.args.size:
            lines.append("SIZE %d" % self.args.size)
        lines.append("8BITMIME")
        if (self.args.tls_cert or self.args.tls_broken) and self.tls is None:
            lines.append("STARTTLS")
        lines.append("ENHANCEDSTATUSCODES")
        out = "".join("250-%s\r\n" % l for l in lines[:-1]) + "250 %s\r\n" % lines[-1]
        self.writer.write(out.encode())
        await self.writer.drain()

    async def cmd_starttls(self, arg):
        if not (self.args.tls_cert or self.args.tls_broken) or self.tls is not None:
            await self.reply(502, "5.5.1 not offered")
            return
        self.end_transaction()
        await self.reply(220, "2.0.0 go ahead")
        if self.args.tls_broken:
            self.writer.write(b"this is no TLS server hello\r\n" * 20)
            await self.writer.drain()
            raise ConnectionError("broken TLS on purpose")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.args.tls_cert, self.args.tls_key)
        await self.writer.start_tls(ctx)
        self.tls = self.writer.get_extra_info("ssl_object").version()
        self.helo = None

    async def cmd_helo(self, arg):
        self.end_transaction()
        self.helo = arg
        await self.reply(250, "sink.test")

    async def cmd_noop(self, arg):
        await self.reply(250)

    async def cmd_rset(self, arg):
        self.end_transaction()
        await self.reply(250)

    @staticmethod
    def path(arg, prefix):
        if not arg.upper().startswith(prefix):
            return None, None
        rest = arg[len(prefix):].strip()
        if not rest.startswith("<") or ">" not in rest:
            return None, None
        addr, _, params = rest[1:].partition(">")
        return addr, params.split()

    async def cmd_mail(self, arg):
        if self.helo is None or self.txn is not None:
            await self.reply(503, "5.5.1 bad sequence of commands")
            return
        addr, params = self.path(arg, "FROM:")
        if addr is None:
            await self.reply(501, "5.5.4 syntax error in MAIL")
            return
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and self.args.size and v.isdigit() \
                    and int(v) > self.args.size:
                await self.reply(552, "5.3.4 message size exceeds the limit")
                return
        self.txn = {"mail_from": addr, "mail_params": params, "rcpts": [], "refused": []}
        self.transactions += 1
        if self.transactions > self.sink.stats["max_transactions"]:
            self.sink.stats["max_transactions"] = self.transactions
            self.sink.write_stats()
        await self.reply(250, "2.1.0 sender ok")

    async def cmd_rcpt(self, arg):
        if self.txn is None:
            await self.reply(503, "5.5.1 need MAIL first")
            return
        addr, _ = self.path(arg, "TO:")
        if addr is None:
            await self.reply(501, "5.5.4 syntax error in RCPT")
            return
        code = self.sink.rcpt_code(addr)
        if code is not None:
            self.txn["refused"].append({"rcpt": addr, "code": code})
            await self.reply(code, "%s <%s>" % (REPLY_TEXT.get(code, "refused"), addr))
            return
        self.txn["rcpts"].append(addr)
        await self.reply(250, "2.1.5 recipient ok")

    async def cmd_data(self, arg):
        if self.txn is None or not self.txn["rcpts"]:
            await self.reply(503 if self.txn is None else 554, "5.5.1 no valid recipients")
            return
        self.in_data = True
        self.sink.count("in_data", 1)
        await self.reply(354)
        content = await self.read_content()
        if self.args.delay_data:
            await asyncio.sleep(self.args.delay_data)
        code = self.sink.data_code()
        size = len(content)
        if code is None and self.args.size and size > self.args.size:
            code = 552
        message = None
        if code is None:
            t = self.txn
            message = self.sink.store(content, {
                "mail_from": t["mail_from"], "rcpts": t["rcpts"], "helo": self.helo,
                "peer": self.peer, "mail_params": t["mail_params"], "tls": self.tls})
        self.end_transaction(code or 250, size, message)
        self.in_data = False
        self.sink.count("in_data", -1)
        if code is None:
            await self.reply(250, "2.0.0 ok: queued as %s" % os.path.basename(message))
        else:
            await self.reply(code)

    async def read_content(self):
        """Lines up to "." CR LF; dot-stuffing removed, line ends kept."""
        parts = []
        while True:
            line = await self.reader.readuntil(b"\n")
            if line == b".\r\n":
                return b"".join(parts)
            if line.startswith(b"."):
                line = line[1:]
            parts.append(line)


async def main(args):
    sink = Sink(args)
    server = await asyncio.start_server(sink.handle, args.host, args.port, limit=LINE_LIMIT)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    print("READY %d" % port, flush=True)
    await stop
    server.close()
    await server.wait_closed()


def parse_args(argv):
    ap = argparse.ArgumentParser(description="SMTP sink for Selor's tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rcpt-rule", type=parse_rule, action="append", default=[])
    ap.add_argument("--data-rule", type=parse_action, default=Action("accept"))
    ap.add_argument("--greeting", type=int, default=220)
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-esmtp", action="store_true")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--delay-data", type=float, default=0.0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-broken", action="store_true")
    ap.add_argument("--idle-close", type=float, default=0.0)
    ap.add_argument("--idle-drop", type=float, default=0.0)
    ap.add_argument("--idle-hang", type=float, default=0.0)
    return ap.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
    sys.exit(0)
