"""The simulated camera as an ESPHome device: the native API's device side.

``camserver sim --esphome [--encryption-key K]`` serves what an ESP32-CAM flashed with
ESPHome's ``esp32_camera`` and ``api:`` components serves on TCP 6053: hello, device info,
the entity list (a camera, a flash light, a switch), their states, and camera images in
chunks for ``CameraImageRequest`` (``single``: one picture; ``stream``: pictures at the
camera's rate for 5 s after the request, ESPHome's CAMERA_STOP_STREAM, so a client asks
again before then). The framing (plaintext or Noise) is :mod:`camserver.sim.esphome_wire`;
the messages are the protobuf classes aioesphomeapi ships.

The HTTP camera's fault switches apply here too: ``refuse`` (the API port is closed),
``drop_every`` (the connection breaks in the middle of every Nth image), ``stall_seconds``
/ ``stall_every`` (the device sends nothing, pings unanswered), ``garbage_every`` (bytes
that are no frame), and ``no_camera`` (the entity list has no camera). ``set_key`` gives
the device a new encryption key (a client with the old one is then refused).

With ``mdns_interfaces`` it announces ``_esphomelib._tcp.local.`` there (tests: only in
network namespaces they made).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from aioesphomeapi.api_pb2 import (  # type: ignore[attr-defined]  # (generated: no stubs)
    AuthenticationRequest,
    AuthenticationResponse,
    CameraImageRequest,
    CameraImageResponse,
    DeviceInfoRequest,
    DeviceInfoResponse,
    DisconnectRequest,
    DisconnectResponse,
    HelloRequest,
    HelloResponse,
    LightStateResponse,
    ListEntitiesCameraResponse,
    ListEntitiesDoneResponse,
    ListEntitiesLightResponse,
    ListEntitiesRequest,
    ListEntitiesSwitchResponse,
    PingRequest,
    PingResponse,
    SubscribeStatesRequest,
    SwitchStateResponse,
)
from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Proto

from camserver.sim.esphome_wire import NEED_DATA, DeviceFrames, Fail, decode_key

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncZeroconf

    from camserver.sim.camera import SimCamera

__all__ = ["CAMERA_KEY", "STREAM_SECONDS", "SimEsphome"]

log = logging.getLogger(__name__)

TYPE_OF: dict[type[Proto], int] = {cls: n for n, cls in MESSAGE_TYPE_TO_PROTO.items()}
STREAM_SECONDS = 5.0
"""How long one stream request keeps pictures coming (ESPHome's CAMERA_STOP_STREAM)."""
CHUNK = 1400
"""Bytes of JPEG per CameraImageResponse, about what the firmware sends."""
CAMERA_KEY, FLASH_KEY, SWITCH_KEY = 0x1A2B3C01, 0x1A2B3C02, 0x1A2B3C03
ESPHOME_VERSION = "2026.11.0"
SERVICE = "_esphomelib._tcp.local."


def mac_for(name: str) -> str:
    """A stable Espressif-looking MAC for a device name."""
    tail = hashlib.sha256(name.encode()).digest()[:3]
    return "24:0A:C4:" + ":".join(f"{b:02X}" for b in tail)


class _Conn:
    """One client: its framing, writer and what it asked for."""

    def __init__(self, frames: DeviceFrames, writer: asyncio.StreamWriter) -> None:
        self.frames = frames
        self.writer = writer
        self.stream_until = 0.0
        self.single = False
        self.wake = asyncio.Event()
        self.subscribed = False

    def send(self, msg: Proto) -> None:
        self.frames.send(TYPE_OF[type(msg)], msg.SerializeToString())
        self.flush()

    def flush(self) -> None:
        data = self.frames.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)


