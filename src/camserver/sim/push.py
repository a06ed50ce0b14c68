"""A simulated camera that pushes its pictures to camserver (``camserver sim --push``),
doing what the sketches in docs/push.md do:

- ``ws``: one WebSocket; a binary message per picture at the camera's rate, telemetry as
  JSON text every few seconds; obeys ``{"pause": ...}`` and applies ``{"set": {...}}``.
- ``frame``: wakes, posts one picture, applies the answer's ``set`` and sleeps ``next_in``
  seconds (``--every`` when the server names no time): a deep-sleep camera.
- ``mjpeg``: one long ``multipart/x-mixed-replace`` POST, as ``ffmpeg -f mpjpeg`` sends.

Every way reconnects after a failure with backoff (0.5 s doubling to 30 s, with jitter).
The camera's own HTTP port stays up (``/status`` shows its settings, ``/sim/stats`` the
push counters below), so tests can check what the camera did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
import websockets
from websockets.exceptions import InvalidStatus, WebSocketException

from camserver.sim.control import SENSOR_LIMITS
from camserver.sim.frames import FRAMESIZE_BY_NAME, FRAMESIZES, embed_send_time

if TYPE_CHECKING:
    from camserver.sim.camera import SimCamera

__all__ = ["PushMode", "PushStats", "SimPusher", "push_urls"]

log = logging.getLogger(__name__)

PushMode = Literal["ws", "frame", "mjpeg"]
TELEMETRY_EVERY = 5.0
BOUNDARY = "camserverpush"


def push_urls(url: str) -> dict[str, str]:
    """The three push URLs of a stream from any one of them (or from the stream's
    ``/api/streams/NAME``), as the 201 of ``POST /api/streams`` gives them."""
    base = url.split("?", 1)[0].rstrip("/")
    for tail in ("/push.mjpeg", "/frame", "/push"):
        if base.endswith(tail):
            base = base[: -len(tail)]
            break
    http = "http" + base[2:] if base.startswith("ws") else base
    return {
        "ws": ("ws" + http[4:]) + "/push",
        "frame": http + "/frame",
        "mjpeg": http + "/push.mjpeg",
    }


def _framesize(value: object) -> object:
    """A frame size by name ("SVGA", as the server sends it) or by number."""
    if isinstance(value, str) and value.upper() in FRAMESIZE_BY_NAME:
        return FRAMESIZE_BY_NAME[value.upper()].number
    return value if value in FRAMESIZES else None


@dataclass(slots=True)
class PushStats:
    push_connects: int = 0
    """Sessions the server accepted (a WebSocket, a multipart POST, a posted picture)."""
    push_frames: int = 0
    """Pictures sent."""
    push_refused: int = 0
    """Attempts the server refused (401, 409, 413...)."""
    push_paused: int = 0
    """1 while the server says pause."""
    push_sets: int = 0
    """Settings applied from the server."""
    push_telemetry: int = 0
    push_closes: int = 0
    """Sessions the server ended."""
    push_next_in_ms: int = -1
    """Frame mode: the last answer's ``next_in`` in milliseconds (-1: null or none yet)."""


