"""Everything long-lived a running server holds, built and torn down in one place.

:meth:`Runtime.running` is the body of the ASGI lifespan: it opens the httpx client, the
store, the stream manager (hubs and ingest tasks), discovery, the housekeeping jobs and
the cameras given to it (``--demo``'s simulated ones), and closes them in reverse order.
Requests get the :class:`Runtime` through Starlette's lifespan state (``api/deps.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

from camserver import __version__
from camserver.access import TokenChecker
from camserver.api.realtime import Realtime
from camserver.config import Settings
from camserver.discovery.interfaces import select_interfaces
from camserver.discovery.service import DiscoveryService
from camserver.errors import StreamExists
from camserver.integrations.webhooks import Webhooks
from camserver.live.rtsp.server import RtspServer
from camserver.memory import Housekeeper
from camserver.motion.service import MotionService, start_motion
from camserver.netguard import NetworkGuard
from camserver.recording.service import RecordingService, start_recording
from camserver.schema import DiscoveredCamera, StreamConfig
from camserver.sources import SourceTiming, target_url
from camserver.store import SQLiteStore, StreamStore
from camserver.streaming.registry import StreamRegistry
from camserver.telemetry import LoopLagMonitor, StateCollector

if TYPE_CHECKING:
    from camserver.cluster.node import Cluster
    from camserver.integrations.mqtt import MqttBridge

__all__ = ["Runtime", "StartCameras"]

StartCameras = Callable[[AsyncExitStack], Awaitable[list[StreamConfig]]]
"""Starts cameras that live as long as the server (entering their contexts on the stack)
and returns the streams that read them: ``camserver serve --demo`` (``camserver.demo``)."""

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class Runtime:
    settings: Settings
    client: httpx.AsyncClient
    store: StreamStore
    manager: StreamRegistry
    realtime: Realtime
    discovery: DiscoveryService | None
    discovery_off: str
    """Why discovery is not running ('' when it is)."""
    loop_lag: LoopLagMonitor
    housekeeper: Housekeeper
    metrics: CollectorRegistry
    checker: TokenChecker
    recording: RecordingService
    motion: MotionService
    webhooks: Webhooks
    mqtt: MqttBridge | None = None
    rtsp: RtspServer | None = None
    rtsp_off: str = ""
    """With CAMSERVER_MQTT_URL only."""
    cluster: Cluster | None = None
    """Cluster mode (CAMSERVER_REDIS_URL) only."""

    def begin_shutdown(self) -> None:
        """Wake and end every viewer (MJPEG responses, Socket.IO frame loops) at once, so a
        graceful shutdown does not wait out its timeout on endless responses."""
        self.manager.close_hubs()

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        settings: Settings,
        realtime: Realtime,
        checker: TokenChecker,
        cameras: StartCameras | None = None,
    ) -> AsyncIterator[Runtime]:
        async with AsyncExitStack() as stack:
            # trust_env=False: a proxy set for the host must not carry LAN camera traffic.
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    trust_env=False,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                    headers={"User-Agent": f"camserver/{__version__}"},
                )
            )
            # Cameras started with the server (``--demo``: camserver.demo) stop last,
            # after the streams that read them.
            demo = await cameras(stack) if cameras is not None else []
            if not settings.cluster:
                store: StreamStore = await SQLiteStore.open(settings.db)
                stack.push_async_callback(store.close)
                checker.managed = {t.hash: t for t in await store.list_tokens()}
            else:  # imported only in cluster mode
                from camserver.cluster.setup import open_store

                redis_store = await open_store(stack, settings)
                store = redis_store
            saved = {t.id: t.last_used for t in checker.managed.values()}
            stack.push_async_callback(_save_last_used, checker, store, saved)
            manager = StreamRegistry(
                store,
                client,
                _timing(settings),
                snapshot_max_age=settings.snapshot_max_age,
                snapshot_timeout=settings.snapshot_timeout,
                on_demand_grace=settings.on_demand_grace,
                max_streams=settings.max_streams,
                max_viewers=settings.max_viewers,
                max_viewers_per_client=settings.max_viewers_per_client,
                guard=NetworkGuard(settings.networks()),
            )
            realtime.attach(manager)
            cluster = None
            if not settings.cluster:
                await manager.load()
                stack.push_async_callback(manager.close)
            else:
                from camserver.cluster.setup import join

                stack.push_async_callback(manager.close)
                cluster = await join(stack, settings, redis_store, manager, checker)
            stack.push_async_callback(realtime.close)
            for cfg in demo:
                await manager.put(cfg)
            if cluster is None:
                recording = await start_recording(stack, manager, settings)
            else:
                from camserver.cluster.recording import record_in_cluster

                recording = await record_in_cluster(stack, settings, cluster)
            motion, webhooks, mqtt = await _start_motion(
                stack, settings, manager, recording, realtime, cluster
            )
            discovery, why_off = await _start_discovery(stack, settings, manager, realtime, cluster)
            rtsp, rtsp_off = await _start_rtsp(stack, settings, manager, checker)
            if rtsp is not None and settings.onvif_discovery:
                await _start_ws_discovery(stack, settings)
            runtime = cls(
                settings=settings,
                client=client,
                store=store,
                manager=manager,
                realtime=realtime,
                discovery=discovery,
                discovery_off=why_off,
                loop_lag=LoopLagMonitor(),
                housekeeper=Housekeeper(),
                metrics=CollectorRegistry(auto_describe=False),
                checker=checker,
                cluster=cluster,
                recording=recording,
                motion=motion,
                webhooks=webhooks,
                mqtt=mqtt,
                rtsp=rtsp,
                rtsp_off=rtsp_off,
            )
            jobs = (
                runtime.loop_lag.run(),
                runtime.housekeeper.run(),
                _save_last_used_often(checker, store, saved),
                checker.held.run(),  # ends what revoked or expired tokens opened
            )
            for job in jobs:
                stack.callback(asyncio.create_task(job).cancel)
            runtime.metrics.register(StateCollector(runtime))
            # process_* (RSS, CPU, open files) and python_gc_*, as Prometheus users expect.
            ProcessCollector(registry=runtime.metrics)
            GCCollector(registry=runtime.metrics)
            log.info("camserver %s ready, database %s", __version__, settings.db)
            yield runtime


async def _save_last_used(
    checker: TokenChecker, store: StreamStore, saved: dict[str, float | None]
) -> None:
    """Write the managed tokens' last-used times that changed since the last write."""
    for t in list(checker.managed.values()):
        if t.last_used is not None and t.last_used != saved.get(t.id):
            await store.touch_token(t.id, t.last_used)
            saved[t.id] = t.last_used


