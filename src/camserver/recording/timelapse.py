"""Timelapse: one frame every ``interval`` seconds into one Matroska file per camera and
UTC day (``<stream>/<day>/timelapse.mkv``, kind ``timelapse`` in the index, real
timestamps, so ``frame.jpeg?t=`` finds its frames too). Worker thread only.

A frame every 10 s is ~8,640 VGA frames (~211 MiB) a day; writing one costs 13-22 µs
(docs/facts.md#recording). Once a day is over, :class:`DayRenderer` makes its H.264 MP4
(``<stream>/<day>/timelapse.mp4``, 15 frames a second, which a browser plays) in a thread
of its own at the lowest CPU priority; ``timelapse.mp4`` (api/recordings.py) serves it, or
makes today's on request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path

from camserver.codecs import jpeg
from camserver.errors import RecordingError
from camserver.recording.clips import make_clip
from camserver.recording.index import Recording, RecordingIndex
from camserver.recording.playback import RecordedFrame, frames_between
from camserver.recording.writer import SegmentWriter
from camserver.streaming.hub import HubFrame

__all__ = [
    "TIMELAPSE_FPS",
    "DayRenderer",
    "Timelapse",
    "day_of",
    "day_rows",
    "render_day",
    "timelapse_mp4",
    "timelapse_path",
]

log = logging.getLogger(__name__)

TIMELAPSE_FPS = 15
"""A day's timelapse plays at this rate: 8,640 frames (one every 10 s) in 9.6 minutes."""


def timelapse_path(stream: str, day: str) -> Path:
    """Relative to the recordings folder."""
    return Path(stream) / day / "timelapse.mkv"


def timelapse_mp4(stream: str, day: str) -> Path:
    """The day's MP4, relative to the recordings folder; made once the day is over."""
    return Path(stream) / day / "timelapse.mp4"


def day_of(ts: float) -> str:
    """The UTC day of epoch seconds ``ts``, as the folders name it (``2026-11-25``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def day_rows(index: RecordingIndex, stream: str, day: str) -> list[Recording]:
    """The timelapse files of ``stream`` written on ``day`` (more than one after a
    restart), oldest first."""
    t0 = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    rows = index.between(stream, t0, t0 + 86400)
    return [r for r in rows if r.kind == "timelapse" and Path(r.path).parent.name == day]


def render_day(
    root: Path,
    rows: list[Recording],
    path: Path,
    *,
    threads: int = 0,
    stop: threading.Event | None = None,
) -> int:
    """The frames of ``rows`` (one day's timelapse files) as MP4 at ``path``, at
    TIMELAPSE_FPS; returns how many frames it holds. Raises RecordingError, also when
    ``stop`` is set midway (nothing is left behind)."""
    frames = _at_fixed_rate(frames_between(root, rows, 0.0, 1e12), stop)
    return make_clip(frames, path, threads=threads)


def _at_fixed_rate(
    frames: Generator[RecordedFrame, None, None], stop: threading.Event | None
) -> Generator[RecordedFrame, None, None]:
    try:
        for i, f in enumerate(frames):
            if stop is not None and stop.is_set():
                raise RecordingError("stopped before the end")
            yield RecordedFrame(i / TIMELAPSE_FPS, f.data)
    finally:
        frames.close()


class DayRenderer:
    """Makes each finished day's timelapse MP4 in one background thread at the lowest CPU
    priority (nice 19; libx264's own threads inherit it) with one encoding thread, so a
    day's end costs live viewers and the recorder nothing they would notice. Days are
    found through the index: :meth:`scan` after a restart and at each day's end."""

    def __init__(self, root: Path, index: RecordingIndex) -> None:
        self.root = root
        self.index = index
        self.made = 0
        self.failed = 0
        self.nice: int | None = None
        """The thread's niceness once it runs (None: not started)."""
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._pending: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="timelapse-days", daemon=True)
        self._thread.start()

    def scan(self, today: str) -> None:
        """Queue every day before ``today`` that has a finished timelapse but no MP4."""
        for stream, day in self.index.timelapse_days():
            if day >= today or (self.root / timelapse_mp4(stream, day)).exists():
                continue
            if self.index.claim(f"day:{stream}:{day}", 3600):  # one node of a cluster
                self.request(stream, day)

    def request(self, stream: str, day: str) -> None:
        with self._lock:
            if (stream, day) in self._pending:
                return
            self._pending.add((stream, day))
        self._queue.put((stream, day))

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def close(self, timeout: float = 10.0) -> None:
        """Stop, abandoning a day half made (it is made again after the next start)."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: niceness is per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        with contextlib.suppress(OSError, AttributeError):
            self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        while (job := self._queue.get()) is not None and not self._stop.is_set():
            stream, day = job
            try:
                self._render(stream, day)
            except Exception:  # one bad day must not stop the others
                log.exception("timelapse %s %s: unexpected error", stream, day)
                self.failed += 1
            finally:
                with self._lock:
                    self._pending.discard(job)

    def _render(self, stream: str, day: str) -> None:
        try:
            self.make(stream, day, threads=1, stop=self._stop)
        except RecordingError as exc:
            if not self._stop.is_set():
                self.failed += 1
                log.error("timelapse %s %s: %s", stream, day, exc)

    def make(
        self, stream: str, day: str, *, threads: int = 0, stop: threading.Event | None = None
    ) -> Path | None:
        """Make the finished ``day``'s MP4 now (blocking; also for a request that comes
        before the background got to it); None if the day has no finished timelapse."""
        rows = day_rows(self.index, stream, day)
        if not rows or not all(r.closed for r in rows):
            return None  # deleted since, or still being written (a clock set back)
        path = self.root / timelapse_mp4(stream, day)
        frames = render_day(self.root, rows, path, threads=threads, stop=stop)
        # Its bytes count against the stream's max_bytes, on the day's first file's row.
        self.index.set_derived(rows[0].id, path.stat().st_size)
        self.made += 1
        log.info("timelapse %s %s: %s made (%d frames)", stream, day, path.name, frames)
        return path


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
        day = day_of(frame.ts)
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

    def end_day(self, today: str) -> None:
        """Close the file of a day that is over, even if no frame came since midnight."""
        if self._writer is not None and self._day < today:
            self.close()

    def close(self) -> None:
        writer, row = self._writer, self._row
        self._writer = self._row = None
        if writer is not None:
            writer.close()
            if row is not None:
                self.index.update(row, writer.end, writer.frames, writer.bytes, closed=True)
