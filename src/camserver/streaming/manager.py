"""The set of streams: their stored configuration, hub and ingest task, kept in step."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from camserver.errors import SnapshotUnavailable, StreamNotFound
from camserver.models import StreamConfig, StreamOut, StreamStatus
from camserver.store import StreamStore
from camserver.streaming import jpeg
from camserver.streaming.hub import LocalHub
from camserver.streaming.ingest import Ingest, IngestTiming

__all__ = ["StatusListener", "StreamManager"]

log = logging.getLogger(__name__)

StatusListener = Callable[[str, StreamStatus], None]


@dataclass(slots=True)
class _Stream:
    cfg: StreamConfig
    hub: LocalHub
    ingest: Ingest


class StreamManager:
    def __init__(
        self,
        store: StreamStore,
        client: httpx.AsyncClient,
        timing: IngestTiming,
        *,
        snapshot_max_age: float = 2.0,
        snapshot_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self._client = client
        self._timing = timing
        self._snapshot_max_age = snapshot_max_age
        self._snapshot_timeout = snapshot_timeout
        self._streams: dict[str, _Stream] = {}
        self._listeners: list[StatusListener] = []
        self._lock = asyncio.Lock()  # serialises changes so store and runtime agree

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

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
            stream = self._runtime(cfg)
            if cfg.enabled:
                stream.ingest.start()
        log.info("loaded %d stream(s)", len(self._streams))

    async def close(self) -> None:
        await asyncio.gather(*(s.ingest.stop() for s in self._streams.values()))
        for s in self._streams.values():
            s.hub.close()

    def _runtime(self, cfg: StreamConfig) -> _Stream:
        hub = LocalHub(cfg.name)
        ingest = Ingest(cfg.name, cfg.stream_url, self._client, hub, self._timing, self._notify)
        stream = _Stream(cfg, hub, ingest)
        self._streams[cfg.name] = stream
        return stream

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

    def status(self, name: str) -> StreamStatus:
        return self._get(name).ingest.snapshot_status()

    def get(self, name: str) -> StreamOut:
        s = self._get(name)
        return StreamOut(**s.cfg.model_dump(), status=s.ingest.snapshot_status())

    def list(self) -> list[StreamOut]:
        return [self.get(name) for name in self._streams]

    # -- changes ------------------------------------------------------------------------

    async def create(self, cfg: StreamConfig) -> StreamOut:
        async with self._lock:
            await self.store.add(cfg)  # raises StreamExists
            stream = self._runtime(cfg)
            if cfg.enabled:
                stream.ingest.start()
            log.info("stream %s: created (%s)", cfg.name, cfg.stream_url)
            return self.get(cfg.name)

    async def delete(self, name: str) -> None:
        async with self._lock:
            stream = self._get(name)
            await self.store.delete(name)
            del self._streams[name]
        await stream.ingest.stop()
        stream.hub.close()
        log.info("stream %s: deleted", name)

    async def put(self, cfg: StreamConfig) -> StreamOut:
        """Create the stream, or replace its configuration; a new URL restarts the ingest."""
        async with self._lock:
            stream = self._streams.get(cfg.name)
            if stream is None:
                await self.store.add(cfg)
                stream = self._runtime(cfg)
            else:
                await self.store.update(cfg)
                if stream.cfg.stream_url != cfg.stream_url or not cfg.enabled:
                    await stream.ingest.stop()
                    stream.ingest.url = cfg.stream_url
                stream.cfg = cfg
            if cfg.enabled:
                stream.ingest.start()
            return self.get(cfg.name)

    async def set_enabled(self, name: str, enabled: bool) -> StreamStatus:
        async with self._lock:
            stream = self._get(name)
            if stream.cfg.enabled != enabled:
                cfg = stream.cfg.model_copy(update={"enabled": enabled})
                await self.store.update(cfg)
                stream.cfg = cfg
            if enabled:
                stream.ingest.start()
            else:
                await stream.ingest.stop()
            return stream.ingest.snapshot_status()

    # -- snapshots ----------------------------------------------------------------------

    async def snapshot(self, name: str) -> bytes:
        """The latest frame if recent, else one fetched from the camera's snapshot URL."""
        stream = self._get(name)
        frame = stream.hub.latest
        if frame is not None and time.time() - frame.ts <= self._snapshot_max_age:
            return frame.data
        url = stream.cfg.snapshot_url
        if not url:
            raise SnapshotUnavailable(
                f"stream {name!r} has no frame from the last {self._snapshot_max_age:g} s "
                "and no snapshot URL"
            )
        try:
            resp = await self._client.get(url, timeout=self._snapshot_timeout)
        except httpx.HTTPError as exc:
            raise SnapshotUnavailable(
                "no recent frame, and the camera's snapshot URL failed: "
                f"{str(exc) or type(exc).__name__}"
            ) from exc
        if resp.status_code != 200:
            raise SnapshotUnavailable(
                f"no recent frame, and the camera's snapshot URL answered HTTP {resp.status_code}"
            )
        if not jpeg.is_complete(resp.content):
            raise SnapshotUnavailable(
                "no recent frame, and the camera's snapshot URL did not return a whole JPEG"
            )
        return resp.content
