"""Segments left unfinished by a crash: remuxed at start-up so they have a duration and a
seek index again, and their rows completed from what the file really holds. In cluster
mode a live node does the same, in the background, for the segments of a node that died.

A Matroska file written with ``flush_packets=1`` and cut by ``kill -9`` keeps every frame
but the last (docs/facts.md#recording); it has no duration and no Cues. Remuxing (packets
copied, nothing decoded) costs ~51 µs per frame with PyAV.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from camserver.errors import RecordingError
from camserver.recording.index import RecordingIndex

__all__ = ["Repaired", "repair_segment", "repair_unfinished"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Repaired:
    frames: int
    bytes: int
    duration: float
    """Seconds from the first frame to the last."""


def repair_segment(path: Path) -> Repaired:
    """Rewrite ``path`` with a duration and a seek index; RecordingError if it holds no
    readable frame (the caller forgets it)."""
    import av  # (loaded with the first recording or playback, not at start)

    tmp = path.with_name(path.name + ".repair")
    frames = size = 0
    last = 0
    try:
        with av.open(str(path)) as src:
            if not src.streams.video:
                raise RecordingError(f"{path}: no video track")
            video = src.streams.video[0]
            # Read while the container is open: PyAV 18.1.1 raises AssertionError on a
            # closed container's stream (the server then failed to start after a kill -9).
            tb = video.time_base
            with av.open(str(tmp), "w", format="matroska") as out:
                copy = out.add_stream_from_template(video)
                for packet in src.demux(video):
                    if packet.dts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    last = max(last, int(packet.pts or 0))
                    frames += 1
                    size += packet.size
                    packet.stream = copy
                    out.mux(packet)
        if not frames:
            raise RecordingError(f"{path}: no readable frame")
        os.replace(tmp, path)
    except (OSError, av.FFmpegError) as exc:
        raise RecordingError(f"cannot repair {path}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    duration = float(last * tb) if tb is not None else last / 1000
    return Repaired(frames, size, duration)


def repair_unfinished(index: RecordingIndex, root: Path, *, own: bool) -> int:
    """Repair the open recordings nobody writes any longer (``own``: this node's from
    before a restart too); each is remuxed and completed in the index, or forgotten when
    nothing in it can be read. Returns how many were handled."""
    done = 0
    for r in index.unfinished(own=own):
        if not index.claim(f"repair:{r.id}", 300):
            continue  # another node is at it
        path = root / r.path
        try:
            fixed = repair_segment(path)
        except RecordingError as exc:
            log.warning("recording %s: %s; forgetting %s", r.stream, exc, r.path)
            with contextlib.suppress(OSError):
                path.unlink()
            index.delete(r.id)
            done += 1
            continue
        index.update(r.id, r.start + fixed.duration, fixed.frames, fixed.bytes, closed=True)
        done += 1
        log.info(
            "recording %s: repaired %s after an unclean stop%s (%d frames)",
            r.stream,
            r.path,
            f" of node {r.node}" if r.node else "",
            fixed.frames,
        )
    return done
