"""Frames per viewer by outcome, for every live output, since start (``/metrics``): one
object, :data:`counters`, that each output adds to."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LiveCounters", "OutputCounters", "RtspCounters", "counters"]


@dataclass(slots=True)
class OutputCounters:
    sent: int = 0
    skipped_slow: int = 0
    """The viewer's socket had more than its high-water mark unsent."""
    skipped_rate: int = 0
    """The viewer asked for ``?fps=`` and it was not its turn."""
    resent: int = 0
    """Keep-alive: the latest frame sent again to a viewer that got nothing for a while."""
    skipped_unacked: int = 0
    """Socket.IO: the viewer asked for flow control and left a frame unacknowledged too long
    (``camserver.live.frame_acks``)."""


@dataclass(slots=True)
class RtspCounters(OutputCounters):
    skipped_unsupported: int = 0
    """Frames RFC 2435 cannot carry (progressive, other sampling, ...): logged once per
    stream and reason."""


@dataclass(slots=True)
class LiveCounters:
    mjpeg: OutputCounters = field(default_factory=OutputCounters)
    socketio: OutputCounters = field(default_factory=OutputCounters)
    """Frames written straight to a WebSocket (emits through python-socketio are not
    counted here)."""
    rtsp: RtspCounters = field(default_factory=RtspCounters)


counters = LiveCounters()
"""The process's counters (outputs are module-level: an MJPEG response has no runtime)."""
