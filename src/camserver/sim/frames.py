"""Real JPEG frames for simulated cameras, rendered with Pillow.

Each frame differs from the last: a textured background scrolls, a bar sweeps across,
and the camera's name, a frame counter and the wall clock are burnt in. At VGA and the
default quality a frame is ~15-30 KB, like an OV2640 at quality 10.
"""

from __future__ import annotations

import io
import random
import time
import zlib
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = [
    "FRAMESIZES",
    "FRAMESIZE_BY_NAME",
    "FrameRenderer",
    "FrameSize",
    "embed_send_time",
    "jpeg_quality",
    "read_send_time",
]


@dataclass(frozen=True, slots=True)
class FrameSize:
    number: int
    name: str
    width: int
    height: int


# esp32-camera >= 2.0.14 numbering (Nov 2024), what current CameraWebServer builds use.
# Older firmware numbers them differently (VGA was 8): see docs/facts.md#wire.
FRAMESIZES: dict[int, FrameSize] = {
    fs.number: fs
    for fs in (
        FrameSize(0, "96X96", 96, 96),
        FrameSize(1, "QQVGA", 160, 120),
        FrameSize(2, "128X128", 128, 128),
        FrameSize(3, "QCIF", 176, 144),
        FrameSize(4, "HQVGA", 240, 176),
        FrameSize(5, "240X240", 240, 240),
        FrameSize(6, "QVGA", 320, 240),
        FrameSize(7, "320X320", 320, 320),
        FrameSize(8, "CIF", 400, 296),
        FrameSize(9, "HVGA", 480, 320),
        FrameSize(10, "VGA", 640, 480),
        FrameSize(11, "SVGA", 800, 600),
        FrameSize(12, "XGA", 1024, 768),
        FrameSize(13, "HD", 1280, 720),
        FrameSize(14, "SXGA", 1280, 1024),
        FrameSize(15, "UXGA", 1600, 1200),
    )
}
FRAMESIZE_BY_NAME: dict[str, FrameSize] = {fs.name: fs for fs in FRAMESIZES.values()}


_COM_TAG = b"camserver-sent="


def embed_send_time(jpeg: bytes, when: float) -> bytes:
    """The JPEG with a comment segment (COM) holding ``when``, right after SOI.

    Benchmarks use it to measure camera-send to viewer-receive latency end to end.
    """
    payload = _COM_TAG + b"%.6f" % when
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def read_send_time(jpeg: bytes | memoryview) -> float | None:
    """The time :func:`embed_send_time` put in, if any."""
    head = bytes(jpeg[:64])
    if head[2:4] != b"\xff\xfe":
        return None
    n = int.from_bytes(head[4:6], "big")
    payload = head[6 : 4 + n]
    if not payload.startswith(_COM_TAG):
        return None
    return float(payload[len(_COM_TAG) :])


def jpeg_quality(esp_quality: int) -> int:
    """Map the sensor's quality (4 best .. 63 worst) to a libjpeg quality (70 .. 5)."""
    q = min(63, max(4, esp_quality))
    return round(70 - (q - 4) * 65 / 59)


class FrameRenderer:
    """Renders numbered frames; ``replay`` > 0 pre-encodes that many and cycles them."""

    def __init__(self, name: str, *, seed: int = 0, replay: int = 0) -> None:
        self.name = name
        self.replay = replay
        self._rng = random.Random(seed or zlib.crc32(name.encode()))
        self._backgrounds: dict[tuple[int, int], Image.Image] = {}
        self._cache: dict[tuple[int, int], list[bytes]] = {}
        self._fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def render(self, counter: int, framesize: int, quality: int) -> bytes:
        if self.replay > 0:
            key = (framesize, quality)
            frames = self._cache.get(key)
            if frames is None:
                frames = [self._encode(i, framesize, quality) for i in range(self.replay)]
                self._cache[key] = frames
            return frames[counter % self.replay]
        return self._encode(counter, framesize, quality)

    def _background(self, w: int, h: int) -> Image.Image:
        bg = self._backgrounds.get((w, h))
        if bg is None:
            # Coarse noise over a gradient: compresses like a real scene, not like a flat fill.
            noise = Image.frombytes(
                "L", (w // 16, h // 16), self._rng.randbytes((w // 16) * (h // 16))
            ).resize((w, h), Image.Resampling.BILINEAR)
            grad = Image.linear_gradient("L").resize((w, h))
            bg = Image.merge("RGB", (noise, grad, ImageChops.invert(noise)))
            self._backgrounds[(w, h)] = bg
        return bg

    def _font(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        font = self._fonts.get(size)
        if font is None:
            font = ImageFont.load_default(size=size)
            self._fonts[size] = font
        return font

    def _encode(self, counter: int, framesize: int, quality: int) -> bytes:
        fs = FRAMESIZES.get(framesize, FRAMESIZES[10])
        w, h = fs.width, fs.height
        img = ImageChops.offset(self._background(w, h), (counter * 4) % w, (counter * 2) % h)
        draw = ImageDraw.Draw(img)
        bar = (counter * 8) % w
        draw.rectangle((bar, 0, bar + max(4, w // 32), h), fill=(255, 255, 255))
        size = max(10, h // 16)
        font = self._font(size)
        text = f"{self.name}  #{counter}  {time.strftime('%H:%M:%S')}  {fs.name}"
        draw.rectangle((0, 0, w, size + 6), fill=(0, 0, 0))
        draw.text((4, 2), text, fill=(255, 255, 0), font=font)
        out = io.BytesIO()
        img.save(out, "JPEG", quality=jpeg_quality(quality))
        return out.getvalue()
