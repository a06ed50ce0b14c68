"""Flow control for Socket.IO viewers that acknowledge the frames they showed.

The server's own check (a WebSocket's unsent bytes, python-socketio's queue) sees only its
side. Between it and a page's ``frame`` handler sit the kernel's socket buffers on both ends
(Linux grows them to megabytes) and the browser's network process: a page whose renderer
falls behind (a phone, a busy laptop, sixteen tiles at 15 fps on two cores) had megabytes of
frames in there and showed them seconds late, for as long as it stayed open, at full rate.

A viewer that joins with ``{"name": ..., "ack": true}`` sends ``frame_ack`` ``{name: seq}``
now and then (the dashboard: five times a second) with the newest frame it showed. While it
is behind (see :class:`Unacked`) it gets no new frames: what is in flight drains, the page
catches up, and the next frame it gets is a fresh one.
A viewer that does not ask for this is never held back by it.

No I/O here: :class:`Unacked` is told what was sent and what came back, with the times.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["MAX_UNACKED", "MIN_IN_FLIGHT", "Unacked"]

MAX_UNACKED: Final = 0.5
"""Seconds a sent frame may go unacknowledged before the viewer gets no more: well above an
acknowledgement's round trip (the dashboard's 0.2 s batching plus the network)."""
MIN_IN_FLIGHT: Final = 3
"""Unacknowledged frames a viewer may always have, whatever its measured rate."""
RATE_WINDOW: Final = 1.0
"""Seconds of acknowledgements the viewer's rate is measured over."""


class Unacked:
    """The frames sent to one viewer of one stream that it has not acknowledged yet.

    Two limits: no frame goes out while the oldest unacknowledged one is older than
    :data:`MAX_UNACKED` (a viewer that stopped acknowledging), nor while the viewer has as
    many frames in flight as it showed in the last :data:`MAX_UNACKED` seconds (a viewer
    slower than its camera: the age limit alone would let the camera's rate for that long
    queue up, and a viewer three times too slow would take three times that to show
    them). A viewer that keeps up shows every frame; one that does not stays under about
    a second behind and shows frames at its own pace.
    """

    __slots__ = ("_acked", "_sent")

    def __init__(self) -> None:
        self._sent: deque[tuple[int, float]] = deque()
        """(seq, when sent), oldest first; at most MAX_UNACKED seconds of frames."""
        self._acked: deque[float] = deque()
        """When each frame of the last RATE_WINDOW seconds was acknowledged."""

    def __len__(self) -> int:
        return len(self._sent)

    def limit(self, now: float) -> float:
        """Frames the viewer may have in flight: what it showed in MAX_UNACKED seconds."""
        acked = self._acked
        while acked and now - acked[0] > RATE_WINDOW:
            acked.popleft()
        return max(MIN_IN_FLIGHT, len(acked) / RATE_WINDOW * MAX_UNACKED)

    def blocked(self, now: float) -> bool:
        sent = self._sent
        if not sent:
            return False
        return now - sent[0][1] > MAX_UNACKED or len(sent) >= self.limit(now)

    def sent(self, seq: int, now: float) -> None:
        self._sent.append((seq, now))

    def ack(self, seq: int, now: float) -> bool:
        """The viewer showed frame ``seq``: it and every frame sent before it are done.

        Matched by identity, not by order: a stream's seq starts again at 1 when the stream
        is made again under the same name, so "every seq up to" could be wrong. An unknown
        seq (a frame from before a leave and join, a stale or a bogus ack) changes nothing.
        Returns whether it matched.
        """
        for i, (sent_seq, _) in enumerate(self._sent):
            if sent_seq == seq:
                for _ in range(i + 1):
                    self._sent.popleft()
                    self._acked.append(now)
                return True
        return False
