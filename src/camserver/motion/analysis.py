"""What the motion detector says about one frame: plain data, light to import (the
detector itself, with numpy, simplejpeg and Pillow, loads with the first camera that
detects motion)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Analysis"]


@dataclass(frozen=True, slots=True)
class Analysis:
    ts: float
    area: float
    """Percent of the watched picture that changed."""
    moving: bool
    """``area`` reached ``min_area``."""
    light_change: bool = False
    """Most of the picture changed at once: analysis pauses."""
    started: bool = False
    """An event starts with this frame."""
    ended: bool = False
    """The event ended (``cooldown`` passed since the last motion)."""
