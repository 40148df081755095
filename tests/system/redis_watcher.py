"""A watcher of the cluster's state in Redis for the tests: samples the
locks and slots every 50 ms with one script (an atomic snapshot)."""
import subprocess
import threading
import time


class RedisWatcher(threading.Thread):
    """Samples Redis every 50 ms with one script (an atomic snapshot): its
    clock, the lock keys with their holders and remaining lives, and the
    dlocal slots with their ends."""

    SCRIPT = """
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, k in ipairs(redis.call('KEYS', 'selor:lock:*')) do
  local v = redis.call('GET', k)
  if v then
    out[#out + 1] = 'lock'; out[#out + 1] = k; out[#out + 1] = v
    out[#out + 1] = tostring(redis.call('PTTL', k))
  end
end
local s = redis.call('ZRANGE', 'selor:slots:dlocal', 0, -1, 'WITHSCORES')
for i = 1, #s, 2 do
  out[#out + 1] = 'slot'; out[#out + 1] = s[i]; out[#out + 1] = s[i + 1]
  out[#out + 1] = '-'
end
return out
"""

    def __init__(self, redis):
        super().__init__(daemon=True)
        self.redis = redis
        self.stopping = threading.Event()
        self.samples = []      # (redis ms, [(kind, key, value, extra)])
        self.errors = []

    def run(self):
        while not self.stopping.is_set():
            r = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--raw", "EVAL",
                                self.SCRIPT, "0"], capture_output=True, text=True, timeout=10)
            words = r.stdout.split("\n")
            if r.returncode != 0 or len(words) < 2:
                self.errors.append(r.stdout + r.stderr)
            else:
                now = int(words[0]) * 1000 + int(words[1]) // 1000
                items = [tuple(words[i:i + 4]) for i in range(2, len(words) - 3, 4)]
                self.samples.append((now, items))
            time.sleep(0.05)

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)

    def locks(self):
        """qid -> {holder value: [pttl, ...]} in sampling order."""
        out = {}
        for _, items in self.samples:
            for kind, key, value, pttl in items:
                if kind == "lock":
                    out.setdefault(key.split(":", 2)[2], {}).setdefault(value, []).append(
                        int(pttl))
        return out

    def slots(self):
        """member -> [(redis ms, slot end ms)] in sampling order."""
        out = {}
        for now, items in self.samples:
            for kind, member, score, _ in items:
                if kind == "slot":
                    out.setdefault(member, []).append((now, int(float(score))))
        return out

    def first_seen(self, qid, sid):
        """Redis time (s) when a lock of sid on qid was first seen, or None."""
        for now, items in self.samples:
            for kind, key, value, _ in items:
                if kind == "lock" and key.endswith(":" + qid) and value.split()[0] == sid:
                    return now / 1000
        return None

    def renewed(self, sid):
        """qids whose lock held by sid had its remaining life go up again."""
        last, out = {}, set()
        for _, items in self.samples:
            for kind, key, value, pttl in items:
                if kind != "lock" or value.split()[0] != sid:
                    continue
                if (key, value) in last and int(pttl) > last[(key, value)] + 200:
                    out.add(key.split(":", 2)[2])
                last[(key, value)] = int(pttl)
        return out

