"""What a source is: something that brings one camera's frames in, one session at a time,
under a :class:`~camserver.sources.supervisor.Supervisor` that owns the rest (state,
reconnects with backoff, ``last_error``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from camserver.schema import StreamState

__all__ = ["FrameSink", "Source", "SourceTiming"]


@dataclass(frozen=True, slots=True)
class SourceTiming:
    """Limits every source keeps (their names are camserver's settings')."""

    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    frame_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 10.0
    max_frame_bytes: int = 4 * 1024 * 1024
    push_max_fps: float = 30.0


class FrameSink(Protocol):
    """Where a source puts what it gets (the supervisor: it counts, publishes to the
    stream's hub and shows the state)."""

    def connected(self) -> None:
        """The camera accepted this session and answered (counted as an upstream
        connection)."""

    def publish(self, data: bytes, camera_ts: str | None = None) -> None:
        """One whole JPEG."""

    def bad_frame(self, reason: str) -> None:
        """A part that was not a whole JPEG (skipped and counted)."""

    def show(self, state: StreamState, reason: str | None = None) -> None:
        """A source that waits for its camera (push) shows ``waiting`` or ``overdue``."""


class Source(Protocol):
    """One kind of camera connection. :meth:`run` is one session: connect, hand every
    whole frame to ``sink``, return when the camera ends the session, or raise
    :class:`~camserver.errors.UpstreamError` with a sentence a user can act on (shown as
    ``last_error``). The supervisor runs it again, after a backoff, either way."""

    async def run(self, sink: FrameSink) -> None: ...
