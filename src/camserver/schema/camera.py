"""A camera's own settings (CameraWebServer's ``/control``) as the API shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["CameraValues", "ControlResult", "SettingsResult"]

CameraValues = dict[str, Any]
"""A camera's own variables as it reports them (CameraWebServer's ``/status``: framesize,
quality, brightness, ...): their set depends on the firmware, so a mapping, not a model."""


class ControlResult(BaseModel):
    ok: bool
    error: str | None = None


class SettingsResult(BaseModel):
    ok: bool
    """True when every variable was accepted."""
    results: dict[str, ControlResult]
