"""Motion events: list them by stream and time, read one, its snapshot, delete one.

(These are the HTTP routes of motion *events*; Socket.IO's handlers are in
``api/realtime.py``.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from camserver.api.deps import GrantDep, MotionDep, visible_row
from camserver.api.recordings import TimeQuery, parse_time, unprocessable
from camserver.errors import EventNotFound, StreamNotFound
from camserver.motion.events import MotionEvent
from camserver.schema import EventOut

router = APIRouter(tags=["motion"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Not found",
        "content": {"application/json": {"example": {"detail": "no motion event 7"}}},
    }
}


EventId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A motion event's id.")]


@router.get("/api/events")
async def list_events(
    motion: MotionDep,
    grant: GrantDep,
    stream: Annotated[str | None, Query(max_length=64, description="One stream's only.")] = None,
    start: TimeQuery = None,
    end: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """Events overlapping [start, end] (default: the last 24 hours), newest first, of the
    streams the token sees."""
    now = time.time()
    t1 = parse_time(end, now, "end")
    t0 = parse_time(start, t1 - 86400, "start")
    if t0 > t1:
        raise unprocessable("start is after end")
    if stream is not None:
        if not grant.sees(stream):
            raise StreamNotFound(stream)
        streams: list[str] | None = [stream]
    else:
        streams = None if grant.streams is None else sorted(grant.streams)
    found = await asyncio.to_thread(motion.store.between, streams, t0, t1, limit)
    return [EventOut(**e.public()) for e in found]


async def _get(eid: int, motion: MotionDep, grant: GrantDep) -> MotionEvent:
    return await visible_row(motion.store.get, eid, grant, EventNotFound(f"no motion event {eid}"))


@router.get("/api/events/{event_id}", responses=_NOT_FOUND)
async def get_event(event_id: EventId, motion: MotionDep, grant: GrantDep) -> EventOut:
    return EventOut(**(await _get(event_id, motion, grant)).public())


@router.get(
    "/api/events/{event_id}/snapshot.jpg",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **_NOT_FOUND},
)
async def event_snapshot(event_id: EventId, motion: MotionDep, grant: GrantDep) -> FileResponse:
    """The frame at the event's peak (the first one while the event is young)."""
    found = await _get(event_id, motion, grant)
    path = motion.root / found.snapshot if found.snapshot else None
    if path is None or not path.is_file():
        raise EventNotFound(f"motion event {event_id} has no snapshot")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.delete(
    "/api/events/{event_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND
)
async def delete_event(event_id: EventId, motion: MotionDep, grant: GrantDep) -> Response:
    """Delete an event and its snapshot (API token, or an admin token that sees it)."""
    found = await _get(event_id, motion, grant)
    await asyncio.to_thread(motion.delete, found)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
