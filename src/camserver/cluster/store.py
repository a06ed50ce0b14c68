"""Cluster mode's :class:`~camserver.store.StreamStore`: stream configuration and managed
tokens in Redis, and the feed that keeps every node's copy in step.

A stream is a hash ``<prefix>stream:<name>`` listed in the sorted set ``<prefix>streams``
(by creation time); tokens are JSON in the hash ``<prefix>tokens``. Every write is one Lua
step that also bumps ``<prefix>config:version`` and announces the change on
``<prefix>config``; a node that sees a gap in the versions (it missed a message, Redis
restarted, it just connected) reloads everything. Redis is run with AOF (see
``deploy/cluster/redis.conf``), so an acknowledged change survives ``kill -9`` of Redis.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from camserver.cluster.backend import Backend, Subscription
from camserver.cluster.wire import ConfigChange, WireError, decode_change
from camserver.errors import ClusterUnavailable, StreamExists, StreamNotFound
from camserver.schema import MotionSettings, RecordingSettings, StreamConfig
from camserver.tokens import ManagedToken

__all__ = ["ConfigFeed", "RedisStore"]

log = logging.getLogger(__name__)

_BOOLS = ("enabled", "on_demand")


def _fields(cfg: StreamConfig) -> list[str]:
    out: list[str] = []
    for key, value in cfg.model_dump(exclude={"password", "recording", "motion"}).items():
        if value is not None:
            out += [key, ("1" if value else "0") if key in _BOOLS else str(value)]
    out += ["recording", cfg.recording.model_dump_json()]
    out += ["motion", cfg.motion.model_dump_json()]
    if cfg.password is not None:
        out += ["password", cfg.password]
    if cfg.push_key_hash is not None:
        out += ["push_key_hash", cfg.push_key_hash]
    if cfg.encryption_key is not None:
        out += ["encryption_key", cfg.encryption_key]
    return out


def _config(raw: dict[bytes, bytes]) -> StreamConfig:
    data: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    data.pop("created_at", None)
    for key in _BOOLS:
        if key in data:
            data[key] = data[key] == "1"
    if "recording" in data:
        data["recording"] = RecordingSettings.model_validate_json(data["recording"])
    if "motion" in data:
        data["motion"] = MotionSettings.model_validate_json(data["motion"])
    return StreamConfig(**data)


class RedisStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._b = backend
        self._k = backend.keys
        self.unreadable: set[str] = set()
        """Streams whose hash the last :meth:`list` could not read."""
        self._bad: dict[str, int] = {}
        """Stream → the unreadable hash already logged."""

    async def list(self) -> list[StreamConfig]:
        names = await self._b.call("list", lambda: self._b.redis.zrange(self._k.streams, 0, -1))

        async def read() -> list[Any]:
            async with self._b.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._k.stream(name.decode()))
                result: list[Any] = await pipe.execute()
                return result

        rows = await self._b.call("list", read) if names else []
        out: list[StreamConfig] = []
        unreadable: set[str] = set()
        for name, row in zip(names, rows, strict=True):
            if not row:
                continue
            cfg = self.read(name.decode(), row)
            if cfg is None:
                unreadable.add(name.decode())
            else:
                out.append(cfg)
        self.unreadable = unreadable
        return out

    def read(self, name: str, raw: dict[bytes, bytes]) -> StreamConfig | None:
        """A stream's hash as a configuration, or None (said once per bad value) when it
        cannot be read: one malformed value once made every resync fail with a
        traceback every 5 s, and every other stream fell out of step."""
        try:
            cfg = _config(raw)
        except (ValueError, TypeError) as exc:  # (pydantic's ValidationError is one)
            seen = hash(tuple(sorted(raw.items())))
            if self._bad.get(name) != seen:
                self._bad[name] = seen
                why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                log.error(
                    "config: stream %r in Redis cannot be read (%s); this node keeps its "
                    "copy, if any, until the stream is saved again",
                    name,
                    why,
                )
            return None
        self._bad.pop(name, None)
        return cfg

    async def version(self) -> int:
        got = await self._b.call("version", lambda: self._b.redis.get(self._k.version))
        return int(got or 0)

    def _writable(self) -> None:
        if self._b.outdated is not None:
            raise ClusterUnavailable(self._b.outdated)

    async def _put(self, mode: str, cfg: StreamConfig) -> int:
        self._writable()
        k = self._k
        got = await self._b.script(
            "put_stream",
            [k.stream(cfg.name), k.streams, k.version, k.config],
            [mode, cfg.name, repr(time.time()), self._b.node, *_fields(cfg)],
            acked=True,
        )
        if got == -1:
            raise StreamExists(cfg.name)
        if got == -2:
            raise StreamNotFound(cfg.name)
        return int(got)

    async def add(self, cfg: StreamConfig) -> None:
        await self._put("add", cfg)

    async def update(self, cfg: StreamConfig) -> None:
        await self._put("update", cfg)

    async def delete(self, name: str) -> None:
        self._writable()
        k = self._k
        got = await self._b.script(
            "delete_stream",
            [k.stream(name), k.streams, k.version, k.config],
            [name, self._b.node],
            acked=True,
        )
        if got == -2:
            raise StreamNotFound(name)

    async def close(self) -> None:
        """The backend is closed by its owner."""

    async def list_tokens(self) -> builtins.list[ManagedToken]:
        raw = await self._b.call("tokens", lambda: self._b.redis.hgetall(self._k.tokens))
        tokens = [ManagedToken(**json.loads(v)) for v in raw.values()]
        return sorted(tokens, key=lambda t: t.created_at)

    async def _put_token(self, token_id: str, value: str) -> bool:
        self._writable()
        k = self._k
        got = await self._b.script(
            "put_token",
            [k.tokens, k.version, k.config],
            [token_id, value, self._b.node],
            acked=True,
        )
        return bool(got != -2)

    async def add_token(self, token: ManagedToken) -> None:
        await self._put_token(token.id, json.dumps(dataclasses.asdict(token)))

    async def delete_token(self, token_id: str) -> bool:
        return await self._put_token(token_id, "")

    async def touch_token(self, token_id: str, when: float) -> None:
        # Bookkeeping only: no announcement, and last write wins.
        raw = await self._b.call("token", lambda: self._b.redis.hget(self._k.tokens, token_id))
        if raw:
            data = json.loads(raw)
            if (data.get("last_used") or 0) < when:
                data["last_used"] = when
                await self._b.call(
                    "token",
                    lambda: self._b.redis.hset(self._k.tokens, token_id, json.dumps(data)),
                )


class ConfigFeed:
    """Applies configuration changes announced by any node, in version order; reloads
    everything after a gap, on (re)connect, and when a periodic version check disagrees."""

    def __init__(
        self,
        backend: Backend,
        store: RedisStore,
        apply: Callable[[StreamConfig], Awaitable[None]],
        drop: Callable[[str], Awaitable[None]],
        names: Callable[[], list[str]],
        tokens: Callable[[list[ManagedToken]], None],
        cached: Callable[[], tuple[list[StreamConfig], list[ManagedToken]]],
    ) -> None:
        self._b = backend
        self._store = store
        self._apply, self._drop, self._names, self._tokens = apply, drop, names, tokens
        self._cached = cached
        self.version = 0
        self._stale = False
        self.resyncs = 0
        self._queue: asyncio.Queue[ConfigChange | Literal["check", "reload"]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.subscription = Subscription(backend, "config", self._on_message, self._on_connect)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="config-feed")
        self.subscription.want({self._b.keys.config})
        self.subscription.start()

    async def close(self) -> None:
        await self.subscription.close()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            self._queue.put_nowait(decode_change(data))
        except WireError as exc:
            log.warning("ignored a config message: %s", exc)

    async def _on_connect(self) -> None:
        self._queue.put_nowait("reload")  # whatever was missed while disconnected

    def check(self) -> None:
        """Ask for a version check (a safety net for a lost message)."""
        self._queue.put_nowait("check")

    async def _work(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                await self._handle(change)
            except ClusterUnavailable as exc:
                log.warning("config feed: %s", exc)
                self._stale = True  # reload once Redis answers again
            except Exception:
                log.exception("config feed: applying a change failed")
                self._stale = True

    async def _handle(self, change: ConfigChange | Literal["check", "reload"]) -> None:
        if change == "check":
            if self._stale or await self._store.version() != self.version:
                await self.resync()
            return
        if change == "reload" or change.op == "reload" or self._stale:
            await self.resync()
            return
        if change.version > self.version + 1:  # missed one: start from what Redis holds
            await self.resync()
            return
        if change.version <= self.version:
            return  # seen already (or loaded by a resync)
        if change.node != self._b.node:  # else applied when it was made here
            if change.op == "tokens":
                self._tokens(await self._store.list_tokens())
            elif change.op == "delete":
                await self._drop(change.name)
            else:
                raw = await self._b.call(
                    "stream", lambda: self._b.redis.hgetall(self._b.keys.stream(change.name))
                )
                cfg = self._store.read(change.name, raw) if raw else None
                if cfg is not None:
                    await self._apply(cfg)
        self.version = change.version  # only once applied: a restore must not miss it

    async def resync(self) -> None:
        """Make this node's streams and tokens what Redis holds."""
        version = await self._store.version()
        if version == 0 and self.version > 0 and not self._stale:
            await self._restore()
            version = await self._store.version()
        configs = await self._store.list()
        tokens = await self._store.list_tokens()
        self.resyncs += 1
        # (An unreadable stream is kept as this node has it, not dropped.)
        wanted = {cfg.name for cfg in configs} | self._store.unreadable
        for cfg in configs:
            await self._apply(cfg)
        for name in self._names():
            if name not in wanted:
                await self._drop(name)
        self._tokens(tokens)
        self.version = version
        self._stale = False
        log.info("config: in step with Redis at version %d (%d streams)", version, len(configs))

    async def _restore(self) -> None:
        """Redis came back empty (restarted without persistence): put back what this node
        knew, unless another node already did. Only a node whose copy was complete when
        Redis went away does it (a change in flight at that moment can be lost: the shipped
        redis.conf keeps an append-only file so that this never happens)."""
        k, b = self._b.keys, self._b
        configs, tokens = self._cached()
        streams = [[cfg.name, _fields(cfg)] for cfg in configs]
        ids = {t.id: json.dumps(dataclasses.asdict(t)) for t in tokens}
        done = await b.script(
            "restore",
            [k.version, k.streams, k.tokens, k.config],
            [
                self.version,
                k.stream(""),
                json.dumps(streams),
                json.dumps(ids) if ids else "{}",
                self._b.node,
            ],
        )
        if done:
            log.warning(
                "config: Redis lost its data; restored %d streams and %d tokens from this node",
                len(configs),
                len(tokens),
            )
