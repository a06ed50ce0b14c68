"""``/api/streams/{name}/settings``: the ESP32-CAM's own settings, read and changed through
its ``/status`` and ``/control`` endpoints; for a push camera, what its telemetry reported
and ``{"set": ...}`` messages to it (on its WebSocket now, or in the answer to its next
posted picture)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError

from camserver.api.deps import ClientDep, ManagerDep, SettingsDep, VisibleName
from camserver.api.disconnect import unless_client_leaves
from camserver.errors import NotAnESP32
from camserver.schema import ControlResult, SettingsResult, StreamConfig
from camserver.schema.esp32 import CONTROL_RANGES, check_control
from camserver.streaming.registry import StreamRegistry
from camserver.upstream import read_status, set_control

router = APIRouter(prefix="/api/streams", tags=["camera settings"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such stream"},
    409: {"description": "The stream was not added as an ESP32 host"},
    502: {"description": "The camera did not answer as expected"},
}


async def _esp32(manager: StreamRegistry, name: str) -> StreamConfig:
    cfg = manager.config(name)
    if cfg.pushed:
        return cfg
    if cfg.esphome:
        raise NotAnESP32(
            f"stream {name!r} is an ESPHome camera: its settings (resolution, quality, "
            "frame rates) are in its YAML, and ESPHome's API does not expose them"
        )
    if cfg.host is None:
        raise NotAnESP32(
            f"stream {name!r} was added by URL, not as an ESP32-CAM host: its camera "
            'settings are unknown (add it with "host" to use them)'
        )
    await manager.guard.check(f"http://{cfg.host}/")
    return cfg


@router.get("/{name}/settings", responses=_RESPONSES)
async def get_settings(
    name: VisibleName,
    manager: ManagerDep,
    client: ClientDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    """The camera's ``/status`` JSON (framesize, quality, brightness, …)."""
    cfg = await _esp32(manager, name)
    if cfg.pushed:
        return dict(manager.push_source(name).reported)
    assert cfg.host is not None
    return await unless_client_leaves(
        request,
        read_status(client, manager.guard, cfg.host, settings.snapshot_timeout, cfg.httpx_auth()),
    )


SettingsBody = Annotated[
    dict[str, Any],
    Body(
        examples=[{"framesize": 10, "quality": 12, "led_intensity": 0}],
        description=f"Variables of CameraWebServer's /control: {', '.join(CONTROL_RANGES)}",
    ),
]


@router.put("/{name}/settings", responses=_RESPONSES)
async def put_settings(
    name: VisibleName,
    manager: ManagerDep,
    settings: SettingsDep,
    client: ClientDep,
    body: SettingsBody,
) -> SettingsResult:
    """Validate every variable first (422 names the offending one), then call the camera's
    ``/control`` for each, in order, and report each one's outcome."""
    cfg = await _esp32(manager, name)
    problems = [(k, why) for k, v in body.items() if (why := check_control(k, v)) is not None]
    if not body:
        problems.append(("body", "give at least one setting"))
    if problems:
        raise RequestValidationError(
            [{"loc": ("body", k), "msg": why, "type": "value_error"} for k, why in problems]
        )
    if cfg.pushed:  # sent to the camera (now, or with the answer to its next picture)
        manager.push_source(name).apply_settings({k: int(v) for k, v in body.items()})
        return SettingsResult(ok=True, results={k: ControlResult(ok=True) for k in body})
    assert cfg.host is not None
    results: dict[str, ControlResult] = {}
    for var, value in body.items():
        error = await set_control(
            client,
            manager.guard,
            cfg.host,
            var,
            int(value),
            settings.snapshot_timeout,
            cfg.httpx_auth(),
        )
        results[var] = ControlResult(ok=error is None, error=error)
    return SettingsResult(ok=all(r.ok for r in results.values()), results=results)
