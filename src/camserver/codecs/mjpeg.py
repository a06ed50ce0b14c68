"""A sans-I/O parser for MJPEG over HTTP (``multipart/x-mixed-replace``).

Feed it bytes with :meth:`MJPEGParser.receive_data` (``b""`` at end of stream), then call
:meth:`MJPEGParser.next_event` until it returns ``NEED_DATA`` (or ``END``). Events are
:class:`Frame` (a whole JPEG, SOI..EOI) and :class:`BadPart` (a part that was skipped, with
the reason). No sockets, no clocks.

It accepts what cameras really send, not only ESP32s:

- boundary from the Content-Type header (quoted or not, with or without a leading ``--``)
  or, when the header lacks it, from the first ``--token`` line of the body;
- the boundary before each part (Espressif CameraWebServer) or after it (ESPHome);
- with ``Content-Length`` (read exactly that many bytes) or without (walk the JPEG to its
  EOI); header names in any case; CRLF or bare LF; garbage before and between parts.

Memory is bounded: a part larger than ``max_frame_bytes`` is discarded as it arrives, never
buffered whole; while hunting for a boundary only a boundary's length of tail is kept.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal

from camserver.codecs import jpeg

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "END",
    "NEED_DATA",
    "BadPart",
    "Event",
    "Frame",
    "MJPEGParser",
    "boundary_from_content_type",
]

DEFAULT_MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
_MAX_HEADER_BYTES: Final = 8 * 1024
_MAX_BOUNDARY_LINE: Final = 200
_BOUNDARY_TOKEN = re.compile(rb"[!-~]{1,200}")
# Header lines; names in any case, blanks around the colon and value, CRLF or bare LF.
_CONTENT_LENGTH = re.compile(rb"^[ \t]*content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)
_TIMESTAMP = re.compile(rb"^[ \t]*x-timestamp[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.I | re.M)
_RESENT = re.compile(rb"^[ \t]*x-resent[ \t]*:[ \t]*1[ \t]*\r?$", re.I | re.M)
_CT_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]+)"|([^\s;,]+))""", re.IGNORECASE)


class _Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"
    END = "END"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = _Signal.NEED_DATA
"""More bytes are needed before another event can be produced."""
END: Final = _Signal.END
"""The stream ended (``receive_data(b"")`` was called) and everything was consumed."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete JPEG image."""

    data: bytes
    camera_ts: str | None = None
    """The part's ``X-Timestamp`` header, if any (ESP32: seconds since boot)."""
    resent: bool = False
    """The part says ``X-Resent: 1``: a camserver keep-alive, the previous frame again."""


@dataclass(frozen=True, slots=True)
class BadPart:
    """A part that was skipped; ``size`` is how many bytes of it were seen."""

    reason: str
    size: int


Event = Frame | BadPart | Literal[_Signal.NEED_DATA, _Signal.END]


class _State(enum.Enum):
    SEEK = enum.auto()  # looking for a boundary line, discarding anything else
    HEADERS = enum.auto()
    BODY_LENGTH = enum.auto()  # Content-Length known
    BODY_JPEG = enum.auto()  # no Content-Length: walk the JPEG to its EOI
    SKIP = enum.auto()  # discarding an oversized part of known length


def boundary_from_content_type(content_type: str | None) -> bytes | None:
    """The multipart boundary named in a Content-Type header, or None."""
    if not content_type:
        return None
    m = _CT_BOUNDARY.search(content_type)
    if m is None:
        return None
    token = (m.group(1) or m.group(2)).strip()
    try:
        return token.encode("ascii") or None
    except UnicodeEncodeError:
        return None


