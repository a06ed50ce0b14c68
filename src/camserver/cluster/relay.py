"""Frames between nodes: the holder publishes each frame once on the camera's channel, and
a node with viewers of that camera subscribes and feeds its own hub.

:class:`ClusterHub` is a :class:`~camserver.streaming.hub.LocalHub` (viewers read it exactly
as on one node) that also knows the camera's lease: on the holder, ``publish()`` (called by
the ingest) refuses frames once the lease's local deadline has passed (self-fencing: a
paused or cut-off holder never hands out a frame after another node may hold the camera),
and queues the frame for Redis; on the other nodes ``feed()`` puts relayed frames in, and
drops any whose fencing token is older than the newest seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from camserver.cluster.backend import Backend, Subscription
from camserver.cluster.lease import Lease
from camserver.cluster.wire import WireError, decode_frame, encode_frame
from camserver.errors import ClusterUnavailable
from camserver.streaming.hub import HubFrame, LocalHub

__all__ = ["ClusterHub", "FrameRelay", "RelayCounters"]

log = logging.getLogger(__name__)

# A holder whose last PUBLISH reached nobody skips publishing, and tries again this often
# in case a node has subscribed since.
PROBE_EVERY = 0.5


@dataclass(slots=True)
class RelayCounters:
    published: int = 0
    """Frames this node published to Redis (as a holder)."""
    publish_skipped: int = 0
    """Frames not published: no node was listening, or Redis was behind."""
    received: int = 0
    """Frames from other nodes put into local hubs."""
    stale: int = 0
    """Frames dropped for an older fencing token (a former holder's)."""
    fenced: int = 0
    """Frames a holder refused to hand out after its lease deadline."""
    bad: int = 0


class ClusterHub(LocalHub):
    __slots__ = (
        "_lease_value",
        "_pending",
        "_probe_at",
        "_publisher",
        "_send",
        "counters",
        "deadline",
        "token",
    )

    def __init__(self, name: str, counters: RelayCounters) -> None:
        super().__init__(name)
        self.counters = counters
        self.token = 0
        """The newest fencing token seen for this camera (ours while we hold it)."""
        self.deadline = 0.0
        """While holding: the monotonic time our lease may have expired; 0 otherwise."""
        self._send: Backend | None = None
        self._lease_value = ""
        """``"<node>|<token>"``, what Redis holds while the lease is ours."""
        self._pending: HubFrame | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._probe_at = 0.0

    # -- holder --------------------------------------------------------------------------

    def hold(self, lease: Lease, backend: Backend) -> None:
        self.token = max(self.token, lease.token)
        self.deadline = lease.deadline
        self._send = backend
        self._lease_value = lease.value(backend.node)

    def release(self) -> None:
        self.deadline = 0.0
        self._send = None
        self._pending = None

    @property
    def holding(self) -> bool:
        return self.deadline > time.monotonic()

    def publish(self, data: bytes, camera_ts: str | None = None, token: int = 0) -> HubFrame:
        """The ingest's frame (``token`` is ignored: the frame carries our lease's)."""
        if not self.holding:  # our lease may be someone else's by now: hand out nothing
            self.counters.fenced += 1
            frame = self.latest
            return frame if frame is not None else HubFrame(0, time.time(), b"")
        frame = self._put(data, camera_ts, self.token)
        if self._send is not None and time.monotonic() >= self._probe_at:
            self._pending = frame  # latest wins: a slow Redis costs frames, not memory
            if self._publisher is None or self._publisher.done():
                self._publisher = asyncio.create_task(self._publish_loop())
        else:
            self.counters.publish_skipped += 1
        return frame

    async def _publish_loop(self) -> None:
        while (frame := self._pending) is not None and (backend := self._send) is not None:
            self._pending = None
            keys = backend.keys
            message = encode_frame(self.token, frame.seq, frame.ts, frame.camera_ts, frame.data)
            try:
                got = await backend.script(
                    "publish",
                    [keys.lease(self.name), keys.frames(self.name)],
                    [self._lease_value, message],
                )
            except ClusterUnavailable:
                self.counters.publish_skipped += 1
                continue
            if got == -1:  # Redis says the lease is no longer ours
                log.warning("stream %s: lease lost (fenced publish refused)", self.name)
                self.deadline = 0.0
                continue
            self.counters.published += 1
            # Nobody listening: skip frames until the next probe.
            self._probe_at = 0.0 if got else time.monotonic() + PROBE_EVERY

    # -- other nodes -----------------------------------------------------------------------

    def feed(self, token: int, data: bytes, camera_ts: str | None) -> None:
        if token < self.token:
            self.counters.stale += 1
            return
        if self.holding and token == self.token:
            return  # our own frame coming back
        self.token = token
        self.counters.received += 1
        self._put(data, camera_ts, token)

    def _put(self, data: bytes, camera_ts: str | None, token: int) -> HubFrame:
        return LocalHub.publish(self, data, camera_ts, token)


class FrameRelay:
    """One subscription per node for the frame channels of the cameras it has viewers
    of and does not hold."""

    def __init__(self, backend: Backend, hubs: dict[str, ClusterHub]) -> None:
        self._backend = backend
        self._hubs = hubs
        self.counters = RelayCounters()
        self._said: set[str] = set()
        self.subscription = Subscription(backend, "frames", self._on_message)

    def start(self) -> None:
        self.subscription.start()

    async def close(self) -> None:
        await self.subscription.close()

    def update(self) -> None:
        """Subscribe to the cameras with local viewers that another node holds."""
        keys = self._backend.keys
        self.subscription.want(
            {
                keys.frames(name)
                for name, hub in self._hubs.items()
                if hub.viewers > 0 and not hub.holding and not hub.closed
            }
        )

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            name = self._backend.keys.frame_stream(channel)
            msg = decode_frame(data)
        except WireError as exc:
            self.counters.bad += 1
            if str(exc) not in self._said:  # once per reason (a newer node sends many)
                self._said.add(str(exc))
                log.warning("dropped a frame message: %s", exc)
            return
        hub = self._hubs.get(name)
        if hub is not None and not hub.closed:
            hub.feed(msg.token, msg.data, msg.camera_ts)
