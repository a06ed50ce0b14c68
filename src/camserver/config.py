"""Settings, from ``CAMSERVER_*`` environment variables and command-line flags."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from camserver.schema.urls import mask_url

__all__ = ["MIN_TOKEN_LENGTH", "ClusterSettings", "Settings", "default_db_path", "setting_names"]

MIN_TOKEN_LENGTH = 16


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("camserver", appauthor=False)) / "camserver.db"


class ClusterSettings(BaseSettings):
    """Cluster mode's settings (the part of :class:`Settings` about Redis and the nodes)."""

    redis_url: SecretStr | None = Field(
        None,
        description="Cluster mode: the Redis server the nodes share (redis://[:password@]host:"
        "port/db, rediss:// for TLS, or redis+sentinel://[:password@]host:port,host:port/db/"
        "master). Unset (and no redis_sentinels): one node with its own SQLite database.",
    )
    redis_sentinels: str | None = Field(
        None,
        description="Cluster mode through Redis Sentinel: host:port,host:port,... of the "
        "sentinels (instead of redis_url; with redis_master and redis_password).",
    )
    redis_master: str = Field(
        "camserver", max_length=64, description="The master's name the sentinels monitor."
    )
    redis_password: SecretStr | None = Field(
        None, description="With redis_sentinels: the password of the Redis servers."
    )
    redis_username: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="With redis_sentinels: the Redis user (ACL) the nodes log in as, e.g. "
        "camserver (deploy/cluster/users.acl); none: the default user.",
    )
    redis_replica_acks: int = Field(
        -1,
        ge=-1,
        le=8,
        description="A configuration change is acknowledged only once this many replicas "
        "have it (Redis WAIT); -1: 1 through Sentinel, else 0.",
    )
    node_id: str = Field(
        "",
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]*$",
        description="This node's name in the cluster (default: host name and port).",
    )
    redis_prefix: str = Field(
        "cs:", max_length=32, description="Prefix of every Redis key and channel camserver uses."
    )
    cluster_pull: bool = Field(
        True,
        description="Cluster: this node may pull cameras. Off for a node that only serves "
        "viewers (say, one outside the cameras' network): it gets every frame via Redis.",
    )
    lease_ttl: float = Field(
        2.5,
        ge=1.0,
        le=60.0,
        description="Cluster: a camera lease expires this long after its last renewal "
        "(renewed every fifth of it); a dead node's cameras move after about this long.",
    )

    @property
    def cluster(self) -> bool:
        return self.redis_target() is not None

    def redis_target(self) -> str | None:
        """The Redis the cluster shares, as one URL (a secret: it may hold the password);
        None for a single node."""
        if self.redis_sentinels:
            auth = ""
            if self.redis_password is not None:
                auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
                auth = (self.redis_username or "") + auth
            hosts = ",".join(h.strip() for h in self.redis_sentinels.split(",") if h.strip())
            return f"redis+sentinel://{auth}{hosts}/0/{self.redis_master}"
        return self.redis_url.get_secret_value() if self.redis_url is not None else None

    def replica_acks(self) -> int:
        if self.redis_replica_acks >= 0:
            return self.redis_replica_acks
        target = self.redis_target() or ""
        return 1 if target.startswith("redis+sentinel://") else 0


