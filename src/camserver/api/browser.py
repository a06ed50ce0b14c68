"""Defences against hostile web pages, as ASGI middleware around the whole app (API,
dashboard, MJPEG and Socket.IO alike).

A page on another site, open in the browser of someone who can reach camserver (often
the same machine, often with no token set), can make that browser send requests:

- **DNS rebinding**: the page's own name is made to resolve to 127.0.0.1, so the browser
  treats camserver as same-origin and reads its answers. Such requests carry the
  attacker's name in ``Host``: only IP literals, ``localhost`` names and the names in
  ``CAMSERVER_ALLOWED_HOSTS`` are served (400 otherwise). A rebinding attack needs a name,
  so IP literals are always safe to serve.
- **Cross-site POST**: a form or a no-CORS ``fetch`` can POST without a preflight, but only
  with a "simple" content type and no custom header. A POST is served only with
  ``Content-Type: application/json``, an ``Authorization`` header or an
  ``X-Requested-With`` header, none of which a page on another site can send without
  CORS, which camserver does not grant (415 otherwise).
- Push cameras' routes (``api/push.py``) are exempt from both: they act only with the
  stream's push key, a secret no page on another site has (no cookie or stored token
  rides along), and cameras reach them by whatever name the owner's router has
  (``ffmpeg -f mpjpeg`` POSTs with no Content-Type at all).
- **Framing and sniffing**: every response says ``frame-ancestors 'none'`` (CSP),
  ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: no-referrer``; HTML pages
  get a Content-Security-Policy that allows only camserver's own scripts.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camserver.api.security import push_route, send_error

__all__ = ["BrowserGuardMiddleware", "host_allowed"]

_LOCAL_NAMES = ("localhost", "localhost.localdomain")
# The dashboard and /docs use only their own files; images may be blob: (snapshots) or the
# MJPEG endpoint; Socket.IO connects back over ws:/wss: to the same host.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _hostname(value: str) -> str:
    """The host part of a Host header value (``[v6]:port``, ``name:port``, ``name``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(value: str, names: list[str]) -> bool:
    """Whether a request whose ``Host`` is ``value`` may be served (see the module)."""
    if names == ["*"]:
        return True
    host = _hostname(value).rstrip(".")
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    return any(
        host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in names
    )


async def _refuse(send: Send, status: int, detail: str) -> None:
    await send_error(send, status, detail, _COMMON)


# Content types a page on another site cannot POST without a CORS preflight: JSON, and
# SOAP (ONVIF clients, api/onvif.py).
_PREFLIGHTED = frozenset({b"application/json", b"application/soap+xml"})


def _post_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type" and value.split(b";")[0].strip().lower() in _PREFLIGHTED:
            return True
        if name in (b"authorization", b"x-requested-with"):
            return True
    return False


class BrowserGuardMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = [h.lower().rstrip(".") for h in allowed_hosts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if push_route(scope):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
        if not host_allowed(host, self.allowed_hosts):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _refuse(
                send,
                400,
                f"this server does not answer to the name {_hostname(host)!r}: add it to "
                "CAMSERVER_ALLOWED_HOSTS (a guard against DNS rebinding)",
            )
            return
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            # Engine.IO's polling transport POSTs text/plain, but only inside a session
            # whose id a page on another site cannot read.
            and not scope["path"].startswith("/socket.io/")
            and not _post_allowed(headers)
        ):
            await _refuse(
                send,
                415,
                "a POST needs 'Content-Type: application/json' (or an Authorization or "
                "X-Requested-With header): a page on another site cannot send those, so "
                "it cannot drive camserver from a visitor's browser",
            )
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                names = {k.lower() for k, _ in out}
                out += [(k, v) for k, v in _COMMON if k not in names]
                is_html = any(
                    k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in out
                )
                if is_html and b"content-security-policy" not in names:
                    out.append((b"content-security-policy", _CSP.encode()))
                elif b"content-security-policy" not in names:
                    out.append((b"content-security-policy", b"frame-ancestors 'none'"))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_headers)
