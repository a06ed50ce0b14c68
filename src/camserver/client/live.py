"""Live frames for the client: Socket.IO (``frames``) and MJPEG (``mjpeg``).

Both hand out the newest frame when the caller is slower than the camera (nothing queues
up), and both reconnect by themselves once they have connected: a server restart or a
network blip is a pause, not an error. A refusal (no such stream, a wrong token) raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import socketio

from camserver.client.errors import (
    APIError,
    NotFound,
    ServerUnreachable,
    error_for,
    raise_for_status,
)
from camserver.client.frame import Frame
from camserver.codecs.mjpeg import END, NEED_DATA, MJPEGParser
from camserver.codecs.mjpeg import Frame as Part

if TYPE_CHECKING:
    from camserver.client.aio import AsyncClient

__all__ = ["mjpeg_frames", "socketio_frames"]

log = logging.getLogger(__name__)

_RETRY_MAX = 5.0
# The server resends the last frame every 5 s while its camera is down: a read that waits
# three times that long is a dead connection.
_MJPEG_READ_TIMEOUT = 15.0


class _Latest:
    """The newest frame not yet taken, or the error that ends the iteration."""

    def __init__(self) -> None:
        self.frame: Frame | None = None
        self.error: APIError | None = None
        self._ready = asyncio.Event()

    def put(self, frame: Frame) -> None:
        self.frame = frame
        self._ready.set()

    def fail(self, error: APIError) -> None:
        self.error = error
        self._ready.set()

    async def take(self) -> Frame:
        while self.error is None and self.frame is None:
            self._ready.clear()
            await self._ready.wait()
        if self.error is not None:
            raise self.error
        frame, self.frame = self.frame, None
        assert frame is not None
        return frame


async def _paced(latest: _Latest, fps: float | None) -> AsyncIterator[Frame]:
    interval = 1.0 / fps if fps else 0.0
    next_at = 0.0
    while True:
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # frames meanwhile replace each other
        frame = await latest.take()
        next_at = time.monotonic() + interval
        yield frame


async def socketio_frames(
    client: AsyncClient, name: str, fps: float | None
) -> AsyncGenerator[Frame, None]:
    await client.status(name)  # a missing stream or a bad token: the server's own answer
    latest = _Latest()
    sio = socketio.AsyncClient(
        reconnection=True,
        reconnection_delay=0.5,
        reconnection_delay_max=_RETRY_MAX,
        handle_sigint=False,  # a library must not take over Ctrl-C
    )

    def joined(ack: Any) -> None:
        if isinstance(ack, dict) and not ack.get("ok"):
            status = ack.get("status")
            latest.fail(error_for(status if isinstance(status, int) else 404, ack))

    async def on_connect() -> None:
        # Each (re)connection is a new session: join again. An emit, not a call: the ack
        # comes through the connection this handler runs on.
        await sio.emit("join_stream", {"name": name}, callback=joined)

    def on_frame(data: Any) -> None:
        if isinstance(data, dict) and data.get("name") == name:
            latest.put(
                Frame(
                    name=name,
                    seq=int(data.get("seq", 0)),
                    ts=float(data.get("ts", 0.0)),
                    data=bytes(data.get("data", b"")),
                    received=time.time(),
                    token=int(data.get("token", 0)),
                )
            )

    def on_changed(data: Any) -> None:
        if isinstance(data, dict) and (data.get("name"), data.get("change")) == (name, "deleted"):
            latest.fail(NotFound(404, f"stream {name!r} was deleted"))

    sio.on("connect", on_connect)
    sio.on("frame", on_frame)
    sio.on("stream_changed", on_changed)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        await sio.connect(
            client.base_url,
            headers=headers,
            auth={"token": client.token} if client.token else None,
            transports=["websocket"],  # the server writes frames straight to it
            wait_timeout=max(1, round(client.timeout)),
        )
    except socketio.exceptions.ConnectionError as exc:
        raise ServerUnreachable(f"Socket.IO to {client.base_url}: {exc}") from exc
    try:
        async for frame in _paced(latest, fps):
            yield frame
    finally:
        await sio.disconnect()


async def mjpeg_frames(
    client: AsyncClient, http: httpx.AsyncClient, name: str, fps: float | None
) -> AsyncGenerator[Frame, None]:
    path = f"/api/streams/{quote(name, safe='')}/mjpeg"
    params = {"fps": fps} if fps else {}
    timeout = httpx.Timeout(client.timeout, read=max(client.timeout, _MJPEG_READ_TIMEOUT))
    seq, delay, connected = 0, 0.5, False
    while True:
        try:
            async with http.stream("GET", path, params=params, timeout=timeout) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise_for_status(r)
                connected, delay = True, 0.5
                parser = MJPEGParser.from_content_type(r.headers.get("content-type"))
                async for chunk in r.aiter_raw():
                    parser.receive_data(chunk)
                    while (event := parser.next_event()) is not NEED_DATA and event is not END:
                        if isinstance(event, Part):
                            seq += 1
                            yield _from_part(name, seq, event)
        except httpx.HTTPError as exc:
            if not connected:
                raise ServerUnreachable(f"GET {client.base_url}{path}: {exc!r}") from exc
            log.info("camserver client: %s: %r; reconnecting in %.1f s", path, exc, delay)
        # Ended (the server restarted, the stream was changed) or broke: connect again; a
        # stream deleted meanwhile raises NotFound above.
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)


def _from_part(name: str, seq: int, part: Part) -> Frame:
    now = time.time()
    try:
        ts = float(part.camera_ts) if part.camera_ts else now
    except ValueError:  # another MJPEG source's timestamp format
        ts = now
    return Frame(name, seq, ts, part.data, now, resent=part.resent)
