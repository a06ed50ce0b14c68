"""Keeps the recorder in step with the streams' configuration: a stream whose recording
mode is ``continuous`` or ``events`` (or that keeps a timelapse) is followed by the
recorder while it exists and, in cluster mode, while this node holds its camera."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from camserver.config import Settings, recordings_root
from camserver.errors import RecordingError, StreamNotFound
from camserver.recording.index import RecordingIndex, SQLiteIndex
from camserver.recording.recorder import Recorder
from camserver.recording.repair import repair_unfinished
from camserver.recording.timelapse import DayRenderer
from camserver.streaming.registry import StreamRegistry

__all__ = ["RecordingService", "start_recording"]

log = logging.getLogger(__name__)

EventRelay = Callable[[str, float, float], Awaitable[None]]


class RecordingService:
    def __init__(
        self,
        manager: StreamRegistry,
        recorder: Recorder,
        index: RecordingIndex,
        days: DayRenderer,
        holds: Callable[[str], bool] | None = None,
    ) -> None:
        self.manager = manager
        self.recorder = recorder
        self.index = index
        self.days = days
        self.holds = holds or (lambda name: True)
        """Cluster mode: whether this node pulls the camera (only that node records it)."""
        self.relay_event: EventRelay | None = None
        """Cluster mode: passes an event mark to the node that records the camera."""

    @property
    def root(self) -> Path:
        return self.recorder.root

    def sync(self, name: str) -> None:
        """Record ``name`` or not, as its configuration (and the camera's lease) says."""
        try:
            cfg = self.manager.config(name)
            hub = self.manager.hub(name)
        except StreamNotFound:
            return  # deleted: its hub closed, and the tap with it
        if not self.holds(name):
            # Another node records it, and keeps it within its limits.
            self.recorder.limits.pop(name, None)
            self.recorder.detach(hub)
            return
        self.recorder.limits[name] = cfg.recording  # (kept after a delete: old files age out)
        if cfg.recording.active:
            if not self.recorder.recording(name):
                log.info("stream %s: recording, %s (%s)", name, cfg.recording.mode, self.root)
            self.recorder.attach(hub, cfg.recording.mode, cfg.recording.timelapse_interval or 0)
        else:
            self.recorder.detach(hub)

    def extend_event(self, name: str, start: float, end: float) -> bool:
        """Motion goes on (``camserver.motion``'s :class:`EventRecorder`): in mode ``events``
        the clip of ``name`` covers ``start``..``end`` plus the rolls, if this node records
        it. False if it does not."""
        return self.recorder.mark_event(name, start, end)

    async def mark_event(self, name: str, start: float, end: float) -> bool:
        """Mode ``events``: record ``name`` from ``start`` to ``end`` (pre- and post-roll
        added); here, or on the node that records it. False if nobody records it so."""
        if self.recorder.mark_event(name, start, end):
            return True
        if self.relay_event is not None and not self.holds(name):
            await self.relay_event(name, start, end)
            return True
        return False


def _keep_private(root: Path) -> None:
    """The recordings folder is readable by its owner only (0700), made so if it is ours
    (older releases left it 0755): no one else on the machine sees the video."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            root.chmod(0o700)
    except OSError as exc:
        log.warning("recording: cannot make %s private: %s", root, exc)


async def start_recording(
    stack: AsyncExitStack,
    manager: StreamRegistry,
    settings: Settings,
    index: RecordingIndex | None = None,
    holds: Callable[[str], bool] | None = None,
) -> RecordingService:
    """Open the index (the node's SQLite unless given), repair what a crash left open,
    start the workers and follow the streams until ``stack`` closes."""
    if index is None:
        index = SQLiteIndex(settings.db)
    stack.callback(index.close)
    root = recordings_root(settings)
    _keep_private(root)
    try:
        await asyncio.to_thread(repair_unfinished, index, root, own=True)
    except RecordingError as exc:  # (cluster: Redis away) live video comes first
        log.error("recording: cannot repair unfinished segments now: %s", exc)
    days = DayRenderer(root, index)
    stack.callback(days.close)
    recorder = Recorder(
        root,
        index,
        settings.recording_segment_seconds,
        min_free_bytes=settings.recording_min_free_mb * 1024 * 1024,
        clip_cache_bytes=settings.recording_clip_cache_mb * 1024 * 1024,
        retention_every=settings.recording_retention_seconds,
        on_new_day=days.scan,
    )
    stack.callback(recorder.close)
    service = RecordingService(manager, recorder, index, days, holds)
    manager.add_config_listener(service.sync)
    for name in manager.names():
        service.sync(name)
    return service
