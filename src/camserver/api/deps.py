"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from camserver.config import Settings
from camserver.discovery.service import DiscoveryService
from camserver.errors import DiscoveryUnavailable
from camserver.streaming.manager import StreamManager

__all__ = ["ClientDep", "DiscoveryDep", "ManagerDep", "SettingsDep"]

# All ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread on every
# request, a thread hop per request for what is an attribute lookup.


async def get_manager(request: Request) -> StreamManager:
    manager: StreamManager = request.app.state.manager
    return manager


async def get_discovery(request: Request) -> DiscoveryService:
    discovery: DiscoveryService | None = request.app.state.discovery
    if discovery is None:
        raise DiscoveryUnavailable(f"discovery is not running: {request.app.state.discovery_off}")
    return discovery


async def get_client(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.client
    return client


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ClientDep = Annotated[httpx.AsyncClient, Depends(get_client)]
DiscoveryDep = Annotated[DiscoveryService, Depends(get_discovery)]
ManagerDep = Annotated[StreamManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
