"""Data shapes shared by the store, the stream manager and the API."""

from __future__ import annotations

import enum
from typing import Annotated, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camserver.schema.esphome import (
    DEFAULT_API_PORT,
    DeviceEntity,
    EsphomeDevice,
    check_encryption_key,
)
from camserver.schema.motion import MotionPatch, MotionSettings
from camserver.schema.recordings import RecordingPatch, RecordingSettings
from camserver.schema.urls import MAX_URL_LENGTH, check_url, split_host, urls_for_host

__all__ = [
    "NAME_PATTERN",
    "Demand",
    "PushAccess",
    "PushKey",
    "PushTelemetry",
    "SourceKind",
    "StreamConfig",
    "StreamCreate",
    "StreamCreated",
    "StreamName",
    "StreamOut",
    "StreamPatch",
    "StreamState",
    "StreamStatus",
]

AuthScheme = Literal["basic", "digest"]
SourceKind = Literal["http", "push", "esphome"]
"""``http``: camserver pulls the camera's MJPEG; ``push``: the camera pushes its pictures;
``esphome``: camserver takes an ESPHome camera's images over its native API."""
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

StreamName = Annotated[
    str,
    Field(pattern=NAME_PATTERN, description="Lower-case letters, digits, '-' and '_'."),
]


class StreamState(enum.StrEnum):
    STOPPED = "stopped"
    IDLE = "idle"
    """On-demand stream waiting for a viewer."""
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RETRYING = "retrying"
    WAITING = "waiting"
    """A push camera: no camera is connected (new, or it went away)."""
    OVERDUE = "overdue"
    """A push camera with ``expect_every``: two intervals passed without a picture."""


class Demand(BaseModel):
    """Who needs the camera now, and why (an ``on_demand`` camera is connected while
    anything here does)."""

    viewers: int = Field(0, description="People and programs watching (as ``viewers``).")
    recording: bool = Field(False, description="The recorder takes its frames.")
    motion: bool = Field(False, description="The motion detector watches it.")
    remote: int = Field(
        0,
        description="Cluster mode: of the viewers, those on other nodes.",
    )


class PushTelemetry(BaseModel):
    at: float = Field(description="Epoch seconds it arrived.")
    values: dict[str, float | int | str | bool | None]


class StreamStatus(BaseModel):
    state: StreamState = StreamState.STOPPED
    fps: float = 0.0
    frames: int = 0
    bytes: int = 0
    bad_frames: int = 0
    last_frame_at: float | None = Field(None, description="Epoch seconds of the last frame.")
    last_error: str | None = None
    last_error_at: float | None = Field(None, description="Epoch seconds of the last error.")
    retry_at: float | None = Field(
        None, description="While retrying: epoch seconds of the next attempt."
    )
    upstream_connects: int = 0
    viewers: int = Field(
        0, description="People and programs watching; the recorder and motion detector are not."
    )
    demand: Demand = Field(default_factory=Demand)
    node: str | None = Field(
        None, description="Cluster mode: the node pulling the camera (null when none)."
    )
    pusher: str | None = Field(
        None, description="A push camera: the address of the camera connected now (ip:port)."
    )
    telemetry: PushTelemetry | None = Field(
        None, description="A push camera: the last telemetry it sent, with its time."
    )
    device: EsphomeDevice | None = Field(
        None, description="An ESPHome camera: the device, as it describes itself."
    )
    entities: list[DeviceEntity] | None = Field(
        None, description="An ESPHome camera: its light and switches (read-only)."
    )


class PushKey(BaseModel):
    key: str = Field(description="The push key; shown once, never again by any GET.")


class PushAccess(PushKey):
    """Where and how a push camera sends its pictures (``Authorization: Bearer <key>`` or
    ``?key=<key>``)."""

    ws_url: str = Field(description="WebSocket: one binary message per JPEG.")
    frame_url: str = Field(description="POST one picture (image/jpeg).")
    mjpeg_url: str = Field(description="POST a multipart/x-mixed-replace body (ffmpeg -f mpjpeg).")


