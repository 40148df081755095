/*
 * coord_redis_lua.c - the Lua scripts of the Redis backend, one per
 * decision (coord_redis.c runs them by SHA and says what each one owns).
 * Every time is Redis's clock, so the nodes' clocks never have to agree.
 * Must not: be sent by anyone but coord_redis.c.
 */
#include "coord_redis_lua.h"

/* Current time in ms and µs from Redis's clock (one clock for every node). */
#define CR_LUA_NOW \
    "local t = redis.call('TIME')\n" \
    "local now_s = tonumber(t[1])\n" \
    "local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "local now_us = now_s * 1000000 + tonumber(t[2])\n"

/* A new fencing token: above every earlier one and never below the clock. */
#define CR_LUA_TOKEN \
    "local function new_token(key)\n" \
    "  local tok = redis.call('INCR', key)\n" \
    "  if tok < now_us then\n" \
    "    redis.call('SET', key, string.format('%d', now_us))\n" \
    "    tok = now_us\n" \
    "  end\n" \
    "  return tok\n" \
    "end\n"

/* After Redis lost its data (no epoch key), nobody claims for one lease. */
#define CR_LUA_EPOCH \
    "local function paused(key, lease)\n" \
    "  local epoch = redis.call('GET', key)\n" \
    "  if not epoch then\n" \
    "    redis.call('SET', key, string.format('%d', now_ms))\n" \
    "    epoch = now_ms\n" \
    "  end\n" \
    "  return now_ms < tonumber(epoch) + lease\n" \
    "end\n"

