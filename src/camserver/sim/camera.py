"""A simulated ESP32-CAM running Espressif's CameraWebServer example.

HTTP on ``http_port`` (``/``, ``/capture``, ``/status``, ``/control``) and the MJPEG
stream on ``http_port + 1`` (``/stream``), byte for byte as the firmware sends them:
chunked, boundary before each part, ``X-Timestamp`` since boot, no closing boundary.
Like the firmware, the stream port serves one client at a time: a second client's TCP
connection is accepted but gets nothing until the first leaves.

Extensions for tests (not in any firmware): ``GET/POST /sim/faults`` to read or change
the fault switches, ``GET /sim/stats`` for connection and frame counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

from camserver.sim.frames import FRAMESIZES, FrameRenderer, embed_send_time, jpeg_quality
from camserver.sim.http import Login, Request, chunk, read_request, response
from camserver.sim.responder import AnnounceFormat, SimResponder
from camserver.sim.scene import Scene, SceneRenderer

__all__ = ["BOUNDARY", "Faults", "SimCamera", "free_port_pair"]

log = logging.getLogger(__name__)

BOUNDARY = "123456789000000000000987654321"
STREAM_CONTENT_TYPE = f"multipart/x-mixed-replace;boundary={BOUNDARY}"
_PART_BOUNDARY = f"\r\n--{BOUNDARY}\r\n".encode()
_CORS = {"Access-Control-Allow-Origin": "*"}
_SEND_TIMEOUT = 5.0  # esp_http_server's send/recv timeout

# /control in CameraWebServer (cmd_handler in app_httpd.cpp): each variable goes to one
# sensor setter; the OV2640 driver refuses a value outside its range and the handler then
# answers 500, as it does for an unknown variable. The simulator's own table, written from
# the firmware, not from what camserver validates (camserver.schema.esp32).
_SETTERS = """
framesize 0 15 | quality 4 63 | contrast -2 2 | brightness -2 2 | saturation -2 2
gainceiling 0 6 | colorbar 0 1 | awb 0 1 | agc 0 1 | aec 0 1 | hmirror 0 1 | vflip 0 1
awb_gain 0 1 | agc_gain 0 30 | aec_value 0 1200 | aec2 0 1 | dcw 0 1 | bpc 0 1 | wpc 0 1
raw_gma 0 1 | lenc 0 1 | special_effect 0 6 | wb_mode 0 4 | ae_level -2 2
led_intensity 0 255
"""
_SENSOR_LIMITS = {
    var: (int(lo), int(hi))
    for var, lo, hi in (
        item.split() for item in _SETTERS.replace("\n", "|").split("|") if item.strip()
    )
}

# Keys of /status in the firmware's order; it reports no "vflip" though /control takes it.
_STATUS_KEYS = (
    "xclk",
    "pixformat",
    "framesize",
    "quality",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "special_effect",
    "wb_mode",
    "awb",
    "awb_gain",
    "aec",
    "aec2",
    "ae_level",
    "aec_value",
    "agc",
    "agc_gain",
    "gainceiling",
    "bpc",
    "wpc",
    "raw_gma",
    "lenc",
    "hmirror",
    "dcw",
    "colorbar",
    "led_intensity",
)


@dataclass
class Faults:
    """Fault switches. Counts are per stream connection; 0 means off."""

    drop_every: int = 0
    """Close the connection in the middle of every Nth frame."""
    stall_seconds: float = 0.0
    """Send nothing for this long: once at the next frame, or every ``stall_every`` frames."""
    stall_every: int = 0
    truncate_every: int = 0
    """Every Nth JPEG is cut in half (Content-Length matches the cut, no EOI)."""
    garbage_every: int = 0
    """Every Nth frame is preceded by random bytes between the parts."""
    http_500: bool = False
    """The stream port answers ``500 Internal Server Error``."""
    refuse: bool = False
    """The stream port is closed: connections are refused."""
    endless_part: bool = False
    """After the part headers (no Content-Length), send JPEG-like bytes and never finish."""

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in changes.items():
            f = names.get(key)
            if f is None:
                raise ValueError(f"unknown fault {key!r}")
            kind = type(getattr(self, key))
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0")
            setattr(self, key, kind(value))


def free_port_pair(host: str = "127.0.0.1", span: int = 2) -> int:
    """A port P such that P .. P + span - 1 were all free a moment ago."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind((host, 0))
            port = int(a.getsockname()[1])
            if port + span - 1 > 65535:
                continue
            with contextlib.ExitStack() as stack:
                try:
                    for i in range(1, span):
                        s = stack.enter_context(socket.socket())
                        s.bind((host, port + i))
                except OSError:
                    continue
                return port
    raise OSError(f"no {span} free adjacent ports")


