"""The set of streams: their stored configuration, hub and source supervisor, kept in step.

:class:`StreamRegistry` owns the configuration (create, change, delete, through the
:class:`~camserver.store.StreamStore`) and tells its listeners; whether a stream's source
runs is its :class:`~camserver.streaming.placement.Placement`'s decision (one node: the
local rule; cluster mode: the node holding the camera's lease). Viewer admission and
snapshots are their own parts (``admission``, ``snapshots``).

In cluster mode configuration changes made on other nodes arrive through
:meth:`StreamRegistry.apply_remote` and :meth:`StreamRegistry.drop_remote`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from camserver.errors import StreamNotFound, TooManyStreams, WrongSourceKind
from camserver.netguard import NetworkGuard
from camserver.schema import StreamConfig, StreamOut, StreamPatch, StreamStatus
from camserver.schema.urls import mask_url
from camserver.sources import (
    PushSource,
    SourceTiming,
    Supervisor,
    esphome_url,
    source_for,
    target_of,
    target_url,
)
from camserver.store import StreamStore
from camserver.streaming.admission import Admission
from camserver.streaming.hub import LocalHub
from camserver.streaming.placement import LocalPlacement, Placement, StreamRecord
from camserver.streaming.snapshots import Snapshots
from camserver.tokens import hash_token, new_token

__all__ = ["ChangeListener", "StatusListener", "StreamRegistry"]

log = logging.getLogger(__name__)

StatusListener = Callable[[str, StreamStatus], None]
ChangeListener = Callable[[str, str], None]
"""Called with (stream name, "created" | "updated" | "deleted") for changes made here."""


def _closed(source: object, reason: str) -> None:
    """A source that holds a camera's connection (push) lets it go."""
    close = getattr(source, "close", None)
    if close is not None:
        close(reason)


def _check_kind(cfg: StreamConfig, patch: StreamPatch) -> None:
    pull = ("host", "stream_url", "snapshot_url", "username", "password", "auth_scheme")
    if cfg.pushed and any(getattr(patch, k) is not None for k in pull):
        raise WrongSourceKind(
            f"stream {cfg.name!r} is a push camera: it has no host, URL or login to change"
        )
    if not cfg.pushed and patch.expect_every is not None:
        raise WrongSourceKind(f"stream {cfg.name!r} pulls its camera: expect_every is for push")
    http_only = ("stream_url", "snapshot_url", "username", "auth_scheme")
    if cfg.esphome and any(getattr(patch, k) is not None for k in http_only):
        raise WrongSourceKind(
            f"stream {cfg.name!r} is an ESPHome camera: it is reached by host, port and "
            "encryption_key, not by URL or HTTP login"
        )
    if not cfg.esphome and (patch.port is not None or patch.encryption_key is not None):
        raise WrongSourceKind(
            f"stream {cfg.name!r} is not an ESPHome camera: port and encryption_key are "
            "for ESPHome cameras"
        )


