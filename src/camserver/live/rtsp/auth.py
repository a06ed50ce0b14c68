"""RTSP auth (RFC 2326 section D, RFC 2617): Basic or Digest with any user name and a
camserver token as the password, or ``?token=`` in the URL. Digest can check only the
tokens whose secret the server has (``CAMSERVER_API_TOKEN``, ``CAMSERVER_VIEW_TOKEN``):
managed tokens are kept hashed, and a Digest response is made from the secret itself."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from camserver.live.rtsp.wire import Request

__all__ = ["REALM", "Authorizer", "Grant", "Grants"]

REALM = "camserver"


class Grant(Protocol):
    @property
    def token(self) -> str | None: ...

    def sees(self, name: str) -> bool: ...


class Grants(Protocol):
    """What a presented token allows (``camserver.access.TokenChecker``)."""

    @property
    def enabled(self) -> bool: ...

    def grant(self, presented: str | None) -> Any: ...

    def plain_tokens(self) -> list[str]: ...


class Authorizer:
    """Checks a request's credentials; keeps the Digest nonces it handed out (bounded)."""

    def __init__(self, grants: Grants) -> None:
        self.grants = grants
        self._nonces: dict[str, float] = {}

    def forget_old(self, now: float) -> None:
        for nonce in [n for n, t in self._nonces.items() if now - t > 300]:
            del self._nonces[nonce]

    def challenge(self) -> list[tuple[str, str]]:
        """The WWW-Authenticate headers of a 401."""
        return [
            ("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{self.nonce()}"'),
            ("WWW-Authenticate", f'Basic realm="{REALM}"'),
        ]

    def nonce(self) -> str:
        value = secrets.token_hex(16)
        self._nonces[value] = time.monotonic()
        if len(self._nonces) > 10_000:  # (bounded: the oldest go)
            for old in list(self._nonces)[:5_000]:
                del self._nonces[old]
        return value

    def authorize(self, req: Request) -> Grant | None:
        """The grant of the request's credentials (open mode: everything)."""
        if not self.grants.enabled:
            return self.grants.grant(None)  # type: ignore[no-any-return]
        query = dict(parse_qsl(urlsplit(req.uri).query))
        if "token" in query:
            return self.grants.grant(query["token"])  # type: ignore[no-any-return]
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return self.grants.grant(password)  # type: ignore[no-any-return]
        if scheme.lower() == "digest":
            return self._digest(req, value)
        return None

    def _digest(self, req: Request, value: str) -> Grant | None:
        params = _auth_params(value)
        nonce = params.get("nonce", "")
        if nonce not in self._nonces or params.get("realm") != REALM:
            return None
        user, uri, given = (
            params.get("username", ""),
            params.get("uri", ""),
            params.get("response", ""),
        )
        ha2 = _md5(f"{req.method}:{uri}")
        for token in self.grants.plain_tokens():
            ha1 = _md5(f"{user}:{REALM}:{token}")
            if secrets.compare_digest(_md5(f"{ha1}:{nonce}:{ha2}"), given):
                return self.grants.grant(token)  # type: ignore[no-any-return]
        return None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _auth_params(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(","):
        key, _, val = part.strip().partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return out
