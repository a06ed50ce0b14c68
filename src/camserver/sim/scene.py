"""A scene for the simulated camera that motion detection can be tested and shown with:
a still, textured background with sensor noise, and on request an object crossing it
and whole-frame brightness steps like the ESP32's auto-exposure.

The default test pattern moves everywhere all the time (a scrolling background, a sweeping
bar, a clock): every frame is "motion". A scene is what a camera on a wall sees.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

__all__ = ["Scene", "SceneRenderer"]

_NOISE_FRAMES = 8


@dataclass(slots=True)
class Scene:
    """What ``POST /sim/scene`` sets (fields left out stay)."""

    moving_object: bool = False
    """An object crosses the picture from left to right, again and again."""
    object_period: float = 0.0
    """Seconds from one crossing's start to the next (0: one after the other)."""
    object_speed: float = 0.5
    """Picture widths per second."""
    exposure_jumps: bool = False
    """The whole picture steps between two brightnesses every few seconds (x1.3)."""
    noise: float = 4.0
    """Sensor noise, standard deviation in 8-bit levels."""

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown scene field {key!r} (known: {', '.join(names)})")
            if names[key] == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0")
        for key, value in changes.items():
            setattr(self, key, value)


class SceneRenderer:
    def __init__(self, name: str) -> None:
        self._seed = zlib.crc32(name.encode())
        self._cache: dict[tuple[int, int, float], tuple[np.ndarray, list[np.ndarray]]] = {}
        self._frame = 0

    def _still(self, w: int, h: int, noise: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """The background (float32 RGB) and a bank of noise frames, made once per size."""
        key = (w, h, noise)
        if key not in self._cache:
            rng = random.Random(self._seed)
            layers = []
            for cell in (8, 32):  # fine and coarse texture, like leaves and a wall
                small = Image.frombytes(
                    "L",
                    (w // cell + 1, h // cell + 1),
                    rng.randbytes((w // cell + 1) * (h // cell + 1)),
                )
                layers.append(np.asarray(small.resize((w, h), Image.Resampling.BILINEAR)))
            grey = 0.4 * layers[0].astype(np.float32) + 0.6 * layers[1].astype(np.float32)
            tint = np.array([1.0, 0.9, 0.8], dtype=np.float32)
            background = (grey[:, :, None] * tint[None, None, :]) * 0.8 + 20
            gen = np.random.default_rng(self._seed)
            bank = [
                gen.normal(0.0, noise, (h, w, 1)).astype(np.float32) for _ in range(_NOISE_FRAMES)
            ]
            self._cache[key] = (background, bank)
        return self._cache[key]

    def render(self, scene: Scene, w: int, h: int, quality: int, elapsed: float) -> bytes:
        """One JPEG of ``scene``, ``elapsed`` seconds after it was set."""
        background, bank = self._still(w, h, scene.noise)
        img = background.copy()
        if scene.moving_object:
            ow, oh = max(8, w // 6), max(8, h // 3)
            travel = (w + ow) / max(scene.object_speed * w, 1e-6)  # seconds per crossing
            period = max(scene.object_period, travel)
            t = elapsed % period
            if t < travel:
                x = int(t * scene.object_speed * w) - ow
                y = (h - oh) // 2
                x0, x1 = max(0, x), min(w, x + ow)
                if x1 > x0:
                    # A dark body with a bright stripe: it differs from any background.
                    img[y : y + oh, x0:x1] = (30.0, 40.0, 60.0)
                    img[y + oh // 3 : y + oh // 3 + max(2, oh // 8), x0:x1] = (230.0, 220.0, 200.0)
        if scene.exposure_jumps and int(elapsed / 3.0) % 2 == 1:
            img *= 1.3
        self._frame += 1
        img += bank[self._frame % len(bank)]
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        # 4:2:2, as the OV2640 sends (RFC 2435 type 0; the test pattern is 4:2:0, type 1).
        return bytes(
            simplejpeg.encode_jpeg(
                pixels, quality=quality, colorspace="RGB", colorsubsampling="422"
            )
        )
