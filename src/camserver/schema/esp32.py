"""What camserver knows of Espressif's CameraWebServer firmware: its ports and the
settings its ``/control`` accepts. No I/O here (``camserver.upstream`` does the requests).

The simulator (``camserver.sim``) does not import this: it speaks from its own tables,
so a mistake here shows up as a test failure instead of being repeated on both sides.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONTROL_RANGES",
    "FRAMESIZE_NAMES",
    "MAX_HTTP_PORT",
    "MAX_PORT",
    "check_control",
    "framesize_number",
    "parse_port",
    "stream_port",
]

MAX_PORT: Final = 65535
MAX_HTTP_PORT: Final = MAX_PORT - 1
"""The highest HTTP port that leaves room for the stream on port + 1."""


def stream_port(http_port: int) -> int:
    """The firmware serves ``/stream`` on its own server, one port above the HTTP server
    (``config.server_port += 1`` in ``app_httpd.cpp``)."""
    return http_port + 1


def parse_port(value: object, highest: int = MAX_PORT) -> int | None:
    """An int, or a string of digits, from 1 to ``highest``; None for anything else."""
    # isascii: str.isdigit() is also true for "²", which int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= highest else None


# /control variables of CameraWebServer and the values the sensor accepts.
CONTROL_RANGES: dict[str, tuple[int, int]] = {
    "framesize": (0, 15),
    "quality": (4, 63),
    "contrast": (-2, 2),
    "brightness": (-2, 2),
    "saturation": (-2, 2),
    "gainceiling": (0, 6),
    "colorbar": (0, 1),
    "awb": (0, 1),
    "agc": (0, 1),
    "aec": (0, 1),
    "hmirror": (0, 1),
    "vflip": (0, 1),
    "awb_gain": (0, 1),
    "agc_gain": (0, 30),
    "aec_value": (0, 1200),
    "aec2": (0, 1),
    "dcw": (0, 1),
    "bpc": (0, 1),
    "wpc": (0, 1),
    "raw_gma": (0, 1),
    "lenc": (0, 1),
    "special_effect": (0, 6),
    "wb_mode": (0, 4),
    "ae_level": (-2, 2),
    "led_intensity": (0, 255),
}


def check_control(var: str, value: object) -> str | None:
    """Why ``/control?var=<var>&val=<value>`` would be refused, or None if it is valid."""
    limits = CONTROL_RANGES.get(var)
    if limits is None:
        return f"unknown camera setting; known: {', '.join(sorted(CONTROL_RANGES))}"
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    lo, hi = limits
    if not lo <= value <= hi:
        return f"must be from {lo} to {hi}"
    return None


# esp32-camera >= 2.0.14 numbering (what current CameraWebServer builds use; older firmware
# numbered them differently, VGA was 8: docs/facts.md#wire). A pushing camera is told its
# frame size by name (``{"set": {"framesize": "SVGA"}}``), as its sketch passes it to
# ``esp_camera``'s ``FRAMESIZE_<name>``.
FRAMESIZE_NAMES: dict[int, str] = {
    0: "96X96",
    1: "QQVGA",
    2: "128X128",
    3: "QCIF",
    4: "HQVGA",
    5: "240X240",
    6: "QVGA",
    7: "320X320",
    8: "CIF",
    9: "HVGA",
    10: "VGA",
    11: "SVGA",
    12: "XGA",
    13: "HD",
    14: "SXGA",
    15: "UXGA",
}


def framesize_number(value: object) -> int | None:
    """A frame size given by number (0-15) or by name (``"SVGA"``, any case); None if
    it is neither."""
    if isinstance(value, str):
        wanted = value.strip().upper()
        return next((n for n, name in FRAMESIZE_NAMES.items() if name == wanted), None)
    if isinstance(value, int) and not isinstance(value, bool) and value in FRAMESIZE_NAMES:
        return value
    return None
