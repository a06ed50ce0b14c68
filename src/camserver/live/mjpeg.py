"""MJPEG out: a stream's hub re-served as ``multipart/x-mixed-replace`` to any number of
HTTP clients (browsers' ``<img>``, VLC, ffmpeg, Home Assistant).

Each part is built once per frame and shared by every client (never copied per viewer).
Two paths, side by side, with one rate cap and one keep-alive (:class:`Pacer`):

- **direct** (under camserver's uvicorn protocol, ``camserver.live.sockets``):
  :class:`MJPEGResponse` hands the socket to the hub's :class:`MJPEGFanout`, which the hub
  calls once per frame and which writes the part to every viewer's transport in one pass
  (a Node.js MJPEG proxy does the same from one callback);
- **fallback** (any other ASGI server, or ``HEAD``): an async generator per viewer
  (:func:`mjpeg_parts`), where the server's backpressure holds a slow client back.

Guarantees on both:

- latest frame wins: a viewer whose transport still holds more than :data:`HIGH_WATER`
  unsent bytes skips the frame (nothing is queued for it), so a stalled viewer costs one
  buffer-size check per frame and holds at most ``HIGH_WATER`` plus one part in memory;
- ``?fps=``: a capped viewer gets the first frame at or after its turn;
- a new viewer gets the latest frame at once, then every frame as it arrives;
- keep-alive: a viewer that got nothing for :data:`KEEPALIVE` seconds (the camera is down or
  stalled) gets the latest frame again, marked ``X-Resent: 1``, so clients with a read
  timeout stay connected and see the camera again the moment it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import ClassVar, Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from camserver.connections import duplicate
from camserver.live.counters import counters
from camserver.live.sockets import DIRECT, DirectWrite
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = [
    "BOUNDARY",
    "CONTENT_TYPE",
    "HIGH_WATER",
    "KEEPALIVE",
    "MJPEGFanout",
    "MJPEGResponse",
    "Pacer",
    "Viewer",
    "encode_part",
    "encode_resent",
    "mjpeg_parts",
]

BOUNDARY = "camserverframe"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
log = logging.getLogger(__name__)

_HEAD = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"

HIGH_WATER: Final = 32 * 1024
"""Unsent bytes above which a viewer skips a frame (about one VGA frame in flight)."""
KEEPALIVE: Final = 5.0
"""Seconds without a part after which a viewer gets the latest frame again. Clients give up
on a silent stream: OpenCV's FFmpeg backend after 30 s, and 17 of the soak's readers with a
30 s read timeout did during a camera outage. A few seconds is well inside such timeouts."""
_TICK: Final = 1.0


def encode_part(frame: HubFrame) -> bytes:
    """One part: boundary, headers (``X-Timestamp`` = server receive time), JPEG, CRLF."""
    return _encode(frame)


def encode_resent(frame: HubFrame) -> bytes:
    """A keep-alive part: the frame again, marked ``X-Resent: 1`` (its ``X-Timestamp`` is
    still the time it was received, so a client can tell how old it is)."""
    return _encode(frame, b"X-Resent: 1\r\n")


def _encode(frame: HubFrame, marks: bytes = b"") -> bytes:
    head = _HEAD % len(frame.data) + marks + b"X-Timestamp: %.6f\r\n\r\n" % frame.ts
    return b"".join((head, frame.data, b"\r\n"))


def _part(hub: FrameHub, frame: HubFrame) -> bytes:
    return hub.encoded("mjpeg", frame, encode_part)


def _resent(hub: FrameHub, frame: HubFrame) -> bytes:
    return hub.encoded("mjpeg-resent", frame, encode_resent)


class Pacer:
    """One viewer's rate cap (``?fps=``) and keep-alive clock, for both paths."""

    __slots__ = ("interval", "last_seq", "last_write", "next_at")

    def __init__(self, fps: float | None) -> None:
        self.interval = 1.0 / fps if fps else 0.0
        self.next_at = 0.0
        self.last_seq = 0
        self.last_write = time.monotonic()

    def wait(self, now: float) -> float:
        """Seconds until this viewer's turn (0: a frame may go now)."""
        return self.next_at - now if self.interval and now < self.next_at else 0.0

    @property
    def quiet_limit(self) -> float:
        """Seconds without a part before the keep-alive (a capped viewer below
        ``1/KEEPALIVE`` fps waits for its own turn)."""
        return max(KEEPALIVE, self.interval)

    def sent(self, seq: int, now: float) -> None:
        self.last_seq = seq
        self.last_write = now
        if self.interval:
            # Keep the average at the cap when the camera is faster; after a gap
            # (camera stall, slow socket), start counting afresh.
            due = self.next_at + self.interval
            self.next_at = due if due > now else now + self.interval

    def resent(self, now: float) -> None:
        self.last_write = now
        counters.mjpeg.resent += 1


