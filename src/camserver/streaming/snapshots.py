"""Snapshots: the latest frame if it is recent; for an on-demand stream, the first frame
after connecting; else one fetched from the camera's snapshot URL."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

from camserver.codecs import jpeg
from camserver.errors import SnapshotUnavailable, UpstreamConnectError, UpstreamError
from camserver.schema import StreamConfig
from camserver.upstream import fetch

if TYPE_CHECKING:
    from camserver.streaming.registry import StreamRegistry

__all__ = ["Snapshots"]


class Snapshots:
    def __init__(
        self,
        registry: StreamRegistry,
        client: httpx.AsyncClient,
        *,
        max_age: float,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self._registry = registry
        self._client = client
        self.max_age = max_age
        self.timeout = timeout
        self._max_bytes = max_bytes

    async def take(self, name: str, client: str | None = None) -> bytes:
        """One JPEG of ``name`` for a viewer at ``client`` (admitted like any viewer)."""
        registry = self._registry
        stream = registry.record(name)
        registry.admission.admit(name, client)
        with stream.hub.viewer("snapshot", client):  # wakes an on-demand stream
            frame = stream.hub.latest
            if frame is not None and time.time() - frame.ts <= self.max_age:
                return frame.data
            # (Cluster mode: the holder connects on demand and relays the first frame.)
            if stream.cfg.on_demand and registry.placement.frames_coming(stream):
                fresh = await stream.hub.next_frame(frame.seq if frame else 0, timeout=self.timeout)
                if fresh is not None:
                    return fresh.data
            return await self._fetch(stream.cfg)

    async def _fetch(self, cfg: StreamConfig) -> bytes:
        url = cfg.snapshot_url
        if not url:
            raise SnapshotUnavailable(
                f"stream {cfg.name!r} has no frame from the last {self.max_age:g} s "
                "and no snapshot URL"
            )
        try:
            got = await fetch(
                self._client,
                self._registry.guard,
                url,
                max_bytes=self._max_bytes,
                deadline=self.timeout,
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
