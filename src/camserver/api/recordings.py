"""Recordings: list a stream's segments in a time range, read one's metadata, download it;
the recorded frame at a time (scrubbing) and recorded frames replayed as MJPEG.

Times are epoch seconds or ISO 8601 (``2026-11-25T20:00:00Z``). The segment being written
is listed too, with its end so far (``closed`` false).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response, StreamingResponse

from camserver.api.deps import GrantDep, ManagerDep, RecordingDep, VisibleName, visible_row
from camserver.api.disconnect import unless_client_leaves
from camserver.errors import NotRecording, RecordingNotFound, TooManyConversions
from camserver.keycount import KeyCounts
from camserver.live.mjpeg import CONTENT_TYPE, encode_part
from camserver.recording.clips import make_clip
from camserver.recording.index import Recording
from camserver.recording.playback import RecordedFrame, frame_at, frames_between, frames_from
from camserver.recording.recorder import POST_ROLL, PRE_ROLL
from camserver.recording.timelapse import day_of, day_rows, render_day, timelapse_mp4
from camserver.schema import EventMark, EventWindow, RecordingOut
from camserver.streaming.hub import HubFrame

router = APIRouter(tags=["recordings"])

_ERROR = {"content": {"application/json": {"example": {"detail": "no recording 7"}}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found", **_ERROR}}


def recording_out(r: Recording) -> RecordingOut:
    return RecordingOut(
        id=r.id,
        stream=r.stream,
        kind=r.kind,
        start=r.start,
        end=r.end,
        frames=r.frames,
        bytes=r.bytes,
        closed=r.closed,
        file_url=f"/api/recordings/{r.id}/file",
        node=r.node,
    )


def parse_time(value: str | None, default: float, what: str) -> float:
    """Epoch seconds or ISO 8601 (a time without a zone is UTC); 422 if neither."""
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise unprocessable(
                f"{what}: expected epoch seconds or ISO 8601, got {value[:40]!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        t = parsed.timestamp()
    if not math.isfinite(t) or not 0 <= t < 32503680000:  # before the year 3000
        raise unprocessable(f"{what}: {value[:40]!r} is not a time camserver can record")
    return t


TimeQuery = Annotated[
    str | None, Query(max_length=40, description="Epoch seconds or ISO 8601 (UTC if no zone).")
]


@router.get("/api/streams/{name}/recordings", responses=_NOT_FOUND)
async def list_recordings(
    name: VisibleName,
    recording: RecordingDep,
    manager: ManagerDep,
    start: TimeQuery = None,
    end: TimeQuery = None,
) -> list[RecordingOut]:
    """Segments of the stream overlapping [start, end] (default: the last 24 hours)."""
    manager.config(name)  # 404 for a stream that does not exist
    now = time.time()
    t1 = parse_time(end, now, "end")
    t0 = parse_time(start, t1 - 86400, "start")
    if t0 > t1:
        raise unprocessable("start is after end")
    rows = await asyncio.to_thread(recording.index.between, name, t0, t1)
    return [recording_out(r) for r in rows]


def unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


RecordingId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A recording's id.")]


async def _get(rid: int, recording: RecordingDep, grant: GrantDep) -> Recording:
    missing = RecordingNotFound(f"no recording {rid}")
    return await visible_row(recording.index.get, rid, grant, missing)


@router.get("/api/recordings/{recording_id}", responses=_NOT_FOUND)
async def get_recording(
    recording_id: RecordingId, recording: RecordingDep, grant: GrantDep
) -> RecordingOut:
    return recording_out(await _get(recording_id, recording, grant))


@router.get(
    "/api/recordings/{recording_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {"video/x-matroska": {}}}, **_NOT_FOUND},
)
async def recording_file(
    recording_id: RecordingId, recording: RecordingDep, grant: GrantDep
) -> Response:
    """The segment as Matroska (MJPEG stream-copied); range requests work, so players
    can seek. VLC, ffmpeg and mpv play it."""
    found = await _get(recording_id, recording, grant)
    path = recording.root / found.path
    if not path.is_file():
        if found.node:  # (set in cluster mode only)
            raise RecordingNotFound(
                f"recording {recording_id}: its file is not in this node's recordings folder "
                f"(recorded by node {found.node}; cluster nodes must share "
                "CAMSERVER_RECORDINGS_DIR)"
            )
        raise RecordingNotFound(f"recording {recording_id}: its file is gone")
    name = f"{found.stream}-{found.path.rsplit('/', 1)[-1]}"
    if not found.closed:
        return _growing_file(path, name)
    return FileResponse(
        path,
        media_type="video/x-matroska",
        filename=name,
        headers={"Cache-Control": "no-store"},
    )


def _growing_file(path: os.PathLike[str], filename: str) -> StreamingResponse:
    """A segment still being written, as far as it is written now. Starlette's
    FileResponse declares the length it saw, then reads to the end of the file: a segment
    that grew meanwhile made it send more than it declared, and uvicorn cut the download
    short (found under CI load). No range requests here: the file ends somewhere else a
    second later."""
    size = os.stat(path).st_size

    async def body() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:  # noqa: ASYNC230 - local disk, 64 KiB at a time
            left = size
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(64 * 1024, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    return StreamingResponse(
        body(),
        media_type="video/x-matroska",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.delete(
    "/api/recordings/{recording_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "Still being written", **_ERROR}, **_NOT_FOUND},
)
async def delete_recording(
    recording_id: RecordingId, recording: RecordingDep, grant: GrantDep
) -> Response:
    """Delete a finished recording: its file (and a timelapse day's MP4) and its entry.
    Needs the API token (or an admin token that sees the stream)."""
    found = await _get(recording_id, recording, grant)
    if not found.closed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"recording {recording_id} is still being written; turn recording off first",
        )
    await asyncio.to_thread(recording.recorder.delete, found)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


MAX_GAP = 5.0
"""``frame.jpeg?t=`` answers 404 when the last frame before ``t`` is older than this."""


@router.get(
    "/api/streams/{name}/frame.jpeg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **_NOT_FOUND},
)
async def recorded_frame(
    name: VisibleName,
    recording: RecordingDep,
    manager: ManagerDep,
    t: Annotated[str, Query(max_length=40, description="Epoch seconds or ISO 8601.")],
) -> Response:
    """The recorded frame received at ``t`` or just before (``X-Timestamp``: when)."""
    manager.config(name)
    when = parse_time(t, 0.0, "t")
    found = await asyncio.to_thread(_frame_at, recording, name, when)
    if found is None:
        raise RecordingNotFound(f"nothing of {name!r} was recorded at {when:.3f}")
    return Response(
        found.data,
        media_type="image/jpeg",
        headers={"X-Timestamp": f"{found.ts:.6f}", "Cache-Control": "max-age=3600"},
    )


def _frame_at(recording: RecordingDep, name: str, t: float) -> RecordedFrame | None:
    seg = recording.index.at(name, t)
    if seg is None:
        return None
    found = frame_at(recording.root, seg, t)
    return found if found is not None and t - found.ts <= MAX_GAP else None


SpeedQuery = Annotated[float, Query(ge=0.5, le=16, description="1 = as recorded.")]


@router.get(
    "/api/streams/{name}/replay.mjpeg",
    response_class=StreamingResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}}, **_NOT_FOUND},
)
async def replay(
    name: VisibleName,
    recording: RecordingDep,
    manager: ManagerDep,
    start: TimeQuery = None,
    speed: SpeedQuery = 1.0,
) -> StreamingResponse:
    """Recorded frames from ``start`` (default: an hour ago) as MJPEG, at their recorded
    timing divided by ``speed``; the response ends where the recording ends. Any MJPEG
    client plays it (``<img>``, VLC, ffmpeg)."""
    manager.config(name)
    t0 = parse_time(start, time.time() - 3600, "start")
    segments = await asyncio.to_thread(recording.index.between, name, t0, 32503680000.0)
    if not segments:
        raise RecordingNotFound(f"nothing of {name!r} was recorded after {t0:.3f}")
    return StreamingResponse(
        _replay_parts(recording, segments, t0, speed),
        media_type=CONTENT_TYPE,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _take(frames: Generator[RecordedFrame, None, None], n: int) -> list[RecordedFrame]:
    return list(itertools.islice(frames, n))


async def _replay_parts(
    recording: RecordingDep, segments: list[Recording], t0: float, speed: float
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    origin: tuple[float, float] | None = None  # (recorded time, loop time) in step
    last = 0.0
    seq = 0
    for seg in segments:
        frames = frames_from(recording.root, seg, t0)
        try:
            while batch := await asyncio.to_thread(_take, frames, 16):
                for f in batch:
                    if origin is None or f.ts - last > 2.0:
                        origin = (f.ts, loop.time())  # a gap in the recording: skip it
                    last = f.ts
                    delay = origin[1] + (f.ts - origin[0]) / speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    seq += 1
                    yield encode_part(HubFrame(seq, f.ts, f.data))
        finally:
            frames.close()


MAX_CLIP_SECONDS = 1800.0
T = TypeVar("T")
_CLIP_SLOTS = asyncio.Semaphore(os.cpu_count() or 1)
"""At most one H.264 conversion per core at a time."""
PER_CLIENT = 2
"""MP4 exports one client address may have going (made or waiting) at a time."""


class _Exports:
    """MP4 exports made for requests: each stops when its client leaves (an abandoned
    export kept both conversion slots busy and left its file behind), and one client
    address has at most PER_CLIENT going."""

    def __init__(self) -> None:
        self.going = KeyCounts()
        """Exports made or waiting, by client address."""

    async def make(self, request: Request, convert: Callable[[threading.Event], T]) -> T:
        """``convert(stop)`` in a worker thread, in a conversion slot; ClientGone (and
        ``stop`` set, the slot freed once the thread has stopped) if the client leaves."""
        address = request.client.host if request.client else ""
        if self.going.get(address, 0) >= PER_CLIENT:
            raise TooManyConversions(
                f"{address} already has {PER_CLIENT} MP4 exports being made: wait for one to finish"
            )
        self.going.add(address)
        try:
            return await unless_client_leaves(request, _in_slot(convert))
        finally:
            self.going.remove(address)


async def _in_slot(convert: Callable[[threading.Event], T]) -> T:
    stop = threading.Event()
    async with _CLIP_SLOTS:
        thread = asyncio.ensure_future(asyncio.to_thread(convert, stop))
        try:
            return await asyncio.shield(thread)
        except asyncio.CancelledError:
            stop.set()  # the encoder loop checks it at every frame
            with contextlib.suppress(Exception):
                await thread
            raise


EXPORTS = _Exports()


@router.get(
    "/api/streams/{name}/clip.mp4",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, **_NOT_FOUND},
)
async def clip(
    request: Request,
    name: VisibleName,
    recording: RecordingDep,
    manager: ManagerDep,
    start: Annotated[str, Query(max_length=40, description="Epoch seconds or ISO 8601.")],
    end: Annotated[str, Query(max_length=40, description="Epoch seconds or ISO 8601.")],
) -> FileResponse:
    """Recorded frames from ``start`` to ``end`` as H.264 (yuv420p) MP4, which a browser's
    ``<video>`` plays; made on demand (at most one per core at a time, two going per client
    address: 429 beyond; stopped if the client leaves) and cached for an hour."""
    manager.config(name)
    t0, t1 = parse_time(start, 0.0, "start"), parse_time(end, 0.0, "end")
    if t1 <= t0:
        raise unprocessable("end must be after start")
    if t1 - t0 > MAX_CLIP_SECONDS:
        raise unprocessable(f"a clip is at most {MAX_CLIP_SECONDS:g} s long")
    segments = await asyncio.to_thread(recording.index.between, name, t0, t1)
    if not segments:
        raise RecordingNotFound(f"nothing of {name!r} was recorded from {t0:.3f} to {t1:.3f}")
    path = recording.root / ".clips" / name / f"{int(t0 * 1000)}-{int(t1 * 1000)}.mp4"
    # A clip that reaches into the segment being written is made again each time.
    if not path.is_file() or not all(s.closed for s in segments):

        def convert(stop: threading.Event) -> int:
            frames = frames_between(recording.root, segments, t0, t1)
            return make_clip(frames, path, stop=stop)

        await EXPORTS.make(request, convert)
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"{name}-{int(t0)}.mp4",
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/api/streams/{name}/recordings/event",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "The stream does not record events", **_ERROR}, **_NOT_FOUND},
)
async def mark_event(
    name: VisibleName, recording: RecordingDep, manager: ManagerDep, body: EventMark
) -> EventWindow:
    """Mode ``events``: record a clip from a few seconds before now (pre-roll) to a few
    seconds after ``seconds`` from now (post-roll). Marking again extends it. Motion
    detection marks events the same way."""
    mode = manager.config(name).recording.mode
    now = time.time()
    if mode != "events" or not await recording.mark_event(name, now, now + body.seconds):
        raise NotRecording(
            f"stream {name!r} records {mode!r}; event clips need recording mode 'events'"
        )
    return EventWindow(stream=name, start=now - PRE_ROLL, end=now + body.seconds + POST_ROLL)


@router.get(
    "/api/streams/{name}/timelapse.mp4",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, **_NOT_FOUND},
)
async def timelapse(
    request: Request,
    name: VisibleName,
    recording: RecordingDep,
    manager: ManagerDep,
    day: Annotated[
        str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day; default today.")
    ] = None,
) -> FileResponse:
    """A day's timelapse frames as H.264 MP4 at 15 frames a second. A finished day's is
    made in the background after midnight (or now, if asked first); today's so far is made
    on request."""
    manager.config(name)
    day = day or day_of(time.time())
    try:
        datetime.fromisoformat(day)
    except ValueError:
        raise unprocessable(f"day: {day!r} is not a date") from None
    rows = await asyncio.to_thread(day_rows, recording.index, name, day)
    if not rows:
        raise RecordingNotFound(f"no timelapse of {name!r} on {day}")
    if all(r.closed for r in rows) and day < day_of(time.time()):
        # Kept beside the day's timelapse and deleted with it; made after midnight in the
        # background, or now if this request comes first.
        path = recording.root / timelapse_mp4(name, day)
        if not path.is_file():
            async with _CLIP_SLOTS:
                made = await asyncio.to_thread(recording.days.make, name, day)
            if made is None:
                raise RecordingNotFound(f"no timelapse of {name!r} on {day}")
    else:  # today's so far: made again on each request
        path = recording.root / ".clips" / name / f"timelapse-{day}.mp4"
        await EXPORTS.make(request, lambda stop: render_day(recording.root, rows, path, stop=stop))
    return FileResponse(path, media_type="video/mp4", filename=f"{name}-{day}.mp4")
