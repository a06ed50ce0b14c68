"""A simulated ESP32-CAM running Espressif's CameraWebServer example.

HTTP on ``http_port`` (``/``, ``/capture``, ``/status``, ``/control``) and the MJPEG
stream on ``http_port + 1`` (``/stream``), byte for byte as the firmware sends them:
chunked, boundary before each part, ``X-Timestamp`` since boot, no closing boundary.
Like the firmware, the stream port serves one client at a time: a second client's TCP
connection is accepted but gets nothing until the first leaves.

The parts: ``stream`` (the stream port), ``control`` (``/status`` and ``/control``),
``faults`` (the switches), ``http`` (requests and answers), ``frames`` and ``scene``
(pictures), ``responder`` (UDP discovery).

Extensions for tests (not in any firmware): ``GET/POST /sim/faults`` to read or change
the fault switches, ``GET /sim/stats`` for connection and frame counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
from typing import Any

from camserver.sim.control import CORS, STATUS_KEYS, control
from camserver.sim.esphome import SimEsphome
from camserver.sim.faults import Faults
from camserver.sim.frames import FRAMESIZES, FrameRenderer, jpeg_quality
from camserver.sim.http import Login, Request, read_request, response
from camserver.sim.push import PushMode, SimPusher
from camserver.sim.responder import AnnounceFormat, SimResponder
from camserver.sim.scene import Scene, SceneRenderer
from camserver.sim.stream import BOUNDARY, StreamPort

__all__ = ["BOUNDARY", "Faults", "SimCamera", "free_port_pair"]

log = logging.getLogger(__name__)


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
        self.settings: dict[str, int] = {k: 0 for k in STATUS_KEYS}
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
        self.pusher: SimPusher | None = None
        """Set when the camera pushes to camserver (``camserver sim --push``)."""
        self.esphome: SimEsphome | None = None
        """Set when the camera is an ESPHome device too (``camserver sim --esphome``)."""
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

    @property
    def booted(self) -> float:
        """Monotonic time the camera started."""
        return self._boot

    def push_to(
        self, url: str, key: str, mode: PushMode = "ws", every: float | None = None
    ) -> None:
        """Push pictures to camserver at ``url`` (see :mod:`camserver.sim.push`)."""
        self.pusher = SimPusher(self, url, key, mode, every)
        self.pusher.start()

    async def serve_esphome(
        self,
        port: int = 0,
        *,
        key: str | None = None,
        password: str | None = None,
        mdns_interfaces: list[str] | None = None,
    ) -> SimEsphome:
        """Serve ESPHome's native API on ``port`` (see :mod:`camserver.sim.esphome`)."""
        self.esphome = SimEsphome(
            self, port, key=key, password=password, mdns_interfaces=mdns_interfaces
        )
        await self.esphome.start()
        return self.esphome

    async def stop(self) -> None:
        if self.pusher is not None:
            await self.pusher.stop()
        if self.esphome is not None:
            await self.esphome.stop()
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
        if self.esphome is not None:
            await self.esphome.faults_changed()

    async def _open_stream_port(self) -> None:
        self._stream = await asyncio.start_server(
            StreamPort(self).serve, self.host, self.stream_port, reuse_address=True
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
        pushed = self.pusher.as_dict() if self.pusher is not None else {}
        esphome = self.esphome.stats() if self.esphome is not None else {}
        return {
            **pushed,
            **esphome,
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

    def render(self) -> bytes:
        """The next picture, as the sensor gives it now."""
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
                self.render(),
                "image/jpeg",
                {
                    "Content-Disposition": "inline; filename=capture.jpg",
                    **CORS,
                    "X-Timestamp": self._timestamp(),
                },
            )
        if req.path == "/status":
            status = {k: self.settings[k] for k in STATUS_KEYS}
            return response(200, json.dumps(status).encode(), "application/json", CORS)
        if req.path == "/control":
            return control(self.settings, req)
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
        if req.path == "/sim/esphome" and self.esphome is not None:
            if req.method == "POST":  # {"encryption_key": "..." or null}: a new device key
                try:
                    body = json.loads(req.body or b"{}")
                    self.esphome.set_key(body.get("encryption_key"))
                except (ValueError, AttributeError) as exc:
                    return response(400, str(exc).encode(), "text/plain")
            return response(200, json.dumps(self.esphome.describe()).encode(), "application/json")
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
