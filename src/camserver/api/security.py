"""Access control and request limits, as plain ASGI middleware (they cover the API, the
MJPEG streams and the static files alike).

- Tokens: with ``api_token`` and/or ``view_token`` set, every route except ``/healthz``, the
  dashboard shell and the API docs needs one, as ``Authorization: Bearer <token>`` or
  ``?token=<token>`` (for ``<img>`` and VLC URLs). The view token is read-only: any method
  other than GET/HEAD is refused with 403. Tokens are compared in constant time and never
  logged (``camserver.logs.RedactTokens`` scrubs them from access logs).
- Bodies larger than ``max_body_bytes`` are refused with 413 before the app reads them.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from urllib.parse import parse_qsl

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camserver.tokens import ALL, Grant, ManagedToken, hash_token

__all__ = [
    "AccessMiddleware",
    "BodyLimitMiddleware",
    "EngineIOGate",
    "TokenChecker",
    "query_token",
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
_READ_METHODS = frozenset({"GET", "HEAD"})
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="camserver"')]


VIEW_ALL = Grant(admin=False)


class TokenChecker:
    """What a presented token grants: the environment's tokens (unscoped) and the managed
    ones (``camserver.tokens``). Build it from the settings, whose validation refuses
    empty tokens, so "enabled" means exactly ``Settings.auth_enabled``; managed tokens
    work only then."""

    def __init__(self, api_token: SecretStr | None, view_token: SecretStr | None) -> None:
        self._admin = api_token.get_secret_value().encode() if api_token else None
        self._view = view_token.get_secret_value().encode() if view_token else None
        self.managed: dict[str, ManagedToken] = {}
        """Managed tokens by hash."""

    @property
    def enabled(self) -> bool:
        return self._admin is not None or self._view is not None

    def grant(self, presented: str | None) -> Grant | None:
        """What ``presented`` allows, or None. Environment tokens are compared in
        constant time; a managed token is looked up by its SHA-256."""
        if not self.enabled:
            return ALL
        if not presented:
            return None
        given = presented.encode()
        admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        view = self._view is not None and hmac.compare_digest(given, self._view)
        if admin:
            return ALL
        if view:
            return VIEW_ALL
        record = self.managed.get(hash_token(presented))
        if record is None:
            return None
        now = time.time()
        found = record.grant(now)
        if found is not None:
            record.last_used = now
        return found


def token_from(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    query: bytes = scope.get("query_string", b"")
    return query_token(query.decode("latin-1"))


def query_token(query: str) -> str | None:
    """The ``token`` parameter of a query string, if any."""
    return next((value for key, value in parse_qsl(query) if key == "token"), None)


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
        if scope["type"] != "http" or not self.checker.enabled or _PUBLIC.fullmatch(scope["path"]):
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
        await self.app(scope, receive, send)


def _in_session(scope: Scope) -> bool:
    """The request names an Engine.IO session (``sid``): not a handshake. Parsed, not
    searched: ``?xsid=1`` once passed for a session and skipped the token check."""
    query: bytes = scope.get("query_string", b"")
    return any(key == "sid" for key, _ in parse_qsl(query.decode("latin-1")))


class EngineIOGate:
    """With tokens on, an Engine.IO session is opened only with a valid token in the
    handshake (``?token=`` or ``Authorization``). Checking the Socket.IO CONNECT packet
    alone let anyone open sessions (20,000 cost 175 MB until they timed out) and feed them
    packets."""

    def __init__(self, app: ASGIApp, checker: TokenChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and self.checker.enabled
            and scope["path"].startswith("/socket.io/")
            and not _in_session(scope)
            and self.checker.grant(token_from(scope)) is None
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                detail = (
                    "a token is required: connect with ?token=<token> or an Authorization header"
                )
                await send_error(send, 401, detail, _CHALLENGE)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READ_METHODS:
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
