"""Motion from the picture: frames in, analyses and event edges out; no I/O, no threads.

Per analysed frame (grayscale, decoded at 1/2-1/8 size, ~160x120 or more):

1. **Gain normalisation**: the frame is scaled so its mean brightness equals the
   background's. The ESP32's auto-exposure steps the whole picture's brightness several
   times a minute; without this, a x1.25 step gave 71 false frames of 300, with it 0
   (docs/facts.md#motion).
2. **Difference** against a running background: a pixel changed when it differs by more
   than ``threshold`` levels; clipped pixels (0-5, 250-255) say nothing and are left out.
3. **Zones**: only pixels inside include zones (all, if none) and outside exclude zones count;
   ``area`` is the changed percent of them.
4. **Lighting changes**: when most of the whole picture changed at once (lights, the IR
   filter switching at dusk), the background is replaced by this frame and analysis pauses
   for ``light_change_pause`` seconds.
5. **Background update**: unchanged pixels follow the picture quickly (5 % a frame), changed
   ones slowly (0.5 %), so a moving object is not absorbed but a parked one is, in time.
6. **Events**: an event starts after ``min_frames`` analysed frames in a row with ``area`` of
   at least ``min_area``, and ends ``cooldown`` seconds after the last such frame.
"""

from __future__ import annotations

import numpy as np
import simplejpeg
from PIL import Image, ImageDraw

from camserver.errors import BadFrame
from camserver.motion.analysis import Analysis
from camserver.schema import MotionSettings

__all__ = ["Analysis", "MotionDetector", "decode_gray"]

LIGHT_CHANGE = 0.6
"""Fraction of the whole picture changed at once that is taken for a lighting change."""
FAST, SLOW = 0.05, 0.005
"""Background update rates of unchanged and changed pixels, per analysed frame."""
MIN_WIDTH, MIN_HEIGHT = 160, 120


def decode_gray(jpeg: bytes) -> np.ndarray:
    """The luminance of ``jpeg`` at the smallest DCT scale of at least 160x120 (libjpeg-turbo
    skips the rest of the work: ~350 µs for a VGA frame, the GIL released)."""
    try:
        pixels = simplejpeg.decode_jpeg(
            jpeg, colorspace="GRAY", min_width=MIN_WIDTH, min_height=MIN_HEIGHT
        )
    except (ValueError, TypeError) as exc:
        raise BadFrame(f"cannot decode the frame: {exc}") from exc
    return np.asarray(pixels).reshape(pixels.shape[0], pixels.shape[1])


class MotionDetector:
    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self.active = False
        """An event is going on."""
        self.last_motion = 0.0
        self._bg: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._mask_for: tuple[tuple[int, int], object] | None = None
        self._streak = 0
        self._pause_until = 0.0

    def _watched(self, shape: tuple[int, int]) -> np.ndarray:
        """The zones as a boolean mask of ``shape``, made again when either changes."""
        key = (shape, self.settings.zones)
        if self._mask is None or self._mask_for != key:
            h, w = shape
            includes = [z for z in self.settings.zones if z.kind == "include"]
            img = Image.new("L", (w, h), 0 if includes else 255)
            draw = ImageDraw.Draw(img)
            for zone in (*includes, *(z for z in self.settings.zones if z.kind == "exclude")):
                points = [(x * (w - 1), y * (h - 1)) for x, y in zone.points]
                draw.polygon(points, fill=255 if zone.kind == "include" else 0)
            self._mask = np.asarray(img) > 0
            self._mask_for = key
        return self._mask

    def feed(self, gray: np.ndarray, ts: float) -> Analysis:
        """Analyse one frame (from :func:`decode_gray`) received at ``ts`` (seconds)."""
        s = self.settings
        frame = gray.astype(np.float32)
        bg = self._bg
        if bg is None or bg.shape != frame.shape:  # the first frame, or a new frame size
            self._bg = frame
            self._streak = 0
            return self._edges(Analysis(ts, 0.0, False))
        mean = float(frame.mean())
        frame_n = frame * (float(bg.mean()) / mean) if mean >= 1.0 else frame
        valid = (gray > 5) & (gray < 250)
        diff = (np.abs(frame_n - bg) > s.threshold) & valid
        if float(diff.mean()) > LIGHT_CHANGE:
            self._bg = frame
            self._streak = 0
            self._pause_until = ts + s.light_change_pause
            return self._edges(Analysis(ts, 0.0, False, light_change=True))
        bg += np.where(diff, SLOW, FAST).astype(np.float32) * (frame_n - bg)
        if ts < self._pause_until:
            self._streak = 0
            return self._edges(Analysis(ts, 0.0, False))
        mask = self._watched(diff.shape)
        watched = int(mask.sum())
        area = 100.0 * int((diff & mask).sum()) / watched if watched else 0.0
        moving = area >= s.min_area
        self._streak = self._streak + 1 if moving else 0
        return self._edges(Analysis(ts, area, moving))

    def idle(self, ts: float) -> Analysis | None:
        """No frame came (the camera stopped): the event ends after its cooldown."""
        if self.active and ts - self.last_motion >= self.settings.cooldown:
            self.active = False
            self._streak = 0
            return Analysis(ts, 0.0, False, ended=True)
        return None

    def _edges(self, a: Analysis) -> Analysis:
        if not self.active and self._streak >= self.settings.min_frames:
            self.active = True
            self.last_motion = a.ts
            return Analysis(a.ts, a.area, a.moving, a.light_change, started=True)
        if self.active:
            if a.moving:
                self.last_motion = a.ts
            elif a.ts - self.last_motion >= self.settings.cooldown:
                self.active = False
                return Analysis(a.ts, a.area, a.moving, a.light_change, ended=True)
        return a
