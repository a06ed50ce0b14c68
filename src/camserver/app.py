"""The ASGI application: FastAPI routers wrapped by the Socket.IO server.

The lifespan owns every long-lived thing: the httpx client, the store, the stream manager
(hubs and ingest tasks) and, with ``demo``, the simulated cameras.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from starlette.types import ASGIApp

from camserver import __version__
from camserver.api import camera_settings, compat, discovery, health, metrics, streams
from camserver.api.errors import install_error_handlers
from camserver.api.events import Realtime
from camserver.api.metrics import LoopLagMonitor, StateCollector
from camserver.api.security import AccessMiddleware, BodyLimitMiddleware, RedactTokens, TokenChecker
from camserver.config import Settings
from camserver.discovery.interfaces import select_interfaces
from camserver.discovery.service import DiscoveredCamera, DiscoveryService
from camserver.errors import StreamExists
from camserver.memory import Housekeeper
from camserver.models import StreamConfig
from camserver.netguard import NetworkGuard
from camserver.store import SQLiteStore
from camserver.streaming.ingest import IngestTiming
from camserver.streaming.manager import StreamManager

__all__ = ["WEB_DIR", "begin_shutdown", "create_app", "uvicorn_options"]

log = logging.getLogger(__name__)

# The dashboard: web/ beside src/ in a checkout (editable install), else inside the package.
_HERE = Path(__file__).resolve().parent
WEB_DIR = next(
    (p for p in (_HERE.parents[1] / "web", _HERE / "web") if (p / "index.html").is_file()),
    _HERE / "web",
)


def _timing(settings: Settings) -> IngestTiming:
    """The ingest's settings, which share their names with camserver's."""
    return IngestTiming(
        **{f.name: getattr(settings, f.name) for f in dataclasses.fields(IngestTiming)}
    )


async def _start_demo(stack: AsyncExitStack, count: int) -> list[StreamConfig]:
    """Start ``count`` simulated cameras in-process; their stream configurations."""
    from camserver.sim.camera import SimCamera

    configs = []
    for i in range(1, count + 1):
        cam = await stack.enter_async_context(SimCamera(f"demo-{i}"))
        configs.append(StreamConfig.for_host(f"demo-{i}", cam.address))
        log.info("demo camera demo-%d on http://%s", i, cam.address)
    return configs


async def _start_discovery(
    stack: AsyncExitStack, settings: Settings, manager: StreamManager, realtime: Realtime
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
    return service, ""


async def _auto_add(manager: StreamManager, cam: DiscoveredCamera) -> None:
    cfg = cam.stream_config()
    if cfg.name in manager or cfg.stream_url in manager.names_by_url():
        return
    with suppress(StreamExists):
        await manager.create(cfg)


def begin_shutdown(asgi_app: object) -> None:
    """Close every hub, ending MJPEG responses and Socket.IO frame loops at once."""
    fastapi_app = getattr(asgi_app, "other_asgi_app", None)
    manager = getattr(getattr(fastapi_app, "state", None), "manager", None)
    if isinstance(manager, StreamManager):
        manager.close_hubs()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn must serve camserver (``camserver serve`` and the tests alike)."""
    return {
        "loop": settings.event_loop,
        "ws": settings.websocket,
        # Browsers (Chromium, Firefox) offer permessage-deflate and uvicorn accepts it by
        # default: every JPEG, which does not compress, would be deflated once per viewer.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 3,
    }


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or Settings()
    checker = TokenChecker(settings.api_token, settings.view_token)
    realtime = Realtime(checker, settings.cors_list(), settings.max_viewers)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # trust_env=False: a proxy set for the host must not carry LAN camera traffic.
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    trust_env=False,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                    headers={"User-Agent": f"camserver/{__version__}"},
                )
            )
            # Simulated cameras stop last, after the streams that read them.
            demo = await _start_demo(stack, settings.demo) if settings.demo else []
            store = await SQLiteStore.open(settings.db)
            stack.push_async_callback(store.close)
            manager = StreamManager(
                store,
                client,
                _timing(settings),
                snapshot_max_age=settings.snapshot_max_age,
                snapshot_timeout=settings.snapshot_timeout,
                on_demand_grace=settings.on_demand_grace,
                max_streams=settings.max_streams,
                guard=NetworkGuard(settings.networks()),
            )
            realtime.attach(manager)
            await manager.load()
            stack.push_async_callback(manager.close)
            stack.push_async_callback(realtime.close)
            for cfg in demo:
                await manager.put(cfg)
            discovery, why_off = await _start_discovery(stack, settings, manager, realtime)
            app.state.discovery = discovery
            app.state.discovery_off = why_off
            app.state.loop_lag = LoopLagMonitor()
            app.state.housekeeper = Housekeeper()
            for job in (app.state.loop_lag.run(), app.state.housekeeper.run()):
                stack.callback(asyncio.create_task(job).cancel)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(StateCollector(app.state))
            # process_* (RSS, CPU, open files) and python_gc_*, as Prometheus users expect.
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)
            app.state.metrics_registry = registry
            app.state.settings = settings
            app.state.client = client
            app.state.manager = manager
            app.state.realtime = realtime
            log.info("camserver %s ready, database %s", __version__, settings.db)
            yield

    app = FastAPI(
        title="camserver",
        version=__version__,
        summary="ESP32-CAM streams, pulled once and fanned out live.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Outermost last: CORS answers preflights before the token check sees them.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessMiddleware, checker=checker)
    if settings.cors_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_list(),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(health.router)
    app.include_router(streams.router)
    app.include_router(discovery.router)
    app.include_router(camera_settings.router)
    app.include_router(compat.router)
    app.include_router(metrics.router)
    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    wrapped: ASGIApp = socketio.ASGIApp(realtime.sio, other_asgi_app=app)
    return wrapped
