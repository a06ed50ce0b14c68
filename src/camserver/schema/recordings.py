"""Recordings and marked events as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EventMark",
    "EventWindow",
    "RecordingKind",
    "RecordingMode",
    "RecordingOut",
    "RecordingPatch",
    "RecordingSettings",
]

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


RecordingMode = Literal["off", "continuous", "events"]


class RecordingSettings(BaseModel):
    """How a stream is recorded (``docs/recording.md``)."""

    model_config = ConfigDict(extra="forbid")

    mode: RecordingMode = Field(
        "off",
        description="'continuous': every frame; 'events': clips around marked (motion) events.",
    )
    timelapse_interval: float | None = Field(
        None, ge=1, le=86400, description="Also keep one frame every this many seconds."
    )
    max_age_hours: float | None = Field(
        None, gt=0, le=24 * 3650, description="Delete recordings older than this."
    )
    max_bytes: int | None = Field(
        None, ge=1_000_000, description="Delete the oldest recordings above this size."
    )

    @property
    def active(self) -> bool:
        """Frames are kept (a mode other than off, or a timelapse): the camera is wanted
        even with no viewer."""
        return self.mode != "off" or bool(self.timelapse_interval)


class RecordingPatch(BaseModel):
    """Recording fields to change; a field given as null is cleared."""

    model_config = ConfigDict(extra="forbid")

    mode: RecordingMode | None = None
    timelapse_interval: float | None = Field(None, ge=1, le=86400)
    max_age_hours: float | None = Field(None, gt=0, le=24 * 3650)
    max_bytes: int | None = Field(None, ge=1_000_000)

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: RecordingMode | None) -> RecordingMode | None:
        if v is None:
            raise ValueError("mode cannot be null: give 'off', 'continuous' or 'events'")
        return v

    def apply(self, current: RecordingSettings) -> RecordingSettings:
        return current.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})
