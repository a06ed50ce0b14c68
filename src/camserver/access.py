"""Who may do what: the tokens a server accepts and what each grants, and everything
opened with a managed token, ended when that token is revoked or expires.

No HTTP here (``camserver.api.security`` applies it to requests and sessions): the cluster
(``camserver.cluster``) feeds the managed tokens of every node into the same checker.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from pydantic import SecretStr

from camserver.tokens import ALL, Grant, ManagedToken, hash_token

__all__ = ["VIEW_ALL", "HeldGrants", "TokenChecker", "bearer_token", "query_token"]

log = logging.getLogger(__name__)

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
        self.held = HeldGrants(self)
        """What is open with a managed token (ended when it is revoked or expires)."""

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

    def plain_tokens(self) -> list[str]:
        """The tokens whose secret the server has (the environment's; managed tokens are
        kept hashed): what RTSP Digest can check a response against."""
        return [t.decode() for t in (self._admin, self._view) if t is not None]

    def valid(self, grant: Grant, now: float | None = None) -> bool:
        """``grant`` still holds: an environment token's always does, a managed token's
        until it is revoked (on any node: the cluster's feed replaces ``managed``) or
        expires."""
        if grant.token is None:
            return True
        record = self.managed.get(grant.token)
        return record is not None and record.grant(time.time() if now is None else now) is not None


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header's value, if any."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def query_token(query: str) -> str | None:
    """The ``token`` parameter of a query string, if any."""
    return next((value for key, value in parse_qsl(query) if key == "token"), None)


class HeldGrants:
    """Everything open with a managed token (an MJPEG response, a Socket.IO session, a
    replay) and how to end it. :meth:`sweep`, run every ``interval`` seconds by
    :meth:`run`, ends those whose token was revoked or expired: a revocation used to stop
    only new requests, while open streams and sessions went on."""

    def __init__(self, checker: TokenChecker, interval: float = 0.25) -> None:
        self._checker = checker
        self.interval = interval
        self._held: dict[int, tuple[Grant, Callable[[], None]]] = {}
        self._next = 0

    def hold(self, grant: Grant, end: Callable[[], None]) -> int | None:
        """Watch ``grant`` while something is open with it; a key for :meth:`release`
        (None for an environment token's grant: nothing to watch)."""
        if grant.token is None:
            return None
        self._next += 1
        self._held[self._next] = (grant, end)
        return self._next

    def release(self, key: int | None) -> None:
        if key is not None:
            self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)

    def sweep(self) -> int:
        """End what was opened with a token that no longer holds; how many."""
        now = time.time()
        gone = [k for k, (g, _) in self._held.items() if not self._checker.valid(g, now)]
        for key in gone:
            _, end = self._held.pop(key)
            try:
                end()
            except Exception:
                log.exception("ending what a revoked token opened failed")
        return len(gone)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._held:
                self.sweep()
