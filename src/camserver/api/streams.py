"""``/api/streams``: list, create, delete, start, stop, status and snapshot of streams."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from camserver.api.deps import GrantDep, ManagerDep, Unscoped, VisibleName
from camserver.api.disconnect import unless_client_leaves
from camserver.live.mjpeg import CONTENT_TYPE, MJPEGResponse
from camserver.schema import StreamCreate, StreamOut, StreamPatch, StreamStatus
from camserver.streaming.registry import StreamRegistry

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
async def create_stream(body: StreamCreate, manager: ManagerDep) -> StreamOut:
    """Add a stream: an ESP32-CAM by ``host`` (``ip`` or ``ip:port``; the stream is read
    from port + 1 as the firmware serves it) or any MJPEG source by ``stream_url``."""
    return await manager.create(body.to_config())


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
    float | None, Query(gt=0, le=60, description="Cap the frame rate for this viewer")
]


def mjpeg_response(
    name: str, manager: StreamRegistry, fps: float | None, request: Request
) -> MJPEGResponse:
    client = request.client.host if request.client else None
    hub = manager.admission.admit(name, client)  # 404 or 503 before the response starts
    return MJPEGResponse(
        hub, fps, client=client, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


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
    return mjpeg_response(name, manager, fps, request)