class SimEsphome:
    """The ESPHome API server of one simulated camera."""

    def __init__(
        self,
        camera: SimCamera,
        port: int,
        *,
        key: str | None = None,
        password: str | None = None,
        mdns_interfaces: list[str] | None = None,
    ) -> None:
        self.camera = camera
        self.port = port
        self.psk = decode_key(key) if key else None
        self.password = password
        self.mac = mac_for(camera.name)
        self._mdns_interfaces = mdns_interfaces or []
        self._zeroconf: AsyncZeroconf | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._images = 0
        self._stall_until = 0.0
        # Counters for tests.
        self.connections = 0
        self.clients = 0
        self.max_clients = 0
        self.stream_requests = 0
        self.single_requests = 0
        self.images_sent = 0
        self.refused_keys = 0
        self.sent: collections.deque[str] = collections.deque(maxlen=2000)
        """SHA-256 of the last images sent whole (tests compare what camserver served)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.camera.faults.refuse:
            await self._open()
        if self._mdns_interfaces:
            await self._announce()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.camera.host, self.port, reuse_address=True
        )
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_port(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.writer.transport.abort()

    async def stop(self) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_all_services()
            await self._zeroconf.async_close()
            self._zeroconf = None
        await self._close_port()
        for task in list(self._tasks):
            task.cancel()

    async def faults_changed(self) -> None:
        """``refuse`` closes the port (and its clients) or opens it again."""
        if self.camera.faults.refuse and self._server is not None:
            await self._close_port()
        elif not self.camera.faults.refuse and self._server is None:
            await self._open()

    def set_key(self, key: str | None) -> None:
        """A new encryption key (None: plaintext) for the connections that come next."""
        self.psk = decode_key(key) if key else None
        for conn in list(self._conns):
            conn.writer.transport.abort()

    def stats(self) -> dict[str, int]:
        return {
            "esphome_connections": self.connections,
            "esphome_clients": self.clients,
            "max_esphome_clients": self.max_clients,
            "esphome_stream_requests": self.stream_requests,
            "esphome_single_requests": self.single_requests,
            "esphome_images_sent": self.images_sent,
            "esphome_refused_keys": self.refused_keys,
        }

    async def _announce(self) -> None:
        from zeroconf import ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        name = self.camera.name
        props = {
            "version": ESPHOME_VERSION,
            "mac": self.mac.replace(":", "").lower(),
            "platform": "ESP32",
            "board": "esp32cam",
            "network": "wifi",
            "friendly_name": name,
        }
        if self.psk is not None:
            props["api_encryption"] = "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
        info = ServiceInfo(
            SERVICE,
            f"{name}.{SERVICE}",
            addresses=[socket.inet_aton(self.camera.host)],
            port=self.port,
            properties=props,
            server=f"{name}.local.",
        )
        self._zeroconf = AsyncZeroconf(interfaces=self._mdns_interfaces)
        await self._zeroconf.async_register_service(info)

    # -- one client ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(DeviceFrames(self.psk, self.camera.name, self.mac), writer)
        self._conns.add(conn)
        self.connections += 1
        self.clients += 1
        self.max_clients = max(self.max_clients, self.clients)
        images = asyncio.create_task(self._send_images(conn))
        self._tasks.add(images)
        try:
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                conn.frames.receive_data(data)
                if not self._handle(conn):
                    break
        except ConnectionError:
            pass
        finally:
            images.cancel()
            self._tasks.discard(images)
            self._conns.discard(conn)
            self.clients -= 1
            with contextlib.suppress(ConnectionError, RuntimeError):
                conn.flush()
            writer.close()

    def _handle(self, conn: _Conn) -> bool:
        """Answer every whole message; False when the connection is to end."""
        while True:
            event = conn.frames.next_event()
            if event is NEED_DATA:
                conn.flush()
                return True
            if isinstance(event, Fail):
                if "key differs" in event.reason:
                    self.refused_keys += 1
                log.info("%s: closing an API connection: %s", self.camera.name, event.reason)
                conn.flush()
                return False
            cls = MESSAGE_TYPE_TO_PROTO.get(event.type)
            if cls is None:
                continue  # the firmware ignores message types it does not know
            msg = cls()
            try:
                msg.ParseFromString(event.payload)
            except DecodeError:
                return False
            if time.monotonic() < self._stall_until:
                continue  # a hung device answers nothing, pings included
            if not self._answer(conn, msg):
                conn.flush()
                return False

    def _answer(self, conn: _Conn, msg: Proto) -> bool:
        if isinstance(msg, HelloRequest):
            conn.send(
                HelloResponse(
                    api_version_major=1,
                    api_version_minor=12,
                    server_info=f"{self.camera.name} (esphome v{ESPHOME_VERSION})",
                    name=self.camera.name,
                )
            )
        elif isinstance(msg, AuthenticationRequest):
            if self.password is not None and msg.password != self.password:
                conn.send(AuthenticationResponse(invalid_password=True))
                return False
        elif isinstance(msg, DeviceInfoRequest):
            conn.send(self._device_info())
        elif isinstance(msg, ListEntitiesRequest):
            for entity in self._entities():
                conn.send(entity)
            conn.send(ListEntitiesDoneResponse())
        elif isinstance(msg, SubscribeStatesRequest):
            conn.subscribed = True
            conn.send(LightStateResponse(key=FLASH_KEY, state=False, brightness=1.0))
            conn.send(SwitchStateResponse(key=SWITCH_KEY, state=True))
        elif isinstance(msg, CameraImageRequest):
            if self.camera.faults.no_camera:
                return True
            if msg.stream:
                self.stream_requests += 1
                conn.stream_until = time.monotonic() + STREAM_SECONDS
            if msg.single:
                self.single_requests += 1
                conn.single = True
            conn.wake.set()
        elif isinstance(msg, PingRequest):
            conn.send(PingResponse())
        elif isinstance(msg, DisconnectRequest):
            conn.send(DisconnectResponse())
            return False
        return True

    def _device_info(self) -> DeviceInfoResponse:
        return DeviceInfoResponse(
            uses_password=self.password is not None,
            name=self.camera.name,
            friendly_name=self.camera.name,
            mac_address=self.mac,
            esphome_version=ESPHOME_VERSION,
            compilation_time="Dec  1 2026, 12:00:00",
            model="esp32cam",
            manufacturer="Espressif",
            api_encryption_supported=True,
        )

    def _entities(self) -> list[Proto]:
        out: list[Proto] = [
            ListEntitiesLightResponse(
                object_id="flash", key=FLASH_KEY, name="Flash", supported_color_modes=[3]
            ),
            ListEntitiesSwitchResponse(object_id="status_led", key=SWITCH_KEY, name="Status LED"),
        ]
        if not self.camera.faults.no_camera:
            out.insert(
                0, ListEntitiesCameraResponse(object_id="camera", key=CAMERA_KEY, name="Camera")
            )
        return out

    # -- pictures ------------------------------------------------------------------------------

    async def _send_images(self, conn: _Conn) -> None:
        """Pictures while a stream request lasts, and one for each single request."""
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            if not (conn.single or now < conn.stream_until):
                conn.wake.clear()
                await conn.wake.wait()
                next_at = max(next_at, time.monotonic())
                continue
            await asyncio.sleep(max(0.0, next_at - now))
            next_at = max(next_at + 1 / self.camera.fps, time.monotonic() - 1)
            conn.single = False
            if not conn.frames.ready or conn.writer.is_closing():
                continue
            await self._send_image(conn)

    async def _send_image(self, conn: _Conn) -> None:
        faults = self.camera.faults
        self._images += 1
        n = self._images
        if faults.stall_seconds and (
            (faults.stall_every and n % faults.stall_every == 0) or not faults.stall_every
        ):
            if not faults.stall_every:
                faults.stall_seconds, stall = 0.0, faults.stall_seconds  # once
            else:
                stall = faults.stall_seconds
            self._stall_until = time.monotonic() + stall
            await asyncio.sleep(stall)
        if faults.garbage_every and n % faults.garbage_every == 0:
            conn.writer.write(os.urandom(64))
            return
        image = self.camera.render()
        chunks = [image[i : i + CHUNK] for i in range(0, len(image), CHUNK)]
        drop = faults.drop_every and n % faults.drop_every == 0
        for i, chunk in enumerate(chunks):
            if drop and i == len(chunks) // 2:
                conn.writer.transport.abort()  # the Wi-Fi dropped mid-image
                return
            conn.frames.send(
                TYPE_OF[CameraImageResponse],
                CameraImageResponse(
                    key=CAMERA_KEY, data=chunk, done=i == len(chunks) - 1
                ).SerializeToString(),
            )
        conn.flush()
        # A device that cannot get one image out skips the next (no queue of old ones).
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()
        self.images_sent += 1
        self.camera.frames_sent += 1
        self.sent.append(hashlib.sha256(image).hexdigest())

    def describe(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "encrypted": self.psk is not None,
            "mac": self.mac,
            "sent": list(self.sent),
        }