async def _save_last_used_often(
    checker: TokenChecker, store: StreamStore, saved: dict[str, float | None]
) -> None:
    while True:
        await asyncio.sleep(30)
        await _save_last_used(checker, store, saved)


def _timing(settings: Settings) -> SourceTiming:
    """The ingest's settings, which share their names with camserver's."""
    return SourceTiming(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(SourceTiming)}
    )


async def _start_motion(
    stack: AsyncExitStack,
    settings: Settings,
    manager: StreamRegistry,
    recording: RecordingService,
    realtime: Realtime,
    cluster: Cluster | None,
) -> tuple[MotionService, Webhooks, MqttBridge | None]:
    """Motion detection and where its events go: Socket.IO, webhooks, MQTT."""
    if cluster is None:
        motion = await start_motion(stack, manager, settings, recording)
    else:
        from camserver.cluster.motion import detect_in_cluster

        motion = await detect_in_cluster(stack, settings, cluster, recording)
    motion.sinks.append(realtime)
    webhooks = Webhooks(
        settings.webhook_list(),
        lambda name: manager.config(name).motion.webhook_url,
        manager.guard,
        settings.base_url(),
        settings.webhook_timeout,
    )
    stack.push_async_callback(webhooks.close)
    motion.sinks.append(webhooks)
    manager.add_listener(webhooks.status_changed)
    if settings.mqtt_url is None:
        return motion, webhooks, None
    from camserver.integrations.ha import Topics
    from camserver.integrations.mqtt import MqttBridge

    moving: Callable[[str], bool] = motion.active
    relay = None
    if cluster is not None:
        from camserver.cluster.motion import MotionRelay

        relay = MotionRelay(cluster)
        moving = relay.active.__contains__
    mqtt = MqttBridge(
        settings.mqtt_url.get_secret_value(),
        Topics(settings.mqtt_topic_prefix, settings.mqtt_discovery_prefix),
        manager,
        moving,
        settings.base_url(),
        settings.mqtt_snapshot_interval,
        f"camserver-{settings.effective_node_id()}",
    )
    manager.add_config_listener(mqtt.configured)
    manager.add_listener(mqtt.status_changed)
    if cluster is None or relay is None:
        motion.sinks.append(mqtt)
        mqtt.start()
        stack.push_async_callback(mqtt.close)
        return motion, webhooks, mqtt
    from camserver.cluster.motion import lead_mqtt

    # Every node's edges reach the one node that talks to MQTT (docs/motion.md).
    motion.sinks.append(relay)
    relay.listeners.append(mqtt)
    relay.start()
    stack.push_async_callback(relay.close)
    leader = asyncio.get_running_loop().create_task(lead_mqtt(cluster, mqtt), name="mqtt-lead")

    async def stop_leading() -> None:
        leader.cancel()
        await asyncio.gather(leader, return_exceptions=True)

    stack.push_async_callback(stop_leading)
    return motion, webhooks, mqtt


