"""The Lua scripts of cluster mode: each check and the change it guards in one Redis step
(leases with their fencing tokens, fenced publishing, demand, heartbeats, configuration with
its version and announcement, the failover fence)."""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "DELETE_STREAM",
    "DEMAND",
    "DISCOVERED",
    "FAILOVER",
    "FENCED_PUBLISH",
    "HEARTBEAT",
    "PUT_STREAM",
    "PUT_TOKEN",
    "RELEASE",
    "RENEW",
    "RESTORE",
    "STEAL",
]

# The fence (KEYS[2]) is never below Redis' clock in microseconds: tokens keep increasing
# across a failover to a replica that missed the last increments (its own clock is past
# them: a failover takes seconds, millions of microseconds, and the servers' clocks agree
# far better than that under NTP), and across a Redis that lost its data.
_FLOOR = """
local t = redis.call('TIME')
local floor = t[1] .. string.format('%06d', tonumber(t[2]))
local fence = redis.call('GET', KEYS[2])
if not fence or tonumber(fence) < tonumber(floor) then redis.call('SET', KEYS[2], floor) end
"""

# KEYS: lease, fence, alive, quiet. ARGV: node, ttl ms. Returns the token; 0 when someone
# holds the lease, -1 while no lease is handed out. A Redis that lost its data (restarted
# without persistence: "alive" missing) may have forgotten leases that their holders use
# until their deadlines, so nobody gets one for one TTL ("quiet"): by then every former
# holder has stopped. The fence is kept at or above Redis' clock in microseconds (_FLOOR), so
# no token is ever handed out twice.
ACQUIRE = (
    """
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], '1')
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
  return -1
end
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
"""
    + _FLOOR
    + """
local token = redis.call('INCR', KEYS[2])
-- As a string from Redis itself: Lua would print a number this big as 1.79e+15.
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. redis.call('GET', KEYS[2]), 'PX', ARGV[2])
return token
"""
)
# KEYS: lease, fence. ARGV: node, ttl ms. A push camera connected to this node: its lease,
# whoever held it (the newest connection wins; the old holder's next fenced publish and
# renewal fail, so it stops). The token is the next fencing token, as in ACQUIRE.
STEAL = (
    _FLOOR
    + """
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. redis.call('GET', KEYS[2]), 'PX', ARGV[2])
return token
"""
)
# KEYS: lease. ARGV: "node|token", ttl ms.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS: lease. ARGV: "node|token".
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lease, frame channel. ARGV: "node|token", message. -1: the lease is not ours.
FENCED_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('PUBLISH', KEYS[2], ARGV[2])
"""
# KEYS: pairs of (demand zset, viewers hash) per stream. ARGV: node, ms, then this node's
# viewer count per stream. Demand scores are expiry times on Redis' clock, so node clocks
# never matter. Returns the number of nodes with viewers, per stream.
DEMAND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS, 2 do
  local n = (i + 1) / 2
  local count = ARGV[2 + n]
  if count ~= '0' then
    redis.call('ZADD', KEYS[i], now + ms, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], 2 * ms)
    redis.call('HSET', KEYS[i + 1], ARGV[1], count)
    redis.call('PEXPIRE', KEYS[i + 1], 2 * ms)
  else
    redis.call('ZREM', KEYS[i], ARGV[1])
    redis.call('HDEL', KEYS[i + 1], ARGV[1])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  out[n] = redis.call('ZCARD', KEYS[i])
end
return out
"""
# KEYS: nodes zset, node key. ARGV: node, ms, description. Returns the live nodes.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""
# KEYS: stream hash, streams index, version, config channel.
# ARGV: mode ('add' | 'update' | 'put'), name, created_at, node, then field/value pairs.
# -1: exists (add), -2: missing (update); else the new configuration version.
PUT_STREAM = """
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[1] == 'add' and exists then return -1 end
if ARGV[1] == 'update' and not exists then return -2 end
redis.call('DEL', KEYS[1])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
if not exists then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], cjson.encode({op='put', name=ARGV[2], v=v, node=ARGV[4]}))
return v
"""
# KEYS: stream hash, streams index, version, config channel. ARGV: name, node.
DELETE_STREAM = """
if redis.call('DEL', KEYS[1]) == 0 then return -2 end
redis.call('ZREM', KEYS[2], ARGV[1])
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], cjson.encode({op='delete', name=ARGV[1], v=v, node=ARGV[2]}))
return v
"""
# KEYS: tokens hash, version, config channel. ARGV: id, JSON ('' deletes), node.
PUT_TOKEN = """
local changed
if ARGV[2] == '' then changed = redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); changed = 1 end
if changed == 0 then return -2 end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], cjson.encode({op='tokens', name=ARGV[1], v=v, node=ARGV[3]}))
return v
"""
# KEYS: version, streams index, tokens hash, config channel. ARGV: version, prefix of stream
# keys, JSON [[name, [field, value, ...]], ...], JSON {id: token JSON}, node. Puts a lost
# configuration back in one step, unless some node already did (or it was never lost), and
# tells every node to reload.
RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i, stream in ipairs(cjson.decode(ARGV[3])) do
  local key = ARGV[2] .. stream[1]
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(stream[2]))
  redis.call('ZADD', KEYS[2], i, stream[1])
end
for id, token in pairs(cjson.decode(ARGV[4])) do redis.call('HSET', KEYS[3], id, token) end
redis.call('SET', KEYS[1], ARGV[1])
local reload = {op='reload', name='', v=tonumber(ARGV[1]), node=ARGV[5]}
redis.call('PUBLISH', KEYS[4], cjson.encode(reload))
return 1
"""

# KEYS: master, quiet. ARGV: the master's address, ttl ms. A node that finds the sentinels
# name another master than the one Redis remembers: nobody takes a lease for one TTL (a
# lease handed out by the old master and not yet replicated may still be in use until its
# holder, unable to renew, gives it up). Returns 1 when this call recorded the change.
FAILOVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
"""

# KEYS: the discovered hash. ARGV: field (ip|port), the camera as JSON, its name, the oldest
# last_seen still listed, the most entries. Returns 1 when this call put the camera on the
# cluster's list (new, renamed, or forgotten since), 0 when it was listed already (its entry
# refreshed, first_seen kept), -1 when the list is full.
DISCOVERED = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local old = cjson.decode(cur)
  if old.name == ARGV[3] and tonumber(old.last_seen) >= tonumber(ARGV[4]) then
    local new = cjson.decode(ARGV[2])
    new.first_seen = old.first_seen
    if tonumber(new.last_seen) < tonumber(old.last_seen) then new.last_seen = old.last_seen end
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(new))
    return 0
  end
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
