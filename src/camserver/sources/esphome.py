"""An ESPHome camera: its images over ESPHome's native API, through aioesphomeapi (the
library Home Assistant uses), one connection per camera.

One session: resolve the host (the network guard checks the address; ``.local`` names
from camserver's mDNS browser), connect (plaintext, or Noise with ``encryption_key``; an
API ``password`` for old firmware), read the device info and the entity list, subscribe
to states, and ask for an image stream again every :data:`REQUEST_EVERY` seconds (one
request keeps the device streaming for 5 s only: ESPHome's CAMERA_STOP_STREAM; Home
Assistant asks again likewise). Each whole image aioesphomeapi assembles from the
device's chunks is published as it came. The session ends, with a sentence as
``last_error``, when the connection closes or no image came for ``frame_timeout``.

Nothing is requested while the supervisor does not run the source (an ``on_demand``
camera nobody watches): the connection is closed then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from aioesphomeapi.client import APIClient
from aioesphomeapi.core import (
    APIConnectionError,
    EncryptionPlaintextAPIError,
    InvalidAuthAPIError,
    InvalidEncryptionKeyAPIError,
    ProtocolAPIError,
    RequiresEncryptionAPIError,
    SocketAPIError,
)
from aioesphomeapi.model import (
    CameraInfo,
    CameraState,
    ConnectionClosedEvent,
    EntityState,
    LightInfo,
    LightState,
    SwitchInfo,
    SwitchState,
)

from camserver import __version__
from camserver.codecs.jpeg import is_complete
from camserver.errors import (
    TargetNotAllowed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
)
from camserver.netguard import NetworkGuard
from camserver.schema import StreamConfig
from camserver.schema.esphome import DEFAULT_API_PORT, DeviceEntity, EsphomeDevice
from camserver.sources.base import FrameSink, SourceTiming
from camserver.sources.sentences import (
    broke_mid_stream,
    cannot_connect,
    closed_the_stream,
    no_connection_within,
    no_whole_frame_for,
    not_connecting,
)

__all__ = ["REQUEST_EVERY", "EsphomeSource"]

log = logging.getLogger(__name__)

REQUEST_EVERY = 2.0
"""Seconds between stream requests: well inside the device's 5 s."""


def _sentence(exc: BaseException, streaming: bool = False) -> UpstreamError:
    """What a user reads as ``last_error`` for an aioesphomeapi failure (``streaming``:
    after the session was up)."""
    if isinstance(exc, InvalidEncryptionKeyAPIError):
        return UpstreamConnectError(
            "the device refused the encryption key: give the key of its YAML "
            "(api: encryption: key:) as encryption_key"
        )
    if isinstance(exc, RequiresEncryptionAPIError):
        return UpstreamConnectError(
            "the device wants an encrypted connection: give its api: encryption: key: "
            "as encryption_key"
        )
    if isinstance(exc, EncryptionPlaintextAPIError):
        return UpstreamConnectError(
            "the device does not use encryption: remove encryption_key (or add "
            "api: encryption: to its YAML)"
        )
    if isinstance(exc, InvalidAuthAPIError):
        return UpstreamConnectError("the device refused the API password")
    if isinstance(exc, ProtocolAPIError):
        return UpstreamProtocolError(f"the device sent something that is not ESPHome's API: {exc}")
    if streaming:
        return broke_mid_stream(str(exc) or type(exc).__name__)
    if isinstance(exc, SocketAPIError):
        detail = str(exc.__cause__ or exc)
        if isinstance(exc.__cause__, ConnectionRefusedError) or "refused" in detail.lower():
            return cannot_connect("the device refused the connection (is its API on this port?)")
        return cannot_connect(detail)
    return UpstreamConnectError(f"the ESPHome connection failed: {exc}")


