"""coord_rate on the Redis backend (cluster/coord_redis.c), driven by
build/asan/tools/coord_tool: separate processes share one count, as the
nodes of a cluster do; the window slides; any key text is safe; an answer
whose owner cancelled is dropped; no Redis answers DOWN."""
import os
import subprocess
import threading
import time

import selortest

COORD_TOOL = os.path.join(os.path.dirname(selortest.SELOR), "tools", "coord_tool")


def rate(redis, key, limit, window, count, gap_ms=0, expect_rc=0):
    """The verdicts of one tool process, in order."""
    p = subprocess.run([COORD_TOOL, redis.server, key, str(limit), str(window), str(count),
                        str(gap_ms)], capture_output=True, text=True, timeout=30)
    assert p.returncode == expect_rc, "coord_tool: rc %d: %s" % (p.returncode, p.stderr)
    assert "ERROR: AddressSanitizer" not in p.stderr, p.stderr
    return p.stdout.split()


def test_two_processes_share_the_count(procs):
    redis = procs.redis()
    assert rate(redis, "ip 192.0.2.1", 5, 60, 3) == ["OK"] * 3
    assert rate(redis, "ip 192.0.2.1", 5, 60, 3) == ["OK", "OK", "LIMIT"]
    assert rate(redis, "ip 192.0.2.2", 5, 60, 1) == ["OK"]       # keys are apart


def test_concurrent_processes_allow_exactly_the_limit(procs):
    redis = procs.redis()
    out = [None, None]

    def run(i):
        out[i] = rate(redis, "sender@example.org", 5, 60, 5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdicts = out[0] + out[1]
    assert verdicts.count("OK") == 5 and verdicts.count("LIMIT") == 5, out


def test_window_slides(procs):
    redis = procs.redis()
    assert rate(redis, "k", 5, 2, 6) == ["OK"] * 5 + ["LIMIT"]
    time.sleep(2.2)
    assert rate(redis, "k", 5, 2, 1) == ["OK"]        # all six have left it


def test_window_slides_event_by_event(procs):
    """Each event leaves the window on its own (not a fixed window), and
    refused events count too."""
    redis = procs.redis()
    assert rate(redis, "k", 5, 2, 3) == ["OK"] * 3                 # t = 0
    time.sleep(1.2)
    assert rate(redis, "k", 5, 2, 3) == ["OK", "OK", "LIMIT"]      # t = 1.2
    time.sleep(1.0)
    # t >= 2.2: the first three have left, the three of 1.2 are still in
    assert rate(redis, "k", 5, 2, 3) == ["OK", "OK", "LIMIT"]


def test_any_key_text_is_safe_and_bounded(procs):
    redis = procs.redis()
    key = "a b\t\"*?[]:%\u00e9" + "x" * 700       # longer than COORD_RATE_KEY_MAX
    assert rate(redis, key, 1, 2, 2) == ["OK", "LIMIT"]
    names = [n for n in redis.cmd("KEYS", "selor:rate:*").split("\n") if n]
    assert len(names) == 1, names
    name = names[0]
    assert name.startswith("selor:rate:a%20b%09%22%2A%3F%5B%5D%3A%25%C3%A9xxx"), name
    assert len(name) <= len("selor:rate:") + 3 * 512
    assert 0 < int(redis.cmd("PTTL", name)) <= 2000         # goes with its window
    assert int(redis.cmd("ZCARD", name)) == 2               # limit + 1 kept at most
    assert rate(redis, key, 1, 2, 3) == ["LIMIT"] * 3
    assert int(redis.cmd("ZCARD", name)) == 2


def test_cancelled_answer_is_dropped(procs):
    redis = procs.redis()
    p = subprocess.run([COORD_TOOL, redis.server, "c", "1", "60", "cancel"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "ERROR: AddressSanitizer" not in p.stderr, p.stderr
    # the first answer never reached its owner; its event still counted
    assert p.stdout.split() == ["DROPPED", "LIMIT"]


def test_no_redis_answers_down():
    class Gone:
        server = "127.0.0.1:%d" % selortest.free_port()

    assert rate(Gone, "k", 5, 60, 1, expect_rc=1) == ["DOWN"]
