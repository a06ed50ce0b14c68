"""One thread analyses every watched camera's frames for motion.

On the event loop a hub listener only keeps the newest frame due for analysis (``fps`` per
camera) and wakes the thread; the thread decodes (libjpeg-turbo releases the GIL) and runs
the detector, and hands each analysis back to the loop. If the thread falls behind, a
camera's waiting frame is replaced by a newer one: analysis skips frames, counted in
``skipped``; recording and live viewers never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from camserver.errors import BadFrame
from camserver.motion.analysis import Analysis
from camserver.schema import MotionSettings
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["MotionCounters", "MotionWorker"]

log = logging.getLogger(__name__)

POLL = 0.1
"""The thread looks for frames due this often. Waking it at every frame put a thread
switch in the middle of the loop's fan-out each time: the live viewers' latency doubled
(bench/recording.py, mode motion)."""

OnAnalysis = Callable[[str, Analysis, HubFrame | None], None]
"""(stream, analysis, the frame analysed; None when an event ended with no frame)."""


@dataclass(slots=True)
class MotionCounters:
    analysed: int = 0
    skipped: int = 0
    """Frames due for analysis that a newer one replaced (the thread was behind)."""
    bad: int = 0
    """Frames the decoder could not read."""


class _Watched:
    def __init__(self, hub: FrameHub, settings: MotionSettings) -> None:
        # numpy, simplejpeg and Pillow (~25 MB) load with the first camera that detects
        # motion, not at start.
        from camserver.motion.detector import MotionDetector

        self.hub = hub
        self.detector = MotionDetector(settings)
        self.pending: HubFrame | None = None
        self.next_due = 0.0
        self.last_frame = time.time()
        self.stop: Callable[[], None] = lambda: None
        self.gone = False


class MotionWorker:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_analysis: OnAnalysis) -> None:
        self._loop = loop
        self._on_analysis = on_analysis
        self.counters = MotionCounters()
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="motion", daemon=True)
        self._thread.start()

    # -- event loop ------------------------------------------------------------------------

    def watching(self, name: str) -> bool:
        with self._lock:
            return name in self._watched

    def watch(self, hub: FrameHub, settings: MotionSettings) -> None:
        """Analyse ``hub``'s frames with ``settings`` (new settings apply at once)."""
        with self._lock:
            w = self._watched.get(hub.name)
            if w is not None and w.hub is hub:
                w.detector.settings = settings
                return
        if w is not None:
            self.unwatch(hub.name)
        w = _Watched(hub, settings)

        def listener(frame: HubFrame | None) -> None:
            if frame is None:  # the stream was deleted
                self.unwatch(hub.name)
                return
            if frame.ts < w.next_due:
                return
            interval = 1.0 / w.detector.settings.fps
            # On schedule, but never a burst to catch up after a pause.
            w.next_due = max(w.next_due + interval, frame.ts + interval / 2)
            if w.pending is not None:
                self.counters.skipped += 1
            w.pending = frame  # (no wake-up: the thread looks every POLL seconds)

        w.stop = hub.listen(listener)
        with self._lock:
            self._watched[hub.name] = w
        self._wake.set()
        # A watched camera has a viewer: an on-demand camera stays connected.
        hub.demand.need("motion")

    def unwatch(self, name: str) -> None:
        with self._lock:
            w = self._watched.pop(name, None)
        if w is not None:
            w.stop()
            w.gone = True
            if not w.hub.closed:
                w.hub.demand.need("motion", False)
            if w.detector.active:  # an event going on ends now
                w.detector.active = False
                self._loop.call_soon(
                    self._on_analysis, name, Analysis(time.time(), 0.0, False, ended=True), None
                )

    def close(self, timeout: float = 5.0) -> None:
        for name in list(self._watched):
            self.unwatch(name)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # -- worker thread -----------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping:
            # Nothing watched: sleep until watch() wakes it (a wake-up ten times a second
            # was a third of an idle server's CPU).
            self._wake.wait(POLL if self._watched else None)
            self._wake.clear()
            with self._lock:
                watched = list(self._watched.items())
            now = time.time()
            for name, w in watched:
                frame, w.pending = w.pending, None
                try:
                    self._analyse(name, w, frame, now)
                except Exception:  # one camera's bug must not stop the others
                    log.exception("motion %s: analysis failed", name)

    def _analyse(self, name: str, w: _Watched, frame: HubFrame | None, now: float) -> None:
        if frame is None:
            # No frame lately (the camera stopped): an event still ends on time.
            if now - w.last_frame > 1.0 and (a := w.detector.idle(now)) is not None:
                self._post(name, w, a, None)
            return
        w.last_frame = now
        from camserver.motion.detector import decode_gray

        try:
            gray = decode_gray(frame.data)
        except BadFrame as exc:
            self.counters.bad += 1
            log.debug("motion %s: %s", name, exc)
            return
        a = w.detector.feed(gray, frame.ts)
        self.counters.analysed += 1
        # Only what changes an event crosses to the loop (a wake-up each).
        if a.started or a.ended or (w.detector.active and a.moving):
            self._post(name, w, a, frame)

    def _post(self, name: str, w: _Watched, a: Analysis, frame: HubFrame | None) -> None:
        if w.gone:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: shutting down
            self._loop.call_soon_threadsafe(self._on_analysis, name, a, frame)
