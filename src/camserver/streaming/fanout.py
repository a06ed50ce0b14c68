"""MJPEG out, written to every viewer of a frame in one pass.

A Node.js MJPEG proxy writes each frame to every client's socket from one callback; the
ASGI path woke one task per viewer per frame and sent each part through Starlette's
``StreamingResponse``, the middleware stack and uvicorn's chunked framing (a new copy of
the frame per viewer). Here the hub calls :meth:`MJPEGFanout.deliver` once per frame, and
it writes the one encoded part (shared, never copied per viewer) to each viewer's transport.

Guarantees kept from the per-task path:

- latest frame wins: a viewer whose transport still holds more than :data:`HIGH_WATER`
  unsent bytes skips the frame (nothing is queued for it), so a stalled viewer costs one
  buffer-size check per frame and holds at most ``HIGH_WATER`` plus one part in memory;
- ``?fps=``: a capped viewer gets the first frame at or after its turn;
- a new viewer gets the latest frame at once, then every frame as it arrives;
- keep-alive: a viewer that got nothing for :data:`KEEPALIVE` seconds (the camera is down or
  stalled) gets the latest frame again, marked ``X-Resent: 1``, so clients with a read
  timeout stay connected and see the camera again the moment it is back.

The socket comes from the HTTP server (``camserver.connections`` hands uvicorn's transport
over once the request has passed every check); this module only needs ``write``,
``get_write_buffer_size`` and ``is_closing``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["HIGH_WATER", "KEEPALIVE", "FanoutCounters", "MJPEGFanout", "Viewer", "counters"]

HIGH_WATER: Final = 32 * 1024
"""Unsent bytes above which a viewer skips a frame (about one VGA frame in flight)."""
KEEPALIVE: Final = 5.0
"""Seconds without a part after which a viewer gets the latest frame again. Clients give up
on a silent stream: OpenCV's FFmpeg backend after 30 s, and 17 of the soak's readers with a
30 s read timeout did during a camera outage. A few seconds is well inside such timeouts."""
_TICK: Final = 1.0


@dataclass(slots=True)
class FanoutCounters:
    """Frames per viewer by outcome, since start (``/metrics``)."""

    sent: int = 0
    skipped_slow: int = 0
    """The viewer's socket had more than HIGH_WATER bytes unsent."""
    skipped_rate: int = 0
    """The viewer asked for ``?fps=`` and it was not its turn."""
    resent: int = 0
    """Keep-alive: the latest frame sent again to a viewer that got nothing for a while."""
    skipped_unacked: int = 0
    """Socket.IO: the viewer asked for flow control and left a frame unacknowledged too long
    (``camserver.api.frame_acks``)."""


counters = FanoutCounters()


class Viewer:
    """One MJPEG client: its transport, its rate cap, and a future done when it ends."""

    __slots__ = ("done", "interval", "last_seq", "last_write", "next_at", "transport")

    def __init__(self, transport: asyncio.WriteTransport, fps: float | None) -> None:
        self.transport = transport
        self.interval = 1.0 / fps if fps else 0.0
        self.next_at = 0.0
        self.last_seq = 0
        self.last_write = time.monotonic()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class MJPEGFanout:
    """The MJPEG viewers of one hub. Use it from the event loop only."""

    _active: ClassVar[dict[int, MJPEGFanout]] = {}  # id(hub) -> fan-out, only while it has viewers

    __slots__ = ("_encode", "_encode_resent", "_hub", "_tick", "_unlisten", "_viewers")

    def __init__(
        self,
        hub: FrameHub,
        encode: Callable[[HubFrame], bytes],
        encode_resent: Callable[[HubFrame], bytes],
    ) -> None:
        self._hub = hub
        self._encode = encode
        self._encode_resent = encode_resent
        self._viewers: list[Viewer] = []
        self._unlisten: Callable[[], None] | None = None
        self._tick: asyncio.TimerHandle | None = None

    @classmethod
    def of(
        cls,
        hub: FrameHub,
        encode: Callable[[HubFrame], bytes],
        encode_resent: Callable[[HubFrame], bytes],
    ) -> MJPEGFanout:
        """The hub's fan-out (one per hub while it has viewers)."""
        fanout = cls._active.get(id(hub))
        if fanout is None or fanout._hub is not hub:
            fanout = cls._active[id(hub)] = cls(hub, encode, encode_resent)
        return fanout

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def serve(self, viewer: Viewer) -> None:
        """Serve ``viewer`` until it ends: its ``finish()`` is called (the caller does when
        the client disconnects) or the hub closes."""
        if self._hub.closed:
            return
        if not self._viewers:
            self._unlisten = self._hub.listen(self.deliver)
            MJPEGFanout._active[id(self._hub)] = self
            self._tick = asyncio.get_running_loop().call_later(_TICK, self.keep_alive)
        self._viewers.append(viewer)
        try:
            latest = self._hub.latest
            if latest is not None:
                self._send(viewer, latest, self._part(latest), time.monotonic())
            await viewer.done
        finally:
            self._viewers.remove(viewer)
            if not self._viewers:
                if self._tick is not None:
                    self._tick.cancel()
                    self._tick = None
                if self._unlisten is not None:
                    self._unlisten()
                    self._unlisten = None
                if MJPEGFanout._active.get(id(self._hub)) is self:
                    del MJPEGFanout._active[id(self._hub)]

    def _part(self, frame: HubFrame) -> bytes:
        return self._hub.encoded("mjpeg", frame, self._encode)

    def deliver(self, frame: HubFrame | None) -> None:
        """The hub's listener: a new frame for everyone (None: the hub closed)."""
        if frame is None:
            for viewer in list(self._viewers):
                viewer.finish()
            return
        part: bytes | None = None
        now = time.monotonic()
        for viewer in self._viewers:
            if viewer.interval and now < viewer.next_at:
                counters.skipped_rate += 1
                continue
            transport = viewer.transport
            if transport.is_closing():
                continue  # gone; its task removes it
            if transport.get_write_buffer_size() > HIGH_WATER:
                counters.skipped_slow += 1
                continue
            if part is None:
                part = self._part(frame)
            self._send(viewer, frame, part, now)

    def keep_alive(self) -> None:
        """Once a second: the latest frame to each viewer that got nothing for a while."""
        self._tick = asyncio.get_running_loop().call_later(_TICK, self.keep_alive)
        latest = self._hub.latest
        if latest is None:
            return  # nothing to show yet: the camera never sent a frame
        now = time.monotonic()
        for viewer in self._viewers:
            # A capped viewer (``?fps=`` below 1/KEEPALIVE) waits for its own turn.
            if now - viewer.last_write < max(KEEPALIVE, viewer.interval):
                continue
            transport = viewer.transport
            if transport.is_closing() or transport.get_write_buffer_size() > HIGH_WATER:
                continue
            if viewer.last_seq == latest.seq:
                transport.write(self._hub.encoded("mjpeg-resent", latest, self._encode_resent))
                viewer.last_write = now
                counters.resent += 1
            else:  # a frame it skipped (slow socket, its rate) and the camera sent no other
                self._send(viewer, latest, self._part(latest), now)

    @staticmethod
    def _send(viewer: Viewer, frame: HubFrame, part: bytes, now: float) -> None:
        viewer.transport.write(part)
        viewer.last_seq = frame.seq
        viewer.last_write = now
        counters.sent += 1
        if viewer.interval:
            # Keep the average at the cap when the camera is faster; after a gap
            # (camera stall, slow socket), start counting afresh.
            due = viewer.next_at + viewer.interval
            viewer.next_at = due if due > now else now + viewer.interval
