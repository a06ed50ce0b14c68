"""MJPEG out: a stream's hub re-served as ``multipart/x-mixed-replace`` to any number of
HTTP clients (browsers' ``<img>``, VLC, ffmpeg, Home Assistant).

Each part is built once per frame and shared by every client. A client that reads slowly
skips frames and, when it is ready again, gets the newest: it never delays the camera or
others.

Under camserver's uvicorn protocol (``camserver.connections``) :class:`MJPEGResponse`
hands the socket to the hub's :class:`~camserver.streaming.fanout.MJPEGFanout`, which writes
each frame to every viewer in one pass. Under any other ASGI server it falls back to an
async generator per viewer (:func:`mjpeg_parts`), where the server's backpressure holds a
slow client back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from camserver.connections import DIRECT, DirectWrite
from camserver.streaming import fanout
from camserver.streaming.fanout import KEEPALIVE, MJPEGFanout, Viewer
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = [
    "BOUNDARY",
    "CONTENT_TYPE",
    "MJPEGResponse",
    "encode_part",
    "encode_resent",
    "mjpeg_parts",
]

BOUNDARY = "camserverframe"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_HEAD = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"


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


async def mjpeg_parts(
    hub: FrameHub, fps: float | None = None, kind: str = "mjpeg", client: str | None = None
) -> AsyncIterator[bytes]:
    """Parts for one client, at most ``fps`` per second, until the hub closes."""
    interval = 1.0 / fps if fps else 0.0
    last = 0
    next_at = 0.0
    with hub.viewer(kind, client):
        while True:
            frame = await hub.next_frame(last, timeout=max(KEEPALIVE, interval))
            if frame is None:
                if hub.closed:
                    return
                if hub.latest is not None:  # keep-alive, as MJPEGFanout does
                    fanout.counters.resent += 1
                    yield hub.encoded("mjpeg-resent", hub.latest, encode_resent)
                continue
            if interval:
                now = time.monotonic()
                if now < next_at:
                    # Rate cap: wait our turn, then send the newest frame, not this one.
                    await asyncio.sleep(next_at - now)
                    frame = hub.latest or frame
                next_at = time.monotonic() + interval
            last = frame.seq
            yield hub.encoded("mjpeg", frame, encode_part)


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
            # GET bodies are read already: receive() now returns only at disconnect.
            watcher = asyncio.ensure_future(_finish_on_disconnect(receive, viewer))
            try:
                await MJPEGFanout.of(self.hub, encode_part, encode_resent).serve(viewer)
            finally:
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
