"""Motion detection's settings, and its events as the API shows them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from camserver.schema.urls import MAX_URL_LENGTH, check_url, mask_url

__all__ = ["EventOut", "MotionPatch", "MotionSettings", "MotionZone", "ZoneKind"]


class EventOut(BaseModel):
    id: int
    stream: str
    start: float
    end: float | None
    """None while the event goes on."""
    peak_area: float
    """The most of the watched picture that changed, in percent."""
    snapshot_url: str | None


ZoneKind = Literal["include", "exclude"]


class MotionZone(BaseModel):
    """A polygon over the picture, in relative coordinates (0..1 from the top left)."""

    model_config = ConfigDict(extra="forbid")

    kind: ZoneKind = Field(
        "exclude",
        description="'exclude': motion here is ignored; 'include': only motion in include "
        "zones counts.",
    )
    points: list[tuple[float, float]] = Field(
        min_length=3, max_length=64, description="[[x, y], ...], each 0..1."
    )
    name: str | None = Field(None, max_length=64)

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in v:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x}, {y}) is outside 0..1")
        return v


class MotionSettings(BaseModel):
    """Motion detection from the picture (``docs/motion.md``). The defaults work on an
    ESP32-CAM by day and at night: the brightness of each frame is normalised to the
    background's (auto-exposure), noise below the threshold is ignored."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    fps: float = Field(5.0, ge=0.5, le=30, description="Frames analysed per second.")
    threshold: int = Field(
        15, ge=2, le=255, description="Sensitivity: how much a pixel must change (0-255)."
    )
    min_area: float = Field(
        1.0, ge=0.01, le=100, description="Percent of the picture (zones applied) that must change."
    )
    min_frames: int = Field(
        2, ge=1, le=100, description="Analysed frames in a row with motion before an event."
    )
    cooldown: float = Field(
        5.0, ge=0, le=3600, description="Seconds without motion before an event ends."
    )
    light_change_pause: float = Field(
        2.0,
        ge=0,
        le=600,
        description="Seconds to ignore after most of the picture changed at once (lights, "
        "the IR filter switching).",
    )
    zones: list[MotionZone] = Field(default_factory=list, max_length=16)
    webhook_url: str | None = Field(
        None,
        max_length=MAX_URL_LENGTH,
        description="Also POST this stream's events here. A secret: answers show it masked "
        "(scheme, host and port), and sending the masked form back keeps it.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v, "webhook_url")


class MotionPatch(BaseModel):
    """Motion fields to change; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    fps: float | None = Field(None, ge=0.5, le=30)
    threshold: int | None = Field(None, ge=2, le=255)
    min_area: float | None = Field(None, ge=0.01, le=100)
    min_frames: int | None = Field(None, ge=1, le=100)
    cooldown: float | None = Field(None, ge=0, le=3600)
    light_change_pause: float | None = Field(None, ge=0, le=600)
    zones: list[MotionZone] | None = Field(None, max_length=16)
    webhook_url: str | None = Field(None, max_length=MAX_URL_LENGTH, description="'' removes it.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        return v if not v else check_url(v, "webhook_url")

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name != "webhook_url":
                raise ValueError(f"{name} cannot be null: leave it out to keep it")
        return self

    def apply(self, current: MotionSettings) -> MotionSettings:
        update = {k: getattr(self, k) for k in self.model_fields_set}
        if "webhook_url" in update and not update["webhook_url"]:
            update["webhook_url"] = None
        elif current.webhook_url and update.get("webhook_url") == mask_url(current.webhook_url):
            # What GET shows (masked) sent back unchanged, as a form that saves every
            # field does: keep the URL it stands for.
            del update["webhook_url"]
        return MotionSettings.model_validate({**current.model_dump(), **update})
