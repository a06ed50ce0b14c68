"""``GET /metrics``: Prometheus text format, read from live state at scrape time (nothing is
counted twice on the hot path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from camserver import __version__
from camserver.memory import Housekeeper
from camserver.models import StreamState

__all__ = ["LoopLagMonitor", "StateCollector", "router"]

router = APIRouter(tags=["operations"])


class LoopLagMonitor:
    """How late the event loop wakes a task that sleeps ``interval``: its lag."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.last = 0.0
        self.max = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, loop.time() - start - self.interval)
            self.max = max(self.max, self.last)


class StateCollector(Collector):
    def __init__(self, state: object) -> None:
        self.state = state  # the FastAPI app's state: manager, realtime, discovery, lag

    def collect(self) -> Iterator[Metric]:
        st = self.state
        manager = getattr(st, "manager", None)
        info = GaugeMetricFamily("camserver_info", "camserver version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if manager is None:
            return
        labels = ["stream"]
        state = GaugeMetricFamily(
            "camserver_stream_state", "1 for the stream's current state", labels=["stream", "state"]
        )
        frames = CounterMetricFamily("camserver_stream_frames", "Frames received", labels=labels)
        nbytes = CounterMetricFamily("camserver_stream_bytes", "JPEG bytes received", labels=labels)
        bad = CounterMetricFamily(
            "camserver_stream_bad_frames", "Parts skipped as not whole JPEGs", labels=labels
        )
        connects = CounterMetricFamily(
            "camserver_stream_upstream_connects", "Connections made to the camera", labels=labels
        )
        fps = GaugeMetricFamily(
            "camserver_stream_fps", "Frames per second (last 5 s)", labels=labels
        )
        viewers = GaugeMetricFamily(
            "camserver_stream_viewers", "Viewers by kind", labels=["stream", "kind"]
        )
        mjpeg_total = 0
        for name in manager.names():
            s = manager.status(name)
            for value in StreamState:
                state.add_metric([name, value.value], 1.0 if s.state is value else 0.0)
            frames.add_metric([name], s.frames)
            nbytes.add_metric([name], s.bytes)
            bad.add_metric([name], s.bad_frames)
            connects.add_metric([name], s.upstream_connects)
            fps.add_metric([name], s.fps)
            kinds = manager.hub(name).viewers_by_kind()
            for kind in ("socketio", "mjpeg", "snapshot"):
                viewers.add_metric([name, kind], kinds.get(kind, 0))
            mjpeg_total += kinds.get("mjpeg", 0)
        yield from (state, frames, nbytes, bad, connects, fps, viewers)

        mjpeg = GaugeMetricFamily("camserver_mjpeg_clients", "Open MJPEG responses")
        mjpeg.add_metric([], mjpeg_total)
        yield mjpeg
        realtime = getattr(st, "realtime", None)
        if realtime is not None:
            sio = GaugeMetricFamily("camserver_socketio_clients", "Connected Socket.IO clients")
            sio.add_metric([], realtime.sockets.count())
            yield sio
        lag: LoopLagMonitor | None = getattr(st, "loop_lag", None)
        if lag is not None:
            g = GaugeMetricFamily(
                "camserver_event_loop_lag_seconds", "Event-loop lag, last sample", labels=[]
            )
            g.add_metric([], lag.last)
            yield g
            m = GaugeMetricFamily("camserver_event_loop_lag_max_seconds", "Worst event-loop lag")
            m.add_metric([], lag.max)
            yield m
        housekeeper: Housekeeper | None = getattr(st, "housekeeper", None)
        if housekeeper is not None:
            h = GaugeMetricFamily(
                "camserver_housekeeping_last_seconds",
                "How long the last once-a-minute full GC and malloc_trim took",
            )
            h.add_metric([], housekeeper.last_seconds)
            yield h
            c = CounterMetricFamily(
                "camserver_housekeeping_collected_objects",
                "Unreachable objects freed by the once-a-minute full GC",
            )
            c.add_metric([], housekeeper.collected)
            yield c
        discovery = getattr(st, "discovery", None)
        if discovery is not None:
            d = CounterMetricFamily(
                "camserver_discovery_datagrams",
                "Discovery datagrams by outcome",
                labels=["outcome"],
            )
            for outcome, count in sorted(discovery.counts.items()):
                d.add_metric([outcome], count)
            yield d
        up = GaugeMetricFamily("camserver_scrape_timestamp_seconds", "When this was collected")
        up.add_metric([], time.time())
        yield up


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    """Per-stream state, frames, bytes, bad frames, reconnects, fps and viewers by kind;
    event-loop lag, Socket.IO and MJPEG clients, discovery datagrams by outcome."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
