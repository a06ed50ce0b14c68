"""The discovery protocol's datagrams, without sockets or clocks (``docs/discovery.md``).

Feed each received datagram with :meth:`DiscoveryCodec.receive_datagram` (its bytes, the
source address, and the current time), then call :meth:`DiscoveryCodec.next_event`, which
returns :class:`Probe`, :class:`Announcement` or :class:`Rejected`, or ``NEED_DATA`` when
everything fed has been read.

- Probe: the ASCII text ``DISCOVER_CAMERAS``.
- Announcement, legacy: ``ESP32_CAMERA:<ip>:<http_port>`` (what field firmware sends).
- Announcement, JSON: ``{"camera": "esp32-cam-1a2b", "ip": "192.168.1.50", "port": 80,
  "stream_port": 81, "mac": "...", "model": "...", "fw": "..."}``.

The address trusted is the datagram's source address: an announcement claiming another IP
is kept with the source IP and flagged (``claimed_ip``), so one host cannot plant a camera
that points elsewhere. Oversize, non-UTF-8, malformed and flooding datagrams become
:class:`Rejected` with a reason; nothing in a datagram can raise.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal

from camserver.schema.esp32 import MAX_HTTP_PORT, MAX_PORT, parse_port, stream_port

__all__ = [
    "MAX_DATAGRAM",
    "NEED_DATA",
    "PROBE",
    "Announcement",
    "DiscoveryCodec",
    "Event",
    "Probe",
    "Rejected",
    "encode_announcement",
    "encode_legacy_announcement",
    "safe_name",
]

PROBE: Final = b"DISCOVER_CAMERAS"
LEGACY_PREFIX: Final = "ESP32_CAMERA:"
MAX_DATAGRAM: Final = 1024
_TEXT_FIELD_MAX = 64
_NAME_BAD = re.compile(r"[^a-z0-9_-]+")


class _Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = _Signal.NEED_DATA


@dataclass(frozen=True, slots=True)
class Probe:
    source: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Announcement:
    name: str
    """A valid stream name derived from the camera's name (or its address)."""
    ip: str
    """The datagram's source address: the one that is trusted."""
    port: int
    stream_port: int
    source: tuple[str, int]
    legacy: bool
    mac: str | None = None
    model: str | None = None
    fw: str | None = None
    claimed_ip: str | None = None
    """Set when the payload claimed an address other than the source's."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    """One of: oversize, not_utf8, bad_json, bad_fields, bad_port, bad_ip, unknown,
    rate_limited."""
    detail: str
    source: tuple[str, int]


Event = Probe | Announcement | Rejected | Literal[_Signal.NEED_DATA]


def safe_name(text: str) -> str:
    """A stream name (``[a-z0-9][a-z0-9_-]{0,63}``) from a camera's own name."""
    name = _NAME_BAD.sub("-", text.strip().lower()).strip("-_")
    return name[:64].rstrip("-_")


def encode_legacy_announcement(ip: str, port: int) -> bytes:
    return f"{LEGACY_PREFIX}{ip}:{port}".encode("ascii")


def encode_announcement(name: str, ip: str, port: int, stream_port: int, **extra: str) -> bytes:
    body: dict[str, Any] = {"camera": name, "ip": ip, "port": port, "stream_port": stream_port}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