class Settings(ClusterSettings):
    """Every setting has an environment variable: ``CAMSERVER_`` + its name in capitals."""

    model_config = SettingsConfigDict(env_prefix="CAMSERVER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    onvif_discovery: bool = Field(
        True,
        description="Answer ONVIF WS-Discovery probes (UDP 3702) on the discovery interfaces.",
    )
    rtsp_port: int = Field(
        8554,
        ge=0,
        le=65535,
        description="RTSP port (rtsp://HOST:PORT/<stream>, docs/rtsp.md); 0 turns RTSP off.",
    )
    db: Path = Field(default_factory=default_db_path, description="SQLite database file.")
    demo: int = Field(0, ge=0, le=64, description="Simulated cameras to start in-process.")
    recordings_dir: Path | None = Field(
        None, description="Where recordings go (default: 'recordings' beside the database)."
    )
    recording_segment_seconds: float = Field(
        60.0, ge=2, le=3600, description="Length of one recording file (segment)."
    )
    recording_min_free_mb: int = Field(
        1024,
        ge=0,
        description="Delete the oldest recordings while the disk has less free (0: never).",
    )
    recording_clip_cache_mb: int = Field(
        512,
        ge=0,
        description="Most MB of exported MP4 clips kept (a cache: each goes an hour after it "
        "was made, the oldest first beyond this, all of them before any recording when the "
        "disk is short).",
    )
    recording_retention_seconds: float = Field(
        30.0, ge=0.5, le=3600, description="How often retention looks for what to delete."
    )
    motion_event_retention_days: float = Field(
        30.0, gt=0, le=3650, description="Motion events (and their snapshots) are kept this long."
    )
    public_url: str | None = Field(
        None,
        max_length=300,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="How others reach this server (e.g. http://camserver.lan:8000), for links "
        "in webhooks and MQTT (default: http://<host name>:<port>).",
    )
    webhook_urls: SecretStr = Field(
        SecretStr(""),
        max_length=4000,
        description="Comma-separated URLs that get a JSON POST at every motion event's start "
        "and end (streams can add their own: motion.webhook_url). Secret: shown masked.",
    )
    webhook_timeout: float = Field(5.0, gt=0, le=60, description="Seconds per webhook attempt.")
    mqtt_url: SecretStr | None = Field(
        None,
        description="Home Assistant over MQTT: the broker, mqtt://[user:pass@]host[:1883] "
        "(mqtts:// for TLS). Unset: no MQTT.",
    )
    mqtt_discovery_prefix: str = Field(
        "homeassistant",
        max_length=64,
        pattern=r"^[A-Za-z0-9_/-]+$",
        description="Home Assistant's MQTT discovery prefix.",
    )
    mqtt_topic_prefix: str = Field(
        "camserver",
        max_length=64,
        pattern=r"^[A-Za-z0-9_/-]+$",
        description="Prefix of camserver's own MQTT topics (states, commands, snapshots).",
    )
    mqtt_snapshot_interval: float = Field(
        10.0, ge=1, le=3600, description="Seconds between snapshots sent to MQTT camera entities."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level shown."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop: uvloop when installed (auto), or the standard one."
    )
    websocket: Literal["auto", "websockets-sansio", "websockets", "wsproto"] = Field(
        "auto", description="uvicorn's WebSocket implementation (Socket.IO viewers)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines for people (text) or machines (json)."
    )

    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a camera.")
    read_timeout: float = Field(
        5.0, gt=0, description="A camera that sends nothing for this long is treated as dead."
    )
    frame_timeout: float = Field(
        10.0, gt=0, description="A camera that sends no whole frame for this long is restarted."
    )
    backoff_initial: float = Field(0.5, gt=0, description="First reconnect delay, seconds.")
    backoff_max: float = Field(30.0, gt=0, description="Longest reconnect delay, seconds.")
    healthy_after: float = Field(
        10.0, gt=0, description="Streaming this long resets the reconnect delay."
    )
    max_frame_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Larger frames are dropped, never buffered."
    )
    push_max_fps: float = Field(
        30.0, gt=0, le=1000, description="A push camera's pictures beyond this rate are dropped."
    )
    snapshot_max_age: float = Field(
        2.0, gt=0, description="A snapshot serves the latest frame if it is younger than this."
    )
    snapshot_timeout: float = Field(5.0, gt=0, description="Seconds to fetch a camera snapshot.")
    on_demand_grace: float = Field(
        10.0, ge=0, description="An on-demand stream disconnects this long after its last viewer."
    )

    discovery_port: int = Field(
        8888, ge=1, le=65535, description="UDP port cameras listen on for probes."
    )
    discovery_listen_port: int = Field(
        8888, ge=0, le=65535, description="UDP port the server listens on (0: any free port)."
    )
    discovery_interfaces: str = Field(
        "auto",
        description="Interfaces to probe: 'auto' (private, non-virtual), 'none', or "
        "comma-separated names such as 'lo' or 'eth0,wlan0'. With --demo: 'lo' unless set.",
    )
    discovery_interval: float | None = Field(
        None, gt=0, description="Probe every this many seconds (off when unset)."
    )
    discovery_auto_add: bool = Field(False, description="Add every new camera as a stream.")
    esphome_discovery: bool = Field(
        True,
        description="Look for ESPHome cameras over mDNS (_esphomelib._tcp) on the discovery "
        "interfaces.",
    )
    discovery_listen: bool = Field(True, description="Listen for camera announcements.")
    discovery_rate: int = Field(
        40, ge=1, description="Datagrams per second accepted from one address; more are dropped."
    )

    api_token: SecretStr | None = Field(
        None, description="When set, every route but /healthz and the dashboard shell needs it."
    )
    view_token: SecretStr | None = Field(
        None, description="A read-only token for viewers (frames, MJPEG, snapshots, lists)."
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS ('' = CORS off, '*' = any)."
    )
    allowed_networks: str = Field(
        "",
        description="Comma-separated CIDRs that camera URLs must resolve into ('' = any).",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated host names the server answers to besides IP addresses "
        "and localhost ('*.example.com' allowed; '*' = any): a guard against DNS rebinding.",
    )
    max_streams: int = Field(64, ge=1, description="Most streams the server accepts.")
    max_viewers: int = Field(
        500, ge=1, description="Most viewers of one stream (MJPEG + Socket.IO + snapshots)."
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=4096, description="Largest request header block accepted (431 beyond)."
    )
    idle_timeout: float = Field(
        10.0, gt=0, description="A new connection that sends nothing for this long is closed."
    )
    request_timeout: float = Field(
        15.0, gt=0, description="Most seconds a client may take to send one whole request."
    )
    max_connections_per_client: int = Field(
        256, ge=1, description="Most open connections from one client address."
    )
    max_viewers_per_client: int = Field(
        50, ge=1, description="Most viewers of one stream from one client address."
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    socketio_connect_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="With tokens on: seconds a Socket.IO session opened without a token has "
        "to connect with one (auth: {token}) before it is closed.",
    )
    max_tokenless_sessions_per_client: int = Field(
        16,
        ge=1,
        description="With tokens on: most Socket.IO sessions one client address may hold "
        "open while they wait to connect with a token (429 beyond).",
    )

    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Comma-separated addresses of reverse proxies (e.g. the cluster's haproxy) "
        "whose X-Forwarded-For names the real client, for per-client limits ('*' = any).",
    )

    @property
    def auth_enabled(self) -> bool:
        """The one predicate for "tokens are required" (an empty token is refused, so a
        set token always means auth is on)."""
        return self.api_token is not None or self.view_token is not None

    @field_validator("api_token", "view_token")
    @classmethod
    def _check_token(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # An empty CAMSERVER_API_TOKEN once turned auth off without a word while
        # `camserver config` showed it as set: refuse it, and tokens easy to guess.
        if v is not None and len(v.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            name = f"CAMSERVER_{(info.field_name or 'token').upper()}"
            raise ValueError(
                f"{name} must be at least {MIN_TOKEN_LENGTH} characters (an empty value does "
                "not turn authentication off: unset the variable for an open server)"
            )
        return v

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhooks(cls, v: SecretStr) -> SecretStr:
        for i, url in enumerate((u.strip() for u in v.get_secret_value().split(",")), 1):
            try:
                parts = urlsplit(url)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:
                ok = False
            if url and not ok:
                raise ValueError(
                    f"CAMSERVER_WEBHOOK_URLS: URL {i} ({mask_url(url)}) is not an http(s) URL"
                )
        return v

    def webhook_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.get_secret_value().split(",") if u.strip()]

    def base_url(self) -> str:
        """``public_url``, or http://<host name>:<port> (the bound address if specific)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def effective_node_id(self) -> str:
        """``node_id``, or the host name and port."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    def allowed_host_list(self) -> list[str]:
        return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]

    def cors_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def networks(self) -> list[IPv4Network | IPv6Network]:
        """The allowed networks; ValueError names a bad entry."""
        out: list[IPv4Network | IPv6Network] = []
        for item in self.allowed_networks.split(","):
            if item.strip():
                out.append(ip_network(item.strip(), strict=False))
        return out

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, v: str) -> str:
        for item in v.split(","):
            if item.strip():
                try:
                    ip_network(item.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"bad network {item.strip()!r}: {exc}") from exc
        return v

    def effective_discovery_interfaces(self) -> str:
        """Demo servers keep discovery on loopback unless told otherwise."""
        if self.demo and "discovery_interfaces" not in self.model_fields_set:
            return "lo"
        return self.discovery_interfaces


def recordings_root(settings: Settings) -> Path:
    """The recordings folder: ``recordings_dir``, or ``recordings`` beside the database."""
    return settings.recordings_dir or settings.db.parent / "recordings"


def setting_names() -> list[str]:
    """Every setting, the cluster's last (as `camserver config` and the docs list them)."""
    cluster = list(ClusterSettings.model_fields)
    return [n for n in Settings.model_fields if n not in cluster] + cluster
