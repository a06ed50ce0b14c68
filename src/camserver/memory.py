"""Keep the server's memory flat over days: once a minute, collect cyclic garbage and give
freed heap memory back to the operating system.

Why both (found with ``bench/soak.py`` and a census of ``gc.garbage``):

- Each closed viewer connection leaves a reference cycle behind: the ``CancelledError``
  (starlette/anyio ending an MJPEG response) or ``OSError`` (engine.io's WebSocket wait)
  that ended it, its traceback and the frames on it, which hold the connection's protocol,
  buffers and the last frame it sent. Only the cyclic GC frees that. With the thresholds
  tuned for short pauses (``cli.py``), the oldest generation is collected about once an
  hour, so under viewer churn RSS climbed by about a megabyte a minute until then. A full
  collection of what is not frozen takes tens of milliseconds, once a minute.
- Frames are ~25 KB ``bytes`` freed at 15 fps per camera; glibc keeps freed chunks in its
  heap. ``malloc_trim(0)`` returns them (a no-op away from glibc).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Housekeeper", "trim_memory"]

log = logging.getLogger(__name__)


def _load_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _load_trim()


def trim_memory() -> bool:
    """Return free heap memory to the OS; False where that is not possible."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


@dataclass
class Housekeeper:
    """The once-a-minute job; its figures are exported by ``/metrics``."""

    interval: float = 60.0
    runs: int = 0
    collected: int = 0
    """Unreachable objects freed by the full collections so far."""
    last_seconds: float = 0.0
    """How long the last full collection and trim took (the event loop waits that long)."""

    def run_once(self) -> None:
        start = time.perf_counter()
        self.collected += gc.collect()
        trim_memory()
        self.last_seconds = time.perf_counter() - start
        self.runs += 1
        log.debug("housekeeping: %.1f ms", self.last_seconds * 1000)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.run_once()
