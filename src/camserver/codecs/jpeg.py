"""Just enough JPEG structure to find where a JPEG ends, without decoding it.

A JPEG is SOI (FFD8), marker segments with a 2-byte length, SOS (FFDA), entropy-coded
data in which a literal 0xFF is always followed by 0x00 or a restart marker, and EOI
(FFD9). Walking the segments up to SOS means an EOI inside an EXIF thumbnail (APP1) is
never mistaken for the end of the frame.
"""

from __future__ import annotations

__all__ = ["EOI", "NEED_MORE", "NOT_JPEG", "SOI", "entropy_start", "is_complete"]

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
NEED_MORE = -1
NOT_JPEG = -2
_SOS = 0xDA
_EOI = 0xD9
# Markers without a length field: TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def entropy_start(buf: bytes | bytearray, start: int, stop: int) -> int:
    """Where the entropy-coded data of the JPEG at ``buf[start]`` begins.

    From there the next ``FFD9`` is the end of the image. Returns ``NEED_MORE`` if
    ``buf[start:stop]`` does not reach that far yet, ``NOT_JPEG`` if it cannot be a JPEG.
    A JPEG with no scan (SOI then EOI) returns the index of its EOI.
    """
    if stop - start < 2:
        return NEED_MORE
    if buf[start] != 0xFF or buf[start + 1] != 0xD8:
        return NOT_JPEG
    pos = start + 2
    while True:
        if pos + 2 > stop:
            return NEED_MORE
        if buf[pos] != 0xFF:
            return NOT_JPEG
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            return pos
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > stop:
            return NEED_MORE
        seg_len = (buf[pos + 2] << 8) | buf[pos + 3]
        if seg_len < 2:
            return NOT_JPEG
        pos += 2 + seg_len
        if marker == _SOS:
            return pos


def is_complete(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` starts with SOI and ends with EOI (ignoring trailing padding)."""
    n = len(data)
    # Some encoders pad the buffer after EOI with zeros or a line end.
    while n > 4 and data[n - 1] in (0x00, 0x0A, 0x0D, 0x20):
        n -= 1
    return (
        n >= 4
        and data[0] == 0xFF
        and data[1] == 0xD8
        and data[n - 2] == 0xFF
        and data[n - 1] == _EOI
    )


# Start-of-frame markers (baseline, progressive, ...): not DHT (C4), JPG (C8) or DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def dimensions(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(width, height) from the JPEG's start-of-frame header, or None if it has none."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (_SOS, _EOI):
            return None
        seg_len = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF:
            if pos + 9 > n:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return (width, height) if width and height else None
        pos += 2 + seg_len
    return None
