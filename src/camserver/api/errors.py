"""Map camserver's exceptions and validation failures to JSON error responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from camserver.errors import (
    CamServerError,
    ClientGone,
    DiscoveryUnavailable,
    EventNotFound,
    MotionError,
    NameConflict,
    NotAnESP32,
    NotAPicture,
    NotDiscovered,
    NotPermitted,
    NotRecording,
    PictureTooBig,
    PushKeyRefused,
    PushTooFast,
    RecordingError,
    RecordingNotFound,
    SnapshotUnavailable,
    StoreError,
    StreamExists,
    StreamNotFound,
    StreamStopped,
    TargetNotAllowed,
    TokenNotFound,
    TooManyConversions,
    TooManyStreams,
    TooManyViewers,
    UnknownInterface,
    UpstreamError,
    UpstreamTimeout,
    WrongPictureType,
    WrongSourceKind,
)

__all__ = ["install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[CamServerError], int]] = [
    (ClientGone, 499),  # nginx's "client closed request": nobody reads it
    (StreamNotFound, 404),
    (StreamExists, 409),
    (NotAnESP32, 409),
    (WrongSourceKind, 409),
    (PushKeyRefused, 401),
    (StreamStopped, 409),
    (PictureTooBig, 413),
    (NotAPicture, 422),
    (WrongPictureType, 415),
    (PushTooFast, 429),
    (TooManyStreams, 409),
    (TooManyViewers, 503),
    (TargetNotAllowed, 422),
    (UpstreamTimeout, 504),
    (UpstreamError, 502),
    (SnapshotUnavailable, 503),
    (StoreError, 503),
    (NotDiscovered, 404),
    (NotPermitted, 403),
    (TokenNotFound, 404),
    (NameConflict, 409),
    (UnknownInterface, 422),
    (DiscoveryUnavailable, 503),
    (RecordingNotFound, 404),
    (NotRecording, 409),
    (TooManyConversions, 429),
    (RecordingError, 503),
    (EventNotFound, 404),
    (MotionError, 503),
]


def status_for(exc: CamServerError) -> int:
    """The HTTP status that answers ``exc`` (Socket.IO acks give it too)."""
    return next((c for kind, c in _STATUS if isinstance(exc, kind)), 400)


async def _camserver_error(request: Request, exc: Exception) -> JSONResponse:
    code = status_for(exc) if isinstance(exc, CamServerError) else 400
    if code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, str | None]] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.append({"field": ".".join(loc) or None, "message": msg})
    summary = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else str(e["message"]) for e in errors
    )
    return JSONResponse({"detail": summary, "errors": errors}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CamServerError, _camserver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
