"""The set of streams: their stored configuration, hub and ingest task, kept in step.

Whether a stream's ingest runs follows from its configuration and its viewers:
``enabled`` off → stopped; ``on_demand`` off → running; ``on_demand`` on → running while
the hub has viewers, stopped ``grace`` seconds after the last one left (state ``idle``).

In cluster mode a :class:`Placement` (``camserver.cluster``) decides instead: it makes the
hubs, runs a stream's ingest only on the node that holds the camera's lease, and answers
for the stream's status cluster-wide. Configuration changes made on other nodes arrive
through :meth:`StreamManager.apply_remote` and :meth:`StreamManager.drop_remote`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from camserver.codecs import jpeg
from camserver.errors import (
    SnapshotUnavailable,
    StreamNotFound,
    TooManyStreams,
    TooManyViewers,
    UpstreamConnectError,
    UpstreamError,
)
from camserver.netguard import NetworkGuard
from camserver.schema import (
    StreamConfig,
    StreamOut,
    StreamPatch,
    StreamState,
    StreamStatus,
)
from camserver.schema.urls import mask_url
from camserver.store import StreamStore
from camserver.streaming.hub import LocalHub
from camserver.streaming.ingest import Ingest, IngestTiming
from camserver.upstream import fetch

__all__ = ["ChangeListener", "Placement", "StatusListener", "StreamManager"]

log = logging.getLogger(__name__)

StatusListener = Callable[[str, StreamStatus], None]
ChangeListener = Callable[[str, str], None]
"""Called with (stream name, "created" | "updated" | "deleted") for changes made here."""


class Placement(Protocol):
    """Where streams run when several nodes share them (see the module docstring)."""

    def new_hub(self, name: str) -> LocalHub: ...

    def changed(self, name: str) -> None:
        """The stream's configuration or local viewers changed: decide again soon."""

    def status(self, name: str, local: StreamStatus) -> StreamStatus:
        """The stream's status as every node reports it (``local``: this node's ingest)."""
        ...


@dataclass(slots=True)
class _Stream:
    cfg: StreamConfig
    hub: LocalHub
    ingest: Ingest
    target: tuple[str | None, ...]
    """What the ingest connects with: a change restarts it."""
    grace: asyncio.Task[None] | None = field(default=None)


def _target(cfg: StreamConfig) -> tuple[str | None, ...]:
    return (cfg.stream_url, cfg.username, cfg.password, cfg.auth_scheme)


