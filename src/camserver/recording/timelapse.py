"""Timelapse: one frame every ``interval`` seconds into one Matroska file per camera and
UTC day (``<stream>/<day>/timelapse.mkv``, kind ``timelapse`` in the index, real
timestamps, so ``frame.jpeg?t=`` finds its frames too). Worker thread only.

A frame every 10 s is ~8,640 VGA frames (~211 MiB) a day; writing one costs 13-22 µs
(docs/facts.md#recording). ``timelapse.mp4`` (api/recordings.py) plays a day's file at
15 frames a second in a browser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from camserver.recording.index import RecordingIndex
from camserver.recording.writer import SegmentWriter
from camserver.streaming import jpeg
from camserver.streaming.hub import HubFrame

__all__ = ["Timelapse", "timelapse_path"]


def timelapse_path(stream: str, day: str) -> Path:
    """Relative to the recordings folder."""
    return Path(stream) / day / "timelapse.mkv"


class Timelapse:
    def __init__(self, root: Path, index: RecordingIndex, stream: str) -> None:
        self.root = root
        self.index = index
        self.stream = stream
        self.interval = 0.0
        self._writer: SegmentWriter | None = None
        self._row: int | None = None
        self._day = ""
        self._next = 0.0

    def offer(self, frame: HubFrame) -> bool:
        """Write ``frame`` if it is due; True if it was written. Raises RecordingError."""
        if not self.interval or frame.ts < self._next:
            return False
        day = datetime.fromtimestamp(frame.ts, UTC).strftime("%Y-%m-%d")
        size = jpeg.dimensions(frame.data)
        if self._writer is not None and (day != self._day or size != self._writer.size):
            self.close()
        if self._writer is None:
            if size is None:
                return False
            rel = timelapse_path(self.stream, day)
            if (self.root / rel).exists():  # a restart on the same day: a file of its own
                rel = rel.with_name(f"timelapse-{int(frame.ts)}.mkv")
            self._writer = SegmentWriter(self.root / rel, frame.ts, size)
            self._row = self.index.begin(self.stream, "timelapse", rel.as_posix(), frame.ts)
            self._day = day
        self._writer.write(frame.data, frame.ts)
        self._next = frame.ts + self.interval
        if self._row is not None:
            w = self._writer
            self.index.update(self._row, w.end, w.frames, w.bytes, closed=False)
        return True

    def close(self) -> None:
        writer, row = self._writer, self._row
        self._writer = self._row = None
        if writer is not None:
            writer.close()
            if row is not None:
                self.index.update(row, writer.end, writer.frames, writer.bytes, closed=True)
