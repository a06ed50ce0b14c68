"""The few bytes of HTTP/1.1 the simulated camera needs, written the way esp-idf's
``esp_http_server`` writes them (status line, Content-Type, Content-Length, extra headers).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

__all__ = ["Login", "Request", "chunk", "read_request", "response"]

_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    target: str = ""
    """The request target as sent (path and query), which digest auth signs."""

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request from ``reader``; None when the peer closed or sent nonsense."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    if len(head) > _MAX_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    body = b""
    length = headers.get("content-length", "0")
    if length.isascii() and length.isdigit() and 0 < int(length) <= _MAX_BODY:
        try:
            body = await reader.readexactly(int(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
    return Request(method, url.path, query, headers, body, target)


def response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/html",
    extra: dict[str, str] | None = None,
) -> bytes:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    head.extend(f"{k}: {v}" for k, v in (extra or {}).items())
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body."""
    # esp_http_server writes the chunk size in lower-case hex.
    return b"%x\r\n%b\r\n" % (len(data), data)


class Login:
    """HTTP basic or digest (RFC 7616, MD5, qop=auth) login, as some firmwares require."""

    REALM = "esp32-cam"

    def __init__(self, user: str, password: str, scheme: str = "basic") -> None:
        if scheme not in ("basic", "digest"):
            raise ValueError("scheme must be basic or digest")
        self.user, self.password, self.scheme = user, password, scheme
        self.nonce = secrets.token_hex(16)

    def challenge(self) -> dict[str, str]:
        if self.scheme == "basic":
            value = f'Basic realm="{self.REALM}"'
        else:
            value = f'Digest realm="{self.REALM}", nonce="{self.nonce}", qop="auth", algorithm=MD5'
        return {"WWW-Authenticate": value, "Connection": "close"}

    def accepts(self, req: Request) -> bool:
        header = req.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if self.scheme == "basic":
            if scheme.lower() != "basic":
                return False
            try:
                user, _, pw = base64.b64decode(rest.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(f"{user}:{pw}", f"{self.user}:{self.password}")
        if scheme.lower() != "digest":
            return False
        p = {
            k.strip(): v.strip().strip('"')
            for k, _, v in (part.partition("=") for part in rest.split(","))
        }
        if p.get("username") != self.user or p.get("nonce") != self.nonce:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.user}:{self.REALM}:{self.password}")
        ha2 = md5(f"{req.method}:{p.get('uri', req.target)}")
        expected = md5(f"{ha1}:{self.nonce}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
        return hmac.compare_digest(expected, p.get("response", ""))
