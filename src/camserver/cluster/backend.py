"""One node's link to Redis: a command client, the Lua scripts, health, and pub/sub
subscriptions that come back by themselves.

One Redis (``redis://``, ``rediss://`` for TLS) or a master found through Redis Sentinel
(``redis+sentinel://[:password@]host:port,host:port/db/master``): the client asks the
sentinels for the master at every new connection, so after a failover every command and
subscription reconnects to the new master by itself; :meth:`Backend.watch_master` notices
the change and fences it (the ``FAILOVER`` script). Configuration writes can wait for
replicas (``WAIT``, :meth:`Backend.script` with ``acked``) so an acknowledged change
survives a failover.

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

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from camserver.cluster.connect import async_client
from camserver.cluster.scripts import (
    ACQUIRE,
    DELETE_STREAM,
    DEMAND,
    DISCOVERED,
    FAILOVER,
    FENCED_PUBLISH,
    HEARTBEAT,
    PUT_STREAM,
    PUT_TOKEN,
    RELEASE,
    RENEW,
    RESTORE,
    STEAL,
)
from camserver.cluster.wire import Keys
from camserver.errors import ClusterUnavailable

__all__ = ["Backend", "Subscription"]

log = logging.getLogger(__name__)

WAIT_MS = 500
"""How long a configuration write waits for its replicas (within the commands' 1 s socket
timeout, so that the answer is WAIT's count, not a timeout)."""


class Backend:
    """Commands and scripts on one connection pool; remembers when Redis last answered."""

    def __init__(self, url: str, keys: Keys, node: str, *, replica_acks: int = 0) -> None:
        self.url = url
        self.keys = keys
        self.node = node
        self.replica_acks = replica_acks
        """Replicas that must have a configuration change before it is acknowledged."""
        self.redis, self.sentinel, self.master_name = async_client(url)
        self.master: str | None = None
        """Sentinel: the master's address as last found."""
        self.outdated: str | None = None
        """Why this node serves only: a newer node or stored configuration (else None)."""
        self.failovers = 0
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
                "failover": FAILOVER,
                "discovered": DISCOVERED,
            }.items()
        }
        self.last_ok = 0.0
        """Monotonic time Redis last answered."""
        self.last_error: str | None = None
        self.errors = 0

    def versions(self, why: str | None) -> None:
        """Whether this node must serve only (``camserver.cluster.wire.outdated``): logged
        when it changes, refused writes and no leases while it holds."""
        if why != self.outdated:
            if why is not None:
                log.error("cluster: %s", why)
            else:
                log.info("cluster: no node or stored configuration is newer than this node")
            self.outdated = why

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

    async def script(
        self, name: str, keys: list[str], args: list[Any], *, acked: bool = False
    ) -> Any:
        """Run a script; ``acked``: and wait (on the same connection) until
        ``replica_acks`` replicas have its writes, else ClusterUnavailable (the change may
        be lost in a failover: never a false success)."""
        if not acked or self.replica_acks == 0:
            return await self.call(name, lambda: self.scripts[name](keys=keys, args=args))

        async def step() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                await self.scripts[name](keys=keys, args=args, client=pipe)
                pipe.wait(self.replica_acks, WAIT_MS)
                result: list[Any] = await pipe.execute()
                return result

        result, acks = await self.call(name, step)
        if acks < self.replica_acks:
            self.errors += 1
            self.last_error = f"{name}: {acks} of {self.replica_acks} replicas"
            raise ClusterUnavailable(
                f"the change reached {acks} of the {self.replica_acks} Redis replicas it "
                f"needs within {WAIT_MS / 1000:g} s (CAMSERVER_REDIS_REPLICA_ACKS): it may be "
                "lost if the master fails now; check the replicas and try again"
            )
        return result

    async def watch_master(self, lease_ttl: float, every: float = 0.5) -> None:
        """Sentinel: ask for the master's address every ``every`` s; when it changed, fence
        the change (``FAILOVER``: no lease for one TTL). Runs until cancelled."""
        assert self.sentinel is not None
        while True:
            try:
                host, port = await self.sentinel.discover_master(self.master_name)
                address = f"{host}:{port}"
                if address != self.master:
                    if self.master is not None:
                        log.warning("cluster: the Redis master is now %s", address)
                        self.failovers += 1
                    self.master = address
                    keys = [self.keys.master, self.keys.quiet]
                    ttl = str(int(lease_ttl * 1000))
                    await self.script("failover", keys, [address, ttl])
            except (RedisError, OSError, ClusterUnavailable) as exc:
                log.debug("cluster: the sentinels do not name a master now: %s", exc)
            await asyncio.sleep(every)

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
