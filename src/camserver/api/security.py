"""Access control and request limits, as plain ASGI middleware (they cover the API, the
MJPEG streams and the static files alike).

- Tokens: with ``api_token`` and/or ``view_token`` set, every route except ``/healthz``, the
  dashboard shell and the API docs needs one, as ``Authorization: Bearer <token>`` or
  ``?token=<token>`` (for ``<img>`` and VLC URLs). The view token is read-only: any method
  other than GET/HEAD is refused with 403. Tokens are compared in constant time and never
  logged (``camserver.logs.RedactTokens`` scrubs them from access logs).
- Bodies larger than ``max_body_bytes`` are refused with 413 before the app reads them.
- Push cameras' routes (``POST`` of pictures, ``api/push.py``) take neither: the stream's
  push key is their credential (checked there) and a picture may be as large as
  ``CAMSERVER_MAX_FRAME_BYTES`` (capped there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camserver.access import TokenChecker, bearer_token, query_token
from camserver.keycount import KeyCounts
from camserver.live.sockets import DIRECT, DirectWrite

__all__ = [
    "AccessMiddleware",
    "BodyLimitMiddleware",
    "EngineIOGate",
    "TokenlessSessions",
    "onvif_route",
    "push_route",
    "send_error",
    "token_from",
]

# The dashboard shell and the API docs: public, so a browser can load the page that asks
# for the token. Everything else is behind the token.
# Matched whole (fullmatch): "$" alone also matches before a trailing newline ("/docs%0A").
_PUBLIC = re.compile(
    r"/(healthz|index\.html|app\.js|style\.css|favicon\.ico|vendor/[\w.-]+|docs|docs\.js"
    r"|openapi\.json)?"
)
# Where push cameras send pictures (api/push.py checks the push key and the size itself).
_PUSH_POST = re.compile(
    r"/api/streams/[a-z0-9][a-z0-9_-]{0,63}/(frame|push\.mjpeg)|/api/stream\.mjpeg"
)
_ONVIF = frozenset({"/onvif/device_service", "/onvif/media_service"})
_PUSH_WS = re.compile(r"/api/streams/[a-z0-9][a-z0-9_-]{0,63}/push")
log = logging.getLogger(__name__)

_READ_METHODS = frozenset({"GET", "HEAD"})
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="camserver"')]


def onvif_route(scope: Scope) -> bool:
    """An ONVIF SOAP request (``api/onvif.py`` checks its WS-Security token itself)."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _ONVIF


def push_route(scope: Scope) -> bool:
    """A push camera's request (a POST of pictures, the push WebSocket)."""
    if scope["type"] == "websocket":
        return _PUSH_WS.fullmatch(scope["path"]) is not None
    return scope["method"] == "POST" and _PUSH_POST.fullmatch(scope["path"]) is not None


