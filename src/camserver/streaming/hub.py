"""Fan-out hubs: one per stream, holding the latest frame and waking its viewers.

The ingest task publishes each frame once; every viewer (Socket.IO broadcaster, MJPEG
response, snapshot) asks for "the newest frame after the one I had". A viewer never
queues frames: if it is slow it simply gets the newest one when it comes back, so a viewer
holds at most one frame and can never slow the camera or another viewer.

:class:`FrameHub` is the interface; :class:`LocalHub` the in-process implementation. A
multi-node deployment provides another (``camserver.cluster.relay.ClusterHub``: frames
relayed through Redis) behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from camserver.streaming.demand import StreamDemand

__all__ = ["FrameHub", "HubFrame", "LocalHub"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HubFrame:
    seq: int
    """Increases by one per frame received from the camera, across reconnects."""
    ts: float
    """Server receive time, epoch seconds."""
    data: bytes
    camera_ts: str | None = None
    token: int = 0
    """Cluster mode: the fencing token of the node that pulled the frame (0 on one node)."""


class FrameHub(Protocol):
    """What viewers and the ingest task need from a hub."""

    name: str

    @property
    def latest(self) -> HubFrame | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def demand(self) -> StreamDemand: ...

    @property
    def viewers(self) -> int: ...

    def encoded(self, key: str, frame: HubFrame, encode: Callable[[HubFrame], bytes]) -> bytes: ...

    def publish(self, data: bytes, camera_ts: str | None = None, token: int = 0) -> HubFrame: ...

    async def next_frame(self, after: int, timeout: float | None = None) -> HubFrame | None: ...

    def viewer(self, kind: str, client: str | None = None) -> AbstractContextManager[None]: ...

    def listen(self, listener: Callable[[HubFrame | None], None]) -> Callable[[], None]: ...

    def close(self) -> None: ...


class LocalHub:
    """In-process hub. Not thread-safe: use it from the event loop only."""

    __slots__ = (
        "_closed",
        "_encoded",
        "_latest",
        "_listeners",
        "_seq",
        "_waiters",
        "demand",
        "name",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.demand = StreamDemand()
        """Who needs this stream's frames (viewers by kind, recording, motion)."""
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self._latest: HubFrame | None = None
        self._seq = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[Callable[[HubFrame | None], None]] = []
        self._closed = False

    @property
    def latest(self) -> HubFrame | None:
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def viewers(self) -> int:
        """People and programs watching (``demand.viewers``)."""
        return self.demand.viewers

    def viewer(self, kind: str, client: str | None = None) -> AbstractContextManager[None]:
        """Count a viewer of ``kind`` (from address ``client``) while the block runs."""
        return self.demand.viewer(kind, client)

    def encoded(self, key: str, frame: HubFrame, encode: Callable[[HubFrame], bytes]) -> bytes:
        """``encode(frame)``, computed once per frame and ``key`` however many viewers ask."""
        cached = self._encoded.get(key)
        if cached is not None and cached[0] == frame.seq:
            return cached[1]
        data = encode(frame)
        self._encoded[key] = (frame.seq, data)
        return data

    def publish(self, data: bytes, camera_ts: str | None = None, token: int = 0) -> HubFrame:
        self._seq += 1
        frame = HubFrame(self._seq, time.time(), data, camera_ts, token)
        self._latest = frame
        self._wake()
        for listener in self._listeners:
            try:
                listener(frame)
            except Exception:  # one broken output must not stop the camera or the rest
                log.exception("stream %s: a frame listener failed", self.name)
        return frame

    def listen(self, listener: Callable[[HubFrame | None], None]) -> Callable[[], None]:
        """Call ``listener(frame)`` synchronously on every publish, and ``listener(None)``
        when the hub closes; returns the function that stops it. For outputs that serve
        all their viewers in one pass (``camserver.live.mjpeg``); a listener must not
        block and must not raise."""
        self._listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return stop

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # (a viewer that timed out or left cancelled its own)
                waiter.set_result(None)

    async def next_frame(self, after: int, timeout: float | None = None) -> HubFrame | None:
        """The newest frame with ``seq > after``; None on timeout or when the hub closes."""
        frame = self._latest
        if frame is not None and frame.seq > after:
            return frame
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._closed:
            # One future per waiting viewer, awaited directly: cancelling one viewer (its
            # timeout, its client leaving) cancels only its own. Cheaper than a shared
            # future behind asyncio.shield, and far cheaper than asyncio.wait(timeout=),
            # which built a set, a future and callbacks on every wake-up and, on Python
            # 3.11, made a getpid() system call each time (py-spy, bench/fanout.py).
            if deadline is not None and loop.time() >= deadline:
                return None
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                if deadline is None:
                    await waiter
                else:
                    async with asyncio.timeout_at(deadline):
                        await waiter
            except TimeoutError:
                return None
            finally:
                if not waiter.done() or waiter.cancelled():
                    # Timed out or cancelled: no frame came, so it is still listed (a long
                    # camera outage must not pile up one future per viewer per timeout).
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
            frame = self._latest
            if frame is not None and frame.seq > after:
                return frame
        return None

    def close(self) -> None:
        """Wake every waiter with None; the hub publishes nothing more."""
        self._closed = True
        self._wake()
        for listener in list(self._listeners):
            listener(None)
