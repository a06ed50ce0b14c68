"""One live frame as the client hands it out."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Frame"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A JPEG from a stream, with when the server got it from the camera."""

    name: str
    """The stream's name."""
    seq: int
    """Counts the camera's frames on the server (Socket.IO); counts parts (MJPEG)."""
    ts: float
    """When the server received it from the camera (epoch seconds)."""
    data: bytes = field(repr=False)
    """The JPEG."""
    received: float
    """When this client received it (epoch seconds, this machine's clock)."""
    token: int = 0
    """Cluster mode: the fencing token of the node that pulled it."""
    resent: bool = False
    """MJPEG: a keep-alive while the camera sends nothing (the previous frame again)."""

    @property
    def latency(self) -> float:
        """Seconds from the server's receipt to this client's (same clock on one machine;
        across machines, as good as their clocks agree)."""
        return self.received - self.ts

    def to_pil(self) -> Image:
        """The picture as a Pillow image (decoded now)."""
        from PIL import Image

        img = Image.open(io.BytesIO(self.data))
        img.load()
        return img

    def to_numpy(self, *, bgr: bool = False) -> Any:
        """The picture as a ``numpy`` array, height x width x 3, ``uint8``; RGB, or BGR
        for OpenCV (``bgr=True``)."""
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is a camserver dependency
            raise ImportError("Frame.to_numpy() needs numpy: pip install numpy") from exc
        rgb = np.asarray(self.to_pil().convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1]) if bgr else rgb
