"""The camera's stream port (``http_port + 1``, ``/stream``): one client at a time, the
MJPEG bytes as the firmware sends them, and the fault switches applied frame by frame."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from typing import TYPE_CHECKING

from camserver.sim.frames import embed_send_time
from camserver.sim.http import chunk, read_request, response

if TYPE_CHECKING:
    from camserver.sim.camera import SimCamera

__all__ = ["BOUNDARY", "STREAM_CONTENT_TYPE", "StreamPort"]

BOUNDARY = "123456789000000000000987654321"
STREAM_CONTENT_TYPE = f"multipart/x-mixed-replace;boundary={BOUNDARY}"
_PART_BOUNDARY = f"\r\n--{BOUNDARY}\r\n".encode()
_SEND_TIMEOUT = 5.0  # esp_http_server's send/recv timeout


class StreamPort:
    """The stream port's handler for ``cam`` (its counters and switches live on ``cam``)."""

    def __init__(self, cam: SimCamera) -> None:
        self.cam = cam

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cam.tcp_connections += 1
        self.cam._stream_writers.add(writer)
        self.cam.stream_clients += 1
        # A client whose close (FIN) is already in the kernel is gone, even if this busy
        # loop has not run its handler yet: it does not count against the new one.
        others = sum(1 for w in self.cam._stream_writers if w is not writer and not peer_closed(w))
        self.cam.max_stream_clients = max(self.cam.max_stream_clients, others + 1)
        try:
            # One client at a time: the next one waits here, accepted but unanswered.
            async with self.cam._stream_lock:
                req = await read_request(reader)
                if req is None:
                    return
                if req.path != "/stream":
                    writer.write(response(404, b"Nothing matches the given URI", "text/plain"))
                    await writer.drain()
                    return
                refused = self.cam._refused(req)
                if refused is not None:
                    writer.write(refused)
                    await writer.drain()
                    return
                if self.cam.faults.http_500:
                    writer.write(response(500, b"500 Internal Server Error", "text/plain"))
                    await writer.drain()
                    return
                self.cam.stream_connections += 1
                self.cam.active_streams += 1
                try:
                    await self._stream_frames(reader, writer)
                finally:
                    self.cam.active_streams -= 1
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.cam.stream_clients -= 1
            self.cam._stream_writers.discard(writer)
            writer.close()

    async def _stream_frames(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(
            (
                "HTTP/1.1 200 OK\r\n"
                f"Content-Type: {STREAM_CONTENT_TYPE}\r\n"
                "Transfer-Encoding: chunked\r\n"
                "Access-Control-Allow-Origin: *\r\n"
                "X-Framerate: 60\r\n\r\n"
            ).encode()
        )
        gone = asyncio.ensure_future(until_closed(reader))
        try:
            n = 0
            next_at = time.monotonic()
            while True:
                next_at += 1.0 / self.cam.fps
                delay = next_at - time.monotonic()
                if delay < -1.0:  # fell far behind (stall or slow client): do not burst
                    next_at = time.monotonic()
                await asyncio.wait({gone}, timeout=max(0.0, delay))
                if gone.done():
                    return
                n += 1
                if not await self._send_frame(writer, gone, n):
                    return
        finally:
            gone.cancel()

    async def _send_frame(
        self, writer: asyncio.StreamWriter, gone: asyncio.Future[None], n: int
    ) -> bool:
        """Send frame ``n`` of this connection; False when the connection must end."""
        f = self.cam.faults
        if f.stall_seconds > 0 and (f.stall_every == 0 or n % f.stall_every == 0):
            stall = f.stall_seconds
            if f.stall_every == 0:
                f.stall_seconds = 0.0  # one-shot
            await asyncio.wait({gone}, timeout=stall)
            if gone.done():
                return False
        if f.garbage_every and n % f.garbage_every == 0:
            writer.write(chunk(os.urandom(random.randint(16, 512)).replace(b"-", b"_")))
        jpeg = self.cam.render()
        if self.cam.embed_time:
            jpeg = embed_send_time(jpeg, time.time())
        if f.endless_part:
            return await self._send_endless(writer, gone)
        if f.truncate_every and n % f.truncate_every == 0:
            jpeg = jpeg[: len(jpeg) // 2]
        head = (
            f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
            f"X-Timestamp: {self.cam._timestamp()}\r\n\r\n"
        ).encode()
        writer.write(chunk(_PART_BOUNDARY))
        writer.write(chunk(head))
        if f.drop_every and n % f.drop_every == 0:
            writer.write(chunk(jpeg[: len(jpeg) // 2]))
            await asyncio.wait_for(writer.drain(), _SEND_TIMEOUT)
            writer.transport.abort()  # the Wi-Fi link went away mid-frame
            return False
        writer.write(chunk(jpeg))
        await asyncio.wait_for(writer.drain(), _SEND_TIMEOUT)
        self.cam.frames_sent += 1
        return True

    async def _send_endless(self, writer: asyncio.StreamWriter, gone: asyncio.Future[None]) -> bool:
        writer.write(chunk(_PART_BOUNDARY))
        writer.write(chunk(b"Content-Type: image/jpeg\r\n\r\n"))
        # SOI, then an SOS segment, then entropy data that never holds FF D9.
        writer.write(chunk(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"))
        filler = bytes(range(0x00, 0x7F)) * 512
        while self.cam.faults.endless_part and not gone.done():
            writer.write(chunk(filler))
            await asyncio.wait_for(writer.drain(), _SEND_TIMEOUT)
            await asyncio.wait({gone}, timeout=0.01)
        return False


async def until_closed(reader: asyncio.StreamReader) -> None:
    """Returns when the peer closes the connection (it sends nothing after its request)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


def peer_closed(writer: asyncio.StreamWriter) -> bool:
    """The peer has closed its side: its FIN (or a reset) waits in the kernel (a peek)."""
    transport_socket = writer.get_extra_info("socket")
    if transport_socket is None:
        return True
    try:
        with socket.socket(fileno=os.dup(transport_socket.fileno())) as sock:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError:
        return True
