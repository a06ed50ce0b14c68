"""What a pushing camera and the server say to each other, without I/O (issue 28).

Camera → server, over a WebSocket (``/api/streams/{name}/push``): a binary message is one
whole JPEG; a text message is JSON telemetry (``{"battery_v": 3.71, "rssi": -67, ...}``).
:func:`classify` turns each message into a :class:`PushedFrame`, a :class:`Telemetry` or a
:class:`BadMessage` with the reason, within caps.

Server → camera: :func:`set_message` (camera settings to apply) and :func:`pause_message`
(an ``on_demand`` camera sends nothing while nobody watches). A camera that posts one picture
and sleeps learns when to wake from :func:`next_in`.

:class:`RateCap` drops frames beyond a rate per camera (a token bucket on the caller's
clock). :func:`overdue` says when a camera that posts now and then is late.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from camserver.codecs import jpeg

__all__ = [
    "CLOSE_GARBAGE",
    "CLOSE_REPLACED",
    "CLOSE_TOO_BIG",
    "MAX_TELEMETRY_BYTES",
    "BadMessage",
    "PushedFrame",
    "RateCap",
    "Strikes",
    "Telemetry",
    "check_frame",
    "classify",
    "next_in",
    "overdue",
    "parse_telemetry",
    "pause_message",
    "set_message",
]

CLOSE_REPLACED: Final = 1000
"""WebSocket close code when the server ends a push (a newer connection, a new key): normal."""
CLOSE_GARBAGE: Final = 1008
"""Policy violation: sustained messages that are not JPEGs."""
CLOSE_TOO_BIG: Final = 1009
"""Message too big: a picture over ``CAMSERVER_MAX_FRAME_BYTES``."""

MAX_TELEMETRY_BYTES: Final = 4096
"""A telemetry message is a few dozen bytes; more is not telemetry."""
MAX_TELEMETRY_KEYS: Final = 32
MAX_KEY_CHARS: Final = 64
MAX_TEXT_CHARS: Final = 128
OVERDUE_AFTER: Final = 2.0
"""Intervals without a picture after which a camera that posts now and then is overdue."""


@dataclass(frozen=True, slots=True)
class PushedFrame:
    data: bytes


@dataclass(frozen=True, slots=True)
class Telemetry:
    values: dict[str, float | int | str | bool | None]


@dataclass(frozen=True, slots=True)
class BadMessage:
    reason: str
    too_big: bool = False
    """Over a size cap (a WebSocket closes with 1009, a POST answers 413)."""


def classify(message: bytes | str, max_frame_bytes: int) -> PushedFrame | Telemetry | BadMessage:
    """One WebSocket message from a pushing camera."""
    if isinstance(message, bytes):
        return check_frame(message, max_frame_bytes)
    return parse_telemetry(message)


def check_frame(data: bytes, max_frame_bytes: int) -> PushedFrame | BadMessage:
    """A pushed picture: a whole JPEG within the frame size cap."""
    if len(data) > max_frame_bytes:
        return BadMessage(
            f"a picture of {len(data)} bytes is over the cap of {max_frame_bytes}", too_big=True
        )
    if not jpeg.is_complete(data):
        return BadMessage("not a whole JPEG (it must start with FF D8 and end with FF D9)")
    return PushedFrame(data)


def parse_telemetry(text: str) -> Telemetry | BadMessage:
    """A JSON object of short scalar values."""
    if len(text.encode()) > MAX_TELEMETRY_BYTES:
        return BadMessage(f"telemetry over {MAX_TELEMETRY_BYTES} bytes", too_big=True)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return BadMessage(f"telemetry is not JSON: {exc}")
    if not isinstance(data, dict):
        return BadMessage("telemetry must be a JSON object")
    if len(data) > MAX_TELEMETRY_KEYS:
        return BadMessage(f"telemetry has over {MAX_TELEMETRY_KEYS} keys")
    values: dict[str, float | int | str | bool | None] = {}
    for key, value in data.items():
        if len(key) > MAX_KEY_CHARS:
            return BadMessage(f"telemetry key over {MAX_KEY_CHARS} characters")
        if isinstance(value, float) and not math.isfinite(value):
            return BadMessage(f"telemetry {key!r} is not a finite number")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            return BadMessage(f"telemetry {key!r} is over {MAX_TEXT_CHARS} characters")
        if value is not None and not isinstance(value, bool | int | float | str):
            return BadMessage(f"telemetry {key!r} must be a number, text, true/false or null")
        values[key] = value
    return Telemetry(values)


def set_message(values: dict[str, Any]) -> str:
    """The camera settings to apply (already validated as ``/control`` values)."""
    return json.dumps({"set": values}, separators=(",", ":"))


def pause_message(pause: bool) -> str:
    return json.dumps({"pause": pause}, separators=(",", ":"))


def next_in(expect_every: float | None, last_at: float | None, now: float) -> float | None:
    """Seconds until the next picture is due (None: the camera posts when it likes)."""
    if expect_every is None:
        return None
    if last_at is None:
        return expect_every
    return max(0.0, round(last_at + expect_every - now, 3))


def overdue(expect_every: float | None, last_at: float | None, now: float) -> bool:
    """Two intervals passed without a picture."""
    if expect_every is None or last_at is None:
        return False
    return now - last_at > OVERDUE_AFTER * expect_every


class RateCap:
    """At most ``fps`` frames a second on average, bursts of up to ``burst`` (a token
    bucket on the caller's clock: ``allow(now)`` per frame)."""

    __slots__ = ("_last", "_tokens", "burst", "fps")

    def __init__(self, fps: float = 30.0, burst: float | None = None) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.fps = fps
        self.burst = burst if burst is not None else max(1.0, fps / 2)
        self._tokens = self.burst
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.fps)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Strikes:
    """Bad messages on one connection: a few are forgiven (a camera's glitch), ``limit``
    in a row end the connection (sustained garbage costs the server, never the camera)."""

    __slots__ = ("in_a_row", "limit")

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.in_a_row = 0

    def bad(self) -> bool:
        """One more bad message; True once the connection should be closed."""
        self.in_a_row += 1
        return self.in_a_row >= self.limit

    def good(self) -> None:
        self.in_a_row = 0
