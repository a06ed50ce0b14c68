"""A camera's endless HTTP response over a plain asyncio connection: the HTTP pull's fast path.

httpx costs ~37-50 µs per network read (anyio cancel scopes and h11 decoding the chunked
body in pure Python), and an ESP32 on Wi-Fi sends a VGA frame in 15-20 reads: ~0.6 ms of
CPU per frame, the largest fixed cost per frame when a camera has few viewers (py-spy on
``bench/peers.py`` at 50 MJPEG viewers). Here httptools (the C parser uvicorn uses)
decodes the response and its chunked framing inside ``data_received``, and each piece of
the body goes straight to a callback, with no task switch per read.

``camserver.sources.http_pull`` uses it for plain-HTTP cameras without a login or with
Basic auth; HTTPS and Digest auth (a challenge and a second request) go through httpx.

Errors are camserver's own (``UpstreamConnectError``, ``UpstreamTimeout``,
``UpstreamProtocolError``), worded by ``camserver.sources.sentences`` as the httpx path's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httptools

from camserver.errors import (
    UpstreamError,
    UpstreamProtocolError,
)
from camserver.sources.sentences import (
    broke_mid_stream,
    cannot_connect,
    no_connection_within,
    silent_for,
)
from camserver.upstream import describe_error

__all__ = ["MAX_HEAD_BYTES", "CameraResponse", "CameraStream", "open_stream"]

MAX_HEAD_BYTES: Final = 64 * 1024
"""A status line and headers longer than this end the connection (a camera sends < 1 KB)."""


@dataclass(slots=True)
class CameraResponse:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names; the first of repeated headers wins."""


class CameraStream(asyncio.Protocol):
    """One GET whose body is handed to ``on_body`` piece by piece as it arrives."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._head_bytes = 0
        self._in_head = True
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._framed = False  # chunked or Content-Length: closing early is an error
        self._pending: list[bytes] = []
        self._handler: Callable[[bytes], None] | None = None
        self.head: asyncio.Future[CameraResponse] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.last_data = loop.time()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not subclass asyncio.Transport; they behave as one.)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_data = self._loop.time()
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.fail(UpstreamProtocolError("the camera sent over 64 KiB of headers"))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(broke_mid_stream(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            cause = describe_error(exc) if exc else "the camera closed the connection"
            self.fail(UpstreamProtocolError(f"no answer from the camera: {cause}"))
        elif self._framed:
            # Quirk (ESP32 Wi-Fi drops): the body stops in the middle of a chunk.
            self.fail(broke_mid_stream("body cut short"))
        elif not self.done.done():
            self.done.set_result(None)  # a body delimited by the connection: it ended

    # -- httptools callbacks -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        self._headers.setdefault(key, value.decode("latin-1").strip())

    def on_headers_complete(self) -> None:
        self._in_head = False
        encoding = self._headers.get("transfer-encoding", "").lower()
        self._framed = "chunked" in encoding or "content-length" in self._headers
        if not self.head.done():
            status = self._parser.get_status_code()
            self.head.set_result(
                CameraResponse(status, self._reason.decode("latin-1"), self._headers)
            )

    def on_body(self, body: bytes) -> None:
        handler = self._handler
        if handler is None:
            self._pending.append(bytes(body))  # (the head's reader has not taken it yet)
            return
        try:
            handler(body)
        except UpstreamError as exc:
            self.fail(exc)

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self.close()

    # -- for the HTTP pull ------------------------------------------------------------------

    def receive_body(self, handler: Callable[[bytes], None]) -> None:
        """From now on, hand each piece of the body to ``handler`` (which may raise an
        UpstreamError to end the stream)."""
        self._handler = handler
        pending, self._pending = self._pending, []
        for piece in pending:
            self.on_body(piece)

    def fail(self, exc: UpstreamError) -> None:
        for fut in (self.head, self.done):
            if not fut.done():
                fut.set_exception(exc)
        # Retrieved or not, an exception set here is reported through the other future.
        for fut in (self.head, self.done):
            if fut.done() and not fut.cancelled():
                fut.exception()
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_head(self, read_timeout: float) -> CameraResponse:
        await self._idle_limited(self.head, read_timeout)
        return self.head.result()

    async def wait_end(self, read_timeout: float) -> None:
        """Until the body ends; UpstreamTimeout after ``read_timeout`` without data."""
        await self._idle_limited(self.done, read_timeout)
        self.done.result()

    async def _idle_limited(self, fut: asyncio.Future[Any], read_timeout: float) -> None:
        while not fut.done():
            left = self.last_data + read_timeout - self._loop.time()
            if left <= 0:
                raise silent_for(read_timeout)
            # asyncio.wait, not wait_for(shield(...)): Python 3.11's wait_for drops a cancel
            # that lands as the future completes, and the stream then outlived its stop.
            await asyncio.wait({fut}, timeout=left)


async def open_stream(host: str, port: int, request: bytes, connect_timeout: float) -> CameraStream:
    """Connect to ``host``:``port`` (an address the network guard checked) and send
    ``request``; the caller awaits :meth:`CameraStream.wait_head` next."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            _, stream = await loop.create_connection(CameraStream, host, port)
    except TimeoutError as exc:
        raise no_connection_within(connect_timeout) from exc
    except OSError as exc:
        raise cannot_connect(describe_error(exc)) from exc
    assert stream._transport is not None
    stream._transport.write(request)
    return stream
