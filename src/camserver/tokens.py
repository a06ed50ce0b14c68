"""Managed access tokens: created and revoked through the API, each with a role and,
optionally, the streams it may see.

A token is 32 random bytes (URL-safe text) shown once when it is created; the store keeps
only its SHA-256 (a random secret needs no slow hash). A *scoped* token (``streams`` set)
sees only those streams, everywhere: lists, status, snapshots, MJPEG, Socket.IO joins and
events, ``/metrics``; a stream outside its scope answers 404, as if it did not exist, so
names do not leak. Routes that are not about one stream (adding streams, discovery,
tokens) answer it 403. The environment's tokens stay unscoped.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from camserver.schema import TokenCreate, TokenOut

__all__ = [
    "Grant",
    "ManagedToken",
    "hash_token",
    "new_token",
]

TokenRole = Literal["view", "admin"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new secret (API token or push key): 43 URL-safe characters, never a leading ``-``.

    A key that starts with ``-`` reads as an option on a command line: argparse (``camserver
    sim --key -x…``), curl and ffmpeg refuse or misread it, which one key in 64 did.
    """
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


@dataclass(frozen=True, slots=True)
class Grant:
    """What a presented token allows."""

    admin: bool
    streams: frozenset[str] | None = None
    """None: every stream."""
    token: str | None = None
    """The managed token's hash (it can be revoked or expire); None for the environment's."""

    def sees(self, name: str) -> bool:
        return self.streams is None or name in self.streams

    @property
    def scoped(self) -> bool:
        return self.streams is not None


ALL = Grant(admin=True)


@dataclass(slots=True)
class ManagedToken:
    id: str
    name: str
    hash: str
    role: TokenRole
    streams: list[str] | None
    created_at: float
    expires_at: float | None = None
    last_used: float | None = None

    @classmethod
    def create(cls, body: TokenCreate) -> tuple[ManagedToken, str]:
        token = new_token()
        now = time.time()
        record = cls(
            id=secrets.token_hex(8),
            name=body.name,
            hash=hash_token(token),
            role=body.role,
            streams=sorted(set(body.streams)) if body.streams is not None else None,
            created_at=now,
            expires_at=now + body.expires_in if body.expires_in else None,
        )
        return record, token

    def grant(self, now: float) -> Grant | None:
        if self.expires_at is not None and now >= self.expires_at:
            return None
        streams = frozenset(self.streams) if self.streams is not None else None
        return Grant(admin=self.role == "admin", streams=streams, token=self.hash)

    def out(self) -> TokenOut:
        return TokenOut(
            id=self.id,
            name=self.name,
            role=self.role,
            streams=self.streams,
            created_at=self.created_at,
            expires_at=self.expires_at,
            last_used=self.last_used,
        )
