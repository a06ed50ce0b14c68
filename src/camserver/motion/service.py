"""Keeps motion detection in step with the streams' configuration, turns the worker's
analyses into events (stored, with a snapshot at the peak), marks them for the recorder
(mode ``events``: a clip with pre- and post-roll) and tells the sinks: Socket.IO, webhooks,
MQTT. Runs on the event loop; the database and files are written in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from camserver.config import Settings, recordings_root
from camserver.errors import MotionError, StreamNotFound
from camserver.motion.analysis import Analysis
from camserver.motion.events import EventStore, MotionEvent, SQLiteEvents
from camserver.motion.worker import MotionWorker
from camserver.streaming.hub import HubFrame
from camserver.streaming.registry import StreamRegistry

__all__ = ["EventRecorder", "MotionService", "MotionSink", "MotionState", "start_motion"]

log = logging.getLogger(__name__)

MotionState = Literal["start", "end"]
RETENTION_EVERY = 3600.0
UNFINISHED_EVERY = 30.0


class MotionSink(Protocol):
    """Hears of every event's start and end; must not block (queue the work)."""

    def motion(self, event: MotionEvent, state: MotionState) -> None: ...


class _Live:
    """An event going on."""

    def __init__(self, start: float, area: float, frame: HubFrame) -> None:
        self.start = start
        self.peak = area
        self.peak_frame = frame
        self.id: int | None = None
        self.snapshot: str | None = None
        self.begun: asyncio.Task[None] | None = None


class EventRecorder(Protocol):
    """What motion needs of recording (``RecordingService`` offers it): a clip that goes
    on while motion does."""

    def extend_event(self, name: str, start: float, end: float) -> bool: ...


