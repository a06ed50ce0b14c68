"""Data shapes shared by the store, the stream manager and the API."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camserver.schema.esp32 import MAX_HTTP_PORT, MAX_PORT, parse_port, stream_port
from camserver.schema.urls import mask_url

__all__ = [
    "NAME_PATTERN",
    "Demand",
    "RecordingPatch",
    "RecordingSettings",
    "StreamConfig",
    "StreamCreate",
    "StreamName",
    "StreamOut",
    "StreamPatch",
    "StreamState",
    "StreamStatus",
    "check_url",
    "urls_for_host",
]

AuthScheme = Literal["basic", "digest"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
MAX_URL_LENGTH = 2048

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


def _split_host(value: str, highest: int = MAX_HTTP_PORT) -> tuple[str, int]:
    """``"host"``, ``"host:port"`` or ``"[v6]:port"`` → (host for a URL, port). The port
    goes up to ``highest``: by default one that leaves room for the stream on port + 1."""
    value = value.strip()
    if "://" in value or "/" in value:
        raise ValueError(
            "host must be a host name or IP address, optionally with :port "
            "(give a full URL as stream_url instead)"
        )
    port = 80
    host = value
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 host")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':port' after the IPv6 address")
            port = _port(rest[1:], highest)
        ipaddress.IPv6Address(host)
        return f"[{host}]", port
    if value.count(":") == 1:
        host, port_text = value.split(":")
        port = _port(port_text, highest)
    elif value.count(":") > 1:
        ipaddress.IPv6Address(value)
        return f"[{value}]", port
    if not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a valid host name or IP address")
    _check_hostname(host, "host")
    return host, port


def _port(text: str, highest: int) -> int:
    port = parse_port(text, highest)
    if port is None:
        why = " (the stream is served on port + 1)" if highest == MAX_HTTP_PORT else ""
        raise ValueError(f"port must be a number from 1 to {highest}{why}")
    return port


def urls_for_host(host: str, stream_on: int | None = None) -> tuple[str, str, str]:
    """(normalised host, snapshot URL, stream URL): the stream on ``stream_on`` if given
    (a camera that announced its stream port), else by the firmware's rule, port + 1."""
    name, port = _split_host(host, MAX_HTTP_PORT if stream_on is None else MAX_PORT)
    return (
        f"{name}:{port}",
        f"http://{name}:{port}/capture",
        f"http://{name}:{stream_port(port) if stream_on is None else stream_on}/stream",
    )


def check_url(url: str, field: str) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"{field} is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{field} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{field} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{field} has no host")
    if any(c.isspace() for c in url):
        raise ValueError(f"{field} must not contain spaces")
    if parts.username is not None or parts.password is not None:
        # It would be shown to every viewer and written to logs: logins are kept apart.
        raise ValueError(
            f"{field} must not contain a login (user:password@): give username and password"
        )
    _check_hostname(parts.hostname, field)
    return url


def _check_hostname(host: str, field: str) -> None:
    """Refuse host names that cannot be IDNA-encoded: they would fail on every request."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
        encoded.decode("idna")
    except UnicodeError as exc:
        raise ValueError(f"{field} has an invalid host name {host!r}") from exc


class StreamCreate(BaseModel):
    """Either ``host`` (an ESP32-CAM) or ``stream_url`` (any MJPEG source)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "porch", "host": "192.168.1.50"},
                {"name": "garage", "stream_url": "http://10.0.0.7:8080/video"},
            ]
        },
    )

    name: StreamName
    host: str | None = Field(None, max_length=300, description="'ip' or 'ip:port' (default 80).")
    stream_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    snapshot_url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    enabled: bool = Field(True, description="Start the stream now (and after restarts).")
    on_demand: bool = Field(False, description="Connect only while somebody watches.")
    username: str | None = Field(None, max_length=128, description="Camera login, if any.")
    password: SecretStr | None = Field(
        None, max_length=256, description="Stored in the database only; never returned."
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

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.host is None) == (self.stream_url is None):
            raise ValueError("give either host or stream_url (exactly one)")
        if self.host is not None and self.snapshot_url is not None:
            raise ValueError("snapshot_url is derived from host; give stream_url instead")
        return self

    def to_config(self) -> StreamConfig:
        cfg = StreamConfig(
            name=self.name,
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
        return cfg.with_host(self.host) if self.host is not None else cfg


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


class StreamConfig(BaseModel):
    """What the store keeps about a stream."""

    name: str
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
        if self.host is not None:
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
    status: StreamStatus
