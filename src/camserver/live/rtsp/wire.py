"""RTSP 1.0 (RFC 2326) on the wire, without I/O, in the manner of h11.

:class:`RtspReader`: feed bytes with :meth:`~RtspReader.receive_data` (``b""`` at the end),
then call :meth:`~RtspReader.next_event` until it returns :data:`NEED_DATA`. Events are
:class:`Request`, :class:`Interleaved` (``$``-framed data a client sends on its TCP
connection: RTCP receiver reports) and :class:`Refused` (a request that cannot be read,
with the RTSP status to answer before closing). Buffers are capped: a request line of
``MAX_LINE`` bytes, a head of ``MAX_HEAD``, a body of ``MAX_BODY``. Clients pipeline
requests; each comes out in turn.

:func:`response` formats an answer; :func:`parse_transport` reads a ``Transport`` header.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "END",
    "MAX_BODY",
    "MAX_HEAD",
    "MAX_LINE",
    "NEED_DATA",
    "REASONS",
    "Interleaved",
    "Refused",
    "Request",
    "RtspReader",
    "Transport",
    "parse_transport",
    "response",
]

MAX_LINE: Final = 4096
MAX_HEAD: Final = 16384
MAX_BODY: Final = 65536
METHODS: Final = frozenset(
    {
        "OPTIONS",
        "DESCRIBE",
        "SETUP",
        "PLAY",
        "PAUSE",
        "TEARDOWN",
        "GET_PARAMETER",
        "SET_PARAMETER",
        "ANNOUNCE",
        "RECORD",
        "REDIRECT",
    }
)
REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    408: "Request Timeout",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class _Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"
    END = "END"


NEED_DATA: Final = _Signal.NEED_DATA
END: Final = _Signal.END


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    uri: str
    headers: dict[str, str]
    """Names in lower case (a repeated header: the last one)."""
    body: bytes = b""

    @property
    def cseq(self) -> str | None:
        return self.headers.get("cseq")


@dataclass(frozen=True, slots=True)
class Interleaved:
    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    reason: str
    cseq: str | None = None


Event = Request | Interleaved | Refused | Literal[_Signal.NEED_DATA, _Signal.END]
_CONTENT_LENGTH = re.compile(r"^\d{1,9}$")


class RtspReader:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._failed = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        if self._failed:
            return END
        buf = self._buf
        while buf[:1] == b"\n" or buf[:2] == b"\r\n":  # blank lines between requests
            del buf[: 1 if buf[:1] == b"\n" else 2]
        if not buf:
            return END if self._eof else NEED_DATA
        if buf[0] == 0x24:  # '$': interleaved binary data
            if len(buf) < 4:
                return self._starved()
            size = (buf[2] << 8) | buf[3]
            if len(buf) < 4 + size:
                return self._starved()
            event = Interleaved(buf[1], bytes(buf[4 : 4 + size]))
            del buf[: 4 + size]
            return event
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = buf.find(b"\n\n"), 2
        if end < 0:
            line_end = buf.find(b"\n")
            if (line_end < 0 and len(buf) > MAX_LINE) or line_end > MAX_LINE:
                return self._fail(414, f"a request line over {MAX_LINE} bytes")
            if len(buf) > MAX_HEAD:
                return self._fail(413, f"a request head over {MAX_HEAD} bytes")
            return self._starved()
        if end > MAX_HEAD:
            return self._fail(413, f"a request head over {MAX_HEAD} bytes")
        head = bytes(buf[:end]).decode("utf-8", "replace")
        lines = head.replace("\r\n", "\n").split("\n")
        if len(lines[0]) > MAX_LINE:
            return self._fail(414, f"a request line over {MAX_LINE} bytes")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                return self._fail(400, f"a header line without a name: {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        cseq = headers.get("cseq")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return self._fail(400, "a request line is METHOD URI RTSP/1.0", cseq)
        method, uri, version = parts
        length_text = headers.get("content-length", "0")
        if not _CONTENT_LENGTH.match(length_text):
            return self._fail(400, "a Content-Length that is not a number", cseq)
        length = int(length_text)
        if length > MAX_BODY:
            return self._fail(413, f"a body over {MAX_BODY} bytes", cseq)
        if len(buf) < end + sep + length:
            return self._starved()
        body = bytes(buf[end + sep : end + sep + length])
        del buf[: end + sep + length]
        if version != "RTSP/1.0":
            return Refused(505, f"{version[:20]!r}: this server speaks RTSP/1.0", cseq)
        if method not in METHODS:
            return Refused(501, f"{method[:20]!r} is not an RTSP method", cseq)
        return Request(method, uri, headers, body)

    def _starved(self) -> Event:
        if self._eof:
            self._failed = True
            return END
        return NEED_DATA

    def _fail(self, status: int, reason: str, cseq: str | None = None) -> Refused:
        """A request that cannot be read: answer it, then close (the next one's start is
        unknown)."""
        self._failed = True
        self._buf.clear()
        return Refused(status, reason, cseq)


def response(
    status: int,
    cseq: str | None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    reason: str | None = None,
) -> bytes:
    """An answer (``headers`` as a list where a name repeats, e.g. WWW-Authenticate)."""
    lines = [f"RTSP/1.0 {status} {reason or REASONS.get(status, 'Error')}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    lines += [f"{k}: {v}" for k, v in items]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class Transport:
    tcp: bool
    interleaved: tuple[int, int] = (0, 1)
    client_ports: tuple[int, int] | None = None
    params: list[str] = field(default_factory=list)


def parse_transport(header: str) -> Transport | None:
    """The first ``Transport`` choice this server can serve (unicast RTP over TCP
    interleaved or over UDP), or None."""
    for choice in header.split(","):
        params = [p.strip() for p in choice.split(";") if p.strip()]
        if not params:
            continue
        proto = params[0].upper()
        if proto not in ("RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP"):
            continue
        if any(p.lower() == "multicast" for p in params):
            continue
        values = dict(p.split("=", 1) for p in params[1:] if "=" in p)
        if proto == "RTP/AVP/TCP":
            pair = _pair(values.get("interleaved", "0-1"))
            if pair is None or not (0 <= pair[0] <= 255 and 0 <= pair[1] <= 255):
                continue
            return Transport(True, interleaved=pair, params=params)
        ports = _pair(values.get("client_port", ""))
        if ports is None or not (0 < ports[0] <= 65535 and 0 < ports[1] <= 65535):
            continue
        return Transport(False, client_ports=ports, params=params)
    return None


def _pair(text: str) -> tuple[int, int] | None:
    first, _, second = text.partition("-")
    if not first.isdigit() or (second and not second.isdigit()):
        return None
    a = int(first)
    return a, int(second) if second else a + 1
