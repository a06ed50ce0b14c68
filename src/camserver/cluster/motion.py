"""Motion detection in cluster mode: the node that holds a camera's lease analyses it
(frames are local there), events are kept in Redis (``RedisEvents``) with their snapshots
in the shared recordings folder, and every event's edges are published on
``<prefix>motion`` so that the one node that talks to MQTT hears all of them.

Socket.IO ``motion`` events cross nodes through python-socketio's Redis manager, and
webhooks are sent by the node that saw the event: neither needs this module.

**One MQTT bridge per cluster.** Two bridges would share the availability topic, and one
node's last will would mark every camera unavailable while the others run. So the bridge
runs on the node that holds the ``~mqtt`` lease (the camera lease mechanism; no stream name
starts with ``~``); if that node dies, another takes the lease within the lease's TTL,
connects and says ``online`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextlib import AsyncExitStack
from typing import Any, Protocol

from camserver.cluster.backend import Subscription
from camserver.cluster.lease import Leases
from camserver.cluster.motion_events import RedisEvents
from camserver.cluster.node import Cluster
from camserver.config import Settings
from camserver.errors import ClusterUnavailable
from camserver.motion.events import MotionEvent
from camserver.motion.service import MotionService, MotionSink, MotionState, start_motion
from camserver.recording.service import RecordingService

__all__ = ["MotionRelay", "detect_in_cluster", "lead_mqtt"]

log = logging.getLogger(__name__)

MQTT_LEASE = "~mqtt"


async def detect_in_cluster(
    stack: AsyncExitStack, settings: Settings, cluster: Cluster, recording: RecordingService
) -> MotionService:
    b = cluster.backend
    service = await start_motion(
        stack,
        cluster.manager,
        settings,
        recording,
        store=RedisEvents(b.url, b.keys, b.node),
        holds=lambda name: name in cluster.held,
    )
    cluster.hold_listeners.append(service.sync)
    return service


class MotionRelay:
    """A sink that publishes this node's motion edges on Redis, and hands every node's
    edges (its own included) to ``listeners``."""

    def __init__(self, cluster: Cluster) -> None:
        self._b = cluster.backend
        self._channel = self._b.keys.prefix + "motion"
        self.listeners: list[MotionSink] = []
        self.active: set[str] = set()
        """Streams with an event going on, anywhere in the cluster."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sub = Subscription(self._b, "motion", self._on_message)

    def start(self) -> None:
        self._sub.want({self._channel})
        self._sub.start()

    async def close(self) -> None:
        await self._sub.close()

    def motion(self, event: MotionEvent, state: MotionState) -> None:
        message = json.dumps({"state": state, "event": event.public(), "snap": event.snapshot})
        task = asyncio.get_running_loop().create_task(self._publish(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, message: str) -> None:
        b = self._b
        try:
            await b.call("motion", lambda: b.redis.publish(self._channel, message))
        except ClusterUnavailable as exc:
            log.warning("motion: an edge did not reach the other nodes: %s", exc)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            m = json.loads(data)
            e = m["event"]
            state: MotionState = "start" if m["state"] == "start" else "end"
            event = MotionEvent(
                int(e["id"]),
                str(e["stream"]),
                float(e["start"]),
                None if e["end"] is None else float(e["end"]),
                float(e["peak_area"]),
                m.get("snap"),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("motion: a malformed edge on Redis: %r", data[:100])
            return
        if state == "start":
            self.active.add(event.stream)
        else:
            self.active.discard(event.stream)
        for listener in self.listeners:
            try:
                listener.motion(event, state)
            except Exception:
                log.exception("motion: a listener failed")


class _Bridge(Protocol):
    """What lead_mqtt needs of the MQTT bridge."""

    def start(self) -> None: ...

    async def close(self) -> None: ...


async def lead_mqtt(cluster: Cluster, bridge: _Bridge) -> None:
    """Run ``bridge`` while this node holds the cluster's MQTT lease (until cancelled)."""
    leases = Leases(cluster.backend, cluster.leases.ttl)
    lease = None
    try:
        while True:
            try:
                if lease is None:
                    lease = await leases.acquire(MQTT_LEASE)
                    if lease is not None:
                        log.info("cluster: this node talks to MQTT now")
                        bridge.start()
                elif not await leases.renew(lease):
                    lease = None
                    await bridge.close()
            except ClusterUnavailable:
                pass
            if lease is not None and time.monotonic() >= lease.deadline:
                lease = None  # not renewed in time: another node may have it now
                await bridge.close()
            await asyncio.sleep(leases.renew_every)
    finally:
        if lease is not None:
            await bridge.close()
            with contextlib.suppress(ClusterUnavailable):
                await leases.release(lease)
