"""``HEAD`` for every ``GET`` route: the same status and headers, no body.

FastAPI's routes answer only the methods they declare, so ``HEAD /healthz`` was a 405/404:
``wget --spider``, uptime monitors (Uptime Kuma's "HTTP(s)" with HEAD, curl ``-I``) then
report the server down. Declaring ``HEAD`` on each route would repeat every operation in
``/openapi.json`` (duplicate operation ids); instead this middleware runs the ``GET`` and
ends the response right after its headers.

uvicorn itself knows the request is a ``HEAD`` (its own scope keeps the method) and sends no
body; ending the response at once makes it answer the app's ``http.disconnect`` next, which
stops an endless response (MJPEG, replay) at its first await. The hand-over of the socket to
the MJPEG fan-out (``camserver.direct``) is withheld: a ``HEAD`` gets the plain path.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camserver.live.sockets import DIRECT

__all__ = ["HeadAsGet"]


class HeadAsGet:
    """Serve ``HEAD`` as ``GET`` and drop the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != DIRECT}
        # A copy: the server's own scope must still say HEAD.
        get_scope = {**scope, "method": "GET", "extensions": extensions}
        ended = False

        async def send_headers_only(message: Message) -> None:
            nonlocal ended
            if ended:
                return  # the body (or the rest of it) of the GET
            if message["type"] == "http.response.start":
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = True

        await self.app(get_scope, receive, send_headers_only)
