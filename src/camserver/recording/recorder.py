"""The recorder: one worker thread writes every recording camera's frames to disk.

The event loop only attaches a :class:`~camserver.recording.tap.Tap` to a hub (``publish``
appends the frame object, nothing more); the thread drains the taps, writes segments of
about ``segment_seconds`` under ``<root>/<stream>/<YYYY-MM-DD>/`` (UTC days) and keeps the
index up to date. A disk that fails costs recorded frames only: the error is logged (at
most once a minute per stream), counted, and the segment is abandoned; the recorder tries
a new one a few seconds later. Live viewers never wait for the disk.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from camserver.codecs import jpeg
from camserver.errors import RecordingError
from camserver.recording.clip_cache import CLIP_CACHE_SECONDS, cached_clips, drop_clip
from camserver.recording.index import Recording, RecordingIndex, RecordingKind
from camserver.recording.repair import repair_unfinished
from camserver.recording.tap import Tap
from camserver.recording.timelapse import Timelapse, day_of, timelapse_mp4
from camserver.recording.writer import SegmentWriter
from camserver.schema import RecordingMode, RecordingSettings
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["Recorder", "RecorderCounters"]

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.25
"""The worker drains the taps this often (a wake-up per frame cost a thread switch each)."""
IDLE_SECONDS = 5.0
"""With nothing recorded the worker wakes this often (for retention and the new day): four
wake-ups a second were a fifth of an idle server's CPU."""
INDEX_EVERY = 1.0
"""The open segment's row is brought up to date at most this often."""
RETRY_AFTER = 5.0
"""Seconds before a new segment is tried after a write error."""
_LOG_EVERY = 60.0
PRE_ROLL = 5.0
"""Seconds of frames before a marked event that its clip starts with."""
POST_ROLL = 5.0
"""Seconds after a marked event ends that its clip goes on."""


@dataclass(slots=True)
class RecorderCounters:
    frames: int = 0
    bytes: int = 0
    segments: int = 0
    write_errors: int = 0
    dropped_on_error: int = 0
    """Frames not written because the disk failed."""
    timelapse_frames: int = 0
    dropped_queue_full: int = 0
    """Frames the taps of streams no longer recorded could not queue."""
    deleted_files: int = 0
    deleted_bytes: int = 0
    """Removed by retention (age, size, free disk)."""
    retention_runs: int = 0
    clips_deleted: int = 0
    clip_bytes_deleted: int = 0
    """Removed from the clip cache (age, its cap, free disk)."""


class _Active:
    """A recording stream, as the worker thread sees it."""

    def __init__(self, tap: Tap, mode: RecordingMode, timelapse: Timelapse) -> None:
        self.tap = tap
        self.mode = mode
        self.timelapse = timelapse
        self.ring: deque[HubFrame] = deque()
        """Mode 'events': the last PRE_ROLL seconds of frames, for the next clip."""
        self.event_until = 0.0
        """Mode 'events': record until this time (epoch seconds), post-roll included."""
        self.writer: SegmentWriter | None = None
        self.row: int | None = None
        self.day = ""
        self.retry_at = 0.0
        self.logged_at = -_LOG_EVERY
        self.indexed_at = 0.0