async def mjpeg_parts(
    hub: FrameHub, fps: float | None = None, kind: str = "mjpeg", client: str | None = None
) -> AsyncIterator[bytes]:
    """The fallback path: parts for one client until the hub closes."""
    pacer = Pacer(fps)
    with hub.viewer(kind, client):
        while True:
            frame = await hub.next_frame(pacer.last_seq, timeout=pacer.quiet_limit)
            if frame is None:
                if hub.closed:
                    return
                if hub.latest is not None:  # keep-alive
                    pacer.resent(time.monotonic())
                    yield _resent(hub, hub.latest)
                continue
            wait = pacer.wait(time.monotonic())
            if wait:
                # Rate cap: wait our turn, then send the newest frame, not this one.
                await asyncio.sleep(wait)
                frame = hub.latest or frame
            pacer.sent(frame.seq, time.monotonic())
            yield _part(hub, frame)


class Viewer(Pacer):
    """One MJPEG client on the direct path: its transport, its pacing, and a future done
    when it ends.

    While it is served (:meth:`open` to :meth:`close`), it has a duplicate of its socket's
    descriptor, ``fd``, and a part goes straight to the kernel with one ``write`` (as a C
    relay does) whenever the transport holds nothing unsent; only what the kernel did not
    take goes through the transport (its buffer then counts toward :data:`HIGH_WATER`).
    ``queued`` is True while the transport may hold something: the response head (uvloop
    writes a transport's data at the end of the loop's turn), a keep-alive, or the rest of
    a part. The descriptor is a duplicate so that it can never name another connection:
    the transport closes its own when the client leaves, and the number is soon reused."""

    __slots__ = ("_sock", "done", "fd", "queued", "transport")

    def __init__(self, transport: asyncio.WriteTransport, fps: float | None) -> None:
        super().__init__(fps)
        self.transport = transport
        self.queued = True
        self.fd = -1
        self._sock: socket.socket | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def open(self) -> None:
        """Write through a duplicate of the transport's socket from now on (a plain TCP
        transport only: under TLS, or with no socket, every part goes through the
        transport)."""
        self._sock = duplicate(self.transport)
        if self._sock is not None:
            self.fd = self._sock.fileno()

    def close(self) -> None:
        """Close the duplicate (the fan-out no longer names it)."""
        self.fd = -1
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def cut(self) -> None:
        """End the connection now, whoever writes to it (its right to flow ended): shut
        the socket down, which the duplicate would otherwise keep open."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self.finish()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def write(self, frame: HubFrame, part: bytes, now: float) -> None:
        """``part`` through the transport (the first part)."""
        self.transport.write(part)
        self.queued = True
        self.sent(frame.seq, now)
        counters.mjpeg.sent += 1  # (written directly; the fallback's sends are uvicorn's)

    def offer(self, part: bytes) -> bool:
        """The general path of :meth:`MJPEGFanout.deliver`: send ``part`` unless more than
        :data:`HIGH_WATER` is still unsent (False: skipped)."""
        transport = self.transport
        unsent = transport.get_write_buffer_size()
        if unsent > HIGH_WATER:
            return False
        if unsent or self.fd < 0:
            transport.write(part)
            return True
        self.queued = False
        return self.rest(part, _write(self.fd, part))

    def rest(self, part: bytes, n: int) -> bool:
        """The kernel took ``n`` bytes of ``part`` (0: its socket is full, or the client
        left): the rest goes through the transport. False if the transport is closing."""
        if n < len(part):
            if self.transport.is_closing():
                return False  # gone: its task removes it
            self.transport.write(memoryview(part)[n:])
            self.queued = True
        return True


def _write(fd: int, part: bytes) -> int:
    try:
        return os.write(fd, part)
    except OSError:  # full (BlockingIOError), or the client left (EPIPE, ECONNRESET)
        return 0


class MJPEGFanout:
    """The direct-path viewers of one hub. Use it from the event loop only.

    Two groups: **fast** viewers (no rate cap, a descriptor of their own, nothing unsent
    in their transport) cost the frame loop one ``os.write`` each, and the **others**
    (capped, behind, just arrived, or under TLS) take the general path. A fast viewer whose
    kernel does not take a whole part joins the others; one whose transport has drained
    again, uncapped, rejoins the fast ones."""

    _active: ClassVar[dict[int, MJPEGFanout]] = {}  # id(hub) -> fan-out, only while it has viewers

    __slots__ = (
        "_fast",
        "_fds",
        "_hub",
        "_last",
        "_order",
        "_other",
        "_tick",
        "_unlisten",
        "_viewers",
    )

    def __init__(self, hub: FrameHub) -> None:
        self._hub = hub
        # Dicts as ordered sets: a viewer leaves in O(1) (a list's remove walked all of
        # them: O(N^2) when a crowd leaves at once).
        self._viewers: dict[Viewer, None] = {}
        """Every viewer."""
        self._fast: dict[Viewer, None] = {}
        self._other: dict[Viewer, None] = {}
        # What the hot loop walks: the fast viewers' descriptors, a plain list of ints
        # (walking the viewers themselves cost three times as much in Python: every object
        # it touches is a cache miss after the kernel's copies), made again at the first
        # frame after the fast group changed.
        self._fds: list[int] | None = None
        self._order: list[Viewer] = []
        self._last = (0, 0.0)
        """(seq, monotonic time) of the last part every fast viewer got."""
        self._unlisten: Callable[[], None] | None = None
        self._tick: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, hub: FrameHub) -> MJPEGFanout:
        """The hub's fan-out (one per hub while it has viewers)."""
        fanout = cls._active.get(id(hub))
        if fanout is None or fanout._hub is not hub:
            fanout = cls._active[id(hub)] = cls(hub)
        return fanout

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def members(self) -> list[Viewer]:
        """Every viewer, in order of arrival."""
        return list(self._viewers)

    async def serve(self, viewer: Viewer) -> None:
        """Serve ``viewer`` until it ends: its ``finish()`` is called (the caller does when
        the client disconnects) or the hub closes."""
        if self._hub.closed:
            return
        if not self._viewers:
            self._unlisten = self._hub.listen(self.deliver)
            MJPEGFanout._active[id(self._hub)] = self
            self._tick = asyncio.get_running_loop().call_later(_TICK, self.keep_alive)
        self._viewers[viewer] = None
        self._other[viewer] = None
        try:
            viewer.open()
            latest = self._hub.latest
            if latest is not None:
                viewer.write(latest, _part(self._hub, latest), time.monotonic())
            await viewer.done
        finally:
            del self._viewers[viewer]
            self._other.pop(viewer, None)
            if viewer in self._fast:
                del self._fast[viewer]
                self._fds = None
            viewer.close()  # (after: no list names its descriptor any more)
            if not self._viewers:
                if self._tick is not None:
                    self._tick.cancel()
                    self._tick = None
                if self._unlisten is not None:
                    self._unlisten()
                    self._unlisten = None
                if MJPEGFanout._active.get(id(self._hub)) is self:
                    del MJPEGFanout._active[id(self._hub)]

    def deliver(self, frame: HubFrame | None) -> None:
        """The hub's listener: a new frame for everyone (None: the hub closed)."""
        if frame is None:
            for viewer in list(self._viewers):
                viewer.finish()
            return
        part = _part(self._hub, frame)
        size = len(part)
        now = time.monotonic()
        seq = frame.seq
        fds = self._fds
        if fds is None:
            self._order = list(self._fast)
            fds = self._fds = [v.fd for v in self._order]
        write = os.write
        behind: list[tuple[int, int]] = []
        i = -1
        # The hot loop, once per fast viewer per frame: what it does besides the kernel's
        # write is what camserver costs over a C relay (perf, 2,000 viewers).
        for fd in fds:
            i += 1
            try:  # (_write, inlined: a call per viewer costs as much as the rest)
                n = write(fd, part)
            except OSError:
                n = 0
            if n != size:
                behind.append((i, n))
        sent = len(fds)
        self._last = (seq, now)
        others = list(self._other)  # (before the ones behind join them: they have this part)
        for i, n in behind:
            viewer = self._order[i]
            if not viewer.rest(part, n):
                sent -= 1
            self._demote(viewer)
            viewer.last_seq, viewer.last_write = seq, now
        sent += self._deliver_others(others, part, seq, now)
        counters.mjpeg.sent += sent

    def _deliver_others(self, others: list[Viewer], part: bytes, seq: int, now: float) -> int:
        """The general path: capped, behind, new, or with no descriptor of their own."""
        sent = slow = rate = 0
        ahead: list[Viewer] = []
        for viewer in others:
            if viewer.interval and now < viewer.next_at:
                rate += 1
                continue
            if viewer.transport.is_closing():
                continue  # gone: its task removes it
            if not viewer.offer(part):
                slow += 1
                continue
            viewer.sent(seq, now)
            sent += 1
            if not viewer.queued and not viewer.interval and viewer.fd >= 0:
                ahead.append(viewer)
        for viewer in ahead:
            del self._other[viewer]
            self._fast[viewer] = None
            self._fds = None  # (the hot loop's list is made again)
        out = counters.mjpeg
        out.skipped_slow += slow
        out.skipped_rate += rate
        return sent

    def keep_alive(self) -> None:
        """Once a second: the latest frame to each viewer that got nothing for a while."""
        self._tick = asyncio.get_running_loop().call_later(_TICK, self.keep_alive)
        latest = self._hub.latest
        if latest is None:
            return  # nothing to show yet: the camera never sent a frame
        now = time.monotonic()
        seq, at = self._last
        for viewer in self._fast:
            viewer.last_seq, viewer.last_write = seq, at
        quiet: list[Viewer] = []
        for viewer in self._viewers:
            if now - viewer.last_write < viewer.quiet_limit:
                continue
            transport = viewer.transport
            if transport.is_closing() or transport.get_write_buffer_size() > HIGH_WATER:
                continue
            if viewer.last_seq == latest.seq:
                transport.write(_resent(self._hub, latest))
                viewer.queued = True
                viewer.resent(now)
            else:  # a frame it skipped (slow socket, its rate) and the camera sent no other
                viewer.write(latest, _part(self._hub, latest), now)
            quiet.append(viewer)
        for viewer in quiet:  # (written through the transport: the general path again)
            if viewer in self._fast:
                self._demote(viewer)

    def _demote(self, viewer: Viewer) -> None:
        """A fast viewer takes the general path from the next frame."""
        del self._fast[viewer]
        self._other[viewer] = None
        self._fds = None  # (the hot loop's list is made again)