class EsphomeSource:
    """A :class:`~camserver.sources.base.Source`: one ESPHome camera."""

    def __init__(
        self,
        host: str,
        port: int,
        timing: SourceTiming,
        guard: NetworkGuard,
        *,
        key: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._timing = timing
        self._guard = guard
        self._key = key
        self._password = password
        self.device: EsphomeDevice | None = None
        self._entities: dict[int, DeviceEntity] = {}
        self._camera_key: int | None = None

    @classmethod
    def for_config(
        cls, cfg: StreamConfig, client: httpx.AsyncClient, timing: SourceTiming, guard: NetworkGuard
    ) -> EsphomeSource:
        return cls(
            cfg.host or "",
            cfg.port or DEFAULT_API_PORT,
            timing,
            guard,
            key=cfg.encryption_key,
            password=cfg.password,
        )

    def extra_status(self) -> dict[str, Any]:
        if self.device is None:
            return {}
        return {"device": self.device, "entities": list(self._entities.values())}

    async def _address(self) -> str:
        url = f"esphome://{self.host}:{self.port}/"
        try:
            return (await self._guard.resolve(url))[0]
        except TargetNotAllowed as exc:
            raise not_connecting(str(exc)) from exc
        except UpstreamConnectError as exc:
            raise cannot_connect(str(exc)) from exc

    async def run(self, sink: FrameSink) -> None:
        address = await self._address()
        client = APIClient(
            address,
            self.port,
            self._password,
            client_info=f"camserver {__version__}",
            noise_psk=self._key,
        )
        closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def on_closed(event: ConnectionClosedEvent) -> None:
            if not closed.done():
                closed.set_result(event.error)

        client.add_connection_closed_callback(on_closed)
        try:
            await self._connect(client, address, closed)
            sink.connected()
            await self._stream(client, sink, closed)
        finally:
            client.force_disconnect()

    async def _connect(
        self, client: APIClient, address: str, closed: asyncio.Future[BaseException | None]
    ) -> None:
        seconds = self._timing.connect_timeout
        try:
            async with asyncio.timeout(seconds):
                await client.connect(login=True)
                info = await client.device_info()
                entities, _ = await client.list_entities_services()
        except TimeoutError as exc:
            raise no_connection_within(seconds) from exc
        except APIConnectionError as exc:
            # A refused password closes the connection after connect() returned (the
            # client does not wait for the answer): the reason is the close's, not the
            # next request's "not connected".
            why = closed.result() if closed.done() else None
            raise _sentence(why or exc) from exc
        cameras = [e for e in entities if isinstance(e, CameraInfo)]
        if not cameras:
            raise UpstreamConnectError(
                "the device has no camera entity (add esp32_camera: to its YAML)"
            )
        self._camera_key = cameras[0].key
        self.device = EsphomeDevice(
            name=info.name,
            friendly_name=info.friendly_name or None,
            model=info.model or None,
            manufacturer=info.manufacturer or None,
            esphome_version=info.esphome_version or None,
            mac_address=info.mac_address or None,
            address=f"{address}:{self.port}",
            encrypted=self._key is not None,
        )
        self._entities = {
            e.key: DeviceEntity(kind="light" if isinstance(e, LightInfo) else "switch", name=e.name)
            for e in entities
            if isinstance(e, LightInfo | SwitchInfo)
        }

    async def _stream(
        self,
        client: APIClient,
        sink: FrameSink,
        closed: asyncio.Future[BaseException | None],
    ) -> None:
        frame_timeout = self._timing.frame_timeout
        last_good = time.monotonic()
        max_bytes = self._timing.max_frame_bytes

        def on_state(state: EntityState) -> None:
            nonlocal last_good
            if isinstance(state, CameraState):
                if state.key != self._camera_key:
                    return
                data = bytes(state.data)
                if len(data) > max_bytes:
                    sink.bad_frame(f"an image of {len(data)} bytes is over the frame cap")
                elif not is_complete(data):
                    sink.bad_frame("an image that is not a whole JPEG")
                else:
                    sink.publish(data)
                    last_good = time.monotonic()
            elif isinstance(state, LightState | SwitchState):
                entity = self._entities.get(state.key)
                if entity is not None:
                    entity.on = bool(state.state)

        try:
            client.subscribe_states(on_state)
            while True:
                client.request_image_stream()
                try:
                    async with asyncio.timeout(REQUEST_EVERY):
                        error = await asyncio.shield(closed)
                except TimeoutError:
                    if time.monotonic() - last_good > frame_timeout:
                        raise no_whole_frame_for(frame_timeout) from None
                    continue
                if error is None:
                    raise UpstreamProtocolError(closed_the_stream)
                raise _sentence(error, streaming=True) from error
        except APIConnectionError as exc:
            raise _sentence(exc, streaming=True) from exc
