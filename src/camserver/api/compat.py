"""go2rtc-style URLs, so people moving from go2rtc keep their links working."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from camserver.api.deps import GrantDep, ManagerDep, visible_name
from camserver.api.mjpeg_joins import mjpeg_response
from camserver.api.streams import FpsQuery, snapshot

router = APIRouter(prefix="/api", tags=["go2rtc compatibility"])

Src = Annotated[str, Query(description="Stream name", max_length=64)]


@router.get("/frame.jpeg", response_class=Response)
async def frame_jpeg(src: Src, manager: ManagerDep, request: Request, grant: GrantDep) -> Response:
    """Same as ``/api/streams/{src}/snapshot``."""
    return await snapshot(await visible_name(src, grant), manager, request)


@router.get("/stream.mjpeg", response_class=StreamingResponse)
async def stream_mjpeg(
    src: Src, manager: ManagerDep, request: Request, grant: GrantDep, fps: FpsQuery = None
) -> StreamingResponse:
    """Same as ``/api/streams/{src}/mjpeg``."""
    client = request.client.host if request.client else None
    return mjpeg_response(await visible_name(src, grant), manager, fps, client)
