"""Reading recordings back: the frame at a time (for scrubbing) and frames in order from a
time (for MJPEG replay). Blocking file I/O: call from a worker thread.

Every MJPEG frame is a keyframe, so a backward keyframe seek lands on the frame at or
before the time asked (with any_frame=True libavformat lands after it); Matroska with its
seek index finds a time and reads a frame in 26-51 µs, without one (a segment still being
written) in about 0.2 ms (docs/facts.md#recording).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

from camserver.errors import RecordingError
from camserver.recording.index import Recording

__all__ = ["RecordedFrame", "frame_at", "frames_between", "frames_from"]


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    ts: float
    """When camserver received it (epoch seconds)."""
    data: bytes


def _offset_ms(r: Recording, t: float) -> int:
    return max(0, int((t - r.start) * 1000))


def frame_at(root: Path, r: Recording, t: float) -> RecordedFrame | None:
    """The frame of ``r`` received at ``t`` or just before; None if ``r`` starts later."""
    import av  # (loaded with the first recording or playback, not at start)

    target = _offset_ms(r, t)
    if t < r.start:
        return None
    best: RecordedFrame | None = None
    try:
        with av.open(str(root / r.path)) as src:
            stream = src.streams.video[0]
            src.seek(target, stream=stream, backward=True)
            for packet in src.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                if packet.pts > target:
                    break
                best = RecordedFrame(r.start + packet.pts / 1000, bytes(packet))
    except av.EOFError:
        pass  # the end of a segment still being written: what was read so far
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise RecordingError(f"cannot read {r.path}: {exc}") from exc
    return best


def frames_from(root: Path, r: Recording, t: float) -> Generator[RecordedFrame, None, None]:
    """Frames of ``r`` received at ``t`` or later, in order."""
    import av  # (loaded with the first recording or playback, not at start)

    start = _offset_ms(r, t)
    try:
        with av.open(str(root / r.path)) as src:
            stream = src.streams.video[0]
            if start:
                src.seek(start, stream=stream, backward=True)
            for packet in src.demux(stream):
                if packet.pts is None or packet.size == 0 or packet.pts < start:
                    continue
                yield RecordedFrame(r.start + packet.pts / 1000, bytes(packet))
    except av.EOFError:
        return  # the end of a segment still being written (its last cluster is incomplete)
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise RecordingError(f"cannot read {r.path}: {exc}") from exc


def frames_between(
    root: Path, segments: Iterable[Recording], t0: float, t1: float
) -> Generator[RecordedFrame, None, None]:
    """Frames of ``segments`` (in time order) received from ``t0`` to ``t1``."""
    for seg in segments:
        frames = frames_from(root, seg, t0)
        try:
            for f in frames:
                if f.ts > t1:
                    return
                yield f
        finally:
            frames.close()
