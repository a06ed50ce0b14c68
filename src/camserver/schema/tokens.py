"""Managed access tokens as the API takes and shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from camserver.schema.streams import StreamName

__all__ = ["TokenCreate", "TokenCreated", "TokenOut", "TokenRole"]

TokenRole = Literal["view", "admin"]


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="What the token is for.")
    role: TokenRole = Field("view", description="'view' (read-only) or 'admin'.")
    streams: list[StreamName] | None = Field(
        None, max_length=256, description="The streams it may see (omit for all)."
    )
    expires_in: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="Seconds until it stops working."
    )


class TokenOut(BaseModel):
    id: str
    name: str
    role: TokenRole
    streams: list[str] | None
    created_at: float
    expires_at: float | None
    last_used: float | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown this once; only its hash is stored.")