class StreamRegistry:
    def __init__(
        self,
        store: StreamStore,
        client: httpx.AsyncClient,
        timing: SourceTiming,
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
        self.guard = guard or NetworkGuard([])
        self.store = store
        self._client = client
        self._timing = timing
        self._streams: dict[str, StreamRecord] = {}
        self._listeners: list[StatusListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._config_listeners: list[Callable[[str], None]] = []
        self._lock = asyncio.Lock()  # serialises changes so store and runtime agree
        self.placement: Placement = LocalPlacement(on_demand_grace)
        """Replaced by the cluster's before any stream exists (``camserver.cluster``)."""
        self.admission = Admission(self, max_viewers, max_viewers_per_client)
        self.snapshots = Snapshots(
            self,
            client,
            max_age=snapshot_max_age,
            timeout=snapshot_timeout,
            max_bytes=timing.max_frame_bytes,
        )

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
            await self._reconcile(self._record(cfg))
        log.info("loaded %d stream(s)", len(self._streams))

    async def close(self) -> None:
        for s in self._streams.values():
            self.placement.forget(s)
        await asyncio.gather(*(s.supervisor.stop() for s in self._streams.values()))
        self.close_hubs()

    def close_hubs(self) -> None:
        """Wake and end every viewer (server shutting down)."""
        for s in self._streams.values():
            s.hub.close()

    def _record(self, cfg: StreamConfig) -> StreamRecord:
        hub = self.placement.new_hub(cfg.name)
        source = source_for(cfg, self._client, self._timing, self.guard)
        supervisor = Supervisor(cfg.name, source, hub, self._timing, self._notify)
        stream = StreamRecord(cfg, hub, supervisor, target_of(cfg))
        hub.demand.on_change = lambda: self.placement.demand_changed(stream)
        self._streams[cfg.name] = stream
        return stream

    async def _reconcile(self, stream: StreamRecord) -> None:
        """A new source when what it connects with changed; then the placement decides."""
        cfg = stream.cfg
        if stream.target != target_of(cfg):
            await stream.supervisor.stop()
            _closed(stream.supervisor.source, "the stream now takes its pictures another way")
            stream.supervisor.source = source_for(cfg, self._client, self._timing, self.guard)
            stream.target = target_of(cfg)
        else:
            reconfigure = getattr(stream.supervisor.source, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(cfg)
        await self.placement.reconcile(stream)

    # -- queries ------------------------------------------------------------------------

    @property
    def max_frame_bytes(self) -> int:
        return self._timing.max_frame_bytes

    def record(self, name: str) -> StreamRecord:
        stream = self._streams.get(name)
        if stream is None:
            raise StreamNotFound(name)
        return stream

    def __contains__(self, name: object) -> bool:
        return name in self._streams

    def names(self) -> list[str]:
        return list(self._streams)

    def hub(self, name: str) -> LocalHub:
        return self.record(name).hub

    def supervisor(self, name: str) -> Supervisor:
        """The stream's source supervisor (cluster mode starts and stops it by lease)."""
        return self.record(name).supervisor

    async def claim(self, name: str) -> bool:
        """Push camera ``name`` connected here: its source runs here (see Placement.claim)."""
        return await self.placement.claim(self.record(name))

    def push_source(self, name: str) -> PushSource:
        """The push camera ``name``'s source (WrongSourceKind for a pulled camera)."""
        source = self.record(name).supervisor.source
        if not isinstance(source, PushSource):
            raise WrongSourceKind(f"stream {name!r} pulls its camera: it takes no pushes")
        return source

    def names_by_url(self) -> dict[str, str]:
        """Stream URL → name of the stream reading it."""
        urls = {target_url(s.cfg): name for name, s in self._streams.items()}
        return {url: name for url, name in urls.items() if url}

    def config(self, name: str) -> StreamConfig:
        return self.record(name).cfg

    def status(self, name: str) -> StreamStatus:
        stream = self.record(name)
        return self.placement.status(stream, stream.supervisor.snapshot_status())

    def get(self, name: str) -> StreamOut:
        s = self.record(name)
        out = s.cfg.model_dump()
        if s.cfg.motion.webhook_url is not None:  # a secret, like the password (issue 26 M5)
            out["motion"]["webhook_url"] = mask_url(s.cfg.motion.webhook_url)
        return StreamOut(
            **out,
            has_password=s.cfg.password is not None,
            has_encryption_key=s.cfg.encryption_key is not None,
            status=self.status(name),
        )

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
        for url in (cfg.stream_url, cfg.snapshot_url, esphome_url(cfg)):
            if url:
                await self.guard.check(url)

    async def create(self, cfg: StreamConfig) -> StreamOut:
        await self._check_target(cfg)
        async with self._lock:
            if cfg.name not in self._streams:
                self._check_room()
            await self.store.add(cfg)  # raises StreamExists
            stream = self._record(cfg)
            await self._reconcile(stream)
            log.info("stream %s: created (%s)", cfg.name, cfg.stream_url)
        self._changed(cfg.name, "created")
        return self.get(cfg.name)

    async def delete(self, name: str) -> None:
        async with self._lock:
            self.record(name)
            await self.store.delete(name)
        await self.drop_remote(name)
        self._changed(name, "deleted")

    async def apply_remote(self, cfg: StreamConfig) -> None:
        """A stream created or changed on another node (already in the shared store)."""
        async with self._lock:
            stream = self._streams.get(cfg.name)
            if stream is None:
                stream = self._record(cfg)
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
        self.placement.forget(stream)
        stream.hub.demand.on_change = None
        await stream.supervisor.stop()
        _closed(stream.supervisor.source, "the stream was deleted")
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
                stream = self._record(cfg)
            else:
                await self.store.update(cfg)
                stream.cfg = cfg
            await self._reconcile(stream)
        self._changed(cfg.name, what)
        return self.get(cfg.name)

    async def update(self, name: str, patch: StreamPatch) -> StreamOut:
        """Apply ``patch``; a changed URL restarts the source on the new one."""
        async with self._lock:
            stream = self.record(name)
            _check_kind(stream.cfg, patch)
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

    async def new_push_key(self, name: str) -> str:
        """A new push key for push camera ``name`` (the old one stops working at once:
        a camera connected with it is disconnected)."""
        key = new_token()
        async with self._lock:
            stream = self.record(name)
            if not stream.cfg.pushed:
                raise WrongSourceKind(f"stream {name!r} pulls its camera: it has no push key")
            cfg = stream.cfg.model_copy(update={"push_key_hash": hash_token(key)})
            await self.store.update(cfg)
            stream.cfg = cfg
            await self._reconcile(stream)
            log.info("stream %s: new push key", name)
        self._changed(name, "updated")
        return key

    async def set_enabled(self, name: str, enabled: bool) -> StreamStatus:
        await self.update(name, StreamPatch(enabled=enabled))
        return self.status(name)
