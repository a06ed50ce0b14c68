"""Keeps the recorder in step with the streams' configuration: a stream whose recording
mode is ``continuous`` is recorded while it exists; any other mode is not."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

from camserver.errors import StreamNotFound
from camserver.recording.index import RecordingIndex
from camserver.recording.recorder import Recorder
from camserver.streaming.manager import StreamManager

__all__ = ["RecordingService", "start_recording"]

log = logging.getLogger(__name__)


class RecordingService:
    def __init__(self, manager: StreamManager, recorder: Recorder, index: RecordingIndex) -> None:
        self.manager = manager
        self.recorder = recorder
        self.index = index

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
        if cfg.recording.mode == "continuous":
            if not self.recorder.recording(name):
                log.info("stream %s: recording (%s)", name, self.root / name)
            self.recorder.attach(hub)
        else:
            self.recorder.detach(hub)

    def _changed(self, name: str, what: str) -> None:
        if what != "deleted":
            self.sync(name)


async def start_recording(
    stack: AsyncExitStack, manager: StreamManager, db: Path, root: Path, segment_seconds: float
) -> RecordingService:
    """Open the index, start the worker and follow the streams until ``stack`` closes."""
    index = RecordingIndex(db)
    stack.callback(index.close)
    recorder = Recorder(root, index, segment_seconds)
    stack.callback(recorder.close)
    service = RecordingService(manager, recorder, index)
    manager.add_change_listener(service._changed)
    for name in manager.names():
        service.sync(name)
    return service