class SimCamera:
    """One simulated camera; ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        name: str,
        host: str = "127.0.0.1",
        http_port: int = 0,
        *,
        fps: float = 15.0,
        framesize: int = 10,
        quality: int = 10,
        replay: int = 0,
        capture_delay: float = 0.15,
        faults: Faults | None = None,
        discovery_port: int | None = None,
        announce_to: tuple[str, int] | None = None,
        announce_format: AnnounceFormat = "json",
        login: Login | None = None,
        embed_time: bool = False,
        scene: dict[str, Any] | None = None,
    ) -> None:
        """``discovery_port``: answer probes there; ``announce_to``: (broadcast address,
        server's listen port) to announce to at start; ``scene``: show a still scene (see
        :class:`~camserver.sim.scene.Scene`) instead of the moving test pattern."""
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.name = name
        self.host = host
        self.http_port = http_port
        self.fps = fps
        self.capture_delay = capture_delay
        self.faults = faults or Faults()
        self.settings: dict[str, int] = {k: 0 for k in _STATUS_KEYS}
        self.settings.update(
            xclk=20,
            pixformat=4,
            framesize=framesize,
            quality=quality,
            awb=1,
            aec=1,
            agc=1,
            bpc=0,
            wpc=1,
            raw_gma=1,
            lenc=1,
            dcw=1,
            awb_gain=1,
            aec_value=204,
        )
        self.settings["vflip"] = 0
        self.login = login
        self.embed_time = embed_time
        self._renderer = FrameRenderer(name, replay=replay)
        self._scene_renderer = SceneRenderer(name)
        self.scene: Scene | None = None
        self._scene_since = time.monotonic()
        if scene is not None:
            self.set_scene(scene)
        self._discovery_port = discovery_port
        self._announce_to = announce_to
        self._announce_format: AnnounceFormat = announce_format
        self.responder: SimResponder | None = None
        self._boot = time.monotonic()
        self._counter = 0
        self._http: asyncio.Server | None = None
        self._stream: asyncio.Server | None = None
        self._stream_lock = asyncio.Lock()
        self._stream_writers: set[asyncio.StreamWriter] = set()
        self._http_writers: set[asyncio.StreamWriter] = set()
        # Counters for tests.
        self.tcp_connections = 0
        self.stream_connections = 0
        self.active_streams = 0
        self.stream_clients = 0
        """Connections open on the stream port now, served or waiting for their turn."""
        self.max_stream_clients = 0
        """The most at once: above 1, two readers wanted this camera at the same time."""
        self.frames_sent = 0
        self.captures = 0
        """Answers to ``/capture`` (snapshots taken from the camera itself)."""

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def stream_port(self) -> int:
        return self.http_port + 1

    @property
    def address(self) -> str:
        """``host:port`` as camserver's ``POST /api/streams`` takes it."""
        return f"{self.host}:{self.http_port}"

    async def start(self) -> None:
        if self.http_port == 0:
            self.http_port = free_port_pair(self.host)
        self._http = await asyncio.start_server(self._serve_http, self.host, self.http_port)
        if not self.faults.refuse:
            await self._open_stream_port()
        if self._discovery_port is not None or self._announce_to is not None:
            self.responder = SimResponder(
                self.name, self.host, self.http_port, self._announce_format
            )
            await self.responder.start(self._discovery_port or 0)
            if self._announce_to is not None:
                self.responder.announce(self._announce_to)

    async def stop(self) -> None:
        if self.responder is not None:
            self.responder.close()
        for server in (self._http, self._stream):
            if server is not None:
                server.close()
        await self._close_stream_port()
        for writer in list(self._http_writers):  # the camera powered off: keep-alives die too
            writer.transport.abort()
        self._http = None

    async def __aenter__(self) -> SimCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def set_faults(self, **changes: Any) -> None:
        """Change fault switches; ``refuse`` or ``http_500`` drop the current stream client."""
        self.faults.update(changes)
        if changes.get("http_500"):
            for writer in list(self._stream_writers):
                writer.transport.abort()
        if self.faults.refuse and self._stream is not None:
            await self._close_stream_port()
        elif not self.faults.refuse and self._stream is None and self._http is not None:
            await self._open_stream_port()

    async def _open_stream_port(self) -> None:
        self._stream = await asyncio.start_server(
            self._serve_stream, self.host, self.stream_port, reuse_address=True
        )

    async def _close_stream_port(self) -> None:
        server, self._stream = self._stream, None
        if server is not None:
            server.close()
        for writer in list(self._stream_writers):
            writer.transport.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def stats(self) -> dict[str, int]:
        return {
            "tcp_connections": self.tcp_connections,
            "stream_connections": self.stream_connections,
            "active_streams": self.active_streams,
            "stream_clients": self.stream_clients,
            "max_stream_clients": self.max_stream_clients,
            "frames_sent": self.frames_sent,
            "captures": self.captures,
        }

    # -- frames ---------------------------------------------------------------------------

    def _timestamp(self) -> str:
        up = time.monotonic() - self._boot
        sec = int(up)
        return f"{sec}.{int((up - sec) * 1_000_000):06d}"

    def set_scene(self, changes: dict[str, Any]) -> None:
        """Show a still scene with these fields changed (ValueError for a bad one)."""
        scene = dataclasses.replace(self.scene) if self.scene is not None else Scene()
        scene.update(changes)
        if self.scene is None or changes.get("moving_object"):
            self._scene_since = time.monotonic()  # an object starts from the left
        self.scene = scene

    def _render(self) -> bytes:
        self._counter += 1
        if self.scene is not None:
            fs = FRAMESIZES.get(self.settings["framesize"], FRAMESIZES[10])
            return self._scene_renderer.render(
                self.scene,
                fs.width,
                fs.height,
                jpeg_quality(self.settings["quality"]),
                time.monotonic() - self._scene_since,
            )
        return self._renderer.render(
            self._counter, self.settings["framesize"], self.settings["quality"]
        )

    # -- port 80 ------------------------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._http_writers.add(writer)
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                writer.write(await self._http_response(req))
                await writer.drain()
                if not req.keep_alive:
                    break
        except ConnectionError:
            pass
        finally:
            self._http_writers.discard(writer)
            writer.close()

    def _refused(self, req: Request) -> bytes | None:
        """A 401 answer if the camera wants a login this request lacks."""
        if self.login is None or self.login.accepts(req):
            return None
        return response(401, b"401 Unauthorized", "text/plain", self.login.challenge())

    async def _http_response(self, req: Request) -> bytes:
        if req.path.startswith("/sim/"):
            return await self._sim_api(req)
        refused = self._refused(req)
        if refused is not None:
            return refused
        if req.path == "/capture":
            await asyncio.sleep(self.capture_delay)  # the firmware flashes the LED first
            self.captures += 1
            return response(
                200,
                self._render(),
                "image/jpeg",
                {
                    "Content-Disposition": "inline; filename=capture.jpg",
                    **_CORS,
                    "X-Timestamp": self._timestamp(),
                },
            )
        if req.path == "/status":
            status = {k: self.settings[k] for k in _STATUS_KEYS}
            return response(200, json.dumps(status).encode(), "application/json", _CORS)
        if req.path == "/control":
            return self._control(req)
        if req.path == "/":
            page = f"<html><body><h1>{self.name}</h1><img src='/capture'></body></html>"
            return response(200, page.encode())
        return response(404, b"Nothing matches the given URI", "text/plain")

    async def _sim_api(self, req: Request) -> bytes:
        """Test extensions, never behind the login."""
        if req.path == "/sim/faults":
            if req.method == "POST":
                try:
                    changes = json.loads(req.body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("body must be a JSON object")
                    await self.set_faults(**changes)
                except ValueError as exc:
                    return response(400, str(exc).encode(), "text/plain")
            body = json.dumps(dataclasses.asdict(self.faults)).encode()
            return response(200, body, "application/json")
        if req.path == "/sim/stats":
            return response(200, json.dumps(self.stats()).encode(), "application/json")
        if req.path == "/sim/scene":
            if req.method == "POST":
                try:
                    changes = json.loads(req.body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("body must be a JSON object")
                    self.set_scene(changes)
                except ValueError as exc:
                    return response(400, str(exc).encode(), "text/plain")
            elif req.method == "DELETE":
                self.scene = None  # back to the moving test pattern
            scene = None if self.scene is None else dataclasses.asdict(self.scene)
            return response(200, json.dumps({"scene": scene}).encode(), "application/json")
        return response(404, b"Nothing matches the given URI", "text/plain")

    def _control(self, req: Request) -> bytes:
        var, val = req.query.get("var"), req.query.get("val")
        if not var or val is None or val == "":
            return response(404, b"404 Not Found", "text/plain")
        limits = _SENSOR_LIMITS.get(var)
        try:
            # The firmware parses val with atoi(): anything else reads as 0.
            value = int(val)
        except ValueError:
            value = 0
        if limits is None or not limits[0] <= value <= limits[1]:
            return response(500, b"500 Internal Server Error", "text/plain")
        if var == "framesize" and value not in FRAMESIZES:
            return response(500, b"500 Internal Server Error", "text/plain")
        self.settings[var] = value
        return response(200, b"", "text/html", _CORS)

    # -- port 81 ------------------------------------------------------------------------

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.tcp_connections += 1
        self._stream_writers.add(writer)
        self.stream_clients += 1
        # A client whose close (FIN) is already in the kernel is gone, even if this busy
        # loop has not run its handler yet: it does not count against the new one.
        others = sum(1 for w in self._stream_writers if w is not writer and not _peer_closed(w))
        self.max_stream_clients = max(self.max_stream_clients, others + 1)
        try:
            # One client at a time: the next one waits here, accepted but unanswered.
            async with self._stream_lock:
                req = await read_request(reader)
                if req is None:
                    return
                if req.path != "/stream":
                    writer.write(response(404, b"Nothing matches the given URI", "text/plain"))
                    await writer.drain()
                    return
                refused = self._refused(req)
                if refused is not None:
                    writer.write(refused)
                    await writer.drain()
                    return
                if self.faults.http_500:
                    writer.write(response(500, b"500 Internal Server Error", "text/plain"))
                    await writer.drain()
                    return
                self.stream_connections += 1
                self.active_streams += 1
                try:
                    await self._stream_frames(reader, writer)
                finally:
                    self.active_streams -= 1
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.stream_clients -= 1
            self._stream_writers.discard(writer)
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
        gone = asyncio.ensure_future(_until_closed(reader))
        try:
            n = 0
            next_at = time.monotonic()
            while True:
                next_at += 1.0 / self.fps
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
        f = self.faults
        if f.stall_seconds > 0 and (f.stall_every == 0 or n % f.stall_every == 0):
            stall = f.stall_seconds
            if f.stall_every == 0:
                f.stall_seconds = 0.0  # one-shot
            await asyncio.wait({gone}, timeout=stall)
            if gone.done():
                return False
        if f.garbage_every and n % f.garbage_every == 0:
            writer.write(chunk(os.urandom(random.randint(16, 512)).replace(b"-", b"_")))
        jpeg = self._render()
        if self.embed_time:
            jpeg = embed_send_time(jpeg, time.time())
        if f.endless_part:
            return await self._send_endless(writer, gone)
        if f.truncate_every and n % f.truncate_every == 0:
            jpeg = jpeg[: len(jpeg) // 2]
        head = (
            f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
            f"X-Timestamp: {self._timestamp()}\r\n\r\n"
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
        self.frames_sent += 1
        return True

    async def _send_endless(self, writer: asyncio.StreamWriter, gone: asyncio.Future[None]) -> bool:
        writer.write(chunk(_PART_BOUNDARY))
        writer.write(chunk(b"Content-Type: image/jpeg\r\n\r\n"))
        # SOI, then an SOS segment, then entropy data that never holds FF D9.
        writer.write(chunk(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"))
        filler = bytes(range(0x00, 0x7F)) * 512
        while self.faults.endless_part and not gone.done():
            writer.write(chunk(filler))
            await asyncio.wait_for(writer.drain(), _SEND_TIMEOUT)
            await asyncio.wait({gone}, timeout=0.01)
        return False


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Returns when the peer closes the connection (it sends nothing after its request)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


def _peer_closed(writer: asyncio.StreamWriter) -> bool:
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
