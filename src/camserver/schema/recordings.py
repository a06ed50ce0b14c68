"""Recordings and marked events as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EventMark", "EventWindow", "RecordingKind", "RecordingOut"]

RecordingKind = Literal["continuous", "event", "timelapse"]


class RecordingOut(BaseModel):
    id: int
    stream: str
    kind: RecordingKind
    start: float
    end: float
    frames: int
    bytes: int
    closed: bool
    file_url: str
    node: str | None = None
    """Cluster mode: the node that recorded it."""


class EventMark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(10.0, gt=0, le=600, description="How long the event lasts from now.")


class EventWindow(BaseModel):
    stream: str
    start: float
    """Where the clip starts: now, less the pre-roll."""
    end: float
    """Where it ends unless marked again: now + seconds + the post-roll."""
