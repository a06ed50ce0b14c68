"""The clip cache (``<recordings>/.clips``): MP4s made on request (clip.mp4, today's
timelapse so far), kept an hour and within ``recording_clip_cache_mb``; retention
(``camserver.recording.recorder``) lists and drops them."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Final

__all__ = ["CLIP_CACHE_SECONDS", "cached_clips", "drop_clip"]

CLIP_CACHE_SECONDS: Final = 3600.0
"""How long a made clip is kept after it was made."""


def cached_clips(root: Path) -> list[tuple[Path, int, float]]:
    """The clip cache's files as (path, size, mtime) (and the parts a crash left; not
    those being made), oldest first."""
    found = []
    stale = time.time() - CLIP_CACHE_SECONDS
    for path in (root / ".clips").glob("*/*"):
        with contextlib.suppress(OSError):
            info = path.stat()
            made = path.suffix == ".mp4"
            if made or (path.suffix == ".part" and info.st_mtime < stale):
                found.append((path, info.st_size, info.st_mtime))
    return sorted(found, key=lambda item: item[2])


def drop_clip(path: Path) -> bool:
    """Delete one cached clip; False if it could not be."""
    try:
        path.unlink()
    except OSError:
        return False
    return True
