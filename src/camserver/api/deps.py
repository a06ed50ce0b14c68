"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from camserver.config import Settings
from camserver.streaming.manager import StreamManager

__all__ = ["ManagerDep", "SettingsDep"]


def get_manager(request: Request) -> StreamManager:
    manager: StreamManager = request.app.state.manager
    return manager


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ManagerDep = Annotated[StreamManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
