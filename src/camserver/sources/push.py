"""A camera that pushes its pictures to camserver (issue 28; docs/push.md).

The camera connects (a WebSocket, a long multipart POST) or posts one picture at a time;
the API's push routes (``camserver.api.push``) hand what arrives to the stream's
:class:`PushSource`. The source is the stream's :class:`~camserver.sources.base.Source`
like any other: while its supervisor runs it, pictures are published to the hub; while it
does not (an ``on_demand`` camera nobody needs, a cluster node that does not hold the
camera), a connected camera is told to pause.

States: ``waiting`` while no camera is connected (and none posted lately), ``streaming``
while pictures come, and for a camera with ``expect_every``, ``overdue`` once two intervals
pass without a picture. The newest connection wins: an older one for the same camera (a
rebooted camera whose old TCP connection is half-open) is closed with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from camserver.codecs import push
from camserver.schema import PushTelemetry, StreamConfig, StreamState
from camserver.schema.esp32 import CONTROL_RANGES, FRAMESIZE_NAMES
from camserver.sources.base import FrameSink, SourceTiming

__all__ = ["Offer", "PushCounters", "PushSource", "Pusher"]

log = logging.getLogger(__name__)

Offer = Literal["published", "paused", "too_fast"]
"""What became of a pushed picture: on to the viewers, dropped because the stream is not
running here (the camera was told to pause), or dropped over the rate cap."""

TICK = 0.5
"""Seconds between checks of the waiting/overdue state."""


class Pusher(Protocol):
    """One connected camera, as the API route that serves it."""

    address: str
    mode: str
    """``ws``, ``mjpeg`` or ``frame``."""

    def send(self, message: str) -> None:
        """A control message for the camera (nothing for a way in that cannot answer)."""

    def close(self, reason: str) -> None:
        """End the connection, saying why."""


@dataclass(slots=True)
class PushCounters:
    published: int = 0
    paused: int = 0
    too_fast: int = 0
    telemetry: int = 0
    refused_keys: int = 0
    replaced: int = 0
    """Connections closed because a newer one for the same camera arrived."""
    overdue: int = 0


class PushSource:
    """A push camera's source (see the module docstring)."""

    def __init__(
        self,
        name: str,
        expect_every: float | None,
        timing: SourceTiming,
        max_fps: float = 30.0,
    ) -> None:
        self.name = name
        self.expect_every = expect_every
        self._timing = timing
        self.max_fps = max_fps
        self._cap = push.RateCap(max_fps)
        self._poster: str | None = None
        """The address of the last camera that posted a picture."""
        self._posted_at: float | None = None
        self._running = asyncio.Event()
        self.pusher: Pusher | None = None
        self.telemetry: PushTelemetry | None = None
        self.counters = PushCounters()
        self.key_hash: str | None = None
        self.on_pusher: Callable[[PushSource], None] | None = None
        """Called when a camera connects or goes (cluster mode takes the lease for it)."""
        self._sink: FrameSink | None = None
        self._wake = asyncio.Event()
        self._last_frame: float | None = None
        """Monotonic time of the last picture published."""
        self._gone = False
        """The connected camera went away after its last picture."""
        self._shown: StreamState | None = None
        self._pending: dict[str, Any] = {}
        """Settings for a camera that is not connected now (told at its next post)."""
        self.reported: dict[str, Any] = {}
        """The camera's own settings as its telemetry reported them."""

    @classmethod
    def for_config(
        cls, cfg: StreamConfig, client: object, timing: SourceTiming, guard: object
    ) -> PushSource:
        source = cls(cfg.name, cfg.expect_every, timing, timing.push_max_fps)
        source.key_hash = cfg.push_key_hash
        return source

    def reconfigure(self, cfg: StreamConfig) -> None:
        """A changed configuration (a new ``expect_every``, a new key: the camera connected
        with the old one is disconnected at once)."""
        self.expect_every = cfg.expect_every
        if cfg.push_key_hash != self.key_hash:
            self.key_hash = cfg.push_key_hash
            self.close("the push key was changed: connect with the new one")
        self._wake.set()

    @property
    def running(self) -> bool:
        """The stream's supervisor runs this source now: pictures are wanted."""
        return self._sink is not None

    # -- the camera's side (called by the API's push routes) ---------------------------

    def attach(self, pusher: Pusher) -> None:
        """A camera connected; the newest wins."""
        old, self.pusher = self.pusher, pusher
        if old is not None:
            self.counters.replaced += 1
            log.info(
                "stream %s: a newer connection from %s replaces the one from %s",
                self.name,
                pusher.address,
                old.address,
            )
            old.close("a newer connection for this camera took over")
        log.info("stream %s: camera connected from %s (%s)", self.name, pusher.address, pusher.mode)
        pusher.send(push.pause_message(not self.running))
        if self._pending:
            pusher.send(push.set_message(self.take_pending()))
        if self._sink is not None:
            self._sink.connected()
        self._changed()

    def detach(self, pusher: Pusher, why: str = "the camera disconnected") -> None:
        if self.pusher is not pusher:
            return
        self.pusher = None
        self._gone = True
        log.info("stream %s: %s (%s)", self.name, why, pusher.address)
        self._changed()

    def offer(self, data: bytes, now: float | None = None) -> Offer:
        """A whole JPEG from the camera (checked by the caller with
        :func:`camserver.codecs.push.check_frame`)."""
        sink = self._sink
        if sink is None:
            self.counters.paused += 1
            return "paused"
        now = time.monotonic() if now is None else now
        if not self._cap.allow(now):
            self.counters.too_fast += 1
            return "too_fast"
        self._last_frame = now
        self._gone = False
        self._shown = None  # publishing shows "streaming"
        self.counters.published += 1
        sink.publish(data)
        return "published"

    def posted(self, address: str) -> None:
        """A camera posted a picture from ``address`` (one POST, no connection kept)."""
        self._poster = address
        self._posted_at = time.monotonic()

    def present(self) -> bool:
        """The camera is connected here, or last posted here (cluster mode: this node
        holds its lease meanwhile, overdue or not, until another node's connection takes
        it)."""
        return self.pusher is not None or self._posted_at is not None

    async def until_running(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) for the stream's supervisor to run this source."""
        if self._sink is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._running.wait()
        return self._sink is not None

    def bad(self, reason: str) -> None:
        if self._sink is not None:
            self._sink.bad_frame(reason)

    def telemetry_in(self, values: dict[str, Any]) -> None:
        self.counters.telemetry += 1
        self.telemetry = PushTelemetry(at=time.time(), values=values)
        for key, value in values.items():
            if key in CONTROL_RANGES:
                self.reported[key] = value

    def next_in(self) -> float | None:
        """Seconds until the next picture is due (the answer to a posted one)."""
        return push.next_in(self.expect_every, self._last_frame, time.monotonic())

    # -- settings (the dashboard's camera settings) -------------------------------------

    def apply_settings(self, values: dict[str, int]) -> bool:
        """Camera settings to apply (validated as ``/control`` values): sent now to a
        connected camera (True), or kept for its next post."""
        wire = {k: FRAMESIZE_NAMES.get(v, v) if k == "framesize" else v for k, v in values.items()}
        self.reported.update(values)
        if self.pusher is not None and self.pusher.mode == "ws":
            self.pusher.send(push.set_message(wire))
            return True
        self._pending.update(wire)
        return False

    def take_pending(self) -> dict[str, Any]:
        pending, self._pending = self._pending, {}
        return pending

    # -- the stream's side -------------------------------------------------------------

    def close(self, reason: str) -> None:
        """The stream is deleted, its key changed or (cluster mode) the camera went to
        another node: end the camera's connection here."""
        self._posted_at = None
        pusher, self.pusher = self.pusher, None
        if pusher is not None:
            pusher.close(reason)

    def extra_status(self) -> dict[str, Any]:
        return {
            "pusher": self.pusher.address if self.pusher is not None else self._poster,
            "telemetry": self.telemetry,
        }

    async def run(self, sink: FrameSink) -> None:
        """Runs until cancelled: publishes what the camera pushes, shows the state."""
        self._sink = sink
        self._running.set()
        try:
            if self.pusher is not None:
                sink.connected()
                self.pusher.send(push.pause_message(False))
            self._shown = None
            while True:
                state, reason = self._idle_state(time.monotonic())
                if state is not None and state is not self._shown:
                    if state is StreamState.OVERDUE:
                        self.counters.overdue += 1
                    sink.show(state, reason)
                self._shown = state
                self._wake.clear()
                # (Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                # arrives as the event is set, and stop() would wait forever.)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK):
                        await self._wake.wait()
        finally:
            self._sink = None
            self._running.clear()
            if self.pusher is not None:
                self.pusher.send(push.pause_message(True))

    def _idle_state(self, now: float) -> tuple[StreamState | None, str | None]:
        """WAITING or OVERDUE when that is what the stream is; None while pictures come."""
        last = self._last_frame
        if self.expect_every is not None and last is not None:
            if push.overdue(self.expect_every, last, now):
                return (
                    StreamState.OVERDUE,
                    f"no picture for {now - last:.0f} s (expected every {self.expect_every:g} s)",
                )
            return None, None
        if self.pusher is None and self._gone:
            return StreamState.WAITING, "the camera disconnected"
        if last is not None and now - last <= self._timing.frame_timeout:
            return None, None
        if self.pusher is not None and last is not None:
            return (
                StreamState.WAITING,
                f"the camera is connected but sent no picture for {self._timing.frame_timeout:g} s",
            )
        return StreamState.WAITING, None

    def _changed(self) -> None:
        self._wake.set()
        if self.on_pusher is not None:
            self.on_pusher(self)
