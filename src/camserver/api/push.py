"""Where push cameras send their pictures (issue 28; docs/push.md).

Three ways in, each with the stream's push key (``Authorization: Bearer <key>`` or
``?key=<key>``; Arduino clients find headers awkward):

- ``WS /api/streams/{name}/push``: a binary message is one JPEG, a text message JSON
  telemetry; the server sends ``{"set": {...}}`` and ``{"pause": true|false}`` back.
- ``POST /api/streams/{name}/frame`` (``image/jpeg``): one picture; the answer says when
  to post the next (``next_in``) and what to change (``set``).
- ``POST /api/streams/{name}/push.mjpeg``: a ``multipart/x-mixed-replace`` body for as
  long as it lasts (``ffmpeg -f mpjpeg``); also at go2rtc's ``POST /api/stream.mjpeg?dst=``.

These routes skip the token check and the JSON body limit (``api/security.py``): the push
key is their only credential, and a picture may be as large as
``CAMSERVER_MAX_FRAME_BYTES``. A push key opens nothing else. A refusal says the same for a
wrong key and a stream that does not exist, so it tells nothing about other streams.
``POST /api/streams/{name}/push/key`` (an admin's call) makes a new key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.websockets import WebSocketDisconnect, WebSocketState

from camserver.access import bearer_token
from camserver.api.deps import ManagerDep, Unscoped, VisibleName
from camserver.codecs import push
from camserver.codecs.mjpeg import END, NEED_DATA, BadPart, MJPEGParser
from camserver.errors import (
    CamServerError,
    ClusterUnavailable,
    NotAPicture,
    PictureTooBig,
    PushKeyRefused,
    PushTooFast,
    StreamError,
    StreamNotFound,
    StreamStopped,
    WrongPictureType,
)
from camserver.schema import PushKey
from camserver.sources.push import PushSource
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import hash_token

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["push cameras"])

_REFUSED = "wrong or old push key for this stream"


class PushAnswer(BaseModel):
    next_in: float | None = Field(
        description="Seconds until the next picture is due (null: post when you like)."
    )
    set: dict[str, Any] = Field(description="Camera settings to apply (framesize by name).")
    pause: bool = Field(description="Nobody needs pictures now: send none until told.")


def _keys(headers: Any, query: Any) -> list[str]:
    """The keys a request presents: ``?key=`` and a Bearer header (either may be the push
    key: a proxy or a ``.curlrc`` may add a token header of its own)."""
    auth = headers.get("authorization")
    found = [query.get("key"), bearer_token(auth) if auth else None]
    return [k for k in found if k]


def admit(manager: StreamRegistry, name: str, keys: list[str]) -> PushSource:
    """The push source of ``name`` if one of ``keys`` is its current key (else
    PushKeyRefused, the same for any stream, existing or not)."""
    try:
        cfg = manager.config(name)
    except StreamNotFound:
        cfg = None
    wanted = cfg.push_key_hash if cfg is not None and cfg.pushed else None
    # (Every key is hashed and compared, found or not: the time tells nothing either.)
    matches = [hmac.compare_digest(hash_token(k), wanted or "") for k in keys]
    if cfg is None or wanted is None or not any(matches):
        _refused(manager, name)
    assert cfg is not None
    if not cfg.enabled:
        raise StreamStopped(f"stream {name!r} is stopped: start it to take pictures")
    return manager.push_source(name)


def _address(client: Any) -> str:
    """``ip:port`` of the camera's connection (as the status's ``pusher`` shows it)."""
    return f"{client.host}:{client.port}" if client else "unknown"


async def _claim(manager: StreamRegistry, name: str, source: PushSource) -> None:
    """Make the camera's source run here before its pictures are offered (cluster mode:
    this node takes its lease, and the source starts)."""
    if await manager.claim(name):
        await source.until_running(1.0)


def _refused(manager: StreamRegistry, name: str) -> None:
    with contextlib.suppress(CamServerError):
        manager.push_source(name).counters.refused_keys += 1
    raise PushKeyRefused(_REFUSED)


# -- WebSocket ---------------------------------------------------------------------------


class _WebSocketPusher:
    mode = "ws"

    def __init__(self, ws: WebSocket, address: str) -> None:
        self.ws = ws
        self.address = address
        self._out: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(64)
        self.task = asyncio.get_running_loop().create_task(self._send_all())

    def send(self, message: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a camera not reading its socket
            self._out.put_nowait(message)

    def close(self, reason: str, code: int = push.CLOSE_REPLACED) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._out.put_nowait((code, reason))

    async def _send_all(self) -> None:
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, tuple):
                    await self.ws.close(item[0], item[1][:120])
                    return
                await self.ws.send_text(item)
        except (OSError, RuntimeError, WebSocketDisconnect):
            return  # the camera went: the reading side sees it too


@router.websocket("/api/streams/{name}/push")
async def push_ws(ws: WebSocket, name: str) -> None:
    manager: StreamRegistry = ws.state.runtime.manager
    try:
        source = admit(manager, name, _keys(ws.headers, ws.query_params))
    except StreamError as exc:
        status = 401 if isinstance(exc, PushKeyRefused) else 409
        await _deny(ws, status, str(exc))
        return
    address = _address(ws.client)
    max_bytes = manager.max_frame_bytes
    await ws.accept()
    pusher = _WebSocketPusher(ws, address)
    source.attach(pusher)
    strikes = push.Strikes()
    try:
        await manager.claim(name)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            got = push.classify(data if data is not None else message.get("text") or "", max_bytes)
            if isinstance(got, push.PushedFrame):
                strikes.good()
                source.offer(got.data)
            elif isinstance(got, push.Telemetry):
                source.telemetry_in(got.values)
            else:
                if data is not None:  # (bad telemetry is no frame: only a strike)
                    source.bad(got.reason)
                if got.too_big:
                    pusher.close(got.reason, push.CLOSE_TOO_BIG)
                    break
                if strikes.bad():
                    why = f"{strikes.limit} messages in a row were refused (last: {got.reason})"
                    log.warning("stream %s: closing the push from %s: %s", name, address, why)
                    pusher.close(why, push.CLOSE_GARBAGE)
                    break
    except WebSocketDisconnect:
        pass
    except ClusterUnavailable as exc:
        pusher.close(f"cannot take the camera here: {exc}", 1011)
    finally:
        source.detach(pusher)
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(pusher.task), 2.0)
        pusher.task.cancel()
        if ws.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _deny(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP status (never accept-then-close)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status))
    else:  # a WebSocket implementation without the denial extension: uvicorn says 403
        await ws.close(1008, detail[:120])


# -- one picture -------------------------------------------------------------------------


async def _body(request: Request, max_bytes: int) -> bytes:
    """The request body, 413 past ``max_bytes`` (never buffered beyond it)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise PictureTooBig(f"a picture over {max_bytes} bytes (CAMSERVER_MAX_FRAME_BYTES)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PictureTooBig(f"a picture over {max_bytes} bytes (CAMSERVER_MAX_FRAME_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/api/streams/{name}/frame",
    responses={
        401: {"description": "Wrong or old push key"},
        409: {"description": "The stream is stopped"},
        413: {"description": "Over CAMSERVER_MAX_FRAME_BYTES"},
        415: {"description": "Not image/jpeg"},
        422: {"description": "Not a whole JPEG"},
        429: {"description": "Over the push rate cap"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"image/jpeg": {"schema": {}}}}},
)
async def push_frame(
    name: str,
    request: Request,
    manager: ManagerDep,
    key: Annotated[str | None, Query(description="The push key (or a Bearer header)")] = None,
) -> PushAnswer:
    """One picture from a camera that wakes, posts and sleeps. The answer says when the
    next one is due and which settings to apply."""
    source = admit(manager, name, _keys(request.headers, request.query_params))
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("image/jpeg", "image/jpg"):
        raise WrongPictureType(f"send the picture as image/jpeg, not {ctype or 'no type'}")
    data = await _body(request, manager.max_frame_bytes)
    got = push.check_frame(data, manager.max_frame_bytes)
    if isinstance(got, push.BadMessage):
        source.bad(got.reason)
        raise NotAPicture(got.reason)
    if request.client is not None:
        source.posted(_address(request.client))
    await _claim(manager, name, source)
    outcome = source.offer(got.data)
    if outcome == "too_fast":
        raise PushTooFast(
            f"over the push rate cap of {source.max_fps:g} pictures a second "
            "(CAMSERVER_PUSH_MAX_FPS): dropped"
        )
    return PushAnswer(next_in=source.next_in(), set=source.take_pending(), pause=not source.running)


