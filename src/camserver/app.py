"""The ASGI application: FastAPI routers wrapped by the Socket.IO server.

The lifespan runs a :class:`~camserver.runtime.Runtime`, which owns every long-lived
thing; requests reach it through the lifespan state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import WS_PROTOCOLS
from uvicorn.importer import import_from_string

from camserver import __version__
from camserver.access import TokenChecker
from camserver.api import (
    camera_settings,
    cluster,
    compat,
    discovery,
    docs,
    health,
    metrics,
    motion,
    onvif,
    push,
    recordings,
    rtsp,
    streams,
    tokens,
)
from camserver.api.browser import BrowserGuardMiddleware
from camserver.api.errors import install_error_handlers
from camserver.api.head import HeadAsGet
from camserver.api.mjpeg_joins import MJPEGJoins
from camserver.api.realtime import Realtime
from camserver.api.security import (
    AccessMiddleware,
    BodyLimitMiddleware,
    EngineIOGate,
    TokenlessSessions,
)
from camserver.config import Settings
from camserver.connections import ConnectionLimits
from camserver.live.sockets import (
    DirectWebSocketsProtocol,
    counted_ws_protocol,
    limited_protocol,
)
from camserver.live.sockets import verify as verify_uvicorn
from camserver.logs import CollapseHandlerErrors, RedactTokens
from camserver.runtime import Runtime, StartCameras
from camserver.telemetry import ConnectionCollector

__all__ = ["WEB_DIR", "CamServerApp", "create_app", "uvicorn_options"]

log = logging.getLogger(__name__)

# The dashboard: web/ beside src/ in a checkout (editable install), else inside the package.
_HERE = Path(__file__).resolve().parent
WEB_DIR = next(
    (p for p in (_HERE.parents[1] / "web", _HERE / "web") if (p / "index.html").is_file()),
    _HERE / "web",
)


class CamServerApp:
    """The ASGI application, with the :class:`Runtime` it runs while it runs."""

    def __init__(self, asgi: ASGIApp, settings: Settings) -> None:
        self._asgi = asgi
        self.settings = settings
        self.runtime: Runtime | None = None
        self.limits = ConnectionLimits(
            max_header_bytes=settings.max_header_bytes,
            idle_timeout=settings.idle_timeout,
            request_timeout=settings.request_timeout,
            max_per_client=settings.max_connections_per_client,
        )
        """Counted by the uvicorn protocols of :func:`uvicorn_options`, shown in /metrics."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    def begin_shutdown(self) -> None:
        """End every viewer at once (the server is shutting down)."""
        if self.runtime is not None:
            self.runtime.begin_shutdown()


def uvicorn_options(app: CamServerApp) -> dict[str, Any]:
    """How uvicorn must serve ``app`` (``camserver serve`` and the tests alike). Raises
    :class:`~camserver.live.sockets.UvicornInternalsChanged` when the installed uvicorn
    lacks what camserver's protocols rely on (an untested upgrade)."""
    verify_uvicorn()
    settings = app.settings
    # "auto" is websockets' sans-I/O protocol when websockets is installed (it is a
    # dependency); camserver's subclass lets Socket.IO frames skip the ASGI path.
    ws: type[asyncio.Protocol] = (
        DirectWebSocketsProtocol
        if settings.websocket in ("auto", "websockets-sansio")
        else import_from_string(WS_PROTOCOLS[settings.websocket])
    )
    return {
        "http": limited_protocol(app.limits),
        "loop": settings.event_loop,
        # Whichever it is, it releases its socket's slot in app.limits when it closes.
        "ws": counted_ws_protocol(app.limits, ws),
        # Browsers (Chromium, Firefox) offer permessage-deflate and uvicorn accepts it by
        # default: every JPEG, which does not compress, would be deflated once per viewer.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 3,
        # uvicorn's 2048 overflowed when 2,000 viewers joined at once (bench/joins.py): the
        # dropped SYNs came back after the kernel's 1 s (then 3 s) retry. The kernel caps it
        # at net.core.somaxconn (4096 on current kernels).
        "backlog": 8192,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }


def _sio_manager(settings: Settings) -> Any:
    """Cluster mode: python-socketio's Redis manager, for events every node must see."""
    target = settings.redis_target()
    if target is None:
        return None
    return socketio.AsyncRedisManager(
        target,
        channel=f"{settings.redis_prefix}sio",
        # RESP2, as camserver.cluster.backend explains.
        redis_options={"socket_connect_timeout": 2.0, "protocol": 2},
    )


def create_app(
    settings: Settings | None = None, *, cameras: StartCameras | None = None
) -> CamServerApp:
    """The application; ``cameras`` starts cameras that live as long as it (``--demo``)."""
    settings = settings or Settings()
    checker = TokenChecker(settings.api_token, settings.view_token)
    tokenless = TokenlessSessions(
        settings.max_tokenless_sessions_per_client, settings.socketio_connect_timeout
    )
    realtime = Realtime(checker, settings.cors_list(), _sio_manager(settings), tokenless)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access_log.filters):
        access_log.addFilter(RedactTokens())
    eio_log = logging.getLogger("engineio.server")
    if not any(isinstance(f, CollapseHandlerErrors) for f in eio_log.filters):
        eio_log.addFilter(CollapseHandlerErrors())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Runtime]]:
        async with Runtime.running(settings, realtime, checker, cameras) as runtime:
            wrapper.runtime = runtime
            runtime.metrics.register(ConnectionCollector(wrapper.limits))
            try:
                yield {"runtime": runtime}  # request.state.runtime (api/deps.py)
            finally:
                wrapper.runtime = None

    app = FastAPI(
        title="camserver",
        version=__version__,
        summary="ESP32-CAM streams, pulled once and fanned out live.",
        lifespan=lifespan,
        docs_url=None,  # api/docs.py serves Swagger UI from the package
        redoc_url=None,
    )
    install_error_handlers(app)
    # Outermost last: CORS answers preflights before the token check sees them.
    app.add_middleware(MJPEGJoins)  # (innermost: after the token check)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessMiddleware, checker=checker)
    if settings.cors_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_list(),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    routers = (
        health,
        streams,
        recordings,
        motion,
        discovery,
        camera_settings,
        compat,
        metrics,
        docs,
        tokens,
        cluster,
        push,
        rtsp,
        onvif,
    )
    for module in routers:
        app.include_router(module.router)
    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    wrapper = CamServerApp(
        BrowserGuardMiddleware(
            EngineIOGate(
                socketio.ASGIApp(realtime.sio, other_asgi_app=HeadAsGet(app)), checker, tokenless
            ),
            settings.allowed_host_list(),
        ),
        settings,
    )
    return wrapper
