"""SRS interoperability: Selor's SRS code (src/core/srs.c, reached through
build/asan/tools/srs_tool) against a real postsrsd 1.x with the same secret.

Each test starts its own postsrsd on free loopback ports, in foreground,
with a secret file in the test's directory; the system's postsrsd (if the
package's service runs at all) is never touched.  postsrsd serves Postfix
tcp_table lookups: "get ADDR" on the forward port answers "200 SRS0=...",
on the reverse port "200 original"; anything else is "500 reason".
"""
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

import selortest

POSTSRSD = shutil.which("postsrsd") or "/usr/sbin/postsrsd"
SRS_TOOL = os.environ.get(
    "SRS_TOOL",
    os.path.join(os.path.dirname(selortest.SELOR), "tools", "srs_tool"))
DOMAIN = "selor-fwd.test"

pytestmark = pytest.mark.skipif(not os.path.exists(POSTSRSD),
                                reason="postsrsd not installed (make deps)")


class Postsrsd:
    """One postsrsd process with its own secret, domain and ports."""

    def __init__(self, base, secret, domain=DOMAIN):
        self.secret = secret
        self.fport = selortest.free_port()
        self.rport = selortest.free_port()
        path = os.path.join(base, "postsrsd.secret")
        with open(path, "w") as f:
            f.write(secret + "\n")
        os.chmod(path, 0o600)
        # A copy escapes the package's AppArmor profile, which lets
        # /usr/sbin/postsrsd read /etc/postsrsd.secret and nothing else.
        binary = os.path.join(base, "postsrsd")
        shutil.copy(POSTSRSD, binary)
        args = [binary, "-s" + path, "-d" + domain, "-l127.0.0.1",
                "-f%d" % self.fport, "-r%d" % self.rport, "-t10"]
        if os.geteuid() == 0:
            args.append("-unobody")     # the secret is read before the drop
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        selortest.wait_for(lambda: self._listening(self.fport) and
                           self._listening(self.rport),
                           what="postsrsd listening")

    def _listening(self, port):
        assert self.proc.poll() is None, \
            "postsrsd exited: %s" % self.proc.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def _get(self, port, addr):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            key = urllib.parse.quote(addr, safe="!#$&'()*+,-./:;<=>?@[]^_`{|}~")
            s.sendall(b"get " + key.encode() + b"\n")
            line = s.makefile("rb").readline().decode().rstrip("\r\n")
        code, _, value = line.partition(" ")
        return code, urllib.parse.unquote(value)

    def forward(self, addr):
        return self._get(self.fport, addr)

    def reverse(self, addr):
        return self._get(self.rport, addr)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tool(*args):
    """srs_tool's answer: (result name, address or "")."""
    p = subprocess.run([SRS_TOOL] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode in (0, 1), "srs_tool %s: %s" % (args, p.stderr)
    assert "ERROR: AddressSanitizer" not in p.stderr, p.stderr
    name, _, addr = p.stdout.strip().partition(" ")
    return name, addr


def selor_forward(secret, sender, domain=DOMAIN, shift=0, now=None):
    return tool("forward", secret, shift, sender, domain,
                int(time.time() if now is None else now))


def selor_reverse(secret, addr, shift=0, now=None):
    return tool("reverse", secret, shift, addr,
                int(time.time() if now is None else now))


SENDERS = [
    "user@example.org",
    "First.Last+tag@Example.ORG",
    "odd=local=part@sub.example.net",
    "o'brien-x_y@example.co.uk",
]


@pytest.fixture
def srsd(workdir):
    assert os.access(SRS_TOOL, os.X_OK), "%s missing (make asan)" % SRS_TOOL
    d = Postsrsd(workdir, "interop-" + secrets.token_urlsafe(18))
    yield d
    d.stop()


def test_postsrsd_srs0_reversed_by_selor(srsd):
    for sender in SENDERS:
        code, srs = srsd.forward(sender)
        assert code == "200" and srs.startswith("SRS0="), (sender, code, srs)
        assert srs.endswith("@" + DOMAIN)
        assert selor_reverse(srsd.secret, srs) == ("SRS_OK", sender)
        # some MTAs lower-case local parts on the way back
        low = srs.split("@")[0].lower() + "@" + DOMAIN
        name, back = selor_reverse(srsd.secret, low)
        assert name == "SRS_OK" and back.lower() == sender.lower()


def test_selor_srs0_reversed_by_postsrsd(srsd):
    for sender in SENDERS:
        name, srs = selor_forward(srsd.secret, sender)
        assert name == "SRS_FWD_OK", sender
        assert srsd.reverse(srs) == ("200", sender)
        assert srsd.reverse(srs.lower())[0] == "200"


def test_same_address_both_sides(srsd):
    """Same secret, shift 0, same day: the very same string."""
    for sender in SENDERS:
        for _ in range(3):      # a retry if midnight UTC falls in between
            day = int(time.time()) // 86400
            code, theirs = srsd.forward(sender)
            name, ours = selor_forward(srsd.secret, sender)
            if int(time.time()) // 86400 == day:
                break
        assert (code, name) == ("200", "SRS_FWD_OK")
        assert ours == theirs


def test_srs1_both_ways(srsd):
    # hop1 is a third forwarder with its own secret
    name, hop1 = selor_forward("hop1-secret", "alice@origin.example",
                               domain="hop1.example")
    assert name == "SRS_FWD_OK"
    code, theirs = srsd.forward(hop1)
    name, ours = selor_forward(srsd.secret, hop1)
    assert code == "200" and theirs.startswith("SRS1=")
    assert name == "SRS_FWD_OK" and ours == theirs
    assert selor_reverse(srsd.secret, theirs) == ("SRS_OK", hop1)
    assert srsd.reverse(ours) == ("200", hop1)
    # and hop1 takes its own address back to the sender
    assert selor_reverse("hop1-secret", hop1) == ("SRS_OK", "alice@origin.example")


def test_each_refuses_what_the_other_should(srsd):
    code, srs = srsd.forward("user@example.org")
    assert code == "200"
    local, _, dom = srs.partition("@")
    h = local[5:9]
    forged = "SRS0=" + ("A" if h[0] != "A" else "B") + h[1:] + local[9:] + "@" + dom
    assert selor_reverse(srsd.secret, forged)[0] == "SRS_BAD_HASH"
    assert srsd.reverse(forged)[0] == "500"
    # another secret on Selor's side
    assert selor_reverse(srsd.secret + "x", srs)[0] == "SRS_BAD_HASH"
    # a shift changes the key: postsrsd (no shift) must refuse it
    name, shifted = selor_forward(srsd.secret, "user@example.org", shift=1)
    assert name == "SRS_FWD_OK" and shifted != srs
    assert srsd.reverse(shifted)[0] == "500"
    assert selor_reverse(srsd.secret, shifted, shift=1) == ("SRS_OK", "user@example.org")
    # postsrsd's address seen by Selor 30 days later: expired
    later = time.time() + 30 * 86400
    assert selor_reverse(srsd.secret, srs, now=later)[0] == "SRS_EXPIRED"
    # Selor's address made 30 days ago: postsrsd refuses it too
    name, old = selor_forward(srsd.secret, "user@example.org",
                              now=time.time() - 30 * 86400)
    assert name == "SRS_FWD_OK"
    assert srsd.reverse(old)[0] == "500"
    name, recent = selor_forward(srsd.secret, "user@example.org",
                                 now=time.time() - 20 * 86400)
    assert srsd.reverse(recent) == ("200", "user@example.org")
