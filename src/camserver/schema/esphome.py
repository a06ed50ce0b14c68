"""What an ESPHome camera's status shows of its device (``source: "esphome"``)."""

from __future__ import annotations

import binascii

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_API_PORT", "DeviceEntity", "EsphomeDevice", "check_encryption_key"]

DEFAULT_API_PORT = 6053
"""ESPHome's native API port."""


def check_encryption_key(key: str) -> str:
    """``key`` if it is what ESPHome's ``api: encryption: key:`` takes: 32 bytes, base64."""
    try:
        raw = binascii.a2b_base64(key.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError("encryption_key is not base64 (copy api: encryption: key:)") from exc
    if len(raw) != 32:
        raise ValueError(
            "encryption_key must be 32 bytes in base64 (44 characters), as ESPHome's "
            "api: encryption: key: is"
        )
    return key


class EsphomeDevice(BaseModel):
    """The device as it describes itself (DeviceInfoResponse)."""

    name: str
    friendly_name: str | None = None
    model: str | None = Field(None, description="The board, e.g. esp32cam.")
    manufacturer: str | None = None
    esphome_version: str | None = None
    mac_address: str | None = None
    address: str | None = Field(None, description="Where camserver reached it (ip:port).")
    encrypted: bool = Field(False, description="The API connection is Noise-encrypted.")


class DeviceEntity(BaseModel):
    """Another entity of the device that matters for a camera (its flash, a switch): shown,
    not changed (camserver does not send commands to the device)."""

    kind: str = Field(description="light or switch.")
    name: str
    on: bool | None = Field(None, description="Its state as the device last reported it.")
