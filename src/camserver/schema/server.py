"""The server's own state as the API shows it: health and the cluster."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ClusterNode", "ClusterOut", "HealthOut", "RedisHealth", "RtspOut"]


class HealthOut(BaseModel):
    """``GET /healthz``."""

    status: str
    """``ok``, or ``degraded`` while a cluster node cannot reach Redis."""
    node: str | None = None
    """Cluster mode: this node's id."""
    redis: str | None = None
    """Cluster mode: ``ok`` or ``unreachable: <why>``."""


class RtspOut(BaseModel):
    """``GET /api/rtsp``: where RTSP clients connect (``rtsp://HOST:port/<stream>``)."""

    enabled: bool
    port: int | None = None
    udp_ports: list[int] | None = None
    """The server's RTP/RTCP port pair for clients that ask for UDP."""
    reason: str | None = None
    """Why RTSP is off (``CAMSERVER_RTSP_PORT=0``, the port in use)."""


class ClusterNode(BaseModel):
    id: str
    address: str | None = None
    cameras: list[str] = []
    viewers: int = 0
    last_heartbeat: float | None = None
    pulls: bool = True
    """False: a serve-only node (it pulls no camera)."""
    started: float | None = None
    version: int = 1
    """The cluster version the node speaks (frames, stored configuration)."""


class RedisHealth(BaseModel):
    url: str
    """Without its password."""
    reachable: bool
    last_error: str | None = None


class ClusterOut(BaseModel):
    """``GET /api/cluster``."""

    node: str
    redis: RedisHealth
    nodes: list[ClusterNode]
    outdated: str | None = None
    """Why this node serves only (a newer node or stored configuration), else null."""
