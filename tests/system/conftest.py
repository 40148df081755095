"""Fixtures of Selor's system tests: real nodes in private directories.

Every node a test starts is stopped at the end of the test, and the test
fails if a sanitizer (ASan/UBSan, the build the suite runs against) wrote a
report in any process of it.
"""
import os
import shutil
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selortest  # noqa: E402


@pytest.fixture
def workdir():
    d = selortest.make_workdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


class NodeFactory:
    def __init__(self, base):
        self.base = base
        self.nodes = []

    def __call__(self, name=None, **kw):
        n = selortest.Node(self.base, name or "n%d" % (len(self.nodes) + 1), **kw)
        self.nodes.append(n)
        return n

    def cleanup(self):
        """Stops every node, all at once (a cluster's nodes each take their
        own time to stop), and returns the sanitizers' reports."""
        errors = []

        def stop(n):
            try:
                try:
                    n.stop(timeout=40)
                except AssertionError:
                    n.kill()
            except BaseException as e:     # raised below, in the test's thread
                errors.append(e)
        threads = [threading.Thread(target=stop, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        reports = []
        for n in self.nodes:
            reports += n.sanitizer_reports()
        return reports


@pytest.fixture
def nodes(workdir):
    f = NodeFactory(workdir)
    yield f
    reports = f.cleanup()
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)


@pytest.fixture
def node(nodes):
    """A started node with the default accounts (alice, bob @example.com)."""
    return nodes().start()


class Stoppers:
    """Processes a test started (DNS servers, sinks), stopped at its end."""

    def __init__(self, base):
        self.base = base
        self.items = []

    def dns(self, **kw):
        d = selortest.Dns(self.base, **kw)
        self.items.append(d)
        return d

    def redis(self, password=None):
        r = selortest.Redis(self.base, password=password)
        self.items.append(r)
        return r

    def netns(self):
        ns = selortest.Netns()
        self.items.insert(0, ns)    # stopped last: its processes go first
        return ns

    def delayproxy(self, kind, to, **kw):
        d = selortest.DelayProxy(self.base, kind, to, **kw)
        self.items.append(d)
        return d

    def sink(self, ip="127.0.0.1", port=25, args=()):
        s = selortest.Sink(self.base, ip, port, args)
        self.items.append(s)
        return s

    def stop(self):
        for it in reversed(self.items):
            it.stop()


@pytest.fixture
def procs(workdir):
    p = Stoppers(workdir)
    yield p
    p.stop()