const char *const cr_scripts[CR_NSCRIPTS] = {
    /* CONN: KEYS ring; ARGV ip, Limit_buf, Limit_cnx, Limit_time ms */
    CR_LUA_NOW
    "local buf = tonumber(ARGV[2])\n"
    "local items = redis.call('LRANGE', KEYS[1], 0, buf - 1)\n"
    "local later, run = now_ms, 1\n"
    "for i = 1, #items do\n"
    "  local sep = string.find(items[i], ' ', 1, true)\n"
    "  if sep and string.sub(items[i], sep + 1) == ARGV[1] then\n"
    "    local at = tonumber(string.sub(items[i], 1, sep - 1))\n"
    "    if later - at >= tonumber(ARGV[4]) then break end\n"
    "    later, run = at, run + 1\n"
    "  end\n"
    "end\n"
    "redis.call('LPUSH', KEYS[1], string.format('%d', now_ms) .. ' ' .. ARGV[1])\n"
    "redis.call('LTRIM', KEYS[1], 0, buf - 1)\n"
    "if run >= tonumber(ARGV[3]) then return 1 end\n"
    "return 0\n",

    /* CLAIM: KEYS due, slots, token, epoch, held; ARGV limit, lease ms, node,
     * lock key prefix, candidates.  "held" remembers each lock's owner until
     * its release: one found there without a lock lapsed (a takeover), and
     * the reply names it. */
    CR_LUA_NOW CR_LUA_TOKEN CR_LUA_EPOCH
    "local lease = tonumber(ARGV[2])\n"
    "if paused(KEYS[4], lease) then return {'PAUSED'} end\n"
    "local limit = tonumber(ARGV[1])\n"
    "if limit > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)\n"
    "  if redis.call('ZCARD', KEYS[2]) >= limit then return {'FULL'} end\n"
    "end\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[5]))\n"
    "for i = 1, #ids do\n"
    "  local lock = ARGV[4] .. ids[i]\n"
    "  if redis.call('EXISTS', lock) == 0 then\n"
    "    local tok = new_token(KEYS[3])\n"
    "    local owner = ARGV[3] .. ' ' .. string.format('%d', tok)\n"
    "    redis.call('SET', lock, owner, 'PX', lease)\n"
    "    redis.call('ZADD', KEYS[1], now_s + math.ceil(lease / 1000), ids[i])\n"
    "    if limit > 0 then redis.call('ZADD', KEYS[2], now_ms + lease, owner) end\n"
    "    local prev = redis.call('HGET', KEYS[5], ids[i]) or ''\n"
    "    redis.call('HSET', KEYS[5], ids[i], owner)\n"
    "    return {'OK', ids[i], tok, prev}\n"
    "  end\n"
    "  redis.call('ZADD', KEYS[1], now_s + math.ceil(lease / 1000), ids[i])\n"
    "end\n"
    "return {'EMPTY'}\n",

    /* CLAIM_ID: KEYS lock, due, token, epoch, held; ARGV node, lease ms, qid */
    CR_LUA_NOW CR_LUA_TOKEN CR_LUA_EPOCH
    "if paused(KEYS[4], tonumber(ARGV[2])) then return {'PAUSED'} end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then return {'BUSY'} end\n"
    "local tok = new_token(KEYS[3])\n"
    "local owner = ARGV[1] .. ' ' .. string.format('%d', tok)\n"
    "redis.call('SET', KEYS[1], owner, 'PX', ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], now_s + math.ceil(tonumber(ARGV[2]) / 1000), ARGV[3])\n"
    "local prev = redis.call('HGET', KEYS[5], ARGV[3]) or ''\n"
    "redis.call('HSET', KEYS[5], ARGV[3], owner)\n"
    "return {'OK', ARGV[3], tok, prev}\n",

    /* RENEW: KEYS lock, slots, due; ARGV owner, lease ms, with slot (0/1), qid */
    CR_LUA_NOW
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[3], now_s + math.ceil(tonumber(ARGV[2]) / 1000), ARGV[4])\n"
    "if ARGV[3] == '1' then\n"
    "  redis.call('ZADD', KEYS[2], 'XX', now_ms + tonumber(ARGV[2]), ARGV[1])\n"
    "end\n"
    "return 1\n",

    /* RELEASE: KEYS lock, slots, due, held; ARGV owner, next due (-1 gone,
     * -2 keep as the claim left it), qid */
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HDEL', KEYS[4], ARGV[3])\n"
    "local next = tonumber(ARGV[2])\n"
    "if next >= 0 then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])\n"
    "elseif next == -1 then redis.call('ZREM', KEYS[3], ARGV[3]) end\n"
    "return 1\n",

    /* ANNOUNCE: KEYS due, lock; ARGV due (0: now, by Redis's clock: a node
     * whose clock is ahead must not announce "now" in the future), qid,
     * mode ("new"/"force") */
    CR_LUA_NOW
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n"
    "local due = tonumber(ARGV[1])\n"
    "if due <= 0 then due = now_s end\n"
    "if ARGV[3] == 'new' then return redis.call('ZADD', KEYS[1], 'NX', due, ARGV[2]) end\n"
    "return redis.call('ZADD', KEYS[1], due, ARGV[2])\n",

    /* SLOT: KEYS slots; ARGV limit, lease ms, member */
    CR_LUA_NOW
    "local limit = tonumber(ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)\n"
    "if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end\n"
    "redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])\n"
    "return 1\n",

    /* SLOT_RENEW: KEYS slots; ARGV lease ms, member.  Redis's clock, as at
     * the grant: a node whose clock is off must not shorten or stretch it. */
    CR_LUA_NOW
    "return redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms + tonumber(ARGV[1]), ARGV[2])\n",

    /* AUTH_CHECK: KEYS address count, login count; ARGV limit */
    "for i = 1, 2 do\n"
    "  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[1]) then return 1 end\n"
    "end\n"
    "return 0\n",

    /* AUTH_FAIL: KEYS address count, login count; ARGV ttl ms.  Each count
     * lives ttl from its last failure. */
    "for i = 1, 2 do\n"
    "  redis.call('INCR', KEYS[i])\n"
    "  redis.call('PEXPIRE', KEYS[i], ARGV[1])\n"
    "end\n"
    "return 1\n",

    /* RATE: KEYS events; ARGV limit, window ms, member (unique).  Redis's
     * clock, like the leases: the nodes' clocks may disagree, and one event
     * must age alike for all of them.  Only the newest limit + 1 events are
     * kept (enough to judge the next one), so a flood cannot grow the set;
     * the key goes when its newest event leaves the window. */
    CR_LUA_NOW
    "local limit, win = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - win)\n"
    "redis.call('ZADD', KEYS[1], now_ms, ARGV[3])\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if n > limit + 1 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - limit - 2) end\n"
    "redis.call('PEXPIRE', KEYS[1], win)\n"
    "if n > limit then return 1 end\n"
    "return 0\n",

    /* BATCH: KEYS due, slots, token, epoch, held (of the queue claimed from);
     * ARGV limit, lease ms, node, key prefix, candidates, want, then four per
     * release: queue, qid, owner, next due (as RELEASE's).  The releases
     * first (their slots free room for the claims), then up to `want`
     * claims as CLAIM makes them.  Reply: status ('OK' when all wanted came,
     * 'EMPTY', 'FULL', 'PAUSED'), then qid, token, previous owner per file. */
    CR_LUA_NOW CR_LUA_TOKEN CR_LUA_EPOCH
    "local pre, lease = ARGV[4], tonumber(ARGV[2])\n"
    "for i = 7, #ARGV - 3, 4 do\n"
    "  local q, qid, owner, nxt = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])\n"
    "  local lock = pre .. 'lock:' .. qid\n"
    "  redis.call('ZREM', pre .. 'slots:' .. q, owner)\n"
    "  if redis.call('GET', lock) == owner then\n"
    "    redis.call('DEL', lock)\n"
    "    redis.call('HDEL', KEYS[5], qid)\n"
    "    if nxt >= 0 then redis.call('ZADD', pre .. 'due:' .. q, nxt, qid)\n"
    "    elseif nxt == -1 then redis.call('ZREM', pre .. 'due:' .. q, qid) end\n"
    "  end\n"
    "end\n"
    "local want = tonumber(ARGV[6])\n"
    "if want <= 0 then return {'OK'} end\n"
    "if paused(KEYS[4], lease) then return {'PAUSED'} end\n"
    "local limit, room = tonumber(ARGV[1]), want\n"
    "if limit > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)\n"
    "  local free = limit - redis.call('ZCARD', KEYS[2])\n"
    "  if free <= 0 then return {'FULL'} end\n"
    "  if free < room then room = free end\n"
    "end\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[5]) + room)\n"
    "local out, got = {'EMPTY'}, 0\n"
    "for i = 1, #ids do\n"
    "  if got >= room then break end\n"
    "  local lock = pre .. 'lock:' .. ids[i]\n"
    "  if redis.call('EXISTS', lock) == 0 then\n"
    "    local tok = new_token(KEYS[3])\n"
    "    local owner = ARGV[3] .. ' ' .. string.format('%d', tok)\n"
    "    redis.call('SET', lock, owner, 'PX', lease)\n"
    "    if limit > 0 then redis.call('ZADD', KEYS[2], now_ms + lease, owner) end\n"
    "    local prev = redis.call('HGET', KEYS[5], ids[i]) or ''\n"
    "    redis.call('HSET', KEYS[5], ids[i], owner)\n"
    "    got = got + 1\n"
    "    out[#out + 1] = ids[i]\n"
    "    out[#out + 1] = tok\n"
    "    out[#out + 1] = prev\n"
    "  end\n"
    "  redis.call('ZADD', KEYS[1], now_s + math.ceil(lease / 1000), ids[i])\n"
    "end\n"
    "if got == want then out[1] = 'OK' elseif got == room then out[1] = 'FULL' end\n"
    "return out\n",
};
