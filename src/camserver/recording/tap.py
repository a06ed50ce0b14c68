"""A stream's frames for the recorder: every frame, in order, never blocking the camera.

The hub keeps only the latest frame (a slow viewer skips frames by design); a recorder
must not skip. A :class:`Tap` listens to the hub and appends each published frame (the
same immutable object, no copy) to a bounded queue that the recorder's worker thread
drains. When the worker falls behind (a slow or full disk) the queue stops growing and the
frames that do not fit are dropped and counted, for the recorder alone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["Tap"]


class Tap:
    """Append-only from the event loop, drained from one worker thread (``deque`` appends
    and pops are atomic in CPython)."""

    def __init__(self, hub: FrameHub, wake: threading.Event, capacity: int = 300) -> None:
        self.name = hub.name
        self.capacity = capacity
        self.frames: deque[HubFrame] = deque()
        self.dropped = 0
        self.closed = False
        self._wake = wake
        self._stop: Callable[[], None] | None = hub.listen(self._on_frame)

    def _on_frame(self, frame: HubFrame | None) -> None:
        if frame is None:
            self.closed = True
        elif len(self.frames) >= self.capacity:
            self.dropped += 1
            return
        else:
            self.frames.append(frame)
            return  # the worker drains every BATCH_SECONDS: no thread switch per frame
        self._wake.set()

    def drain(self) -> list[HubFrame]:
        """Everything queued so far (worker thread)."""
        out = []
        frames = self.frames
        while frames:
            out.append(frames.popleft())
        return out

    def close(self) -> None:
        """Stop listening (event loop); frames already queued can still be drained."""
        if self._stop is not None:
            self._stop()
            self._stop = None
        self.closed = True
        self._wake.set()