def token_from(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            token = bearer_token(value.decode("latin-1"))
            if token:
                return token
    query: bytes = scope.get("query_string", b"")
    return query_token(query.decode("latin-1"))


async def send_error(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with ``{"detail": detail}`` as JSON (from middleware, outside FastAPI)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AccessMiddleware:
    def __init__(self, app: ASGIApp, checker: TokenChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.checker.enabled
            or _PUBLIC.fullmatch(scope["path"])
            or push_route(scope)
            or onvif_route(scope)
        ):
            await self.app(scope, receive, send)
            return
        token = token_from(scope)
        grant = self.checker.grant(token)
        if grant is None:
            reason = (
                "invalid token"
                if token
                else "a token is required: send 'Authorization: Bearer <token>' or ?token=<token>"
            )
            await send_error(send, 401, reason, _CHALLENGE)
            return
        if not grant.admin and scope["method"] not in _READ_METHODS:
            await send_error(send, 403, "this token is read-only: changes need the API token")
            return
        scope.setdefault("state", {})["grant"] = grant
        if grant.token is None:
            await self.app(scope, receive, send)
            return
        # A managed token can be revoked or expire while the response flows (MJPEG, a
        # replay): then the connection is cut, whoever writes to it.
        ended = False

        def end() -> None:
            nonlocal ended
            ended = True
            direct = scope.get("extensions", {}).get(DIRECT)
            if isinstance(direct, DirectWrite):
                direct.abort()

        async def guarded(message: Message) -> None:
            if ended:
                raise OSError("the token of this request was revoked or expired")
            await send(message)

        key = self.checker.held.hold(grant, end)
        try:
            await self.app(scope, receive, guarded)
        finally:
            self.checker.held.release(key)


def _in_session(scope: Scope) -> bool:
    """The request names an Engine.IO session (``sid``): not a handshake. Parsed, not
    searched: ``?xsid=1`` once passed for a session and skipped the token check."""
    query: bytes = scope.get("query_string", b"")
    return any(key == "sid" for key, _ in parse_qsl(query.decode("latin-1")))


class TokenlessSessions:
    """Engine.IO sessions opened without a token, each waiting for a Socket.IO CONNECT that
    carries one (``auth: {token}``, the way every Socket.IO front end passes it).

    Such a session costs memory before anyone is known (20,000 of them once cost 175 MB),
    so an address may hold ``per_address`` at a time and each has ``deadline`` seconds to
    connect with a valid token; :attr:`expire` (set by the Socket.IO side) then ends it.
    """

    def __init__(self, per_address: int = 16, deadline: float = 10.0) -> None:
        self.per_address = per_address
        self.deadline = deadline
        self.expire: Callable[[str], None] = lambda eio_sid: None
        """Ends an Engine.IO session (it did not connect with a token in time)."""
        self._sessions: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        self._by_address = KeyCounts()

    def room_for(self, address: str) -> bool:
        """``address`` may open one more."""
        return self._by_address.get(address, 0) < self.per_address

    def opened(self, eio_sid: str, address: str) -> None:
        timer = asyncio.get_running_loop().call_later(self.deadline, self._expired, eio_sid)
        self._sessions[eio_sid] = (address, timer)
        self._by_address.add(address)

    def connected(self, eio_sid: str) -> None:
        """``eio_sid`` connected with a valid token (a no-op for other sessions)."""
        self._forget(eio_sid)

    def waiting(self, address: str | None = None) -> int:
        """Sessions still waiting (of ``address``, or of everyone)."""
        if address is None:
            return len(self._sessions)
        return self._by_address.get(address, 0)

    def _forget(self, eio_sid: str) -> bool:
        entry = self._sessions.pop(eio_sid, None)
        if entry is None:
            return False
        address, timer = entry
        timer.cancel()
        self._by_address.remove(address)
        return True

    def _expired(self, eio_sid: str) -> None:
        if self._forget(eio_sid):
            self.expire(eio_sid)


def _engineio_path(path: str) -> bool:
    """``path`` is python-engineio's: it adds the trailing slash before matching, so
    ``/socket.io`` is served too (and once skipped the gate)."""
    return (path if path.endswith("/") else path + "/").startswith("/socket.io/")


def _open_packet_sid(text: str | bytes | None) -> str | None:
    """The session id of an Engine.IO OPEN packet (``0{"sid": ...}``), else None."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not text or text[0] != "0":
        return None
    try:
        sid = json.loads(text[1:]).get("sid")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, str) else None


class EngineIOGate:
    """With tokens on, an Engine.IO handshake (a request without ``sid``) is let through
    with a valid token (``?token=`` or ``Authorization``), or without any token as one of
    :class:`TokenlessSessions` (the Socket.IO CONNECT packet must then bring it); a wrong
    token is refused at once. Checking the CONNECT packet alone, with no bound, let anyone
    open sessions (20,000 cost 175 MB until they timed out) and feed them packets."""

    def __init__(self, app: ASGIApp, checker: TokenChecker, tokenless: TokenlessSessions) -> None:
        self.app = app
        self.checker = checker
        self.tokenless = tokenless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not self.checker.enabled
            or not _engineio_path(scope["path"])
            or _in_session(scope)
        ):
            await self.app(scope, receive, send)
            return
        token = token_from(scope)
        if token is not None:
            if self.checker.grant(token) is not None:
                await self.app(scope, receive, send)
            else:
                await self._refuse(scope, send, 401, "invalid token")
            return
        address = str((scope.get("client") or ("",))[0])
        if not self.tokenless.room_for(address):
            detail = (
                f"too many Socket.IO sessions without a token from {address}: connect "
                'with auth {"token": ...} within '
                f"{self.tokenless.deadline:g} s, or pass ?token=<token>"
            )
            await self._refuse(scope, send, 429, detail)
            return
        seen = False

        async def watch(message: Message) -> None:
            nonlocal seen
            if not seen and message["type"] in ("http.response.body", "websocket.send"):
                seen = True
                sid = _open_packet_sid(message.get("body") or message.get("text"))
                if sid is not None:
                    self.tokenless.opened(sid, address)
            await send(message)

        await self.app(scope, receive, watch)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        else:
            await send_error(send, status, detail, _CHALLENGE if status == 401 else [])


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READ_METHODS or push_route(scope):
            await self.app(scope, receive, send)
            return
        too_big = f"request body larger than {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await send_error(send, 413, too_big)
                return
        # Read the (small) body here, so a chunked upload cannot exceed the limit either.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
