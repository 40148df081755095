"""The Debian package (`make deb`): its contents, lintian, and the installed
files working: selor -t on the installed configuration, the manual pages,
the maintainer scripts against a throw-away root."""
import glob
import gzip
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

import selortest

ROOT = selortest.ROOT


def run(cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def deb():
    """`make deb` on the build `make all` left: the package's path."""
    r = run(["make", "--no-print-directory", "deb"], cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"DEB\s+(\S+\.deb)", r.stdout)
    assert m, r.stdout
    return m.group(1)


@pytest.fixture(scope="module")
def inst(deb):
    """The package unpacked into a throw-away root, control files in DEBIAN."""
    d = tempfile.mkdtemp(prefix="selor-deb-")
    os.chmod(d, 0o755)
    for opt, dest in (("-x", d), ("-e", os.path.join(d, "DEBIAN"))):
        r = run(["dpkg-deb", opt, deb, dest])
        assert r.returncode == 0, r.stderr
    yield d
    shutil.rmtree(d, ignore_errors=True)


def field(deb, name):
    return run(["dpkg-deb", "--field", deb, name]).stdout.strip()


def test_control(deb):
    changelog = run(["dpkg-parsechangelog", "-l", os.path.join(ROOT, "pkg/deb/changelog"),
                     "-S", "Version"]).stdout.strip()
    with open(os.path.join(ROOT, "src/core/version.h")) as f:
        upstream = re.search(r'SELOR_VERSION "([^"]+)"', f.read()).group(1)
    assert field(deb, "Version") == changelog
    assert changelog.startswith(upstream + "-")
    assert field(deb, "Architecture") == run(["dpkg", "--print-architecture"]).stdout.strip()
    depends = field(deb, "Depends")
    for lib in ("adduser", "libc6", "libuv1", "libhiredis", "libc-ares2", "libssl3",
                "libpq5", "libcrypt1"):
        assert lib in depends, depends
    assert os.path.basename(deb) == "selor_%s_%s.deb" % (changelog, field(deb, "Architecture"))


def test_contents(deb):
    out = run(["dpkg-deb", "--contents", deb]).stdout
    lines = [l.split() for l in out.splitlines()]
    paths = {l[-1].lstrip("."): l for l in lines}
    for p in ("/usr/sbin/selor", "/usr/sbin/selorctl", "/usr/lib/selor/selor_passwd.so",
              "/usr/lib/selor/selor_tls.so", "/usr/lib/selor/selor_pgsql.so",
              "/etc/selor/selor.conf", "/etc/selor/accounts.passwd",
              "/etc/logrotate.d/selor", "/lib/systemd/system/selor.service",
              "/usr/share/man/man8/selor.8.gz", "/usr/share/man/man8/selorctl.8.gz",
              "/usr/share/man/man5/selor.conf.5.gz", "/usr/share/doc/selor/copyright",
              "/usr/share/doc/selor/changelog.Debian.gz"):
        assert p in paths, "%s missing from the package:\n%s" % (p, out)
    assert all(l[1] == "root/root" for l in lines), out
    assert paths["/usr/sbin/selor"][0] == "-rwxr-xr-x"
    assert paths["/usr/lib/selor/selor_passwd.so"][0] == "-rw-r--r--"
    # the spool is made by postinst, owned by selor; not a root-owned package dir
    assert "/var/spool/selor/" not in paths


def test_conffiles(inst):
    with open(os.path.join(inst, "DEBIAN", "conffiles")) as f:
        conffiles = f.read().split()
    assert "/etc/selor/selor.conf" in conffiles
    for c in conffiles:
        assert os.path.isfile(inst + c), c


def test_unit(inst):
    with open(os.path.join(inst, "lib/systemd/system/selor.service")) as f:
        unit = f.read()
    for line in ("ExecStart=/usr/sbin/selor -f -c /etc/selor/selor.conf",
                 "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "ProtectHome=yes", "KillMode=mixed"):
        assert line in unit.splitlines(), line
    assert re.search(r"^ProtectSystem=(full|strict)$", unit, re.M)
    # root until selor drops privileges itself: no User=, port 25 allowed
    assert not re.search(r"^User=", unit, re.M)
    assert "CAP_NET_BIND_SERVICE" in unit
    if shutil.which("systemd-analyze"):
        # the unit as systemd reads it, with the installed program
        path = os.path.join(inst, "selor-verify.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/sbin/selor", inst + "/usr/sbin/selor"))
        r = run(["systemd-analyze", "verify", "--man=no", path])
        os.unlink(path)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_lintian(deb):
    if not shutil.which("lintian"):
        pytest.skip("lintian is not installed (make deps)")
    cmd = ["lintian"] + (["--allow-root"] if os.geteuid() == 0 else []) + [deb]
    r = run(cmd, timeout=180)
    errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
    assert not errors, r.stdout
    assert r.returncode in (0, 2), r.stdout + r.stderr  # 2: warnings only


def installed_conf(inst):
    """The installed selor.conf, its absolute paths moved into the root."""
    with open(os.path.join(inst, "etc/selor/selor.conf")) as f:
        text = f.read()
    text = text.replace('"/usr/lib/selor/', '"%s/usr/lib/selor/' % inst)
    text = text.replace('"/etc/selor/', '"%s/etc/selor/' % inst)
    path = os.path.join(inst, "selor-test.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_installed_selor_checks_installed_conf(inst):
    selor = os.path.join(inst, "usr/sbin/selor")
    r = run([selor, "-t", "-c", installed_conf(inst)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration is valid" in r.stdout
    # as shipped, the configuration names the packaged modules
    r = run([selor, "-t", "-c", os.path.join(inst, "etc/selor/selor.conf")])
    if not os.path.exists("/usr/lib/selor/selor_passwd.so"):
        assert r.returncode == 1
        assert "/usr/lib/selor/selor_passwd.so" in r.stderr, r.stderr
    r = run([selor, "-V"])
    assert r.returncode == 0 and r.stdout.startswith("selor "), r.stdout


def test_installed_selor_accepts_mail(inst, nodes, monkeypatch):
    """The stripped, packaged selor with its packaged module: a real node."""
    monkeypatch.setattr(selortest, "SELOR", os.path.join(inst, "usr/sbin/selor"))
    n = nodes(options={"Module": os.path.join(inst, "usr/lib/selor/selor_passwd.so")})
    n.start()
    with n.smtp() as s:
        s.sendmail("a@remote.test", ["alice@example.com"], "Subject: deb\r\n\r\nhello\r\n")
    selortest.wait_for(lambda: n.queue_files(), timeout=10, what="the message queued")
    assert "alice@example.com" in n.read_qf(n.queue_files()[0])
    assert n.stop() == 0, n.stderr()


def test_installed_programs_default_to_etc(inst):
    """Without -c the packaged selor and selorctl read /etc/selor/selor.conf."""
    for prog, args in (("selor", ["-t"]), ("selorctl", ["queue"])):
        r = run([os.path.join(inst, "usr/sbin", prog)] + args)
        assert "/etc/selor/selor.conf" in r.stdout + r.stderr, (prog, r.stdout, r.stderr)
        assert "/usr/local/selor" not in r.stdout + r.stderr


def test_man_pages_render(inst):
    pages = sorted(glob.glob(os.path.join(inst, "usr/share/man/man*/*.gz")))
    assert len(pages) == 3, pages
    for page in pages:
        with gzip.open(page, "rt") as f:
            src = f.read()
        name, section = os.path.basename(page)[:-3].rsplit(".", 1)
        assert re.search(r'^\.TH "%s" "%s"' % (re.escape(name.upper()), section), src,
                         re.M), (page, src[:300])
        r = run(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="80",
                                                              MAN_KEEP_FORMATTING="0"))
        assert r.returncode == 0, (page, r.stderr)
        # groff's only complaints allowed: tbl's about the layout of a wide
        # reference table (wider than 80 columns, a cell longer than a page)
        layout = re.compile(r"^(warning: file '<standard input>', around line \d+:"
                            r"|\s*table wider than line width"
                            r"|warning: page \d+: table text block will not fit on one page)$")
        noise = [l for l in r.stderr.splitlines() if l.strip() and not layout.match(l)]
        assert not noise, (page, r.stderr)
        text = re.sub(r".\x08", "", r.stdout)
        assert re.search(r"^NAME\n\s+%s - " % re.escape(name), text, re.M), text[:400]


def test_postinst_idempotent_and_purge(inst):
    """configure twice against the root (DPKG_ROOT, as dpkg sets it), then purge."""
    if os.geteuid() != 0:
        pytest.skip("the maintainer scripts need root")
    try:
        pwd.getpwnam("selor")
        grp.getgrnam("selor")
    except KeyError:
        pytest.skip("no user selor on this machine (make deps creates it): "
                    "postinst would create it here, outside the test's root")
    with open(os.path.join(inst, "DEBIAN", "postinst")) as f:
        assert re.search(r"adduser --system .* selor", f.read(), re.S)
    env = dict(os.environ, DPKG_ROOT=inst, DPKG_MAINTSCRIPT_PACKAGE="selor",
               DPKG_MAINTSCRIPT_NAME="postinst")
    postinst = os.path.join(inst, "DEBIAN", "postinst")
    for _ in range(2):
        r = run(["sh", "-e", postinst, "configure"], env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        for d in ("var/spool/selor", "var/log/selor"):
            st = os.stat(os.path.join(inst, d))
            assert pwd.getpwuid(st.st_uid).pw_name == "selor", d
            assert stat.S_IMODE(st.st_mode) == 0o750, d
        st = os.stat(os.path.join(inst, "etc/selor/accounts.passwd"))
        assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "selor")
        assert stat.S_IMODE(st.st_mode) == 0o640
    # a first install does not enable the service (the shipped conf is an example)
    assert not os.path.exists(os.path.join(
        inst, "etc/systemd/system/multi-user.target.wants/selor.service"))
    # an upgrade after the administrator enabled it keeps it enabled
    wants = os.path.join(inst, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    os.symlink("/lib/systemd/system/selor.service", os.path.join(wants, "selor.service"))
    r = run(["sh", "-e", postinst, "configure", "0.0.9-1"], env=env)
    assert r.returncode == 0, r.stderr
    assert os.path.islink(os.path.join(wants, "selor.service"))
    # purge: the spool and the logs go, the conffiles are dpkg's to remove
    env["DPKG_MAINTSCRIPT_NAME"] = "postrm"
    r = run(["sh", "-e", os.path.join(inst, "DEBIAN", "postrm"), "purge"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(os.path.join(inst, "var/spool/selor"))
    assert not os.path.exists(os.path.join(inst, "var/log/selor"))
    assert not os.path.exists(os.path.join(wants, "selor.service"))
