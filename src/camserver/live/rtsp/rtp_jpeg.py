"""JPEG over RTP (RFC 2435) without re-encoding: a camera's JPEG split into RTP packets.

:func:`parse` reads what RFC 2435 carries from a baseline JPEG: its type (0: 4:2:2, 1:
4:2:0; 64/65 with restart markers), size, quantization tables and the entropy-coded scan;
or says why the JPEG cannot travel this way (:class:`Unsupported`: progressive, other
sampling, non-standard Huffman tables, a side over 2,040 px). :func:`packetize` makes the
RTP packets: an 8-byte JPEG header in each, the restart header with type 64/65, Q=255 with
the quantization tables in the first packet of each frame, payloads that keep every packet
within ``max_packet`` bytes, the marker bit on the last.

The receiver rebuilds the JPEG headers from the type, Q, size and tables, and uses the
standard Huffman tables (RFC 2435 section 3.1), so the scan data arrives byte for byte as
the camera made it. No I/O here; the server (``server.py``) sends the packets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_PACKET",
    "PAYLOAD_TYPE",
    "JpegScan",
    "Unsupported",
    "packetize",
    "parse",
    "rtp_header",
]

PAYLOAD_TYPE: Final = 26
"""RTP/AVP's static payload type for JPEG (RFC 3551)."""
MAX_PACKET: Final = 1400
"""Bytes per RTP packet (header included): under a 1,500-byte Ethernet MTU with room for
IP, UDP and a tunnel; also what RTSP over TCP interleaves."""
MAX_SIDE: Final = 2040
"""RFC 2435 sends width and height in units of 8 in one byte each."""

