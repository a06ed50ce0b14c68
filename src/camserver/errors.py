"""Exceptions raised by camserver.

One root, so callers can catch everything camserver raises on purpose::

    CamServerError
    ├── ConfigError            bad settings or an unusable database file
    ├── StoreError             the stream store failed
    │   └── ClusterUnavailable the cluster's Redis cannot be reached (changes refused)
    ├── ClientGone             the client disconnected before the answer was ready
    ├── NotPermitted           the token may not do this (a scoped token, a view token)
    ├── TokenNotFound          no managed token with that id
    ├── StreamError            a stream operation was refused
    │   ├── StreamNotFound     no stream of that name
    │   ├── StreamExists       a stream of that name already exists
    │   ├── SnapshotUnavailable  no recent frame and the camera gave none
    │   ├── NotAnESP32         camera settings asked of a stream added by URL
    │   ├── TooManyStreams     the stream limit is reached
    │   ├── TooManyViewers     the stream's viewer limit is reached
    │   ├── TargetNotAllowed   the camera URL is outside the allowed networks
    │   ├── WrongSourceKind    a push operation on a pulled camera, or the other way round
    │   ├── PushKeyRefused     a push without the stream's current push key
    │   ├── StreamStopped      a push to a stopped stream
    │   └── PictureRefused     a pushed picture was refused
    │       ├── PictureTooBig      over CAMSERVER_MAX_FRAME_BYTES
    │       ├── NotAPicture        not a whole JPEG
    │       ├── WrongPictureType   not sent as image/jpeg
    │       └── PushTooFast        over the push rate cap (dropped)
    ├── DiscoveryError         UDP discovery refused a request
    │   ├── DiscoveryUnavailable  discovery is not running (port busy, turned off)
    │   ├── UnknownInterface      no usable interface of that name
    │   ├── NotDiscovered         no discovered camera of that name
    │   └── NameConflict          several discovered cameras give that name
    ├── UpstreamError          talking to a camera failed
    │   ├── UpstreamConnectError   could not connect / HTTP error status
    │   ├── UpstreamTimeout        nothing received for too long
    │   └── UpstreamProtocolError  the camera sent something that is not MJPEG
    ├── RecordingError         writing or reading recordings failed (disk, a bad file)
    │   ├── RecordingNotFound  no recording with that id, or none at that time
    │   ├── NotRecording       an event was marked on a stream not recording events
    │   └── TooManyConversions a client already has its share of MP4 exports going
    └── MotionError            motion detection or its events failed
        ├── BadFrame           a frame the JPEG decoder cannot read
        └── EventNotFound      no motion event with that id

Third-party errors (httpx, sqlite3) are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BadFrame",
    "CamServerError",
    "ClientGone",
    "ClusterUnavailable",
    "ConfigError",
    "DiscoveryError",
    "DiscoveryUnavailable",
    "EventNotFound",
    "MotionError",
    "NameConflict",
    "NotAPicture",
    "NotAnESP32",
    "NotDiscovered",
    "NotPermitted",
    "NotRecording",
    "PictureRefused",
    "PictureTooBig",
    "PushKeyRefused",
    "PushTooFast",
    "RecordingError",
    "RecordingNotFound",
    "SnapshotUnavailable",
    "StoreError",
    "StreamError",
    "StreamExists",
    "StreamNotFound",
    "StreamStopped",
    "TargetNotAllowed",
    "TokenNotFound",
    "TooManyConversions",
    "TooManyStreams",
    "TooManyViewers",
    "UnknownInterface",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "WrongPictureType",
    "WrongSourceKind",
]


class CamServerError(Exception):
    """Root of every exception camserver raises on purpose."""


class ConfigError(CamServerError):
    """Settings or the database file cannot be used."""


class StoreError(CamServerError):
    """The stream store failed to read or write."""


class ClusterUnavailable(StoreError):
    """Cluster mode: Redis cannot be reached, so shared state cannot change now."""


class ClientGone(CamServerError):
    """The client disconnected while camserver was still working on its request."""


class NotPermitted(CamServerError):
    """The token presented may not do this."""


class TokenNotFound(CamServerError):
    """No managed token with that id."""


class StreamError(CamServerError):
    """A stream operation was refused."""


class StreamNotFound(StreamError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no stream named {name!r}")
        self.name = name


class StreamExists(StreamError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a stream named {name!r} already exists")
        self.name = name


class SnapshotUnavailable(StreamError):
    """No recent frame, and the camera's snapshot URL gave none."""


class DiscoveryError(CamServerError):
    """UDP discovery refused a request."""


class DiscoveryUnavailable(DiscoveryError):
    pass


class UnknownInterface(DiscoveryError):
    pass


class NotDiscovered(DiscoveryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no discovered camera named {name!r}")
        self.name = name


class NameConflict(DiscoveryError):
    """More than one discovered camera announces the same name."""


class NotAnESP32(StreamError):
    """The stream was added by URL, so camserver does not know it is an ESP32-CAM."""


class TooManyStreams(StreamError):
    pass


class TooManyViewers(StreamError):
    pass


class WrongSourceKind(StreamError):
    """A push operation on a pulled camera, or a pull setting on a push camera."""


class PushKeyRefused(StreamError):
    """A push without the stream's current key (also for a stream that does not exist:
    a refusal tells nothing about other streams)."""


class StreamStopped(StreamError):
    """A push camera's stream is stopped (``enabled`` off)."""


class PictureRefused(StreamError):
    pass


class PictureTooBig(PictureRefused):
    pass


class NotAPicture(PictureRefused):
    pass


class WrongPictureType(PictureRefused):
    pass


class PushTooFast(PictureRefused):
    pass


class TargetNotAllowed(StreamError):
    """A camera URL resolves outside ``CAMSERVER_ALLOWED_NETWORKS``."""


class UpstreamError(CamServerError):
    """Talking to a camera failed; the message is a short human sentence."""


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamProtocolError(UpstreamError):
    pass


class RecordingError(CamServerError):
    """Writing or reading recordings failed."""


class RecordingNotFound(RecordingError):
    """No recording with that id, or none at the time asked for."""


class NotRecording(RecordingError):
    """An event was marked on a stream whose recording mode is not ``events``."""


class MotionError(CamServerError):
    """Motion detection or its events failed."""


class BadFrame(MotionError):
    """A frame that is not a JPEG the decoder can read."""


class EventNotFound(MotionError):
    """No motion event with that id."""


class TooManyConversions(RecordingError):
    """A client asked for another MP4 export while its share were still being made."""