class Recorder:
    def __init__(
        self,
        root: Path,
        index: RecordingIndex,
        segment_seconds: float = 60.0,
        *,
        min_free_bytes: int = 0,
        clip_cache_bytes: int = 512 * 1024 * 1024,
        retention_every: float = 30.0,
        on_new_day: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.index = index
        self.segment_seconds = segment_seconds
        self.min_free_bytes = min_free_bytes
        self.clip_cache_bytes = clip_cache_bytes
        self.retention_every = retention_every
        self.limits: dict[str, RecordingSettings] = {}
        """Each stream's retention limits (set from the event loop, read by the worker)."""
        self.counters = RecorderCounters()
        self.on_new_day = on_new_day
        """Called from the worker with the UTC day (``2026-11-25``) when it starts, and
        at every midnight after the day's timelapse files are closed."""
        self._today = ""
        self._next_retention = 0.0
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="recorder", daemon=True)
        self._thread.start()

    # -- event loop ------------------------------------------------------------------

    def recording(self, name: str) -> bool:
        with self._lock:
            active = self._active.get(name)
        return active is not None and not active.tap.closed

    def attach(
        self, hub: FrameHub, mode: RecordingMode = "continuous", timelapse_interval: float = 0.0
    ) -> None:
        """Record ``hub`` from now on: every frame (``continuous``), or clips around the
        events marked with :meth:`mark_event` (``events``), or neither (``off``); and one
        frame every ``timelapse_interval`` seconds (0: no timelapse)."""
        with self._lock:
            active = self._active.get(hub.name)
            if active is not None and not active.tap.closed:
                active.mode = mode  # (the worker finishes an open clip or segment itself)
                active.timelapse.interval = timelapse_interval
                return
        tap = Tap(hub, self._wake)
        timelapse = Timelapse(self.root, self.index, hub.name)
        timelapse.interval = timelapse_interval
        with self._lock:
            self._active[hub.name] = _Active(tap, mode, timelapse)
        self._wake.set()
        # A recording camera is watched: an on-demand camera stays connected.
        hub.demand.need("recording")

    def detach(self, hub: FrameHub) -> None:
        """Stop recording ``hub``; what is queued is still written, then the segment ends."""
        with self._lock:
            active = self._active.get(hub.name)
        if active is not None:
            active.tap.close()
            hub.demand.need("recording", False)

    def mark_event(self, name: str, start: float, end: float) -> bool:
        """Mode ``events``: keep ``name``'s frames from ``start`` - PRE_ROLL to ``end`` +
        POST_ROLL (epoch seconds). False if ``name`` is not recorded in that mode."""
        with self._lock:
            active = self._active.get(name)
        if active is None or active.tap.closed or active.mode != "events":
            return False
        active.event_until = max(active.event_until, end + POST_ROLL)
        self._wake.set()
        return True

    @property
    def dropped(self) -> int:
        """Frames the taps could not queue (the worker was behind)."""
        with self._lock:
            live = sum(a.tap.dropped for a in self._active.values())
        return self.counters.dropped_queue_full + live

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, finish every segment, stop the thread."""
        with self._lock:
            for active in self._active.values():
                active.tap.close()
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # -- worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            idle = min(IDLE_SECONDS, self._next_retention - time.monotonic())
            self._wake.wait(BATCH_SECONDS if self._active else max(BATCH_SECONDS, idle))
            self._wake.clear()
            with self._lock:
                actives = list(self._active.items())
            for name, active in actives:
                try:
                    self._serve(name, active)
                except Exception:  # a bug must not stop every camera's recording
                    log.exception("recording %s: unexpected error", name)
                if active.tap.closed and not active.tap.frames:
                    self._finish(name, active)
                    with self._lock:
                        if self._active.get(name) is active:
                            del self._active[name]
                            self.counters.dropped_queue_full += active.tap.dropped
            if self._stopping:
                with self._lock:
                    if not self._active:
                        return
            today = day_of(time.time())
            if today != self._today:
                self._today = today
                self._new_day(today, [a for _, a in actives])
            if time.monotonic() >= self._next_retention:
                self._next_retention = time.monotonic() + self.retention_every
                try:
                    self._retention()
                except RecordingError as exc:  # (the cluster's Redis away): next time
                    log.warning("recording retention: %s", exc)
                except Exception:
                    log.exception("recording retention failed")

    def _new_day(self, today: str, actives: list[_Active]) -> None:
        for active in actives:
            try:
                active.timelapse.end_day(today)
            except RecordingError as exc:
                self.counters.write_errors += 1
                log.error("timelapse %s: %s", active.timelapse.stream, exc)
        if self.on_new_day is not None:
            try:
                self.on_new_day(today)
            except Exception:
                log.exception("recording: the new day's work failed")

    # -- retention (worker thread) ---------------------------------------------------------

    def _retention(self) -> None:
        """Oldest closed recordings first, found through the index (never by scanning
        folders): per stream past ``max_age_hours`` or above ``max_bytes``, then anything
        while the disk has less than ``min_free_bytes`` free."""
        self.counters.retention_runs += 1
        # Cluster mode: the open segments of a node that died (one node: none).
        repair_unfinished(self.index, self.root, own=False)
        now = time.time()
        for name, limits in list(self.limits.items()):
            if limits.max_age_hours is not None:
                for r in self.index.closed_before(name, now - limits.max_age_hours * 3600):
                    self._delete(r, "older than max_age_hours")
            if limits.max_bytes is not None:
                total = self.index.total_bytes(name)
                while total > limits.max_bytes:
                    oldest = self.index.oldest_closed(name, limit=20)
                    if not oldest:
                        break
                    for r in oldest:
                        if total <= limits.max_bytes:
                            break
                        self._delete(r, "above max_bytes")
                        total -= r.bytes + r.derived
        # Clips (clip.mp4, today's timelapse so far) are a cache: an hour after they were
        # made they go, and the oldest go first beyond clip_cache_bytes.
        clips = cached_clips(self.root)
        cached = sum(size for _, size, _ in clips)
        kept: list[tuple[Path, int]] = []
        for path, size, mtime in clips:
            if now - mtime > CLIP_CACHE_SECONDS:
                why = "an hour old"
            elif cached > self.clip_cache_bytes:
                why = "above recording_clip_cache_mb"
            else:
                kept.append((path, size))
                continue
            if self._drop_clip(path, size, why):
                cached -= size
        # (Cluster mode: one node at a time over the shared folder's disk.)
        if (
            self.min_free_bytes
            and self.root.is_dir()
            and shutil.disk_usage(self.root).free < self.min_free_bytes
            and self.index.claim("free-disk", self.retention_every)
        ):
            # The cache goes before any recording does.
            for path, size in kept:  # (oldest first, as listed)
                if shutil.disk_usage(self.root).free >= self.min_free_bytes:
                    break
                self._drop_clip(path, size, "the disk is short of free space")
            while shutil.disk_usage(self.root).free < self.min_free_bytes:
                oldest = self.index.oldest_closed(limit=1)
                if not oldest:
                    break
                self._delete(oldest[0], "the disk is short of free space")

    def _drop_clip(self, path: Path, size: int, why: str) -> bool:
        if not drop_clip(path):
            return False
        self.counters.clips_deleted += 1
        self.counters.clip_bytes_deleted += size
        log.info("recording: deleted the cached clip %s (%s)", path.name, why)
        return True

    def delete(self, r: Recording) -> None:
        """Delete a closed recording on request (any thread): its file, what was made
        from it, and its row. Raises RecordingError."""
        self._remove(r)
        log.info("recording %s: deleted %s on request", r.stream, r.path)

    def _remove(self, r: Recording) -> None:
        try:
            (self.root / r.path).unlink(missing_ok=True)
            if r.kind == "timelapse":  # the day's MP4 goes with it (counted as ``derived``)
                day = Path(r.path).parent.name
                (self.root / timelapse_mp4(r.stream, day)).unlink(missing_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot delete {r.path}: {exc}") from exc
        self.index.delete(r.id)

    def _delete(self, r: Recording, why: str) -> None:
        self._remove(r)
        self.counters.deleted_files += 1
        self.counters.deleted_bytes += r.bytes + r.derived
        log.info("recording %s: deleted %s (%s)", r.stream, r.path, why)

    def _serve(self, name: str, active: _Active) -> None:
        for frame in active.tap.drain():
            now = time.monotonic()
            if active.timelapse.interval:
                try:
                    if active.timelapse.offer(frame):
                        self.counters.timelapse_frames += 1
                except RecordingError as exc:
                    self.counters.write_errors += 1
                    if now - active.logged_at >= _LOG_EVERY:
                        active.logged_at = now
                        log.error("timelapse %s: %s", name, exc)
                    with contextlib.suppress(RecordingError):
                        active.timelapse.close()
            if active.mode == "off":
                if active.writer is not None:
                    self._finish(name, active)  # recording turned off, timelapse goes on
                continue
            if active.mode == "events":
                ring = active.ring
                ring.append(frame)
                while ring and ring[0].ts < frame.ts - PRE_ROLL:
                    ring.popleft()
                if frame.ts > active.event_until:
                    if active.writer is not None:
                        self._finish(name, active)  # the event and its post-roll are over
                    continue
                batch = list(ring)  # the pre-roll, then this frame
                ring.clear()
            else:
                batch = [frame]
            if active.writer is None and now < active.retry_at:
                self.counters.dropped_on_error += len(batch)
                continue
            try:
                for f in batch:
                    self._write(name, active, f)
            except RecordingError as exc:
                self.counters.write_errors += 1
                self.counters.dropped_on_error += 1
                if now - active.logged_at >= _LOG_EVERY:
                    active.logged_at = now
                    log.error("recording %s: %s (live viewers are not affected)", name, exc)
                self._abandon(active)
                active.retry_at = now + RETRY_AFTER
        now = time.monotonic()
        w = active.writer
        if w is not None and active.row is not None and now - active.indexed_at >= INDEX_EVERY:
            active.indexed_at = now
            try:
                self.index.update(active.row, w.end, w.frames, w.bytes, closed=False)
            except RecordingError as exc:  # (the cluster's Redis away): the file goes on
                if now - active.logged_at >= _LOG_EVERY:
                    active.logged_at = now
                    log.error("recording %s: %s", name, exc)

    def _write(self, name: str, active: _Active, frame: HubFrame) -> None:
        day = datetime.fromtimestamp(frame.ts, UTC).strftime("%Y-%m-%d")
        writer = active.writer
        size = jpeg.dimensions(frame.data)
        if writer is not None and (
            frame.ts - writer.start >= self.segment_seconds
            or day != active.day
            or (size is not None and size != writer.size)
        ):
            self._finish(name, active)
            writer = None
        if writer is None:
            if size is None:
                return  # not a JPEG with a frame header: nothing a player could show
            stamp = datetime.fromtimestamp(frame.ts, UTC).strftime("%H%M%S-%f")[:-3]
            kind: RecordingKind = "event" if active.mode == "events" else "continuous"
            rel = Path(name) / day / f"{stamp}-{kind[0]}.mkv"
            writer = SegmentWriter(self.root / rel, frame.ts, size)
            active.writer, active.day = writer, day
            active.row = self.index.begin(name, kind, rel.as_posix(), frame.ts)
            self.counters.segments += 1
        writer.write(frame.data, frame.ts)
        self.counters.frames += 1
        self.counters.bytes += len(frame.data)

    def _finish(self, name: str, active: _Active) -> None:
        if active.tap.closed:
            try:
                active.timelapse.close()
            except RecordingError as exc:
                self.counters.write_errors += 1
                log.error("timelapse %s: %s", name, exc)
        writer, row = active.writer, active.row
        active.writer = active.row = None
        if writer is None or row is None:
            return
        try:
            writer.close()
            self.index.update(row, writer.end, writer.frames, writer.bytes, closed=True)
        except RecordingError as exc:
            self.counters.write_errors += 1
            log.error("recording %s: %s", name, exc)

    def _abandon(self, active: _Active) -> None:
        writer, row = active.writer, active.row
        active.writer = active.row = None
        if writer is not None:
            # The disk already said no: keep in the index what was written, if it can.
            with contextlib.suppress(RecordingError):
                writer.close()
            if row is not None:
                with contextlib.suppress(RecordingError):
                    self.index.update(row, writer.end, writer.frames, writer.bytes, closed=True)