# Annex K of the JPEG standard (ITU T.81): the tables every RFC 2435 receiver assumes.
_DC_BITS = (bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]), bytes(range(12)))
_DC_CHROMA_BITS = (bytes([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]), bytes(range(12)))
_AC_LUMA = (
    bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]),
    bytes.fromhex(
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
        "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
        "535455565758595a636465666768696a737475767778797a838485868788898a"
        "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6"
        "c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
    ),
)
_AC_CHROMA = (
    bytes([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
    bytes.fromhex(
        "000102031104052131061241510761711322328108144291a1b1c109233352f0"
        "156272d10a162434e125f11718191a262728292a35363738393a434445464748494a"
        "535455565758595a636465666768696a737475767778797a82838485868788898a"
        "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7"
        "c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
    ),
)
STANDARD_HUFFMAN: Final = {
    (0, 0): _DC_BITS,
    (0, 1): _DC_CHROMA_BITS,
    (1, 0): _AC_LUMA,
    (1, 1): _AC_CHROMA,
}
"""(class: 0 DC / 1 AC, table id) → (code counts per length, symbols)."""


@dataclass(frozen=True, slots=True)
class JpegScan:
    """What RFC 2435 carries of one JPEG."""

    type: int
    width: int
    height: int
    tables: bytes
    """The quantization tables (64 bytes each, 8-bit, in the JPEG's zigzag order): luma,
    then chroma."""
    restart_interval: int
    scan: memoryview
    """The entropy-coded data, without the EOI."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    reason: str


def _u16(buf: bytes, i: int) -> int:
    return (buf[i] << 8) | buf[i + 1]


def parse(jpeg: bytes) -> JpegScan | Unsupported:
    """The RFC 2435 view of a whole JPEG, or why it has none."""
    n = len(jpeg)
    if n < 4 or jpeg[0] != 0xFF or jpeg[1] != 0xD8:
        return Unsupported("not a JPEG")
    pos = 2
    quant: dict[int, bytes] = {}
    frame: tuple[int, int, int, list[int]] | None = None  # width, height, type, table ids
    dri = 0
    while pos + 4 <= n:
        if jpeg[pos] != 0xFF:
            return Unsupported("a broken JPEG (no marker where one should be)")
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = _u16(jpeg, pos + 2)
        body = pos + 4
        end = pos + 2 + length
        if length < 2 or end > n:
            return Unsupported("a broken JPEG (a segment runs past its end)")
        if marker in (0xC2, 0xC6, 0xCA, 0xCE):
            return Unsupported("a progressive JPEG")
        if marker in (0xC1, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF):
            return Unsupported("not a baseline JPEG (extended, lossless or arithmetic)")
        if marker == 0xC0:
            got = _frame(jpeg, body, end)
            if isinstance(got, Unsupported):
                return got
            frame = got
        elif marker == 0xDB:
            problem = _quant(jpeg, body, end, quant)
            if problem is not None:
                return problem
        elif marker == 0xC4:
            problem = _huffman(jpeg, body, end)
            if problem is not None:
                return problem
        elif marker == 0xDD:
            dri = _u16(jpeg, body)
        elif marker == 0xDA:
            if frame is None:
                return Unsupported("a broken JPEG (a scan before its frame header)")
            width, height, kind, ids = frame
            try:
                tables = quant[ids[0]] + quant[ids[1]]
            except KeyError:
                return Unsupported("a broken JPEG (a quantization table is missing)")
            stop = n - 2 if jpeg[n - 2 : n] == b"\xff\xd9" else n
            return JpegScan(
                kind + (64 if dri else 0),
                width,
                height,
                tables,
                dri,
                memoryview(jpeg)[end:stop],
            )
        pos = end
    return Unsupported("a broken JPEG (no scan)")


def _frame(jpeg: bytes, body: int, end: int) -> tuple[int, int, int, list[int]] | Unsupported:
    precision, height, width, count = (
        jpeg[body],
        _u16(jpeg, body + 1),
        _u16(jpeg, body + 3),
        jpeg[body + 5],
    )
    if precision != 8:
        return Unsupported(f"{precision}-bit samples (RFC 2435 carries 8-bit)")
    if width > MAX_SIDE or height > MAX_SIDE or width == 0 or height == 0:
        return Unsupported(f"{width}x{height}: RFC 2435 carries sides of 8 to {MAX_SIDE} px")
    if count != 3 or end < body + 6 + 3 * count:
        return Unsupported(f"{count} colour components (RFC 2435 carries YCbCr)")
    comps = [jpeg[body + 6 + 3 * i : body + 9 + 3 * i] for i in range(3)]
    sampling = [c[1] for c in comps]
    if sampling[1:] != [0x11, 0x11] or sampling[0] not in (0x21, 0x22):
        shown = ", ".join(f"{s >> 4}x{s & 15}" for s in sampling)
        return Unsupported(f"sampling {shown} (RFC 2435 carries 4:2:2 and 4:2:0)")
    if comps[1][2] != comps[2][2]:
        return Unsupported("Cb and Cr with different quantization tables")
    kind = 0 if sampling[0] == 0x21 else 1
    return width, height, kind, [comps[0][2], comps[1][2]]


def _quant(jpeg: bytes, body: int, end: int, out: dict[int, bytes]) -> Unsupported | None:
    pos = body
    while pos < end:
        precision, table = jpeg[pos] >> 4, jpeg[pos] & 15
        if precision != 0:
            return Unsupported("16-bit quantization tables")
        out[table] = jpeg[pos + 1 : pos + 65]
        pos += 65
    return None


def _huffman(jpeg: bytes, body: int, end: int) -> Unsupported | None:
    pos = body
    while pos + 17 <= end:
        cls, table = jpeg[pos] >> 4, jpeg[pos] & 15
        counts = jpeg[pos + 1 : pos + 17]
        symbols = jpeg[pos + 17 : pos + 17 + sum(counts)]
        if STANDARD_HUFFMAN.get((cls, table)) != (counts, symbols):
            return Unsupported("Huffman tables other than the standard ones (an optimized JPEG)")
        pos += 17 + sum(counts)
    return None


def rtp_header(marker: bool, seq: int, timestamp: int, ssrc: int) -> bytes:
    return struct.pack(
        "!BBHII",
        0x80,
        (0x80 if marker else 0) | PAYLOAD_TYPE,
        seq & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def packetize(
    scan: JpegScan, seq: int, timestamp: int, ssrc: int, max_packet: int = MAX_PACKET
) -> list[bytes]:
    """The RTP packets of one frame, sequence numbers from ``seq``."""
    restart = struct.pack("!HH", scan.restart_interval, 0xFFFF) if scan.restart_interval else b""
    qheader = struct.pack("!BBH", 0, 0, len(scan.tables)) + scan.tables
    data = scan.scan
    total = len(data)
    packets: list[bytes] = []
    offset = 0
    while True:
        first = offset == 0
        head = struct.pack(
            "!I4B",
            offset & 0xFFFFFF,  # type-specific (0) and the 24-bit fragment offset
            scan.type,
            255,
            (scan.width + 7) // 8,
            (scan.height + 7) // 8,
        )
        extra = restart + (qheader if first else b"")
        room = max_packet - 12 - len(head) - len(extra)
        chunk = data[offset : offset + room]
        offset += len(chunk)
        last = offset >= total
        packets.append(rtp_header(last, seq + len(packets), timestamp, ssrc) + head + extra + chunk)
        if last:
            return packets