class StreamCreate(BaseModel):
    """Either ``host`` (an ESP32-CAM) or ``stream_url`` (any MJPEG source), or ``source:
    "push"`` for a camera that pushes its pictures (docs/push.md)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "porch", "host": "192.168.1.50"},
                {"name": "garage", "stream_url": "http://10.0.0.7:8080/video"},
                {"name": "shed", "source": "push", "expect_every": 300},
                {"name": "hall", "source": "esphome", "host": "hall-cam.local"},
            ]
        },
    )

    name: StreamName
    source: SourceKind = Field(
        "http",
        description="'http': camserver pulls the camera; 'push': the camera pushes; "
        "'esphome': an ESPHome camera over its native API.",
    )
    expect_every: float | None = Field(
        None,
        ge=1,
        le=86400,
        description="A push camera that posts now and then: seconds between pictures "
        "(it is 'overdue' after two intervals without one).",
    )
    host: str | None = Field(
        None,
        max_length=300,
        description="'ip' or 'ip:port' (default 80); an ESPHome camera: its name or address.",
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="An ESPHome camera's API port (default 6053)."
    )
    encryption_key: SecretStr | None = Field(
        None,
        max_length=100,
        description="An ESPHome camera's api: encryption: key: (base64); never returned.",
    )
    stream_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    snapshot_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    enabled: bool = Field(True, description="Start the stream now (and after restarts).")
    on_demand: bool = Field(False, description="Connect only while somebody watches.")
    username: str | None = Field(None, max_length=128, description="Camera login, if any.")
    password: SecretStr | None = Field(
        None,
        max_length=256,
        description="Stored in the database only; never returned. An ESPHome camera: its "
        "API password (old firmware).",
    )
    auth_scheme: AuthScheme = Field("basic", description="HTTP auth the camera uses.")
    recording: RecordingSettings | None = Field(None, description="Default: not recorded.")
    motion: MotionSettings | None = Field(None, description="Default: no motion detection.")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None:
            urls_for_host(v)
        return v

    @field_validator("stream_url", "snapshot_url")
    @classmethod
    def _url(cls, v: str | None, info: object) -> str | None:
        return None if v is None else check_url(v, getattr(info, "field_name", "url"))

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value():
            check_encryption_key(v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.source == "esphome":
            return self._esphome()
        for field in ("port", "encryption_key"):
            if getattr(self, field) is not None:
                raise ValueError(f"{field} is for ESPHome cameras (source: 'esphome')")
        if self.source == "push":
            given = [k for k in ("host", "stream_url", "snapshot_url", "username", "password")]
            given = [k for k in given if getattr(self, k) is not None]
            if given:
                raise ValueError(f"a push camera connects to camserver: {given[0]} is not used")
            return self
        if self.expect_every is not None:
            raise ValueError("expect_every is for push cameras (source: 'push')")
        if (self.host is None) == (self.stream_url is None):
            raise ValueError("give either host or stream_url (exactly one)")
        if self.host is not None and self.snapshot_url is not None:
            raise ValueError("snapshot_url is derived from host; give stream_url instead")
        return self

    def _esphome(self) -> Self:
        given = ("stream_url", "snapshot_url", "username", "expect_every")
        for field in given:
            if getattr(self, field) is not None:
                raise ValueError(
                    f"an ESPHome camera is reached by host and port: {field} is not used"
                )
        if self.host is None:
            raise ValueError(
                "an ESPHome camera needs its host (a name like porch.local, or an address)"
            )
        esphome_host(self.host)
        return self

    def to_config(self) -> StreamConfig:
        key = self.encryption_key.get_secret_value() if self.encryption_key else None
        cfg = StreamConfig(
            name=self.name,
            source=self.source,
            port=(self.port or DEFAULT_API_PORT) if self.source == "esphome" else None,
            encryption_key=key or None,
            expect_every=self.expect_every,
            stream_url=self.stream_url or "",
            snapshot_url=self.snapshot_url,
            enabled=self.enabled,
            on_demand=self.on_demand,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            auth_scheme=self.auth_scheme,
            recording=self.recording or RecordingSettings(),
            motion=self.motion or MotionSettings(),
        )
        if self.source == "esphome":
            return cfg.model_copy(update={"host": esphome_host(self.host or "")})
        return cfg.with_host(self.host) if self.host is not None else cfg


def esphome_host(host: str) -> str:
    """An ESPHome camera's host: a name or an address, its port given apart."""
    name, port = split_host(host, 65535)
    if port != 80 or host.strip().endswith(":80"):
        raise ValueError("give an ESPHome camera's API port as port, not in host")
    return name