class MJPEGParser:
    """Turns an MJPEG byte stream into :class:`Frame` and :class:`BadPart` events."""

    def __init__(
        self,
        boundary: bytes | str | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes < 4:
            raise ValueError("max_frame_bytes must be at least 4")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._state = _State.SEEK
        self._search_from = 0
        self._eof = False
        self._delim: bytes | None = None
        self._esp32_head: re.Pattern[bytes] | None = None
        if boundary:
            self._set_boundary(boundary.encode("ascii") if isinstance(boundary, str) else boundary)
        # Per-part state.
        self._length = 0
        self._remaining = 0
        self._camera_ts: str | None = None
        self._resent = False
        self._scan_from = -1  # BODY_JPEG: where to look for EOI next (-1: not at SOS yet)

    @classmethod
    def from_content_type(
        cls, content_type: str | None, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    ) -> MJPEGParser:
        return cls(boundary_from_content_type(content_type), max_frame_bytes=max_frame_bytes)

    @property
    def boundary(self) -> bytes | None:
        """The delimiter searched for (``--`` + boundary), once known."""
        return self._delim

    @property
    def buffered(self) -> int:
        """Bytes held right now (bounded by the frame limit plus a little)."""
        return len(self._buf)

    def _set_boundary(self, token: bytes) -> None:
        # Quirk (several IP cameras): the header declares "boundary=--foo" and the body
        # uses "--foo" (or "----foo"); searching for the token itself matches both.
        self._delim = token if token.startswith(b"--") else b"--" + token
        # Fast path for Espressif CameraWebServer's exact part head (docs/facts.md#wire):
        # one match instead of a boundary search and a header parse. Anything else takes
        # the general path.
        self._esp32_head = re.compile(
            rb"(?:\r\n)?"
            + re.escape(self._delim)
            + rb"\r\nContent-Type: image/jpeg\r\nContent-Length: (\d{1,10})\r\n"
            + rb"(?:X-Timestamp: ([!-~]{1,64})\r\n)?\r\n"
        )

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the network; ``b""`` means the connection ended."""
        if self._eof:
            if data:
                raise RuntimeError("receive_data() called after end of stream")
            return
        if not data:
            self._eof = True
            return
        if self._state is _State.SKIP and not self._buf:
            # Fast path: discard without buffering.
            take = min(len(data), self._remaining)
            self._remaining -= take
            data = data[take:]
            if not data:
                return
        self._buf += data

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA`` or ``END``."""
        while True:
            state = self._state
            if state is _State.SEEK:
                if self._search_from == 0 and self._esp32_part():
                    continue
                if not self._seek_boundary():
                    return self._starved(in_part=False)
                continue
            if state is _State.HEADERS:
                result = self._parse_headers()
            elif state is _State.BODY_LENGTH:
                result = self._body_length()
            elif state is _State.BODY_JPEG:
                result = self._body_jpeg()
            else:
                result = self._skip()
            if result is None:
                continue
            if result is NEED_DATA:
                return self._starved(in_part=True)
            return result

    # -- states ------------------------------------------------------------------------

    def _starved(self, *, in_part: bool) -> Event:
        if not self._eof:
            return NEED_DATA
        if in_part and (self._buf or self._state is not _State.HEADERS):
            size = len(self._buf)
            if self._state is _State.SKIP:
                size += self._length - self._remaining
            self._reset_part()
            self._buf.clear()
            return BadPart("stream ended in the middle of a part", size)
        self._buf.clear()
        return END

    def _reset_part(self) -> None:
        self._state = _State.SEEK
        self._search_from = 0
        self._camera_ts = None
        self._resent = False
        self._scan_from = -1
        self._length = self._remaining = 0

    def _esp32_part(self) -> bool:
        """Consume an ESP32 part head at the start of the buffer; False: not one (yet)."""
        pattern = self._esp32_head
        m = pattern.match(self._buf) if pattern is not None else None
        if m is None:
            return False
        ts, length = m[2], int(m[1])  # read the groups before the buffer changes
        self._camera_ts = None if ts is None else ts.decode("ascii")
        del self._buf[: m.end()]
        self._begin_body(length)
        return True

    def _seek_boundary(self) -> bool:
        """Consume up to and including the next boundary line. False: need more data."""
        buf = self._buf
        delim = self._delim
        if delim is None:
            return self._detect_boundary()
        i = buf.find(delim, self._search_from)
        if i < 0:
            # Keep only what could be the start of a boundary split across reads.
            keep = len(delim) - 1
            if len(buf) > keep:
                del buf[: len(buf) - keep]
            self._search_from = 0
            return False
        nl = buf.find(b"\n", i + len(delim))
        if nl < 0:
            if len(buf) - i > _MAX_BOUNDARY_LINE:  # not a boundary line after all
                self._search_from = i + 1
                return True
            self._search_from = i
            if i:
                del buf[:i]
                self._search_from = 0
            return False
        del buf[: nl + 1]
        self._search_from = 0
        self._state = _State.HEADERS
        return True

    def _detect_boundary(self) -> bool:
        """No boundary was declared: take it from the first ``--token`` line."""
        buf = self._buf
        while True:
            i = buf.find(b"--", self._search_from)
            if i < 0:
                if len(buf) > 1:
                    del buf[: len(buf) - 1]
                self._search_from = 0
                return False
            if i > 0 and buf[i - 1] != 0x0A:  # not at the start of a line
                self._search_from = i + 1
                continue
            nl = buf.find(b"\n", i)
            if nl < 0:
                if len(buf) - i > _MAX_BOUNDARY_LINE:
                    self._search_from = i + 1
                    continue
                del buf[:i]
                self._search_from = 0
                return False
            token = bytes(buf[i + 2 : nl]).rstrip(b"\r")
            if token.endswith(b"--"):  # a closing delimiter "--B--"
                token = token[:-2]
            if not _BOUNDARY_TOKEN.fullmatch(token):
                self._search_from = i + 1
                continue
            self._delim = b"--" + token
            self._search_from = i
            return True

    def _parse_headers(self) -> Event | None:
        buf = self._buf
        # A part with no headers at all: the JPEG follows the boundary line directly.
        if buf[:2] == jpeg.SOI:
            self._begin_body(None)
            return None
        if buf[:1] == b"\n" or buf[:2] == b"\r\n":
            end, skip = 0, (1 if buf[:1] == b"\n" else 2)
        else:
            # Bounded searches: a body follows the headers, and an unbounded search for
            # a bare-LF end would scan every byte of it.
            limit = min(len(buf), _MAX_HEADER_BYTES + 4)
            crlf = buf.find(b"\r\n\r\n", 0, limit)
            lf = buf.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else limit)
            if crlf < 0 and lf < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    size = len(buf)
                    self._reset_part()
                    return BadPart("part headers too long", size)
                return NEED_DATA
            if lf < 0 or (0 <= crlf < lf):
                end, skip = crlf, 4
            else:
                end, skip = lf, 2
        # Quirk (old ESPHome snapshots): Content-Length sent twice; the first valid one wins.
        m = _CONTENT_LENGTH.search(buf, 0, end)
        length = int(m[1]) if m else None
        if (m := _TIMESTAMP.search(buf, 0, end)) is not None:
            self._camera_ts = m[1].decode("ascii", "replace")
        self._resent = _RESENT.search(buf, 0, end) is not None
        del buf[: end + skip]
        self._begin_body(length)
        return None

    def _begin_body(self, length: int | None) -> None:
        if length is None:
            self._state = _State.BODY_JPEG
            self._scan_from = -1
        elif length > self.max_frame_bytes:
            self._state = _State.SKIP
            self._length = self._remaining = length
            take = min(len(self._buf), length)
            del self._buf[:take]
            self._remaining -= take
        else:
            self._state = _State.BODY_LENGTH
            self._length = length

    def _body_length(self) -> Event | None:
        buf, n = self._buf, self._length
        if len(buf) < n:
            return NEED_DATA
        frame = None
        with memoryview(buf) as view, view[:n] as body:
            if jpeg.is_complete(body):
                frame = Frame(body.tobytes(), self._camera_ts, self._resent)
        if frame is not None:
            del buf[:n]
            self._reset_part()
            return frame
        # Quirk (ESP32 drops and older drivers): the part is shorter than its
        # Content-Length, so the next boundary sits inside it. Resume from there so the
        # next frame is not lost too.
        cut = buf.find(self._delim, 0, n) if self._delim else -1
        del buf[: cut if cut >= 0 else n]
        self._reset_part()
        return BadPart("incomplete JPEG (no SOI/EOI)", cut if cut >= 0 else n)

    def _body_jpeg(self) -> Event | None:
        buf = self._buf
        if self._scan_from < 0:
            # Skip the line end some senders put between headers and body.
            lead = 0
            while lead < len(buf) and buf[lead] in (0x0D, 0x0A):
                lead += 1
            if lead:
                del buf[:lead]
            start = jpeg.entropy_start(buf, 0, len(buf))
            if start == jpeg.NOT_JPEG:
                self._reset_part()
                return BadPart("part is not a JPEG", 0)
            if start == jpeg.NEED_MORE:
                return self._too_big_or_wait()
            self._scan_from = start
        end = buf.find(jpeg.EOI, self._scan_from)
        if end < 0:
            self._scan_from = max(self._scan_from, len(buf) - 1)
            return self._too_big_or_wait()
        end += 2
        if end > self.max_frame_bytes:
            del buf[:end]
            self._reset_part()
            return BadPart("frame larger than the limit", end)
        with memoryview(buf) as view, view[:end] as body:
            frame = Frame(bytes(body), self._camera_ts, self._resent)
        del buf[:end]
        self._reset_part()
        return frame

    def _too_big_or_wait(self) -> Event:
        if len(self._buf) <= self.max_frame_bytes:
            return NEED_DATA
        size = len(self._buf)
        self._buf.clear()
        self._reset_part()
        return BadPart("frame larger than the limit and no end found", size)

    def _skip(self) -> Event | None:
        buf = self._buf
        take = min(len(buf), self._remaining)
        del buf[:take]
        self._remaining -= take
        if self._remaining:
            return NEED_DATA
        size = self._length
        self._reset_part()
        return BadPart("frame larger than the limit", size)
