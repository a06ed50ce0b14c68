"""What :mod:`camserver.client` raises. Under camserver's one exception root::

    CamServerError                (camserver.errors)
    └── ClientError               anything the client raises on purpose
        ├── ServerUnreachable     no connection, or it broke or timed out (httpx, Socket.IO)
        ├── UnexpectedAnswer      a success whose body is not the shape the API promises
        └── APIError              the server answered an error: .status, .detail, .errors
            ├── BadRequest        400
            ├── Unauthorized      401: no token, or a wrong one
            ├── Forbidden         403: the token may not do this
            ├── NotFound          404: no such stream, recording or event
            ├── Conflict          409: the name is taken, not an ESP32, a file being written
            ├── Invalid           422: a field is wrong (.errors names each one)
            ├── TooManyRequests   429: too many viewers or connections from this client
            └── ServerError       5xx: the camera or a store failed (503: unavailable)

The message is the server's own ``detail``.
"""

from __future__ import annotations

from typing import Any

import httpx

from camserver.errors import CamServerError

__all__ = [
    "APIError",
    "BadRequest",
    "ClientError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "ServerError",
    "ServerUnreachable",
    "TooManyRequests",
    "Unauthorized",
    "UnexpectedAnswer",
    "error_for",
    "raise_for_status",
]


class ClientError(CamServerError):
    """Anything :mod:`camserver.client` raises on purpose."""


class ServerUnreachable(ClientError):
    """No connection to the server, or the connection broke or timed out."""


class UnexpectedAnswer(ClientError):
    """The server answered success with a body that is not the shape the API promises
    (not a camserver server, or a version that changed it)."""


class APIError(ClientError):
    """The server answered with an error status."""

    def __init__(
        self, status: int, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        """422: ``[{"field": ..., "message": ...}]``."""


class BadRequest(APIError):
    """400."""


class Unauthorized(APIError):
    """401: no token, or a wrong one."""


class Forbidden(APIError):
    """403: the token may not do this."""


class NotFound(APIError):
    """404: no such stream, recording or event."""


class Conflict(APIError):
    """409."""


class Invalid(APIError):
    """422: the request's fields are wrong; ``errors`` names each one."""


class TooManyRequests(APIError):
    """429."""


class ServerError(APIError):
    """5xx."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: TooManyRequests,
}


def error_for(status: int, body: object) -> APIError:
    """The exception for an error answer: ``body`` is its JSON (or text, or None)."""
    detail: object = body
    errors: list[dict[str, Any]] = []
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(body.get("errors"), list):
            errors = [e for e in body["errors"] if isinstance(e, dict)]
    if not isinstance(detail, str) or not detail:
        detail = f"HTTP {status}" + (f": {detail}" if detail else "")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    return cls(status, detail, errors)


def raise_for_status(r: httpx.Response) -> None:
    """Raise the exception for ``r`` if it is an error answer (its body must be read)."""
    if r.status_code < 400:
        return
    try:
        body: object = r.json()
    except ValueError:
        body = r.text.strip()[:200]
    raise error_for(r.status_code, body)
