#!/usr/bin/python3
"""delayproxy - a proxy that makes a real server slow, for Selor's tests.

  delayproxy.py tcp --to HOST:PORT [--delay S]     (Redis: replies late)
  delayproxy.py dns --to HOST:PORT [--delay S] [--delay-type TYPE=S ...]

Listens on 127.0.0.1 at a free port and prints "READY <port>".  TCP: bytes
from the client go to the server at once; bytes from the server reach the
client `delay` seconds after they arrived, in order.  DNS (UDP): each query
is answered by the upstream server, `delay` seconds late (or the delay
given for its query type: A, AAAA, MX, PTR).  The delays can be changed
while it runs by writing "delay S" or "TYPE S" lines to the file given with
--control (looked at every 50 ms); a line "seq N" in it is written to
CONTROL.ack once the file's delays apply.  Owns nothing else: it never
changes what passes through.
"""
import argparse
import asyncio
import os
import struct
import sys

QTYPES = {1: "A", 28: "AAAA", 15: "MX", 12: "PTR"}


class Settings:
    def __init__(self, delay, per_type, control):
        self.delay = delay
        self.per_type = dict(per_type)
        self.control = control
        self.seen = None

    def for_type(self, qtype):
        return self.per_type.get(QTYPES.get(qtype, ""), self.delay)

    async def watch(self):
        while self.control:
            try:
                st = os.stat(self.control)
                # A new file (the writer renames one into place) or a change.
                if (st.st_ino, st.st_mtime_ns) != self.seen:
                    self.seen = (st.st_ino, st.st_mtime_ns)
                    self.apply()
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.05)

    def apply(self):
        seq = None
        with open(self.control) as f:
            for line in f:
                word = line.split()
                if len(word) == 2 and word[0] == "seq":
                    seq = word[1]
                elif len(word) == 2 and word[0] == "delay":
                    self.delay = float(word[1])
                elif len(word) == 2:
                    self.per_type[word[0].upper()] = float(word[1])
        if seq is not None:
            tmp = self.control + ".ack.new"
            with open(tmp, "w") as f:
                f.write(seq + "\n")
            os.replace(tmp, self.control + ".ack")


# ---- TCP ----

async def pump(reader, writer, settings, late):
    """Copies reader to writer; late: each chunk waits the delay first,
    chunks stay in order (a queue drained by one task)."""
    queue = asyncio.Queue()

    async def drain():
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(drain())
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((loop.time() + (settings.delay if late else 0), data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def tcp_main(args, settings):
    host, port = args.to.rsplit(":", 1)

    async def handle(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection(host, int(port))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, swriter, settings, False),
                             pump(sreader, cwriter, settings, True),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("READY %d" % server.sockets[0].getsockname()[1], flush=True)
    asyncio.create_task(settings.watch())
    async with server:
        await server.serve_forever()


# ---- DNS over UDP ----

def query_type(data):
    """The QTYPE of a DNS query's first question, or 0."""
    try:
        i = 12
        while data[i]:
            i += data[i] + 1
        return struct.unpack(">H", data[i + 1:i + 3])[0]
    except (IndexError, struct.error):
        return 0


class DnsProxy(asyncio.DatagramProtocol):
    def __init__(self, settings, upstream):
        self.settings = settings
        self.upstream = upstream

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        asyncio.create_task(self.answer(data, addr))

    async def answer(self, data, addr):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        class Once(asyncio.DatagramProtocol):
            def datagram_received(self, reply, _):
                if not fut.done():
                    fut.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            reply = await asyncio.wait_for(fut, 5)
        except asyncio.TimeoutError:
            return
        finally:
            transport.close()
        await asyncio.sleep(self.settings.for_type(query_type(data)))
        self.transport.sendto(reply, addr)


async def dns_main(args, settings):
    host, port = args.to.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DnsProxy(settings, (host, int(port))), local_addr=("127.0.0.1", 0))
    print("READY %d" % transport.get_extra_info("sockname")[1], flush=True)
    await settings.watch() if settings.control else asyncio.Event().wait()
    await asyncio.Event().wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["tcp", "dns"])
    p.add_argument("--to", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--delay-type", action="append", default=[],
                   help="TYPE=SECONDS (dns): A, AAAA, MX, PTR")
    p.add_argument("--control")
    args = p.parse_args()
    per_type = {}
    for item in args.delay_type:
        k, v = item.split("=", 1)
        per_type[k.upper()] = float(v)
    settings = Settings(args.delay, per_type, args.control)
    try:
        asyncio.run((tcp_main if args.kind == "tcp" else dns_main)(args, settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
