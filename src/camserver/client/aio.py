"""The asyncio client: every REST call, and live frames over Socket.IO or MJPEG."""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from camserver import __version__
from camserver.client import live
from camserver.client.errors import ServerUnreachable, UnexpectedAnswer, raise_for_status
from camserver.client.frame import Frame
from camserver.schema import (
    CameraValues,
    ClusterOut,
    DiscoveredOut,
    EventOut,
    EventWindow,
    HealthOut,
    RecordingOut,
    SettingsResult,
    StreamOut,
    StreamStatus,
)

__all__ = ["DEFAULT_URL", "JSON", "AsyncClient", "Time"]

DEFAULT_URL = "http://127.0.0.1:8000"
JSON = dict[str, Any]
T = TypeVar("T")
Time = float | str
"""Epoch seconds, or ISO 8601 (UTC if no zone is given)."""


def _shape_name(shape: object) -> str:
    return getattr(shape, "__name__", None) or str(shape)


def _q(name: str) -> str:
    return quote(name, safe="")


class AsyncClient:
    """camserver's API from asyncio.

    ``base_url`` defaults to ``$CAMSERVER_URL`` or ``http://127.0.0.1:8000``; ``token`` to
    ``$CAMSERVER_TOKEN`` (needed when the server sets ``CAMSERVER_API_TOKEN``). Use it as
    ``async with AsyncClient() as client:`` or call :meth:`aclose`. Errors raise
    :mod:`camserver.client.errors` types with the server's message.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get("CAMSERVER_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("CAMSERVER_TOKEN") or None
        self.timeout = timeout
        headers = {
            "User-Agent": f"camserver-client/{__version__}",
            # The server's browser guard wants it on a POST without a JSON body.
            "X-Requested-With": "camserver-client",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.headers = headers
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False
        )
        self._live: weakref.WeakSet[AsyncGenerator[Frame, None]] = weakref.WeakSet()
        """Live-frame iterators handed out and not collected yet."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections, and end live iterators still open (a loop that broke
        out of ``frames()`` leaves its generator suspended until it is collected: its
        Socket.IO client's session stayed unclosed)."""
        for iterator in list(self._live):
            await iterator.aclose()
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._http.request(method, path, params=query, json=json)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc
        raise_for_status(r)
        return r

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self._request(method, path, **kw)).json()

    async def _parse(self, shape: type[T], method: str, path: str, **kw: Any) -> T:
        """The answer's JSON as ``shape`` (a schema model, or a list of them)."""
        data = await self._json(method, path, **kw)
        try:
            return TypeAdapter(shape).validate_python(data)
        except ValidationError as exc:
            raise UnexpectedAnswer(
                f"{method} {self.base_url}{path}: the answer is not a {_shape_name(shape)}: {exc}"
            ) from exc

    async def _bytes(self, path: str, **kw: Any) -> bytes:
        return (await self._request("GET", path, **kw)).content

    # -- server -----------------------------------------------------------------------------

    async def health(self) -> HealthOut:
        """``/healthz``: ``{"status": "ok"}`` (a cluster node adds its node and Redis)."""
        return await self._parse(HealthOut, "GET", "/healthz")

    async def cluster(self) -> ClusterOut:
        """Cluster mode: this node, Redis' health and every live node (404 on one node)."""
        return await self._parse(ClusterOut, "GET", "/api/cluster")

    # -- streams ----------------------------------------------------------------------------

    async def streams(self) -> list[StreamOut]:
        """Every stream the token sees, each with its live ``status``."""
        return await self._parse(list[StreamOut], "GET", "/api/streams")

    async def stream(self, name: str) -> StreamOut:
        return await self._parse(StreamOut, "GET", f"/api/streams/{_q(name)}")

    async def create_stream(
        self, /, name: str, *, host: str | None = None, stream_url: str | None = None, **fields: Any
    ) -> StreamOut:
        """Add an ESP32-CAM by ``host`` (``ip`` or ``ip:port``) or any MJPEG source by
        ``stream_url``; more fields as in ``POST /api/streams`` (``on_demand``, ``enabled``,
        ``recording``, ``motion``, ...)."""
        body = {"name": name, "host": host, "stream_url": stream_url, **fields}
        return await self._parse(
            StreamOut, "POST", "/api/streams", json={k: v for k, v in body.items() if v is not None}
        )

    async def update_stream(self, /, name: str, **fields: Any) -> StreamOut:
        """``PATCH``: change only the fields given (``recording={"mode": "continuous"}``,
        ``motion={"enabled": True}``, ``on_demand=True``, ...)."""
        return await self._parse(StreamOut, "PATCH", f"/api/streams/{_q(name)}", json=fields)

    async def delete_stream(self, name: str) -> None:
        await self._request("DELETE", f"/api/streams/{_q(name)}")

    async def start(self, name: str) -> StreamStatus:
        """Start pulling the camera; returns the status."""
        return await self._parse(StreamStatus, "POST", f"/api/streams/{_q(name)}/start")

    async def stop(self, name: str) -> StreamStatus:
        """Stop pulling the camera; returns the status."""
        return await self._parse(StreamStatus, "POST", f"/api/streams/{_q(name)}/stop")

    async def status(self, name: str) -> StreamStatus:
        return await self._parse(StreamStatus, "GET", f"/api/streams/{_q(name)}/status")

    async def snapshot(self, name: str) -> bytes:
        """The latest frame (JPEG) if it is recent, else one fetched from the camera."""
        return await self._bytes(f"/api/streams/{_q(name)}/snapshot")

    # -- the ESP32's own settings -----------------------------------------------------------

    async def camera_settings(self, name: str) -> CameraValues:
        """The camera's ``/status`` (framesize, quality, brightness, ...)."""
        return await self._parse(CameraValues, "GET", f"/api/streams/{_q(name)}/settings")

    async def set_camera_settings(self, /, name: str, **values: int) -> SettingsResult:
        """Set CameraWebServer variables (``quality=10, vflip=1``); returns each outcome."""
        return await self._parse(
            SettingsResult, "PUT", f"/api/streams/{_q(name)}/settings", json=values
        )

    # -- discovery --------------------------------------------------------------------------

    async def discovered(self) -> list[DiscoveredOut]:
        """Cameras found by UDP discovery since the server started."""
        return await self._parse(list[DiscoveredOut], "GET", "/api/discovery")

    async def scan(self, timeout: float = 2.0, interface: str | None = None) -> list[DiscoveredOut]:
        """Probe for cameras now (``interface``: some of the enabled ones, comma-separated)."""
        params = {"timeout": timeout, "interface": interface}
        return await self._parse(list[DiscoveredOut], "POST", "/api/discovery/scan", params=params)

    async def add_discovered(self, camera: str, name: str | None = None) -> StreamOut:
        """Add a discovered camera as a stream (under ``name``, else its own)."""
        body = {"name": name} if name else None
        return await self._parse(StreamOut, "POST", f"/api/discovery/{_q(camera)}/add", json=body)

    # -- recordings -------------------------------------------------------------------------

    async def recordings(
        self, name: str, start: Time | None = None, end: Time | None = None
    ) -> list[RecordingOut]:
        """Segments overlapping [start, end] (default: the last 24 hours)."""
        params = {"start": start, "end": end}
        return await self._parse(
            list[RecordingOut], "GET", f"/api/streams/{_q(name)}/recordings", params=params
        )

    async def recording(self, recording_id: int) -> RecordingOut:
        return await self._parse(RecordingOut, "GET", f"/api/recordings/{int(recording_id)}")

    async def recording_file(self, recording_id: int) -> bytes:
        """The segment's Matroska file."""
        return await self._bytes(f"/api/recordings/{int(recording_id)}/file")

    async def delete_recording(self, recording_id: int) -> None:
        await self._request("DELETE", f"/api/recordings/{int(recording_id)}")

    async def recorded_frame(self, name: str, t: Time) -> bytes:
        """The recorded JPEG received at ``t`` or just before."""
        return await self._bytes(f"/api/streams/{_q(name)}/frame.jpeg", params={"t": t})

    async def clip(self, name: str, start: Time, end: Time) -> bytes:
        """Recorded frames from ``start`` to ``end`` as an H.264 MP4."""
        params = {"start": start, "end": end}
        return await self._bytes(f"/api/streams/{_q(name)}/clip.mp4", params=params)

    async def mark_event(self, name: str, seconds: float = 10.0) -> EventWindow:
        """Recording mode ``events``: record a clip around now (pre-roll to post-roll)."""
        return await self._parse(
            EventWindow,
            "POST",
            f"/api/streams/{_q(name)}/recordings/event",
            json={"seconds": seconds},
        )

    # -- motion events ----------------------------------------------------------------------

    async def events(
        self,
        stream: str | None = None,
        start: Time | None = None,
        end: Time | None = None,
        limit: int = 100,
    ) -> list[EventOut]:
        """Motion events overlapping [start, end] (default: the last 24 hours), newest first."""
        params = {"stream": stream, "start": start, "end": end, "limit": limit}
        return await self._parse(list[EventOut], "GET", "/api/events", params=params)

    async def event(self, event_id: int) -> EventOut:
        return await self._parse(EventOut, "GET", f"/api/events/{int(event_id)}")

    async def event_snapshot(self, event_id: int) -> bytes:
        """The JPEG at the event's peak."""
        return await self._bytes(f"/api/events/{int(event_id)}/snapshot.jpg")

    async def delete_event(self, event_id: int) -> None:
        await self._request("DELETE", f"/api/events/{int(event_id)}")

    # -- live -------------------------------------------------------------------------------

    def frames(self, name: str, *, fps: float | None = None) -> AsyncGenerator[Frame, None]:
        """Live frames over Socket.IO (a WebSocket), reconnecting by itself; the newest
        frame wins when the loop body is slower than the camera. ``fps`` caps the rate
        (frames in between are skipped here). Ends with :class:`NotFound` if the stream is
        deleted. ``async for frame in client.frames("porch"): ...``"""
        return self._track(live.socketio_frames(self, name, fps))

    def mjpeg(self, name: str, *, fps: float | None = None) -> AsyncGenerator[Frame, None]:
        """Live frames over the MJPEG path (``/api/streams/{name}/mjpeg``; ``fps`` capped by
        the server), reconnecting after a broken connection."""
        return self._track(live.mjpeg_frames(self, self._http, name, fps))

    def _track(self, iterator: AsyncGenerator[Frame, None]) -> AsyncGenerator[Frame, None]:
        self._live.add(iterator)
        return iterator
