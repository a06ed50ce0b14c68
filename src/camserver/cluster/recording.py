"""Recording in cluster mode: the node that holds a camera's lease records it, into the
recordings folder that every node shares (``CAMSERVER_RECORDINGS_DIR`` on a common
volume), and the index lives in Redis, so any node lists, plays and retains every
recording. An event marked through another node reaches the recording node over Redis
pub/sub (``<prefix>rec:events``)."""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack

from camserver.cluster.backend import Subscription
from camserver.cluster.node import Cluster
from camserver.cluster.recording_index import RedisIndex
from camserver.config import Settings
from camserver.recording.service import RecordingService, start_recording

__all__ = ["record_in_cluster"]

log = logging.getLogger(__name__)


async def record_in_cluster(
    stack: AsyncExitStack, settings: Settings, cluster: Cluster
) -> RecordingService:
    b = cluster.backend
    index = RedisIndex(b.url, b.keys, b.node)
    service = await start_recording(
        stack, cluster.manager, settings, index=index, holds=lambda name: name in cluster.held
    )
    cluster.hold_listeners.append(service.sync)

    def on_mark(channel: bytes, data: bytes) -> None:
        try:
            mark = json.loads(data)
            name, start, end = str(mark["stream"]), float(mark["start"]), float(mark["end"])
        except (ValueError, KeyError, TypeError):
            log.warning("recording: a malformed event mark on Redis: %r", data[:100])
            return
        service.recorder.mark_event(name, start, end)  # False unless it records here

    async def relay(name: str, start: float, end: float) -> None:
        message = json.dumps({"stream": name, "start": start, "end": end})
        await b.call("event mark", lambda: b.redis.publish(b.keys.recording_events, message))

    marks = Subscription(b, "recording events", on_mark)
    marks.want({b.keys.recording_events})
    marks.start()
    stack.push_async_callback(marks.close)
    service.relay_event = relay
    return service