class SimPusher:
    def __init__(
        self,
        camera: SimCamera,
        url: str,
        key: str,
        mode: PushMode = "ws",
        every: float | None = None,
    ) -> None:
        self.camera = camera
        self.urls = push_urls(url)
        self.key = key
        self.mode: PushMode = mode
        self.every = every
        self.stats = PushStats()
        self.last_close: str | None = None
        self.last_answer: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._paused = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-push")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def as_dict(self) -> dict[str, int]:
        return asdict(self.stats)

    async def _run(self) -> None:
        attempt = 0
        way = {"ws": self._websocket, "frame": self._post_frames, "mjpeg": self._multipart}
        while True:
            began = time.monotonic()
            try:
                await way[self.mode]()
            except (OSError, httpx.HTTPError, WebSocketException, ValueError) as exc:
                log.info("%s: push failed: %s", self.camera.name, exc)
            if time.monotonic() - began > 10:
                attempt = 0
            base = min(30.0, 0.5 * 2 ** min(attempt, 10))
            attempt += 1
            await asyncio.sleep(base / 2 + self._rng.uniform(0, base / 2))

    # -- what the server says --------------------------------------------------------------

    def apply(self, values: dict[str, Any]) -> None:
        """``{"set": {...}}``: the settings the firmware's ``/control`` would take."""
        for var, value in values.items():
            number = _framesize(value) if var == "framesize" else value
            limits = SENSOR_LIMITS.get(var)
            if limits is None or not isinstance(number, int) or isinstance(number, bool):
                log.info("%s: ignoring setting %s=%r", self.camera.name, var, value)
                continue
            if limits[0] <= number <= limits[1]:
                self.camera.settings[var] = number
                self.stats.push_sets += 1

    def _told(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if isinstance(message.get("set"), dict):
            self.apply(message["set"])
        if "pause" in message:
            self._paused = bool(message["pause"])
            self.stats.push_paused = int(self._paused)

    def _telemetry(self) -> str:
        up = time.monotonic() - self.camera.booted
        self.stats.push_telemetry += 1
        return json.dumps(
            {
                "battery_v": round(3.7 + 0.2 * ((int(up) // 60) % 2), 2),
                "rssi": -67,
                "heap": 51234,
                "uptime": round(up, 1),
                "framesize": self.camera.settings["framesize"],
                "quality": self.camera.settings["quality"],
            }
        )

    # -- the three ways ------------------------------------------------------------------

    def _picture(self) -> bytes:
        jpeg = self.camera.render()
        return embed_send_time(jpeg, time.time()) if self.camera.embed_time else jpeg

    async def _websocket(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            ws = await websockets.connect(
                self.urls["ws"], additional_headers=headers, max_size=None, open_timeout=10
            )
        except InvalidStatus as exc:
            self.stats.push_refused += 1
            raise ValueError(f"refused: HTTP {exc.response.status_code}") from exc
        self.stats.push_connects += 1
        self._paused = False
        try:
            await ws.send(self._telemetry())
            reader = asyncio.create_task(self._read(ws))
            next_telemetry = time.monotonic() + TELEMETRY_EVERY
            interval = 1.0 / self.camera.fps
            next_frame = time.monotonic()
            while not reader.done():
                now = time.monotonic()
                if now >= next_telemetry:
                    await ws.send(self._telemetry())
                    next_telemetry = now + TELEMETRY_EVERY
                if not self._paused:
                    await ws.send(self._picture())
                    self.stats.push_frames += 1
                    self.camera.frames_sent += 1
                next_frame = max(next_frame + interval, time.monotonic())
                await asyncio.wait((reader,), timeout=max(0.0, next_frame - time.monotonic()))
            await reader
        finally:
            await ws.close()

    async def _read(self, ws: Any) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    self._told(message)
        except WebSocketException:
            pass
        self.stats.push_closes += 1
        code = ws.close_code
        self.last_close = None if code is None else f"{code} {ws.close_reason}"

    async def _post_frames(self) -> None:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            while True:
                r = await client.post(
                    self.urls["frame"],
                    content=self._picture(),
                    headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {self.key}"},
                )
                self.stats.push_frames += 1
                self.camera.frames_sent += 1
                if r.status_code != 200:
                    self.stats.push_refused += 1
                    raise ValueError(f"refused: HTTP {r.status_code} {r.text[:200]}")
                self.stats.push_connects += 1
                answer = r.json()
                self.last_answer = answer
                if isinstance(answer.get("set"), dict) and answer["set"]:
                    self.apply(answer["set"])
                self.stats.push_paused = int(bool(answer.get("pause")))
                wait = answer.get("next_in")
                self.stats.push_next_in_ms = (
                    round(wait * 1000) if isinstance(wait, int | float) else -1
                )
                if not isinstance(wait, int | float):
                    wait = self.every if self.every is not None else 1.0 / self.camera.fps
                await asyncio.sleep(max(0.05, float(wait)))  # esp_deep_sleep(next_in)

    async def _multipart(self) -> None:
        async def body() -> AsyncIterator[bytes]:
            interval = 1.0 / self.camera.fps
            while True:
                jpeg = self._picture()
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode()
                self.stats.push_frames += 1
                self.camera.frames_sent += 1
                yield head + jpeg + b"\r\n"
                await asyncio.sleep(interval)

        headers = {
            "Content-Type": f"multipart/x-mixed-replace;boundary={BOUNDARY}",
            "Authorization": f"Bearer {self.key}",
        }
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), trust_env=False) as c:
            self.stats.push_connects += 1
            r = await c.post(self.urls["mjpeg"], content=body(), headers=headers)
            self.stats.push_closes += 1
            if r.status_code == 401:
                self.stats.push_refused += 1
            raise ValueError(f"the server ended the push: HTTP {r.status_code} {r.text[:200]}")