class StreamManager:
    def __init__(
        self,
        store: StreamStore,
        client: httpx.AsyncClient,
        timing: IngestTiming,
        *,
        snapshot_max_age: float = 2.0,
        snapshot_timeout: float = 5.0,
        on_demand_grace: float = 10.0,
        max_streams: int = 64,
        max_viewers: int = 500,
        max_viewers_per_client: int = 50,
        guard: NetworkGuard | None = None,
    ) -> None:
        self._max_streams = max_streams
        self.max_viewers = max_viewers
        self.max_viewers_per_client = max_viewers_per_client
        self.guard = guard or NetworkGuard([])
        self.store = store
        self._client = client
        self._timing = timing
        self._snapshot_max_age = snapshot_max_age
        self._snapshot_timeout = snapshot_timeout
        self._grace = on_demand_grace
        self._streams: dict[str, _Stream] = {}
        self._listeners: list[StatusListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._config_listeners: list[Callable[[str], None]] = []
        self._lock = asyncio.Lock()  # serialises changes so store and runtime agree
        self.placement: Placement | None = None

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def add_change_listener(self, listener: ChangeListener) -> None:
        self._change_listeners.append(listener)

    def add_config_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(name)`` after any change of a stream's configuration, made on this
        node or (cluster mode) on another; change listeners hear of this node's only."""
        self._config_listeners.append(listener)

    def _changed(self, name: str, what: str) -> None:
        for listener in self._change_listeners:
            try:
                listener(name, what)
            except Exception:
                log.exception("change listener failed for stream %s", name)
        self._configured(name)

    def _configured(self, name: str) -> None:
        for config_listener in self._config_listeners:
            try:
                config_listener(name)
            except Exception:
                log.exception("config listener failed for stream %s", name)

    def _notify(self, name: str, status: StreamStatus) -> None:
        for listener in self._listeners:
            try:
                listener(name, status)
            except Exception:
                log.exception("status listener failed for stream %s", name)

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Create the runtime of every stored stream; start those that were started."""
        for cfg in await self.store.list():
            await self._reconcile(self._runtime(cfg))
        log.info("loaded %d stream(s)", len(self._streams))

    async def close(self) -> None:
        for s in self._streams.values():
            self._cancel_grace(s)
        await asyncio.gather(*(s.ingest.stop() for s in self._streams.values()))
        self.close_hubs()

    def close_hubs(self) -> None:
        """Wake and end every viewer (server shutting down)."""
        for s in self._streams.values():
            s.hub.close()

    def _runtime(self, cfg: StreamConfig) -> _Stream:
        hub = self.placement.new_hub(cfg.name) if self.placement else LocalHub(cfg.name)
        ingest = Ingest(
            cfg.name,
            cfg.stream_url,
            self._client,
            hub,
            self._timing,
            self._notify,
            auth=cfg.httpx_auth(),
            guard=self.guard,
        )
        stream = _Stream(cfg, hub, ingest, _target(cfg))
        hub.on_change = lambda viewers: self._demand(stream, viewers)
        self._streams[cfg.name] = stream
        return stream

    async def _reconcile(self, stream: _Stream) -> None:
        """Start or stop the ingest as the configuration and the viewers say."""
        cfg, ingest = stream.cfg, stream.ingest
        if stream.target != _target(cfg):
            await ingest.stop()
            ingest.url, ingest.auth = cfg.stream_url, cfg.httpx_auth()
            stream.target = _target(cfg)
        if self.placement is not None:
            if not cfg.enabled:
                await ingest.stop(StreamState.STOPPED)
            self.placement.changed(cfg.name)
            return
        if not cfg.enabled:
            self._cancel_grace(stream)
            await ingest.stop(StreamState.STOPPED)
        elif not cfg.on_demand or stream.hub.viewers > 0:
            self._cancel_grace(stream)
            ingest.start()
        elif ingest.running:
            self._start_grace(stream)
        else:
            ingest.set_state(StreamState.IDLE)

    # -- on demand ----------------------------------------------------------------------

    def _demand(self, stream: _Stream, viewers: int) -> None:
        if self.placement is not None:
            self.placement.changed(stream.cfg.name)
            return
        if not (stream.cfg.enabled and stream.cfg.on_demand):
            return
        if viewers > 0:
            self._cancel_grace(stream)
            if not stream.ingest.running:
                log.info("stream %s: first viewer, connecting on demand", stream.cfg.name)
                stream.ingest.start()
        elif stream.ingest.running:
            self._start_grace(stream)

    def _start_grace(self, stream: _Stream) -> None:
        if stream.grace is None or stream.grace.done():
            stream.grace = asyncio.create_task(self._grace_stop(stream))

    def _cancel_grace(self, stream: _Stream) -> None:
        if stream.grace is not None:
            stream.grace.cancel()
            stream.grace = None

    async def _grace_stop(self, stream: _Stream) -> None:
        await asyncio.sleep(self._grace)
        if stream.hub.viewers == 0 and stream.cfg.on_demand and stream.cfg.enabled:
            log.info("stream %s: no viewers for %g s, disconnecting", stream.cfg.name, self._grace)
            stream.grace = None
            await stream.ingest.stop(StreamState.IDLE)

    # -- queries ------------------------------------------------------------------------

    def _get(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            raise StreamNotFound(name)
        return stream

    def __contains__(self, name: object) -> bool:
        return name in self._streams

    def names(self) -> list[str]:
        return list(self._streams)

    def hub(self, name: str) -> LocalHub:
        return self._get(name).hub

    def admit(self, name: str, client: str | None = None) -> LocalHub:
        """The hub of ``name`` for one more viewer of any kind (MJPEG, Socket.IO, snapshot)
        from address ``client``.

        Raises StreamNotFound, or TooManyViewers when the stream has ``max_viewers``, or
        that client ``max_viewers_per_client`` of them (one client must not take them all).
        """
        hub = self._get(name).hub
        if hub.viewers >= self.max_viewers:
            raise TooManyViewers(f"stream {name!r} has its maximum of {self.max_viewers} viewers")
        if client is not None and hub.viewers_from(client) >= self.max_viewers_per_client:
            raise TooManyViewers(
                f"{client} already watches stream {name!r} {self.max_viewers_per_client} times "
                "(CAMSERVER_MAX_VIEWERS_PER_CLIENT)"
            )
        return hub

    def names_by_url(self) -> dict[str, str]:
        """Stream URL → name of the stream reading it."""
        return {s.cfg.stream_url: name for name, s in self._streams.items()}

    def config(self, name: str) -> StreamConfig:
        return self._get(name).cfg

    def status(self, name: str) -> StreamStatus:
        local = self._get(name).ingest.snapshot_status()
        return local if self.placement is None else self.placement.status(name, local)

    def get(self, name: str) -> StreamOut:
        s = self._get(name)
        out = s.cfg.model_dump()
        if s.cfg.motion.webhook_url is not None:  # a secret, like the password (issue 26 M5)
            out["motion"]["webhook_url"] = mask_url(s.cfg.motion.webhook_url)
        return StreamOut(**out, has_password=s.cfg.password is not None, status=self.status(name))

    def ingest_running(self, name: str) -> bool:
        return self._get(name).ingest.running

    def run_ingest(self, name: str) -> None:
        """Cluster mode: this node now holds the camera; pull it."""
        self._get(name).ingest.start()

    async def halt_ingest(self, name: str) -> None:
        """Cluster mode: this node no longer holds the camera; let it go."""
        stream = self._streams.get(name)
        if stream is not None:
            await stream.ingest.stop(StreamState.STOPPED)

    def list(self) -> list[StreamOut]:
        return [self.get(name) for name in self._streams]

    # -- changes ------------------------------------------------------------------------

    def _check_room(self) -> None:
        if len(self._streams) >= self._max_streams:
            raise TooManyStreams(
                f"the server already has its maximum of {self._max_streams} streams "
                "(CAMSERVER_MAX_STREAMS)"
            )

    async def _check_target(self, cfg: StreamConfig) -> None:
        for url in (cfg.stream_url, cfg.snapshot_url):
            if url:
                await self.guard.check(url)

    async def create(self, cfg: StreamConfig) -> StreamOut:
        await self._check_target(cfg)
        async with self._lock:
            if cfg.name not in self._streams:
                self._check_room()
            await self.store.add(cfg)  # raises StreamExists
            stream = self._runtime(cfg)
            await self._reconcile(stream)
            log.info("stream %s: created (%s)", cfg.name, cfg.stream_url)
        self._changed(cfg.name, "created")
        return self.get(cfg.name)

    async def delete(self, name: str) -> None:
        async with self._lock:
            self._get(name)
            await self.store.delete(name)
        await self.drop_remote(name)
        self._changed(name, "deleted")

    async def apply_remote(self, cfg: StreamConfig) -> None:
        """A stream created or changed on another node (already in the shared store)."""
        async with self._lock:
            stream = self._streams.get(cfg.name)
            if stream is None:
                stream = self._runtime(cfg)
                log.info("stream %s: created on another node (%s)", cfg.name, cfg.stream_url)
            elif stream.cfg == cfg:
                return
            else:
                stream.cfg = cfg
                log.info("stream %s: changed on another node", cfg.name)
            await self._reconcile(stream)
        self._configured(cfg.name)

    async def drop_remote(self, name: str) -> None:
        """Forget a stream deleted from the store (here or on another node)."""
        async with self._lock:
            stream = self._streams.pop(name, None)
        if stream is None:
            return
        self._cancel_grace(stream)
        stream.hub.on_change = None
        await stream.ingest.stop()
        stream.hub.close()
        log.info("stream %s: deleted", name)
        self._configured(name)

    async def put(self, cfg: StreamConfig) -> StreamOut:
        """Create the stream, or replace its configuration."""
        await self._check_target(cfg)
        async with self._lock:
            stream = self._streams.get(cfg.name)
            what = "created" if stream is None else "updated"
            if stream is None:
                self._check_room()
                await self.store.add(cfg)
                stream = self._runtime(cfg)
            else:
                await self.store.update(cfg)
                stream.cfg = cfg
            await self._reconcile(stream)
        self._changed(cfg.name, what)
        return self.get(cfg.name)

    async def update(self, name: str, patch: StreamPatch) -> StreamOut:
        """Apply ``patch``; a changed URL restarts the ingest on the new one."""
        async with self._lock:
            stream = self._get(name)
            cfg = patch.apply(stream.cfg)
            changed = cfg != stream.cfg
            if changed:
                await self._check_target(cfg)
                await self.store.update(cfg)
                stream.cfg = cfg
                log.info("stream %s: updated (%s)", name, patch.model_dump(exclude_none=True))
            await self._reconcile(stream)
        if changed:
            self._changed(name, "updated")
        return self.get(name)

    async def set_enabled(self, name: str, enabled: bool) -> StreamStatus:
        await self.update(name, StreamPatch(enabled=enabled))
        return self.status(name)

    # -- snapshots ----------------------------------------------------------------------

    async def snapshot(self, name: str, client: str | None = None) -> bytes:
        """The latest frame if recent; for an on-demand stream, the first frame after
        connecting; else one fetched from the camera's snapshot URL."""
        stream = self._get(name)
        self.admit(name, client)
        with stream.hub.viewer("snapshot", client):  # wakes an on-demand stream
            frame = stream.hub.latest
            if frame is not None and time.time() - frame.ts <= self._snapshot_max_age:
                return frame.data
            # Cluster mode: the holder connects on demand and relays the first frame.
            if stream.cfg.on_demand and (stream.ingest.running or self.placement is not None):
                fresh = await stream.hub.next_frame(
                    frame.seq if frame else 0, timeout=self._snapshot_timeout
                )
                if fresh is not None:
                    return fresh.data
            return await self._fetch_snapshot(stream.cfg)

    async def _fetch_snapshot(self, cfg: StreamConfig) -> bytes:
        url = cfg.snapshot_url
        if not url:
            raise SnapshotUnavailable(
                f"stream {cfg.name!r} has no frame from the last {self._snapshot_max_age:g} s "
                "and no snapshot URL"
            )
        try:
            got = await fetch(
                self._client,
                self.guard,
                url,
                max_bytes=self._timing.max_frame_bytes,
                deadline=self._snapshot_timeout,
                auth=cfg.httpx_auth(),
            )
        except UpstreamConnectError as exc:
            raise SnapshotUnavailable(
                f"no recent frame, and the camera's snapshot URL failed: {exc}"
            ) from exc
        except UpstreamError as exc:  # too slow (504) or too big, broken (502)
            raise type(exc)(
                f"no recent frame, and the camera's snapshot URL failed: {exc}"
            ) from exc
        if got.status != 200:
            raise SnapshotUnavailable(
                f"no recent frame, and the camera's snapshot URL answered HTTP {got.status}"
            )
        if not jpeg.is_complete(got.body):
            raise SnapshotUnavailable(
                "no recent frame, and the camera's snapshot URL did not return a whole JPEG"
            )
        return got.body