async def _start_rtsp(
    stack: AsyncExitStack, settings: Settings, manager: StreamRegistry, checker: TokenChecker
) -> tuple[RtspServer | None, str]:
    """RTSP out on ``CAMSERVER_RTSP_PORT`` (0: off). A port in use turns RTSP off with a
    log line: the rest of the server runs on."""
    if not settings.rtsp_port:
        return None, "CAMSERVER_RTSP_PORT is 0"
    server = RtspServer(
        manager.admission.admit,
        checker,
        settings.host,
        settings.rtsp_port,
        settings.max_connections_per_client,
    )
    try:
        await server.start()
    except OSError as exc:
        why = f"RTSP port {settings.rtsp_port} cannot be used: {exc.strerror or exc}"
        log.error("%s; RTSP is off (set CAMSERVER_RTSP_PORT)", why)
        await server.close()
        return None, why
    stack.push_async_callback(server.close)
    return server, ""


async def _start_ws_discovery(stack: AsyncExitStack, settings: Settings) -> None:
    """ONVIF WS-Discovery answers on the interfaces UDP discovery may use (none: off)."""
    from camserver.discovery.interfaces import select_interfaces
    from camserver.onvif.wsdiscovery import Responder

    try:
        interfaces = select_interfaces(settings.discovery_interfaces)
    except ValueError as exc:
        log.warning("ONVIF WS-Discovery is off: %s", exc)
        return
    if not interfaces:
        return
    responder = Responder(
        [(i.name, i.address) for i in interfaces], settings.port, settings.effective_node_id()
    )
    try:
        await responder.start()
    except OSError as exc:
        responder.close()
        log.warning("ONVIF WS-Discovery is off: UDP %d: %s", 3702, exc.strerror or exc)
        return
    stack.callback(responder.close)


async def _start_discovery(
    stack: AsyncExitStack,
    settings: Settings,
    manager: StreamRegistry,
    realtime: Realtime,
    cluster: Cluster | None,
) -> tuple[DiscoveryService | None, str]:
    """Start UDP discovery; on failure the server runs on without it (and says why)."""
    if not settings.discovery_listen:
        return None, "turned off (CAMSERVER_DISCOVERY_LISTEN=false)"
    try:
        interfaces = select_interfaces(settings.effective_discovery_interfaces())
    except ValueError as exc:
        log.error("discovery is off: %s", exc)
        return None, str(exc)
    service = DiscoveryService(
        listen_port=settings.discovery_listen_port,
        camera_port=settings.discovery_port,
        interfaces=interfaces,
        rate=settings.discovery_rate,
    )
    if cluster is not None:  # one list for the cluster: camera_discovered once
        from camserver.cluster.discovery import SharedDiscovered

        service.board = SharedDiscovered(cluster.backend, service.ttl)
    try:
        await service.start()
    except OSError as exc:
        reason = f"cannot listen on UDP port {settings.discovery_listen_port}: {exc}"
        log.error("discovery is off: %s", reason)
        return None, reason
    stack.push_async_callback(service.close)

    def on_new(cam: DiscoveredCamera) -> None:
        payload = {
            "name": cam.name,
            "ip": cam.ip,
            "port": cam.port,
            "stream_port": cam.stream_port,
            "first_seen": cam.first_seen,
        }
        realtime.spawn(realtime.emit_all("camera_discovered", payload))
        if settings.discovery_auto_add:
            realtime.spawn(_auto_add(manager, cam))

    service.add_listener(on_new)
    if settings.discovery_interval:
        service.start_periodic(settings.discovery_interval)
    if settings.esphome_discovery and interfaces:
        await _start_mdns(stack, service, [i.address for i in interfaces], manager)
    return service, ""


async def _start_mdns(
    stack: AsyncExitStack, service: DiscoveryService, addresses: list[str], manager: StreamRegistry
) -> None:
    """ESPHome devices over mDNS, on the discovery interfaces only; off (with a log line)
    when zeroconf cannot listen there."""
    from camserver.discovery.mdns import EsphomeBrowser, has_camera

    async def check(address: str, port: int) -> bool | None:
        # An announcement may name any address: connect only where cameras may be (SSRF).
        return await has_camera(address, port) if manager.guard.allowed(address) else None

    browser = EsphomeBrowser(addresses, service.found, check=check)
    try:
        await browser.start()
    except OSError as exc:
        log.warning("mDNS discovery of ESPHome cameras is off: %s", exc)
        await browser.close()
        return
    stack.push_async_callback(browser.close)
    manager.guard.local_names = browser.addresses_of


async def _auto_add(manager: StreamRegistry, cam: DiscoveredCamera) -> None:
    if cam.kind == "esphome" and cam.encrypted:
        return  # (it needs its encryption key: added by hand)
    cfg = cam.stream_config()
    if cfg.name in manager or target_url(cfg) in manager.names_by_url():
        return
    with suppress(StreamExists):
        await manager.create(cfg)
