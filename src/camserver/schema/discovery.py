"""Cameras found by discovery, as the API shows them."""

from __future__ import annotations

from pydantic import BaseModel

from camserver.schema.streams import StreamConfig, StreamName

__all__ = ["AddBody", "DiscoveredCamera", "DiscoveredOut"]


class DiscoveredCamera(BaseModel):
    """A camera seen by discovery (also the API's shape for it)."""

    name: str
    ip: str
    port: int
    stream_port: int
    first_seen: float
    last_seen: float
    legacy: bool
    mac: str | None = None
    model: str | None = None
    fw: str | None = None
    claimed_ip: str | None = None
    conflict: bool = False
    """Another camera, at another address, announces the same name: check before adding."""

    def stream_config(self, name: str | None = None) -> StreamConfig:
        """The stream that reads this camera, on the stream port it announced."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return StreamConfig.for_host(name or self.name, f"{host}:{self.port}", self.stream_port)


class DiscoveredOut(DiscoveredCamera):
    stream: str | None = None
    """The stream already reading this camera, if any."""


class AddBody(BaseModel):
    name: StreamName | None = None
