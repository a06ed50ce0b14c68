"""Dependencies shared by the routers, as ``Annotated`` aliases.

Each reads the :class:`~camserver.runtime.Runtime` that the lifespan put in Starlette's
lifespan state (``request.state.runtime``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Protocol, TypeVar

import httpx
from fastapi import Depends, Request

from camserver.config import Settings
from camserver.discovery.service import DiscoveryService
from camserver.errors import CamServerError, DiscoveryUnavailable, NotPermitted, StreamNotFound
from camserver.motion.service import MotionService
from camserver.recording.service import RecordingService
from camserver.runtime import Runtime
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import ALL, Grant

__all__ = [
    "ClientDep",
    "DiscoveryDep",
    "GrantDep",
    "ManagerDep",
    "MotionDep",
    "RecordingDep",
    "RuntimeDep",
    "SettingsDep",
    "Unscoped",
    "VisibleName",
    "visible_name",
    "visible_row",
]

# All ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread on every
# request, a thread hop per request for what is an attribute lookup.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_manager(runtime: RuntimeDep) -> StreamRegistry:
    return runtime.manager


async def get_discovery(runtime: RuntimeDep) -> DiscoveryService:
    if runtime.discovery is None:
        raise DiscoveryUnavailable(f"discovery is not running: {runtime.discovery_off}")
    return runtime.discovery


async def get_client(runtime: RuntimeDep) -> httpx.AsyncClient:
    return runtime.client


async def get_recording(runtime: RuntimeDep) -> RecordingService:
    return runtime.recording


async def get_motion(runtime: RuntimeDep) -> MotionService:
    return runtime.motion


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


async def get_grant(request: Request) -> Grant:
    """What the request's token allows (AccessMiddleware put it there; an open server and
    the public routes have none, and everything is allowed)."""
    grant: Grant = getattr(request.state, "grant", ALL)
    return grant


GrantDep = Annotated[Grant, Depends(get_grant)]


async def visible_name(name: str, grant: GrantDep) -> str:
    """The ``{name}`` path parameter, 404 when the token may not see that stream."""
    if not grant.sees(name):
        raise StreamNotFound(name)
    return name


class _OfAStream(Protocol):
    @property
    def stream(self) -> str: ...


Row = TypeVar("Row", bound=_OfAStream)


async def visible_row(
    load: Callable[[int], Row | None], row_id: int, grant: Grant, missing: CamServerError
) -> Row:
    """Row ``row_id`` of a stream (a recording, a motion event), read in a worker thread;
    ``missing`` (a 404) when there is none or the token may not see its stream, so that
    ids tell nothing about streams a token may not see."""
    found = await asyncio.to_thread(load, row_id)
    if found is None or not grant.sees(found.stream):
        raise missing
    return found


async def unscoped(grant: GrantDep) -> None:
    """403 for tokens scoped to some streams (routes about every stream, or none)."""
    if grant.scoped:
        raise NotPermitted("this token is limited to some streams; this needs a broader one")


VisibleName = Annotated[str, Depends(visible_name)]
Unscoped = Depends(unscoped)

ClientDep = Annotated[httpx.AsyncClient, Depends(get_client)]
DiscoveryDep = Annotated[DiscoveryService, Depends(get_discovery)]
RecordingDep = Annotated[RecordingService, Depends(get_recording)]
MotionDep = Annotated[MotionService, Depends(get_motion)]
ManagerDep = Annotated[StreamRegistry, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
