"""Keeps the recorder in step with the streams' configuration: a stream whose recording
mode is ``continuous`` or ``events`` is followed by the recorder while it exists."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from pathlib import Path

from camserver.config import Settings, recordings_root
from camserver.errors import RecordingError, StreamNotFound
from camserver.recording.index import RecordingIndex
from camserver.recording.recorder import Recorder
from camserver.recording.repair import repair_segment
from camserver.recording.timelapse import DayRenderer
from camserver.streaming.manager import StreamManager

__all__ = ["RecordingService", "repair_unfinished", "start_recording"]

log = logging.getLogger(__name__)


class RecordingService:
    def __init__(
        self,
        manager: StreamManager,
        recorder: Recorder,
        index: RecordingIndex,
        days: DayRenderer,
    ) -> None:
        self.manager = manager
        self.recorder = recorder
        self.index = index
        self.days = days

    @property
    def root(self) -> Path:
        return self.recorder.root

    def sync(self, name: str) -> None:
        """Record ``name`` or not, as its configuration says."""
        try:
            cfg = self.manager.config(name)
            hub = self.manager.hub(name)
        except StreamNotFound:
            return  # deleted: its hub closed, and the tap with it
        self.recorder.limits[name] = cfg.recording  # (kept after a delete: old files age out)
        mode = cfg.recording.mode
        interval = cfg.recording.timelapse_interval or 0.0
        if mode != "off" or interval:
            if not self.recorder.recording(name):
                log.info("stream %s: recording, %s (%s)", name, mode, self.root / name)
            self.recorder.attach(hub, mode, interval)
        else:
            self.recorder.detach(hub)

    def _changed(self, name: str, what: str) -> None:
        if what != "deleted":
            self.sync(name)


async def start_recording(
    stack: AsyncExitStack, manager: StreamManager, settings: Settings
) -> RecordingService:
    """Open the index, repair what a crash left open, start the worker and follow the
    streams until ``stack`` closes."""
    index = RecordingIndex(settings.db)
    stack.callback(index.close)
    root = recordings_root(settings)
    await asyncio.to_thread(repair_unfinished, index, root)
    days = DayRenderer(root, index)
    stack.callback(days.close)
    recorder = Recorder(
        root,
        index,
        settings.recording_segment_seconds,
        min_free_bytes=settings.recording_min_free_mb * 1024 * 1024,
        retention_every=settings.recording_retention_seconds,
        on_new_day=days.scan,
    )
    stack.callback(recorder.close)
    service = RecordingService(manager, recorder, index, days)
    manager.add_change_listener(service._changed)
    for name in manager.names():
        service.sync(name)
    return service


def repair_unfinished(index: RecordingIndex, root: Path) -> None:
    """Segments a crash left open: remuxed and completed in the index, or forgotten when
    nothing in them can be read."""
    for r in index.unfinished():
        path = root / r.path
        try:
            fixed = repair_segment(path)
        except RecordingError as exc:
            log.warning("recording %s: %s; forgetting %s", r.stream, exc, r.path)
            with contextlib.suppress(OSError):
                path.unlink()
            index.delete(r.id)
            continue
        index.update(r.id, r.start + fixed.duration, fixed.frames, fixed.bytes, closed=True)
        log.info(
            "recording %s: repaired %s after an unclean stop (%d frames)",
            r.stream,
            r.path,
            fixed.frames,
        )