# -- multipart ---------------------------------------------------------------------------


async def _multipart(
    request: Request, manager: StreamRegistry, name: str, source: PushSource
) -> JSONResponse:
    max_bytes = manager.max_frame_bytes
    parser = MJPEGParser.from_content_type(
        request.headers.get("content-type"), max_frame_bytes=max_bytes
    )
    pusher = _StreamPusher(_address(request.client))
    source.attach(pusher)
    frames = 0
    strikes = push.Strikes()
    try:
        await _claim(manager, name, source)
        async for chunk in _until(_chunks(request), pusher.ended):
            parser.receive_data(chunk)
            while True:
                event = parser.next_event()
                if event is NEED_DATA or event is END:
                    break
                if isinstance(event, BadPart):
                    source.bad(event.reason)
                    if strikes.bad():
                        pusher.end(f"{strikes.limit} parts in a row were refused: {event.reason}")
                    continue
                strikes.good()
                frames += 1
                source.offer(event.data)
        parser.receive_data(b"")
    finally:
        source.detach(pusher, "the camera's multipart push ended")
    if pusher.reason is not None:
        return JSONResponse({"detail": pusher.reason, "frames": frames}, 409)
    return JSONResponse({"frames": frames})


class _StreamPusher:
    mode = "mjpeg"

    def __init__(self, address: str) -> None:
        self.address = address
        self.reason: str | None = None
        self.ended = asyncio.Event()

    def send(self, message: str) -> None:
        pass  # a POST body has no way back

    def close(self, reason: str) -> None:
        self.end(reason)

    def end(self, reason: str) -> None:
        self.reason = reason
        self.ended.set()


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that goes away just ends it."""
    with contextlib.suppress(ClientDisconnect):
        async for chunk in request.stream():
            yield chunk


async def _until(chunks: AsyncIterator[bytes], ended: asyncio.Event) -> AsyncIterator[bytes]:
    """``chunks`` until ``ended`` is set (the server ends the push)."""
    it = chunks.__aiter__()
    stop = asyncio.ensure_future(ended.wait())
    try:
        while not ended.is_set():
            step = asyncio.ensure_future(it.__anext__())
            await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()


_MULTIPART = {
    "responses": {
        401: {"description": "Wrong or old push key"},
        409: {"description": "The stream is stopped, or a newer connection took over"},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"multipart/x-mixed-replace": {"schema": {}}},
        }
    },
}


@router.post("/api/streams/{name}/push.mjpeg", **_MULTIPART)  # type: ignore[arg-type]
async def push_mjpeg(
    name: str,
    request: Request,
    manager: ManagerDep,
    key: Annotated[str | None, Query(description="The push key (or a Bearer header)")] = None,
) -> JSONResponse:
    """A ``multipart/x-mixed-replace`` body of JPEGs, for as long as it lasts
    (``ffmpeg -re -i clip -f mpjpeg -method POST URL``)."""
    source = admit(manager, name, _keys(request.headers, request.query_params))
    return await _multipart(request, manager, name, source)


@router.post("/api/stream.mjpeg", tags=["go2rtc compatibility"], **_MULTIPART)  # type: ignore[arg-type]
async def push_mjpeg_go2rtc(
    request: Request,
    manager: ManagerDep,
    dst: Annotated[str, Query(description="Stream name", max_length=64)],
    key: Annotated[str | None, Query(description="The push key (or a Bearer header)")] = None,
) -> JSONResponse:
    """go2rtc's push URL: the same as ``POST /api/streams/{dst}/push.mjpeg``."""
    source = admit(manager, dst, _keys(request.headers, request.query_params))
    return await _multipart(request, manager, dst, source)


# -- the key -----------------------------------------------------------------------------


@router.post(
    "/api/streams/{name}/push/key",
    dependencies=[Unscoped],
    tags=["streams"],
    responses={404: {"description": "No such stream"}, 409: {"description": "Not a push camera"}},
)
async def new_push_key(name: VisibleName, manager: ManagerDep) -> PushKey:
    """A new push key (shown this once); the old one stops working at once and a camera
    connected with it is disconnected."""
    return PushKey(key=await manager.new_push_key(name))