class StreamConfig(BaseModel):
    """What the store keeps about a stream."""

    name: str
    source: SourceKind = "http"
    host: str | None = None
    stream_url: str
    snapshot_url: str | None = None
    enabled: bool = True
    on_demand: bool = False
    username: str | None = None
    password: str | None = Field(None, exclude=True, repr=False)
    """Never serialised: the store reads the attribute, the API never sees it."""
    auth_scheme: AuthScheme = "basic"
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    expect_every: float | None = None
    push_key_hash: str | None = Field(None, exclude=True, repr=False)
    """A push camera's key, hashed (``camserver.tokens.hash_token``); never serialised."""
    port: int | None = None
    """An ESPHome camera's API port."""
    encryption_key: str | None = Field(None, exclude=True, repr=False)
    """An ESPHome camera's Noise key (base64); never serialised, like the password."""

    @property
    def pushed(self) -> bool:
        return self.source == "push"

    @property
    def esphome(self) -> bool:
        return self.source == "esphome"

    def httpx_auth(self) -> httpx.Auth | None:
        if self.username is None:
            return None
        if self.auth_scheme == "digest":
            return httpx.DigestAuth(self.username, self.password or "")
        return httpx.BasicAuth(self.username, self.password or "")

    @classmethod
    def for_host(cls, name: str, host: str, stream_on: int | None = None) -> StreamConfig:
        """A stream reading the ESP32 at ``host`` (see :func:`urls_for_host`)."""
        return cls(name=name, stream_url="").with_host(host, stream_on)

    def with_host(self, host: str, stream_on: int | None = None) -> StreamConfig:
        """This stream reading the ESP32 at ``host`` (see :func:`urls_for_host`)."""
        norm, snapshot, stream = urls_for_host(host, stream_on)
        return self.model_copy(
            update={"host": norm, "stream_url": stream, "snapshot_url": snapshot}
        )


class StreamPatch(BaseModel):
    """Fields to change; a new ``host`` or ``stream_url`` restarts the ingest."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"on_demand": True}]})

    host: str | None = Field(None, max_length=300)
    stream_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    snapshot_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    enabled: bool | None = None
    on_demand: bool | None = None
    username: str | None = Field(None, max_length=128, description="'' removes the login.")
    password: SecretStr | None = Field(None, max_length=256)
    auth_scheme: AuthScheme | None = None
    port: int | None = Field(None, ge=1, le=65535, description="An ESPHome camera's API port.")
    encryption_key: SecretStr | None = Field(
        None, max_length=100, description="An ESPHome camera's key; '' removes it."
    )
    expect_every: float | None = Field(
        None, ge=0, le=86400, description="A push camera's interval; 0 clears it."
    )
    recording: RecordingPatch | None = Field(
        None,
        description="Recording mode, timelapse and retention; fields left out stay as they are.",
        examples=[{"mode": "continuous", "max_age_hours": 72}],
    )
    motion: MotionPatch | None = Field(
        None,
        description="Motion detection; fields left out stay as they are.",
        examples=[{"enabled": True}],
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return StreamCreate._host(v)

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        return StreamCreate._key(v)

    @field_validator("stream_url", "snapshot_url")
    @classmethod
    def _url(cls, v: str | None, info: object) -> str | None:
        return StreamCreate._url(v, info)

    @model_validator(mode="after")
    def _not_both(self) -> Self:
        if self.host is not None and (self.stream_url is not None or self.snapshot_url):
            raise ValueError("give host, or stream_url (and snapshot_url), not both")
        return self

    def apply(self, cfg: StreamConfig) -> StreamConfig:
        """``cfg`` with these changes."""
        if self.host is not None and cfg.esphome:
            cfg = cfg.model_copy(update={"host": esphome_host(self.host)})
        elif self.host is not None:
            cfg = cfg.with_host(self.host)
        elif self.stream_url is not None:
            cfg = cfg.model_copy(
                update={
                    "host": None,
                    "stream_url": self.stream_url,
                    "snapshot_url": self.snapshot_url,
                }
            )
        elif self.snapshot_url is not None:
            cfg = cfg.model_copy(update={"snapshot_url": self.snapshot_url})
        flags: dict[str, object] = {
            k: v
            for k, v in (
                ("enabled", self.enabled),
                ("on_demand", self.on_demand),
                ("auth_scheme", self.auth_scheme),
            )
            if v is not None
        }
        if self.expect_every is not None:
            flags["expect_every"] = self.expect_every or None
        if self.port is not None:
            flags["port"] = self.port
        if self.encryption_key is not None:
            flags["encryption_key"] = self.encryption_key.get_secret_value() or None
        if self.username is not None:
            flags["username"] = self.username or None
            if not self.username:
                flags["password"] = None
        if self.password is not None:
            flags["password"] = self.password.get_secret_value()
        if self.recording is not None:
            flags["recording"] = self.recording.apply(cfg.recording)
        if self.motion is not None:
            flags["motion"] = self.motion.apply(cfg.motion)
        return cfg.model_copy(update=flags) if flags else cfg


class StreamOut(StreamConfig):
    has_password: bool = Field(False, description="A camera password is stored (not shown).")
    has_encryption_key: bool = Field(
        False, description="An ESPHome camera's encryption key is stored (not shown)."
    )
    status: StreamStatus


class StreamCreated(StreamOut):
    push: PushAccess | None = Field(
        None, description="A push camera: its key and URLs, shown this once."
    )
