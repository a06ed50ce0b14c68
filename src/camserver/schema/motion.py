"""Motion events as the API shows them."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["EventOut"]


class EventOut(BaseModel):
    id: int
    stream: str
    start: float
    end: float | None
    """None while the event goes on."""
    peak_area: float
    """The most of the watched picture that changed, in percent."""
    snapshot_url: str | None
