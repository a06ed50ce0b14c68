"""Give freed heap memory back to the operating system now and then.

Frames are ~25 KB ``bytes`` objects, allocated with ``malloc`` and freed at 15 fps per
camera. glibc keeps freed chunks in its heap, so the process's RSS creeps up over hours
although the Python heap is flat (tracemalloc shows it). ``malloc_trim(0)`` once a minute
returns that memory; it costs well under a millisecond. Elsewhere (macOS, Windows, musl)
it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable

__all__ = ["trim_memory", "trim_memory_forever"]

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


async def trim_memory_forever(interval: float = 60.0) -> None:
    if _TRIM is None:
        return
    while True:
        await asyncio.sleep(interval)
        trim_memory()
