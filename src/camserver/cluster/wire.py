"""What cluster nodes put on Redis, with no I/O: key names, the frame message and the
config-change message.

A frame crosses Redis as one binary pub/sub message on ``<prefix>frame:<stream>``::

    version u8 | fencing token u64 | seq u64 | ts f64 | camera_ts length u16 | camera_ts | JPEG

(network byte order, 27 bytes plus the camera's timestamp). No JSON, no base64: a 25 KB
JPEG costs 25 KB plus the header.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "VERSION",
    "ConfigChange",
    "FrameMessage",
    "Keys",
    "WireError",
    "decode_change",
    "decode_frame",
    "describe_node",
    "encode_change",
    "encode_frame",
    "outdated",
]

VERSION = 1
"""The cluster's version: of the frame message, of the stored configuration (``format``),
and announced in each node's heartbeat. A node that meets a newer one serves only."""
_HEAD = struct.Struct("!BQQdH")


class WireError(ValueError):
    """A message that is not one camserver wrote."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key and channel, under one prefix (``cs:`` by default)."""

    prefix: str = "cs:"

    def lease(self, name: str) -> str:
        return f"{self.prefix}lease:{name}"

    def fence(self, name: str) -> str:
        return f"{self.prefix}fence:{name}"

    def frames(self, name: str) -> str:
        return f"{self.prefix}frame:{name}"

    def demand(self, name: str) -> str:
        return f"{self.prefix}demand:{name}"

    def status(self, name: str) -> str:
        return f"{self.prefix}status:{name}"

    def viewers(self, name: str) -> str:
        return f"{self.prefix}viewers:{name}"

    def stream(self, name: str) -> str:
        return f"{self.prefix}stream:{name}"

    def node(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    @property
    def alive(self) -> str:
        """Set once per Redis data set: missing means Redis lost its data (or is new)."""
        return f"{self.prefix}alive"

    @property
    def format(self) -> str:
        """The version of what is stored (configuration, leases): set by the first node."""
        return f"{self.prefix}format"

    @property
    def master(self) -> str:
        """Sentinel: the master's address as the nodes last found it (FAILOVER)."""
        return f"{self.prefix}master"

    @property
    def quiet(self) -> str:
        """While it exists, no lease is handed out (see the acquire script)."""
        return f"{self.prefix}quiet"

    @property
    def streams(self) -> str:
        return f"{self.prefix}streams"

    @property
    def tokens(self) -> str:
        return f"{self.prefix}tokens"

    @property
    def recording_events(self) -> str:
        """The channel that carries event marks to the node recording the camera."""
        return f"{self.prefix}rec:events"

    @property
    def discovered(self) -> str:
        """Every camera a node discovered (field ``ip|port``, the camera as JSON)."""
        return f"{self.prefix}discovered"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def version(self) -> str:
        return f"{self.prefix}config:version"

    @property
    def config(self) -> str:
        """The channel that announces every configuration change."""
        return f"{self.prefix}config"

    @property
    def sio(self) -> str:
        """python-socketio's manager channel (status and discovery events only)."""
        return f"{self.prefix}sio"

    def frame_stream(self, channel: str | bytes) -> str:
        """The stream a frame channel belongs to."""
        text = channel.decode() if isinstance(channel, bytes) else channel
        head = f"{self.prefix}frame:"
        if not text.startswith(head):
            raise WireError(f"not a frame channel: {text!r}")
        return text[len(head) :]


@dataclass(frozen=True, slots=True)
class FrameMessage:
    token: int
    seq: int
    ts: float
    camera_ts: str | None
    data: bytes


def encode_frame(token: int, seq: int, ts: float, camera_ts: str | None, data: bytes) -> bytes:
    stamp = (camera_ts or "").encode()[:255]
    return _HEAD.pack(VERSION, token, seq, ts, len(stamp)) + stamp + data


def decode_frame(message: bytes) -> FrameMessage:
    if len(message) < _HEAD.size:
        raise WireError(f"frame message of {len(message)} bytes is shorter than its header")
    version, token, seq, ts, stamp_len = _HEAD.unpack_from(message)
    if version != VERSION:
        newer = " (from a newer node: upgrade this one)" if version > VERSION else ""
        raise WireError(f"frame message version {version}, this node reads {VERSION}{newer}")
    start = _HEAD.size + stamp_len
    if len(message) < start:
        raise WireError("frame message cut inside its camera timestamp")
    stamp = message[_HEAD.size : start].decode(errors="replace") or None
    return FrameMessage(token, seq, ts, stamp, message[start:])


Op = Literal["put", "delete", "tokens", "reload"]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    op: Op
    name: str
    version: int
    node: str


def encode_change(change: ConfigChange) -> str:
    return json.dumps(
        {"op": change.op, "name": change.name, "v": change.version, "node": change.node}
    )


def decode_change(raw: bytes | str) -> ConfigChange:
    try:
        data: Any = json.loads(raw)
        op, name, version, node = data["op"], data["name"], data["v"], data["node"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"not a config change: {raw!r:.80}") from exc
    if op not in ("put", "delete", "tokens", "reload") or not isinstance(version, int):
        raise WireError(f"not a config change: {raw!r:.80}")
    return ConfigChange(op, str(name), version, str(node))


def describe_node(
    address: str, cameras: list[str], viewers: int, started: float, pulls: bool
) -> dict[str, Any]:
    """A node's heartbeat description (``GET /api/cluster`` shows it), with its version."""
    return {
        "address": address,
        "cameras": cameras,
        "viewers": viewers,
        "started": started,
        "beat": time.time(),
        "pulls": pulls,
        "wire": VERSION,
    }


def outdated(node_info: dict[str, dict[str, Any]], stored: int) -> str | None:
    """Why this node must serve only: a live node (heartbeats' ``wire``) or the stored
    configuration (``format``) newer than this node's :data:`VERSION`; else None. Such a
    node pulls no camera and writes no configuration until it is upgraded, rather than
    misread frames or configuration (a rolling upgrade: docs/cluster.md)."""
    newer = sorted(
        (int(info.get("wire", 1)), node)
        for node, info in node_info.items()
        if int(info.get("wire", 1)) > VERSION
    )
    if newer:
        version, node = newer[-1]
        return (
            f"node {node} speaks cluster version {version}, newer than this node's {VERSION}: "
            "this node serves only (it pulls no camera and changes no configuration) until "
            "it is upgraded"
        )
    if stored > VERSION:
        return (
            f"the cluster's stored configuration is version {stored}, newer than this node "
            f"reads ({VERSION}): this node serves only until it is upgraded"
        )
    return None
