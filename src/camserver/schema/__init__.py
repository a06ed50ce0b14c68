"""The API's data shapes: what the server takes and answers, and what the client returns.

Pure pydantic models (and the ESP32 facts they validate with): this package imports
nothing else of camserver, so the server's routers, its store and the client
(``camserver.client``) share them without the client importing server code.
"""

from camserver.schema.camera import CameraValues, ControlResult, SettingsResult
from camserver.schema.discovery import AddBody, DiscoveredCamera, DiscoveredOut
from camserver.schema.motion import EventOut, MotionPatch, MotionSettings, MotionZone, ZoneKind
from camserver.schema.recordings import (
    EventMark,
    EventWindow,
    RecordingKind,
    RecordingMode,
    RecordingOut,
    RecordingPatch,
    RecordingSettings,
)
from camserver.schema.server import ClusterNode, ClusterOut, HealthOut, RedisHealth, RtspOut
from camserver.schema.streams import (
    NAME_PATTERN,
    AuthScheme,
    Demand,
    PushAccess,
    PushKey,
    PushTelemetry,
    SourceKind,
    StreamConfig,
    StreamCreate,
    StreamCreated,
    StreamName,
    StreamOut,
    StreamPatch,
    StreamState,
    StreamStatus,
)
from camserver.schema.tokens import TokenCreate, TokenCreated, TokenOut, TokenRole
from camserver.schema.urls import check_url, urls_for_host

__all__ = [
    "NAME_PATTERN",
    "AddBody",
    "AuthScheme",
    "CameraValues",
    "ClusterNode",
    "ClusterOut",
    "ControlResult",
    "Demand",
    "DiscoveredCamera",
    "DiscoveredOut",
    "EventMark",
    "EventOut",
    "EventWindow",
    "HealthOut",
    "MotionPatch",
    "MotionSettings",
    "MotionZone",
    "PushAccess",
    "PushKey",
    "PushTelemetry",
    "RecordingKind",
    "RecordingMode",
    "RecordingOut",
    "RecordingPatch",
    "RecordingSettings",
    "RedisHealth",
    "RtspOut",
    "SettingsResult",
    "SourceKind",
    "StreamConfig",
    "StreamCreate",
    "StreamCreated",
    "StreamName",
    "StreamOut",
    "StreamPatch",
    "StreamState",
    "StreamStatus",
    "TokenCreate",
    "TokenCreated",
    "TokenOut",
    "TokenRole",
    "ZoneKind",
    "check_url",
    "urls_for_host",
]
