"""One supervisor per started stream: runs its source session after session, publishes
each whole frame once to the stream's hub, and shows what is going on.

Reconnects back off exponentially with jitter (``backoff_initial`` doubling up to
``backoff_max``); the delay resets once a session has lasted ``healthy_after`` seconds.
``last_error`` always holds a short sentence a user can act on, ``retry_at`` when the next
attempt comes. A source's bug never ends the stream: it is logged and retried like a
network error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camserver.errors import UpstreamError
from camserver.schema import StreamState, StreamStatus
from camserver.sources.base import Source, SourceTiming
from camserver.sources.sentences import closed_the_stream
from camserver.streaming.hub import FrameHub

__all__ = ["FpsMeter", "SourceCounters", "Supervisor", "backoff_delay"]

log = logging.getLogger(__name__)

STOP_AGAIN = 0.5
"""Seconds a stopped source has to end before it is cancelled again."""


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Delay before reconnect ``attempt`` (0-based): half fixed, half random ("equal jitter")."""
    base = min(cap, initial * 2.0 ** min(attempt, 30))
    return base / 2 + rng.uniform(0, base / 2)


class FpsMeter:
    """Frames per second over the last ``window`` seconds."""

    __slots__ = ("_times", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        limit = now - self.window
        times = self._times
        while times and times[0] < limit:
            times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        times = self._times
        if len(times) < 2:
            return 0.0
        span = max(now, times[-1]) - times[0]
        return round((len(times) - 1) / span, 2) if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()


@dataclass(slots=True)
class SourceCounters:
    """What the supervisor counts as frames arrive: plain slotted fields, cheap to bump on
    the hot path. The API's :class:`StreamStatus` is built from them only when asked for."""

    state: StreamState = StreamState.STOPPED
    frames: int = 0
    bytes: int = 0
    bad_frames: int = 0
    last_frame_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    retry_at: float | None = None
    upstream_connects: int = 0


class Supervisor:
    """Runs one camera's :class:`Source` into one hub. ``start()`` / ``await stop()``;
    ``source`` may be replaced while stopped (a new URL or login)."""

    def __init__(
        self,
        name: str,
        source: Source,
        hub: FrameHub,
        timing: SourceTiming,
        on_state: Callable[[str, StreamStatus], None] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.hub = hub
        self._timing = timing
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self._fps = FpsMeter()
        self._rng = random.Random()
        self.status = SourceCounters()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def snapshot_status(self) -> StreamStatus:
        """A copy of the status with fps, viewers and demand brought up to date."""
        c = self.status
        return StreamStatus(
            state=c.state,
            fps=self._fps.rate(time.monotonic()) if c.state is StreamState.STREAMING else 0.0,
            frames=c.frames,
            bytes=c.bytes,
            bad_frames=c.bad_frames,
            last_frame_at=c.last_frame_at,
            last_error=c.last_error,
            last_error_at=c.last_error_at,
            retry_at=c.retry_at,
            upstream_connects=c.upstream_connects,
            viewers=self.hub.viewers,
            demand=self.hub.demand.reasons(),
            **extra(self.source),
        )

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name=f"source:{self.name}")
        # Connecting from now on, not when the task first runs: the 201 of POST
        # /api/streams (made before that) said "stopped" for a stream that was starting.
        self._set_state(StreamState.CONNECTING, None)

    async def stop(self, state: StreamState = StreamState.STOPPED) -> None:
        """Cancel the task (closing the camera connection) and show ``state``."""
        task, self._task = self._task, None
        if task is not None:
            # Cancelled again until it has ended: a cancel can be lost (Python 3.11's
            # wait_for drops one that lands as its inner call ends, in any library a source
            # uses), and a source that outlives its stop keeps the camera's one connection
            # (in a cluster: after its lease went to another node).
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_AGAIN)
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
        self._set_state(state, None)

    def set_state(self, state: StreamState) -> None:
        """Show ``state`` while not running (e.g. ``idle``)."""
        if not self.running:
            self._set_state(state, None)

    def _set_state(
        self, state: StreamState, error: str | None, retry_in: float | None = None
    ) -> None:
        changed = state is not self.status.state or error != self.status.last_error
        self.status.state = state
        self.status.retry_at = None if retry_in is None else time.time() + retry_in
        if error is not None:  # kept after recovery: "what went wrong last"
            self.status.last_error = error
            self.status.last_error_at = time.time()
        if state is not StreamState.STREAMING:
            self._fps.reset()
        if changed:
            fields = {"stream": self.name, "state": state.value, "reason": error}
            if error:
                log.warning("stream %s: %s (%s)", self.name, state.value, error, extra=fields)
            else:
                log.info("stream %s: %s", self.name, state.value, extra=fields)
            if self._on_state is not None:
                self._on_state(self.name, self.snapshot_status())

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._set_state(StreamState.CONNECTING, None)
            began = time.monotonic()
            try:
                await self.source.run(self)
                error = closed_the_stream
            except UpstreamError as exc:
                error = str(exc)
            except Exception as exc:  # a bug must not end the stream: log it, retry
                log.exception("stream %s: unexpected error", self.name)
                error = f"internal error: {type(exc).__name__}: {exc}"
            if time.monotonic() - began >= self._timing.healthy_after:
                attempt = 0
            delay = backoff_delay(
                attempt, self._timing.backoff_initial, self._timing.backoff_max, self._rng
            )
            attempt += 1
            self._set_state(StreamState.RETRYING, f"{error}; retrying in {delay:.1f} s", delay)
            await asyncio.sleep(delay)

    # -- FrameSink ------------------------------------------------------------------------

    def connected(self) -> None:
        self.status.upstream_connects += 1

    def publish(self, data: bytes, camera_ts: str | None = None) -> None:
        frame = self.hub.publish(data, camera_ts)
        status = self.status
        status.frames += 1
        status.bytes += len(data)
        status.last_frame_at = frame.ts
        self._fps.tick(time.monotonic())
        if status.state is not StreamState.STREAMING:
            self._set_state(StreamState.STREAMING, None)

    def bad_frame(self, reason: str) -> None:
        self.status.bad_frames += 1
        log.debug("stream %s: skipped a part: %s", self.name, reason)

    def show(self, state: StreamState, reason: str | None = None) -> None:
        self._set_state(state, reason)


def extra(source: object) -> dict[str, Any]:
    """Status fields a kind of source adds (a push camera: its address, its telemetry)."""
    describe = getattr(source, "extra_status", None)
    return describe() if describe is not None else {}
