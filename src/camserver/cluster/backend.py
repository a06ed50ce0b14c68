"""One node's link to Redis: a command client, the Lua scripts, health, and pub/sub
subscriptions that come back by themselves.

Every atomic step is a Lua script, so that a check and the change it guards happen in one
Redis step: taking a lease with its fencing token, renewing and releasing it only while it is
still ours, publishing a frame only while the lease is still ours, and writing configuration
together with its version bump and its announcement.

Redis errors become :class:`~camserver.errors.ClusterUnavailable` (``raise ... from exc``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from camserver.cluster.wire import Keys
from camserver.errors import ClusterUnavailable

__all__ = ["Backend", "Subscription"]

log = logging.getLogger(__name__)

# KEYS: lease, fence, alive, quiet. ARGV: node, ttl ms. Returns the token; 0 when someone
# holds the lease, -1 while no lease is handed out. A Redis that lost its data (restarted
# without persistence: "alive" missing) may have forgotten leases that their holders use
# until their deadlines, so nobody gets one for one TTL ("quiet"): by then every former
# holder has stopped. The fence counter starts from Redis' clock in microseconds when
# missing, so no token is ever handed out twice.
ACQUIRE = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], '1')
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
  return -1
end
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
end
local token = redis.call('INCR', KEYS[2])
-- As a string from Redis itself: Lua would print a number this big as 1.79e+15.
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. redis.call('GET', KEYS[2]), 'PX', ARGV[2])
return token
"""
# KEYS: lease, fence. ARGV: node, ttl ms. A push camera connected to this node: its lease,
# whoever held it (the newest connection wins; the old holder's next fenced publish and
# renewal fail, so it stops). The token is the next fencing token, as in ACQUIRE.
STEAL = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. redis.call('GET', KEYS[2]), 'PX', ARGV[2])
return token
"""
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


class Backend:
    """Commands and scripts on one connection pool; remembers when Redis last answered."""

    def __init__(self, url: str, keys: Keys, node: str) -> None:
        self.url = url
        self.keys = keys
        self.node = node
        # Commands must fail fast when Redis is away: a lease renewal that waits longer
        # than the lease is worse than useless.
        self.redis = aioredis.Redis.from_url(
            url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=5,
            # RESP2: redis-py 8's RESP3 parser formats every pub/sub message for a debug log
            # line, logged or not (`"Push response: " + str(response)` in resp3.py): about
            # half of what receiving a 25 KB frame cost a node (py-spy, bench/cluster.py).
            protocol=2,
        )
        self.scripts: dict[str, AsyncScript] = {
            name: self.redis.register_script(text)
            for name, text in {
                "acquire": ACQUIRE,
                "steal": STEAL,
                "renew": RENEW,
                "release": RELEASE,
                "publish": FENCED_PUBLISH,
                "demand": DEMAND,
                "heartbeat": HEARTBEAT,
                "put_stream": PUT_STREAM,
                "delete_stream": DELETE_STREAM,
                "put_token": PUT_TOKEN,
                "restore": RESTORE,
            }.items()
        }
        self.last_ok = 0.0
        """Monotonic time Redis last answered."""
        self.last_error: str | None = None
        self.errors = 0

    @property
    def reachable(self) -> bool:
        """Redis answered within the last two seconds."""
        return time.monotonic() - self.last_ok < 2.0

    async def call(self, what: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis step; a Redis error becomes :class:`ClusterUnavailable`."""
        try:
            result = await step()
        except (RedisError, OSError) as exc:
            self.errors += 1
            self.last_error = f"{what}: {exc}"
            raise ClusterUnavailable(
                f"the cluster's Redis at {self.safe_url} cannot be reached ({exc}); "
                "changes are refused until it is back"
            ) from exc
        self.last_ok = time.monotonic()
        return result

    async def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.call(name, lambda: self.scripts[name](keys=keys, args=args))

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        head, sep, tail = self.url.rpartition("@")
        if not sep:
            return self.url
        scheme = head.split("://", 1)[0]
        return f"{scheme}://***@{tail}"

    async def close(self) -> None:
        await self.redis.aclose()


class Subscription:
    """A pub/sub connection that resubscribes after Redis drops it (a restart, or a
    subscriber over ``client-output-buffer-limit pubsub``), with backoff.

    ``on_message(channel, data)`` runs inline for every message, so it must be quick (store
    the frame, wake waiters). ``on_connect()`` runs after every (re)subscription: the place
    for a full resync of whatever the messages missed.
    """

    def __init__(
        self,
        backend: Backend,
        name: str,
        on_message: Callable[[bytes, bytes], None],
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._backend = backend
        self._name = name
        self._on_message = on_message
        self._on_connect = on_connect
        self._channels: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        """The connected PubSub, while the reader serves it."""
        self._subscribed: set[str] = set()
        self._applying = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self._up = False
        """Subscribed since the last failure."""
        self._closing = False

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"redis-sub:{self._name}")

    def want(self, channels: set[str]) -> None:
        """Be subscribed to exactly ``channels`` (at once when connected, else on connect)."""
        if channels != self._channels:
            self._channels = set(channels)
            if self._pubsub is not None:
                task = asyncio.create_task(self._apply_soon())
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # Python 3.11's wait_for can lose a cancellation that lands as its inner call
            # ends; the flag ends the loop anyway, and shutdown never waits long for it.
            await asyncio.wait({self._task}, timeout=3)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            # (Any: redis-py 8.2 typed PubSub.aclose, older releases did not.)
            pubsub: Any = self._backend.redis.pubsub()
            try:
                await self._serve(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._up:  # it had worked: the backoff starts afresh
                    attempt = 0
                self._up = False
                delay = min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                log.warning(
                    "redis %s subscription lost (%s); again in %.1f s", self._name, exc, delay
                )
                await asyncio.sleep(delay)
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), 2)
                except Exception:
                    log.debug("closing a lost subscription failed", exc_info=True)

    async def _serve(self, pubsub: Any) -> None:
        self._subscribed = set()
        # A placeholder channel, so that get_message() has a connection to read from.
        await pubsub.subscribe(f"{self._backend.keys.prefix}nothing")
        self._pubsub = pubsub
        try:
            await self._apply()
            self._up = True
            if self._on_connect is not None:
                await self._on_connect()
            while not self._closing:
                # Changes of channels are sent by _apply() meanwhile (sending only, which
                # redis-py allows beside a reader); this loop only reads.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "message":
                    try:
                        self._on_message(message["channel"], message["data"])
                    except Exception:
                        log.exception("redis %s message handler failed", self._name)
        finally:
            self._pubsub = None

    async def _apply(self) -> None:
        """Subscribe and unsubscribe so that the connection listens to ``channels``."""
        async with self._applying:
            pubsub = self._pubsub
            if pubsub is None:
                return  # the reader applies them when it (re)connects
            wanted = set(self._channels)
            if wanted - self._subscribed:
                await pubsub.subscribe(*(wanted - self._subscribed))
            if self._subscribed - wanted:
                await pubsub.unsubscribe(*(self._subscribed - wanted))
            self._subscribed = wanted

    async def _apply_soon(self) -> None:
        try:
            await self._apply()
        except Exception as exc:  # the reader sees the broken connection and starts over
            log.debug("redis %s: changing subscriptions failed: %s", self._name, exc)
