"""``GET /api/streams/{name}/mjpeg`` ahead of the router: a viewer admitted in a fraction
of the route's cost, for crowds that join at once.

The route (``camserver.api.streams``) stays the API: its documentation, its errors, every
other client. This middleware sits inside the access check (``AccessMiddleware`` has put
the token's grant in the scope) and before FastAPI's routing and dependency solving, which
were a third of a viewer's admission when 2,000 joined at once. It serves only a request
the route would serve, with the same checks and the same response (:func:`mjpeg_response`):
the token may see the stream, ``?fps=`` is absent or a number in (0, 60], the stream
exists and admits one more viewer of this client. Anything else goes on to the route,
which checks again and answers as always (404, 422, 503 with its message).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from camserver.errors import CamServerError
from camserver.live.mjpeg import MJPEGResponse
from camserver.runtime import Runtime
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import ALL, Grant

__all__ = ["MJPEGJoins", "mjpeg_response"]

_PATH = re.compile(r"/api/streams/([^/]+)/mjpeg")
_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")
"""A plain decimal ``?fps=``: whatever else the route's validation decides."""
MAX_FPS = 60.0
"""``?fps=`` above this is refused (the route's ``FpsQuery``)."""


def mjpeg_response(
    name: str, manager: StreamRegistry, fps: float | None, client: str | None
) -> MJPEGResponse:
    """One MJPEG viewer of ``name``; raises the admission's error (404 or 503) before the
    response starts."""
    hub = manager.admission.admit(name, client)
    return MJPEGResponse(
        hub, fps, client=client, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _fps(query: bytes) -> tuple[bool, float | None]:
    """(valid, the ``fps`` query parameter) as the route would read it."""
    if not query:
        return True, None
    found = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "fps"]
    if not found:
        return True, None
    if len(found) > 1 or not _NUMBER.fullmatch(found[0]):
        return False, None
    fps = float(found[0])
    return 0 < fps <= MAX_FPS, fps


class MJPEGJoins:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._admit(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    @staticmethod
    def _admit(scope: Scope) -> MJPEGResponse | None:
        if scope["method"] != "GET":
            return None
        match = _PATH.fullmatch(scope["path"])
        state = scope.get("state", {})
        runtime = state.get("runtime")
        if match is None or not isinstance(runtime, Runtime):
            return None
        name = match.group(1)
        grant: Grant = state.get("grant", ALL)
        valid, fps = _fps(scope.get("query_string", b""))
        if not valid or not grant.sees(name):
            return None
        client = scope.get("client")
        try:
            return mjpeg_response(name, runtime.manager, fps, client[0] if client else None)
        except CamServerError:
            return None  # the route answers it
