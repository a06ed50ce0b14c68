"""The simulator's fault switches: what a real ESP32's stream does wrong, on demand."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["Faults"]


@dataclass
class Faults:
    """Fault switches. Counts are per stream connection; 0 means off."""

    drop_every: int = 0
    """Close the connection in the middle of every Nth frame."""
    stall_seconds: float = 0.0
    """Send nothing for this long: once at the next frame, or every ``stall_every`` frames."""
    stall_every: int = 0
    truncate_every: int = 0
    """Every Nth JPEG is cut in half (Content-Length matches the cut, no EOI)."""
    garbage_every: int = 0
    """Every Nth frame is preceded by random bytes between the parts."""
    http_500: bool = False
    """The stream port answers ``500 Internal Server Error``."""
    refuse: bool = False
    """The stream port is closed: connections are refused."""
    endless_part: bool = False
    """After the part headers (no Content-Length), send JPEG-like bytes and never finish."""
    no_camera: bool = False
    """ESPHome mode: the device's entity list has no camera (camserver.sim.esphome)."""

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in changes.items():
            f = names.get(key)
            if f is None:
                raise ValueError(f"unknown fault {key!r}")
            kind = type(getattr(self, key))
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0")
            setattr(self, key, kind(value))