class MotionService:
    def __init__(
        self,
        manager: StreamRegistry,
        store: EventStore,
        root: Path,
        recording: EventRecorder,
        holds: Callable[[str], bool] | None = None,
    ) -> None:
        self.manager = manager
        self.store = store
        self.root = root
        self.recording = recording
        self.holds = holds or (lambda name: True)
        """Cluster mode: whether this node pulls the camera (only that node analyses it)."""
        self.sinks: list[MotionSink] = []
        self.events_started = 0
        self.worker = MotionWorker(asyncio.get_running_loop(), self._on_analysis)
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def active(self, name: str) -> bool:
        """An event of ``name`` is going on."""
        return name in self._live

    def sync(self, name: str) -> None:
        """Analyse ``name`` or not, as its configuration (and the camera's lease) says."""
        try:
            cfg = self.manager.config(name)
            hub = self.manager.hub(name)
        except StreamNotFound:
            self.worker.unwatch(name)
            return
        if cfg.motion.enabled and self.holds(name):
            if not self.worker.watching(name):
                log.info("stream %s: motion detection on (%.1f fps)", name, cfg.motion.fps)
            self.worker.watch(hub, cfg.motion)
        else:
            self.worker.unwatch(name)

    # -- analyses (event loop) -------------------------------------------------------------

    def _on_analysis(self, name: str, a: Analysis, frame: HubFrame | None) -> None:
        live = self._live.get(name)
        if a.started and frame is not None:
            live = _Live(a.ts, a.area, frame)
            self._live[name] = live
            self.events_started += 1
            live.begun = self._spawn(self._begin(name, live))
        elif live is not None and frame is not None and a.area > live.peak:
            live.peak, live.peak_frame = a.area, frame
        if a.moving and live is not None:
            # Mode 'events': the clip goes on until POST_ROLL after the last motion.
            self.recording.extend_event(name, a.ts, a.ts)
        if a.ended and live is not None:
            del self._live[name]
            self._spawn(self._finish(name, live, a.ts))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _begin(self, name: str, live: _Live) -> None:
        try:
            live.id = await asyncio.to_thread(self.store.add, name, live.start, live.peak)
        except MotionError as exc:
            log.error("motion %s: %s", name, exc)
            return
        if await self._save(name, live, None):
            log.info("motion %s: event %d started (%.1f %% changed)", name, live.id, live.peak)
            event = MotionEvent(live.id, name, live.start, None, live.peak, live.snapshot)
            self._tell(event, "start")

    async def _finish(self, name: str, live: _Live, end: float) -> None:
        if live.begun is not None:
            await live.begun
        if live.id is None:
            return
        if await self._save(name, live, end):
            log.info("motion %s: event %d ended (peak %.1f %%)", name, live.id, live.peak)
            event = MotionEvent(live.id, name, live.start, end, live.peak, live.snapshot)
            self._tell(event, "end")

    async def _save(self, name: str, live: _Live, end: float | None) -> bool:
        """Write the snapshot at the peak so far and the event's row; False (logged) if
        either fails."""
        assert live.id is not None
        try:
            live.snapshot = await asyncio.to_thread(self._snapshot, name, live.id, live.peak_frame)
            await asyncio.to_thread(
                self.store.update, live.id, end=end, peak_area=live.peak, snapshot=live.snapshot
            )
        except MotionError as exc:
            log.error("motion %s: %s", name, exc)
            return False
        return True

    def _snapshot(self, name: str, eid: int, frame: HubFrame) -> str:
        """Write the event's snapshot (worker thread); its path, relative to the root."""
        day = datetime.fromtimestamp(frame.ts, UTC).strftime("%Y-%m-%d")
        rel = Path(name) / "events" / day / f"{eid}.jpg"
        path = self.root / rel
        tmp = path.with_name(path.name + ".part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(frame.data)
            tmp.replace(path)
        except OSError as exc:
            raise MotionError(f"cannot write the snapshot {rel}: {exc}") from exc
        return rel.as_posix()

    def _tell(self, event: MotionEvent, state: MotionState) -> None:
        for sink in self.sinks:
            try:
                sink.motion(event, state)
            except Exception:  # one broken output must not stop the others
                log.exception("motion %s: a sink failed", event.stream)

    # -- housekeeping ------------------------------------------------------------------------

    def delete(self, event: MotionEvent) -> None:
        """Delete an event and its snapshot (worker thread)."""
        if event.snapshot:
            with contextlib.suppress(OSError):
                (self.root / event.snapshot).unlink(missing_ok=True)
        self.store.delete(event.id)

    async def retain(self, days: float) -> None:
        """Delete events that ended more than ``days`` ago, every hour; close those of a
        cluster node that died in their middle, every half minute."""
        last: float | None = None
        while True:
            await close_unfinished(self.store, own=False)
            if last is not None and time.monotonic() - last < RETENTION_EVERY:
                await asyncio.sleep(UNFINISHED_EVERY)
                continue
            last = time.monotonic()
            try:
                before = time.time() - days * 86400
                old = await asyncio.to_thread(self.store.older_than, before, 500)
                for event in old:
                    await asyncio.to_thread(self.delete, event)
                if old:
                    log.info("motion: deleted %d events older than %g days", len(old), days)
            except MotionError as exc:
                log.warning("motion retention: %s", exc)

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.close)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)


async def start_motion(
    stack: AsyncExitStack,
    manager: StreamRegistry,
    settings: Settings,
    recording: EventRecorder,
    store: EventStore | None = None,
    holds: Callable[[str], bool] | None = None,
) -> MotionService:
    """Open the events (the node's SQLite unless given), close those a stop left open,
    start the worker and follow the streams until ``stack`` closes."""
    if store is None:
        store = SQLiteEvents(settings.db)
    stack.callback(store.close)
    await close_unfinished(store, own=True)
    service = MotionService(manager, store, recordings_root(settings), recording, holds)
    stack.push_async_callback(service.close)
    manager.add_config_listener(service.sync)
    for name in manager.names():
        service.sync(name)
    retention = asyncio.get_running_loop().create_task(
        service.retain(settings.motion_event_retention_days)
    )
    stack.callback(retention.cancel)
    return service


async def close_unfinished(store: EventStore, *, own: bool) -> None:
    """Close the open events nobody will close (see ``EventStore.unfinished``): their end
    is unknown, so they end where they started."""
    try:
        for event in await asyncio.to_thread(store.unfinished, own=own):
            await asyncio.to_thread(
                store.update,
                event.id,
                end=event.start,
                peak_area=event.peak_area,
                snapshot=event.snapshot,
            )
            log.info("motion %s: event %d closed (its node stopped)", event.stream, event.id)
    except MotionError as exc:
        log.error("motion: %s", exc)
