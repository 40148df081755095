"""`make run` the way a newcomer meets it (issue 11): a clean clone, on a
machine where pkg-config and the libraries' .pc files are not installed
until `make deps` installs them.  The first `make run` used to fail to link
because the Makefile read pkg-config before deps ran.

The fresh machine is a PATH view: `pkg-config` is missing (command not
found) until the fake `apt-get` "installs" it, and `dpkg-query` reports it
absent until then, so install-deps.sh really takes the install path.  Then
the real pkg-config answers.  The node must build, link, start and deliver
a message to the demo mailbox."""
import os
import shutil
import signal
import smtplib
import subprocess
import textwrap
import time

import pytest

from selortest import ROOT, free_port, make_workdir, wait_for

FAKE_PKG_CONFIG = """\
#!/bin/sh
# pkg-config on a fresh machine: absent until apt-get installed it
[ -e "%(marker)s" ] || { echo "pkg-config: command not found" >&2; exit 127; }
echo "$*" >> "%(calls)s"
exec /usr/bin/pkg-config "$@"
"""

FAKE_DPKG_QUERY = """\
#!/bin/sh
# dpkg-query on a fresh machine: pkg-config not installed until apt-get ran
for a in "$@"; do last=$a; done
if [ "$last" = pkg-config ] && [ ! -e "%(marker)s" ]; then
    echo "dpkg-query: no packages found matching pkg-config" >&2
    exit 1
fi
exec /usr/bin/dpkg-query "$@"
"""

FAKE_APT_GET = """\
#!/bin/sh
# apt-get: records what it was asked; "installs" pkg-config
echo "$*" >> "%(apt)s"
case " $* " in *" install "*" pkg-config"*) touch "%(marker)s" ;; esac
exit 0
"""


def fresh_machine_view(d):
    fake = os.path.join(d, "fakebin")
    os.makedirs(fake)
    paths = {"marker": os.path.join(d, "pkg-config-installed"),
             "calls": os.path.join(d, "pkg-config-calls"),
             "apt": os.path.join(d, "apt-get-calls")}
    for name, text in (("pkg-config", FAKE_PKG_CONFIG), ("dpkg-query", FAKE_DPKG_QUERY),
                       ("apt-get", FAKE_APT_GET),
                       ("debconf-set-selections", "#!/bin/sh\ncat >/dev/null\n")):
        p = os.path.join(fake, name)
        with open(p, "w") as f:
            f.write(text % paths)
        os.chmod(p, 0o755)
    env = dict(os.environ)
    env["PATH"] = fake + ":/usr/sbin:/usr/bin:/sbin:/bin"
    env["PKG_CONFIG_PATH"] = os.path.join(d, "empty-pc")   # nothing of ours
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    env["MAKEFLAGS"] = "-j2"
    for k in ("SELOR_BIN", "SELORCTL_BIN", "SELOR_MOD_DIR", "SELOR_TESTMOD_DIR",
              "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(k, None)
    return env, paths


@pytest.fixture
def clone():
    d = make_workdir("selor-make-run-")
    src = os.path.join(d, "selor")
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", ROOT, src], check=True,
                   timeout=120)
    yield d, src
    shutil.rmtree(d, ignore_errors=True)


def demo_mail(d):
    new = os.path.join(d, "var", "mail", "demo", "Maildir", "new")
    return os.listdir(new) if os.path.isdir(new) else []


def test_first_make_run_in_a_clean_clone_builds_links_and_takes_mail(clone):
    d, src = clone
    env, paths = fresh_machine_view(d)
    port = free_port()
    env["SELOR_DEV_PORT"] = str(port)
    out = open(os.path.join(d, "make-run.log"), "wb")
    p = subprocess.Popen(["make", "run"], cwd=src, env=env, stdout=out, stderr=out,
                         start_new_session=True)
    try:
        def up():
            if p.poll() is not None:
                raise AssertionError("make run ended with %s:\n%s" % (
                    p.returncode, open(out.name, errors="replace").read()[-3000:]))
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=2) as s:
                    return s.noop()[0] == 250
            except OSError:
                return False
        wait_for(up, timeout=600, interval=1, what="make run's node to accept")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("someone@example.org", ["demo@selor.test"],
                       b"Subject: hello\r\n\r\nfirst mail of a newcomer\r\n")
        wait_for(lambda: demo_mail(src), timeout=30, what="the demo mailbox")
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        out.close()
    log = open(out.name, errors="replace").read()
    apt = open(paths["apt"]).read() if os.path.exists(paths["apt"]) else ""
    # the fresh machine really was fresh: deps installed pkg-config first ...
    assert "install" in apt and "pkg-config" in apt, apt
    # ... and the flags were read after that, by the build that linked
    assert "libuv" in open(paths["calls"]).read()
    assert "make deps: installing: pkg-config" in log
    with open(os.path.join(src, "var", "mail", "demo", "Maildir", "new",
                           demo_mail(src)[0]), "rb") as f:
        assert b"first mail of a newcomer" in f.read()


def test_make_deps_alone_is_quiet_when_everything_is_there():
    """On a machine that has everything, deps installs nothing (the real
    dpkg-query answers) and says nothing: `make run` costs no apt-get."""
    r = subprocess.run(["make", "--no-print-directory", "deps"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "installing" not in r.stdout, r.stdout
    assert textwrap.dedent(r.stdout).strip() == ""
