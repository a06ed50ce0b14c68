"""MJPEG out: a stream's hub re-served as ``multipart/x-mixed-replace`` to any number of
HTTP clients (browsers' ``<img>``, VLC, ffmpeg, Home Assistant).

Each part is built once per frame and shared by every client. A client that reads slowly
is held back by its own socket (the ASGI server applies backpressure) and, when it is ready
again, gets the newest frame: it skips frames and never delays the camera or others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["BOUNDARY", "CONTENT_TYPE", "encode_part", "mjpeg_parts"]

BOUNDARY = "camserverframe"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_HEAD = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"


def encode_part(frame: HubFrame) -> bytes:
    """One part: boundary, headers (``X-Timestamp`` = server receive time), JPEG, CRLF."""
    head = _HEAD % len(frame.data) + b"X-Timestamp: %.6f\r\n\r\n" % frame.ts
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
            frame = await hub.next_frame(last, timeout=5.0)
            if frame is None:
                if hub.closed:
                    return
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
