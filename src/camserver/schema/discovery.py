"""Cameras found by discovery, as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from camserver.schema.esphome import check_encryption_key
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
    kind: Literal["esp32", "esphome"] = Field(
        "esp32", description="esp32: CameraWebServer (UDP discovery); esphome: mDNS."
    )
    encrypted: bool | None = Field(
        None, description="An ESPHome device: its API wants an encryption_key."
    )
    camera: bool | None = Field(
        None,
        description="An ESPHome device: it lists a camera (null: encrypted, so camserver "
        "cannot ask without its key).",
    )
    host: str | None = Field(None, description="An ESPHome device: its mDNS name.")

    def stream_config(
        self, name: str | None = None, encryption_key: str | None = None
    ) -> StreamConfig:
        """The stream that reads this camera, on the stream port it announced."""
        if self.kind == "esphome":
            return StreamConfig(
                name=name or _stream_name(self.name),
                source="esphome",
                host=self.ip,
                port=self.port,
                stream_url="",
                encryption_key=encryption_key,
            )
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return StreamConfig.for_host(name or self.name, f"{host}:{self.port}", self.stream_port)


def _stream_name(name: str) -> str:
    """A stream name from a device's friendly name ("Porch Cam" → "porch-cam")."""
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower()).strip("-")
    return out[:64] or "esphome"


class DiscoveredOut(DiscoveredCamera):
    stream: str | None = None
    """The stream already reading this camera, if any."""


class AddBody(BaseModel):
    name: StreamName | None = None
    encryption_key: SecretStr | None = Field(
        None, max_length=100, description="An encrypted ESPHome device's api: encryption: key:."
    )

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_encryption_key(v.get_secret_value())
        return v
