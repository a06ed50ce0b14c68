"""``/api/streams``: list, create, delete, start, stop, status and snapshot of streams."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from camserver.api.deps import GrantDep, ManagerDep, SettingsDep, Unscoped, VisibleName
from camserver.api.disconnect import unless_client_leaves
from camserver.api.mjpeg_joins import MAX_FPS, mjpeg_response
from camserver.config import Settings
from camserver.live.mjpeg import CONTENT_TYPE
from camserver.schema import (
    PushAccess,
    StreamCreate,
    StreamCreated,
    StreamOut,
    StreamPatch,
    StreamStatus,
)
from camserver.tokens import hash_token, new_token

router = APIRouter(prefix="/api/streams", tags=["streams"])

_ERROR = {"content": {"application/json": {"example": {"detail": "no stream named 'porch'"}}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such stream", **_ERROR}}


@router.get("")
async def list_streams(manager: ManagerDep, grant: GrantDep) -> list[StreamOut]:
    """Every stream (that the token may see) with its live status."""
    return [s for s in manager.list() if grant.sees(s.name)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A stream of that name exists", **_ERROR}},
    dependencies=[Unscoped],
)
async def create_stream(
    body: StreamCreate, manager: ManagerDep, settings: SettingsDep, request: Request
) -> StreamCreated:
    """Add a stream: an ESP32-CAM by ``host`` (``ip`` or ``ip:port``; the stream is read
    from port + 1 as the firmware serves it), any MJPEG source by ``stream_url``, or a
    camera that pushes (``"source": "push"``): the answer then carries its push key and
    URLs, this once (docs/push.md)."""
    cfg = body.to_config()
    if not cfg.pushed:
        return StreamCreated(**(await manager.create(cfg)).model_dump())
    key = new_token()
    out = await manager.create(cfg.model_copy(update={"push_key_hash": hash_token(key)}))
    return StreamCreated(**out.model_dump(), push=push_access(settings, request, cfg.name, key))


def push_access(settings: Settings, request: Request, name: str, key: str) -> PushAccess:
    """Where the camera pushes to: the public URL when set, else as the request came."""
    base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url)
    base = base.rstrip("/")
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    path = f"/api/streams/{name}"
    return PushAccess(
        key=key,
        ws_url=f"{ws_base}{path}/push",
        frame_url=f"{base}{path}/frame",
        mjpeg_url=f"{base}{path}/push.mjpeg",
    )


@router.get("/{name}", responses=_NOT_FOUND)
async def get_stream(name: VisibleName, manager: ManagerDep) -> StreamOut:
    return manager.get(name)


@router.patch("/{name}", responses=_NOT_FOUND)
async def update_stream(name: VisibleName, body: StreamPatch, manager: ManagerDep) -> StreamOut:
    """Change host or URLs (the ingest restarts on a new URL), ``enabled`` or ``on_demand``."""
    return await manager.update(name, body)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_stream(name: VisibleName, manager: ManagerDep) -> Response:
    await manager.delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/start", responses=_NOT_FOUND)
async def start_stream(name: VisibleName, manager: ManagerDep) -> StreamStatus:
    """Start pulling the camera (remembered across restarts)."""
    return await manager.set_enabled(name, True)


@router.post("/{name}/stop", responses=_NOT_FOUND)
async def stop_stream(name: VisibleName, manager: ManagerDep) -> StreamStatus:
    """Stop pulling the camera and close its connection (remembered across restarts)."""
    return await manager.set_enabled(name, False)


@router.get("/{name}/status", responses=_NOT_FOUND)
async def stream_status(name: VisibleName, manager: ManagerDep) -> StreamStatus:
    return manager.status(name)


@router.get(
    "/{name}/snapshot",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG"},
        503: {"description": "No recent frame and the camera gave none", **_ERROR},
        **_NOT_FOUND,
    },
)
async def snapshot(name: VisibleName, manager: ManagerDep, request: Request) -> Response:
    """The latest frame if it is under ~2 s old, else one fetched from the camera."""
    client = request.client.host if request.client else None
    data = await unless_client_leaves(request, manager.snapshots.take(name, client))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


FpsQuery = Annotated[
    float | None, Query(gt=0, le=MAX_FPS, description="Cap the frame rate for this viewer")
]


@router.get(
    "/{name}/mjpeg",
    response_class=StreamingResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Endless MJPEG"}, **_NOT_FOUND},
)
async def mjpeg(
    name: VisibleName, manager: ManagerDep, request: Request, fps: FpsQuery = None
) -> StreamingResponse:
    """The camera as ``multipart/x-mixed-replace`` MJPEG, for ``<img>``, VLC, ffmpeg and
    Home Assistant's MJPEG camera (``mjpeg_url``; ``still_image_url`` is ``/snapshot``).
    One camera connection serves every client; a slow client skips frames."""
    return mjpeg_response(name, manager, fps, request.client.host if request.client else None)