class DiscoveryCodec:
    """Parses datagrams; limits each source IP to ``rate`` datagrams per ``per`` seconds."""

    def __init__(self, *, rate: int = 40, per: float = 1.0, max_sources: int = 4096) -> None:
        self.rate = rate
        self.per = per
        self.max_sources = max_sources
        self._pending: deque[Event] = deque()
        self._recent: dict[str, deque[float]] = {}

    def receive_datagram(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self._pending.append(self._parse(data, (str(source[0]), int(source[1])), now))

    def next_event(self) -> Event:
        return self._pending.popleft() if self._pending else NEED_DATA

    def _flooding(self, ip: str, now: float) -> bool:
        times = self._recent.get(ip)
        if times is None:
            if len(self._recent) >= self.max_sources:  # bound memory under spoofed floods
                self._recent.clear()
            times = self._recent[ip] = deque()
        while times and times[0] <= now - self.per:
            times.popleft()
        if len(times) >= self.rate:
            return True
        times.append(now)
        return False

    def _parse(self, data: bytes, source: tuple[str, int], now: float) -> Event:
        if self._flooding(source[0], now):
            return Rejected("rate_limited", f"more than {self.rate} datagrams/s", source)
        if len(data) > MAX_DATAGRAM:
            return Rejected("oversize", f"{len(data)} bytes", source)
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            return Rejected("not_utf8", "datagram is not UTF-8 text", source)
        if text == PROBE.decode():
            return Probe(source)
        if text.startswith(LEGACY_PREFIX):
            return self._legacy(text[len(LEGACY_PREFIX) :], source)
        if text.startswith("{"):
            return self._json(text, source)
        return Rejected("unknown", "neither a probe nor an announcement", source)

    def _legacy(self, rest: str, source: tuple[str, int]) -> Event:
        ip, sep, port_text = rest.rpartition(":")
        # The legacy format names no stream port: it must be port + 1.
        port = parse_port(port_text, MAX_HTTP_PORT) if sep else None
        if port is None:
            return Rejected("bad_port", f"bad port in {rest!r}", source)
        return self._announce(
            name=None,
            claimed=ip,
            port=port,
            stream_port=stream_port(port),
            source=source,
            legacy=True,
            extra={},
        )

    def _json(self, text: str, source: tuple[str, int]) -> Event:
        try:
            body = json.loads(text)
        except ValueError:
            return Rejected("bad_json", "announcement is not valid JSON", source)
        if not isinstance(body, dict):
            return Rejected("bad_json", "announcement is not a JSON object", source)
        # Without "stream_port" the stream is on port + 1, so port must leave room for it.
        given = body.get("stream_port")
        port = parse_port(body.get("port", 80), MAX_PORT if given is not None else MAX_HTTP_PORT)
        if port is None:
            return Rejected("bad_port", f"bad port {body.get('port')!r}", source)
        on = stream_port(port) if given is None else parse_port(given)
        if on is None:
            return Rejected("bad_port", f"bad stream_port {given!r}", source)
        extra: dict[str, str] = {}
        for key in ("mac", "model", "fw"):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > _TEXT_FIELD_MAX:
                return Rejected("bad_fields", f"{key} must be a short string", source)
            extra[key] = value
        camera = body.get("camera")
        if camera is not None and (not isinstance(camera, str) or len(camera) > 128):
            return Rejected("bad_fields", "camera must be a short string", source)
        claimed = body.get("ip")
        if claimed is not None and not isinstance(claimed, str):
            return Rejected("bad_ip", "ip must be a string", source)
        return self._announce(
            name=camera,
            claimed=claimed,
            port=port,
            stream_port=on,
            source=source,
            legacy=False,
            extra=extra,
        )

    def _announce(
        self,
        *,
        name: str | None,
        claimed: str | None,
        port: int,
        stream_port: int,
        source: tuple[str, int],
        legacy: bool,
        extra: dict[str, str],
    ) -> Event:
        ip = source[0]
        if claimed is not None:
            try:
                ipaddress.IPv4Address(claimed)
            except ValueError:
                return Rejected("bad_ip", f"{claimed[:40]!r} is not an IPv4 address", source)
        stream_name = safe_name(name) if name else ""
        if not stream_name:
            stream_name = "esp32-" + ip.replace(".", "-") + ("" if port == 80 else f"-{port}")
        return Announcement(
            name=stream_name,
            ip=ip,
            port=port,
            stream_port=stream_port,
            source=source,
            legacy=legacy,
            claimed_ip=claimed if claimed is not None and claimed != ip else None,
            **extra,
        )