class MJPEGResponse(StreamingResponse):
    """An endless MJPEG response for one viewer of ``hub``."""

    def __init__(
        self,
        hub: FrameHub,
        fps: float | None = None,
        *,
        client: str | None = None,
        kind: str = "mjpeg",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # The generator is the fallback; never started (and so free) on the direct path.
        super().__init__(
            mjpeg_parts(hub, fps, kind, client), media_type=CONTENT_TYPE, headers=headers
        )
        self.hub, self.fps, self.client, self.kind = hub, fps, client, kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = scope.get("extensions", {}).get(DIRECT)
        transport = direct.take() if isinstance(direct, DirectWrite) else None
        if transport is None or not isinstance(direct, DirectWrite):
            await super().__call__(scope, receive, send)
            return
        # Counted before the first await: the route admitted this viewer against the
        # per-client cap, and a burst of requests must not all pass that check at once.
        with self.hub.viewer(self.kind, self.client):
            await _aclose(self.body_iterator)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            viewer = Viewer(transport, self.fps)
            direct.on_abort = viewer.cut
            # GET bodies are read already: receive() now returns only at disconnect.
            watcher = asyncio.ensure_future(_finish_on_disconnect(receive, viewer))
            try:
                await MJPEGFanout.of(self.hub).serve(viewer)
            finally:
                direct.on_abort = None
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                direct.release()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _finish_on_disconnect(receive: Receive, viewer: Viewer) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    viewer.finish()


async def _aclose(iterator: object) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
