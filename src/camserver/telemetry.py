"""What ``GET /metrics`` exports: read from the live runtime at scrape time (nothing is
counted twice on the hot path), plus the event-loop lag monitor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camserver import __version__
from camserver.live.counters import counters
from camserver.schema import StreamState
from camserver.sources import PushSource

if TYPE_CHECKING:
    from camserver.cluster.node import Cluster
    from camserver.connections import ConnectionLimits
    from camserver.motion.service import MotionService
    from camserver.recording.service import RecordingService
    from camserver.runtime import Runtime

__all__ = ["ConnectionCollector", "LoopLagMonitor", "StateCollector"]


class LoopLagMonitor:
    """How late the event loop wakes a task that sleeps ``interval``: its lag (once a
    second: every wake-up of an idle server costs CPU that fan-out figures count)."""

    def __init__(self, interval: float = 1.0) -> None:
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


class ConnectionCollector(Collector):
    """Open client connections as the per-address limit counts them (server-wide only:
    a scoped token's /metrics does not include it)."""

    busiest = 10
    """Addresses shown by name, the ones with the most connections."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        per_client = self.limits.per_client
        total = GaugeMetricFamily(
            "camserver_http_connections",
            "Open client connections (HTTP, MJPEG and WebSocket), as counted for the "
            "per-address limit",
        )
        total.add_metric([], self.limits.open)
        yield total
        addresses = GaugeMetricFamily(
            "camserver_http_connection_addresses", "Client addresses with an open connection"
        )
        addresses.add_metric([], len(per_client))
        yield addresses
        by_address = GaugeMetricFamily(
            "camserver_http_connections_by_address",
            f"Open connections of the {self.busiest} busiest client addresses",
            labels=["address"],
        )
        top = sorted(per_client.items(), key=lambda item: item[1], reverse=True)
        for address, count in top[: self.busiest]:
            by_address.add_metric([address], count)
        yield by_address


class StateCollector(Collector):
    def __init__(self, runtime: Runtime, only: frozenset[str] | None = None) -> None:
        self.runtime = runtime
        self.only = only
        """Only these streams, and nothing about the server as a whole (scoped tokens)."""

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        manager = rt.manager
        info = GaugeMetricFamily("camserver_info", "camserver version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
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
        pushed = CounterMetricFamily(
            "camserver_push_pictures",
            "Pictures push cameras sent, by outcome (published; paused: not wanted now; "
            "too_fast: over CAMSERVER_PUSH_MAX_FPS)",
            labels=["stream", "outcome"],
        )
        push_events = CounterMetricFamily(
            "camserver_push_events",
            "Push camera events (refused_key, replaced, overdue, telemetry)",
            labels=["stream", "event"],
        )
        mjpeg_total = 0
        for name in manager.names():
            if self.only is not None and name not in self.only:
                continue
            s = manager.status(name)
            for value in StreamState:
                state.add_metric([name, value.value], 1.0 if s.state is value else 0.0)
            frames.add_metric([name], s.frames)
            nbytes.add_metric([name], s.bytes)
            bad.add_metric([name], s.bad_frames)
            connects.add_metric([name], s.upstream_connects)
            fps.add_metric([name], s.fps)
            kinds = manager.hub(name).demand.viewers_by_kind()
            for kind in ("socketio", "mjpeg", "snapshot", "rtsp"):
                viewers.add_metric([name, kind], kinds.get(kind, 0))
            mjpeg_total += kinds.get("mjpeg", 0)
            source = manager.record(name).supervisor.source
            if isinstance(source, PushSource):
                pc = source.counters
                for outcome in ("published", "paused", "too_fast"):
                    pushed.add_metric([name, outcome], getattr(pc, outcome))
                for event in ("refused_keys", "replaced", "overdue", "telemetry"):
                    push_events.add_metric([name, event.removesuffix("s")], getattr(pc, event))
        yield from (state, frames, nbytes, bad, connects, fps, viewers, pushed, push_events)
        if self.only is not None:
            return

        mjpeg = GaugeMetricFamily("camserver_mjpeg_clients", "Open MJPEG responses")
        mjpeg.add_metric([], mjpeg_total)
        yield mjpeg
        out = CounterMetricFamily(
            "camserver_mjpeg_frames",
            "Frames offered to MJPEG viewers, by outcome (sent; skipped: slow socket or ?fps=; "
            "resent: keep-alive while the camera sends nothing)",
            labels=["outcome"],
        )
        out.add_metric(["sent"], counters.mjpeg.sent)
        out.add_metric(["slow"], counters.mjpeg.skipped_slow)
        out.add_metric(["rate"], counters.mjpeg.skipped_rate)
        out.add_metric(["resent"], counters.mjpeg.resent)
        yield out
        rtsp = CounterMetricFamily(
            "camserver_rtsp_frames",
            "Frames offered to RTSP sessions, by outcome (sent; slow: skipped, socket full; "
            "unsupported: a JPEG RFC 2435 cannot carry)",
            labels=["outcome"],
        )
        rtsp.add_metric(["sent"], counters.rtsp.sent)
        rtsp.add_metric(["slow"], counters.rtsp.skipped_slow)
        rtsp.add_metric(["unsupported"], counters.rtsp.skipped_unsupported)
        yield rtsp
        if rt.rtsp is not None:
            refused = CounterMetricFamily(
                "camserver_rtsp_refused", "RTSP requests refused, by status", labels=["status"]
            )
            for status, count in sorted(rt.rtsp.refused.items()):
                refused.add_metric([str(status)], count)
            yield refused
            sessions = GaugeMetricFamily("camserver_rtsp_connections", "Open RTSP connections")
            sessions.add_metric([], len(rt.rtsp.connections))
            yield sessions
        sio = GaugeMetricFamily("camserver_socketio_clients", "Connected Socket.IO clients")
        sio.add_metric([], rt.realtime.sockets.count())
        yield sio
        direct = CounterMetricFamily(
            "camserver_socketio_direct_frames",
            "Frames written straight to Socket.IO viewers' WebSockets, by outcome "
            "(sent; slow: skipped, socket still full; unacked: skipped, the viewer had not "
            "acknowledged an earlier frame in time)",
            labels=["outcome"],
        )
        direct.add_metric(["sent"], counters.socketio.sent)
        direct.add_metric(["slow"], counters.socketio.skipped_slow)
        direct.add_metric(["unacked"], counters.socketio.skipped_unacked)
        yield direct
        yield from _recording_metrics(rt.recording)
        yield from _motion_metrics(rt.motion)
        hooks = CounterMetricFamily(
            "camserver_webhook_deliveries", "Webhook deliveries, by outcome", labels=["outcome"]
        )
        for outcome in ("sent", "failed", "dropped"):
            hooks.add_metric([outcome], getattr(rt.webhooks.counters, outcome))
        yield hooks
        g = GaugeMetricFamily(
            "camserver_event_loop_lag_seconds", "Event-loop lag, last sample", labels=[]
        )
        g.add_metric([], rt.loop_lag.last)
        yield g
        m = GaugeMetricFamily("camserver_event_loop_lag_max_seconds", "Worst event-loop lag")
        m.add_metric([], rt.loop_lag.max)
        yield m
        h = GaugeMetricFamily(
            "camserver_housekeeping_last_seconds",
            "How long the last once-a-minute full GC and malloc_trim took",
        )
        h.add_metric([], rt.housekeeper.last_seconds)
        yield h
        c = CounterMetricFamily(
            "camserver_housekeeping_collected_objects",
            "Unreachable objects freed by the once-a-minute full GC",
        )
        c.add_metric([], rt.housekeeper.collected)
        yield c
        if rt.discovery is not None:
            d = CounterMetricFamily(
                "camserver_discovery_datagrams",
                "Discovery datagrams by outcome",
                labels=["outcome"],
            )
            for outcome, count in sorted(rt.discovery.counts.items()):
                d.add_metric([outcome], count)
            yield d
        if rt.cluster is not None:
            yield from _cluster_metrics(rt.cluster)
        up = GaugeMetricFamily("camserver_scrape_timestamp_seconds", "When this was collected")
        up.add_metric([], time.time())
        yield up


def _cluster_metrics(cluster: Cluster) -> Iterator[Metric]:
    node = [cluster.node]
    held = GaugeMetricFamily(
        "camserver_cluster_leases_held", "Cameras this node pulls", labels=["node"]
    )
    held.add_metric(node, len(cluster.held))
    yield held
    leases = CounterMetricFamily(
        "camserver_cluster_lease_events", "Camera leases by event", labels=["node", "event"]
    )
    for event in ("acquired", "released", "lost", "expired"):
        leases.add_metric([cluster.node, event], getattr(cluster.leases, event))
    yield leases
    relay = CounterMetricFamily(
        "camserver_cluster_relay_frames",
        "Frames through Redis by outcome",
        labels=["node", "outcome"],
    )
    c = cluster.relay.counters
    for outcome in ("published", "publish_skipped", "received", "stale", "fenced", "bad"):
        relay.add_metric([cluster.node, outcome], getattr(c, outcome))
    yield relay
    up = GaugeMetricFamily("camserver_cluster_redis_up", "1 while Redis answers", labels=["node"])
    up.add_metric(node, 1.0 if cluster.backend.reachable else 0.0)
    yield up
    nodes = GaugeMetricFamily(
        "camserver_cluster_nodes", "Live nodes this node sees", labels=["node"]
    )
    nodes.add_metric(node, len(cluster.nodes))
    yield nodes
    resyncs = CounterMetricFamily(
        "camserver_cluster_config_resyncs", "Full reloads of the configuration", labels=["node"]
    )
    resyncs.add_metric(node, cluster.feed.resyncs)
    yield resyncs


def _motion_metrics(motion: MotionService) -> Iterator[Metric]:
    c = motion.worker.counters
    frames = CounterMetricFamily(
        "camserver_motion_frames",
        "Frames due for motion analysis, by outcome (skipped: the worker was behind)",
        labels=["outcome"],
    )
    frames.add_metric(["analysed"], c.analysed)
    frames.add_metric(["skipped"], c.skipped)
    frames.add_metric(["bad"], c.bad)
    yield frames
    events = CounterMetricFamily("camserver_motion_events", "Motion events started")
    events.add_metric([], motion.events_started)
    yield events


def _recording_metrics(service: RecordingService) -> Iterator[Metric]:
    recorder = service.recorder
    c = recorder.counters
    for name, doc, value in (
        ("camserver_recording_frames", "Frames written to recordings", c.frames),
        ("camserver_recording_bytes", "JPEG bytes written to recordings", c.bytes),
        ("camserver_recording_segments", "Recording files started", c.segments),
        ("camserver_recording_write_errors", "Failed writes (disk full, I/O)", c.write_errors),
        ("camserver_recording_deleted_files", "Recordings deleted by retention", c.deleted_files),
        ("camserver_recording_deleted_bytes", "Bytes deleted by retention", c.deleted_bytes),
    ):
        m = CounterMetricFamily(name, doc)
        m.add_metric([], value)
        yield m
    dropped = CounterMetricFamily(
        "camserver_recording_dropped_frames",
        "Frames not recorded (live viewers unaffected), by reason",
        labels=["reason"],
    )
    dropped.add_metric(["queue_full"], recorder.dropped)
    dropped.add_metric(["disk_error"], c.dropped_on_error)
    yield dropped
    days = CounterMetricFamily(
        "camserver_recording_timelapse_days",
        "Finished days' timelapse MP4s made in the background, by outcome",
        labels=["outcome"],
    )
    days.add_metric(["made"], service.days.made)
    days.add_metric(["failed"], service.days.failed)
    yield days
