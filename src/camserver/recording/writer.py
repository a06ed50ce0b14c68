"""One recording segment: the camera's own JPEGs stream-copied into Matroska (no
re-encoding) with their real, variable timestamps in milliseconds.

Why Matroska (docs/facts.md#recording): 13-22 µs of CPU per VGA frame and 45 bytes of
overhead; with ``flush_packets=1`` a ``kill -9`` loses at most the last frame and the file
stays readable (a plain MP4 is unreadable after a kill; AVI cannot hold variable timing).
VLC, ffmpeg and mpv play it as it is.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from camserver.errors import RecordingError

__all__ = ["SegmentWriter"]

_TIME_BASE = Fraction(1, 1000)


class SegmentWriter:
    """Opened on the first frame; ``write`` frames in time order, then ``close``."""

    def __init__(self, path: Path, start: float, size: tuple[int, int]) -> None:
        import av  # (loaded with the first recording or playback, not at start)

        self.path = path
        self.start = start
        self.end = start
        self.size = size
        self.frames = 0
        self.bytes = 0
        self._last_pts = -1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = av.open(
                str(path), "w", format="matroska", container_options={"flush_packets": "1"}
            )
            stream = self._out.add_stream("mjpeg")
            stream.width, stream.height = size
            # Quirk (OV2640): ESP32 JPEGs are 4:2:2; players read the real sampling from
            # each JPEG, this only labels the track.
            stream.pix_fmt = "yuvj422p"
            stream.time_base = _TIME_BASE
            self._stream = stream
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError(f"cannot create {path}: {exc}") from exc

    def write(self, data: bytes, ts: float) -> None:
        """Add one JPEG received at ``ts`` (epoch seconds)."""
        import av  # (loaded with the first recording or playback, not at start)

        # Strictly increasing, even if two frames share a millisecond.
        pts = max(round((ts - self.start) * 1000), self._last_pts + 1)
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = _TIME_BASE
        packet.stream = self._stream
        packet.is_keyframe = True
        try:
            self._out.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError(f"cannot write {self.path}: {exc}") from exc
        self._last_pts = pts
        self.frames += 1
        self.bytes += len(data)
        self.end = max(self.end, ts)

    def close(self) -> None:
        import av  # (loaded with the first recording or playback, not at start)

        try:
            self._out.close()
        except (OSError, av.FFmpegError) as exc:
            raise RecordingError(f"cannot finish {self.path}: {exc}") from exc
