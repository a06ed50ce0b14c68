"""Home Assistant's MQTT discovery, as messages: what camserver publishes for each stream
and what the commands it hears mean. No I/O (``integrations/mqtt.py`` sends them).

Per stream, one device (``camserver_<stream>``) with four entities, each announced by a
retained config on ``<discovery prefix>/<component>/camserver_<stream>/<object>/config``:

- ``binary_sensor`` *Motion* (``device_class: motion``): ``ON``/``OFF`` on
  ``<prefix>/<stream>/motion`` at an event's start and end;
- ``camera`` *Snapshot*: the latest frame (a JPEG) on ``<prefix>/<stream>/snapshot`` every
  ``CAMSERVER_MQTT_SNAPSHOT_INTERVAL`` seconds;
- ``switch`` *Recording* and *Motion detection*: state on ``<prefix>/<stream>/recording``
  (``detection``), commands ``ON``/``OFF`` on ``…/recording/set`` (``…/detection/set``).

Every entity is available while ``<prefix>/status`` is ``online`` and the stream's own
``<prefix>/<stream>/availability`` is ``online`` too (``availability_mode: all``):
camserver publishes the first when it connects, and the broker publishes ``offline``
(camserver's last will) when camserver goes away without a word; the second is ``offline``
while a push camera is ``overdue`` (two of its intervals passed without a picture).
Configs, states and snapshots are retained, so Home Assistant has them again after its own
restart.

The keys follow Home Assistant's MQTT integration: ``state_topic`` (binary sensor),
``topic`` (camera) and ``command_topic`` (switch) are required; ``unique_id`` makes the
entities editable in its UI; ``device`` groups them; ``default_entity_id`` gives the entity
ids docs/home-assistant.md shows (``binary_sensor.<stream>_motion``, ``camera.<stream>_snapshot``,
``switch.<stream>_recording``, ``switch.<stream>_detection``; ``-`` becomes ``_``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from camserver import __version__
from camserver.schema import StreamConfig, StreamState

__all__ = [
    "Command",
    "Topics",
    "available",
    "discovery",
    "parse_command",
    "removal",
    "states",
]

ON, OFF = "ON", "OFF"
ONLINE, OFFLINE = "online", "offline"
Switch = Literal["recording", "detection"]


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "camserver"
    discovery_prefix: str = "homeassistant"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    def state(self, stream: str, what: str) -> str:
        """``what``: motion, recording, detection, snapshot."""
        return f"{self.prefix}/{stream}/{what}"

    def availability(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/availability"

    def command(self, stream: str, switch: Switch) -> str:
        return f"{self.prefix}/{stream}/{switch}/set"

    @property
    def commands(self) -> list[str]:
        """What to subscribe to."""
        return [f"{self.prefix}/+/recording/set", f"{self.prefix}/+/detection/set"]

    def config(self, component: str, stream: str, obj: str) -> str:
        return f"{self.discovery_prefix}/{component}/camserver_{stream}/{obj}/config"


_ENTITIES: list[tuple[str, str, str]] = [
    ("binary_sensor", "motion", "Motion"),
    ("camera", "snapshot", "Snapshot"),
    ("switch", "recording", "Recording"),
    ("switch", "detection", "Motion detection"),
]


def discovery(topics: Topics, stream: str, base_url: str) -> dict[str, bytes]:
    """Topic → retained config payload, for every entity of ``stream``."""
    device = {
        "identifiers": [f"camserver_{stream}"],
        "name": stream,
        "manufacturer": "camserver",
        "model": "ESP32-CAM stream",
        "sw_version": __version__,
        "configuration_url": f"{base_url}/#/streams/{stream}",
    }
    out: dict[str, bytes] = {}
    for component, obj, name in _ENTITIES:
        config: dict[str, Any] = {
            "name": name,
            "unique_id": f"camserver_{stream}_{obj}",
            # Home Assistant 2026.4 dropped "object_id" (deprecated since 2025.10) for this
            # full entity id; entity ids allow no '-', stream names do.
            "default_entity_id": f"{component}.{stream.replace('-', '_')}_{obj}",
            "availability": [
                {"topic": topics.status, "payload_available": ONLINE},
                {"topic": topics.availability(stream), "payload_available": ONLINE},
            ],
            "availability_mode": "all",
            "payload_not_available": OFFLINE,
            "device": device,
        }
        if component == "camera":
            config["topic"] = topics.state(stream, "snapshot")
        else:
            config["state_topic"] = topics.state(stream, obj)
            config["payload_on"] = ON
            config["payload_off"] = OFF
        if component == "binary_sensor":
            config["device_class"] = "motion"
        if component == "switch":
            config["command_topic"] = topics.command(stream, obj)  # type: ignore[arg-type]
            config["state_on"] = ON
            config["state_off"] = OFF
        out[topics.config(component, stream, obj)] = json.dumps(config).encode()
    return out


def removal(topics: Topics, stream: str) -> dict[str, bytes]:
    """Empty retained payloads that make Home Assistant forget ``stream``'s entities (and
    clear its retained states)."""
    out = {topic: b"" for topic in discovery(topics, stream, "")}
    for what in ("motion", "snapshot", "recording", "detection", "availability"):
        out[topics.state(stream, what)] = b""
    return out


def states(
    topics: Topics, cfg: StreamConfig, moving: bool, available: bool = True
) -> dict[str, bytes]:
    """The retained states of ``cfg``'s switches and motion sensor, and its availability."""
    return {
        topics.availability(cfg.name): (ONLINE if available else OFFLINE).encode(),
        topics.state(cfg.name, "motion"): (ON if moving else OFF).encode(),
        topics.state(cfg.name, "recording"): (ON if cfg.recording.mode != "off" else OFF).encode(),
        topics.state(cfg.name, "detection"): (ON if cfg.motion.enabled else OFF).encode(),
    }


def available(state: StreamState) -> bool:
    """A stream's entities are available unless its push camera is overdue."""
    return state is not StreamState.OVERDUE


@dataclass(frozen=True, slots=True)
class Command:
    stream: str
    switch: Switch
    on: bool


def parse_command(topics: Topics, topic: str, payload: bytes) -> Command | None:
    """A switch command, or None for a topic or payload that is not one."""
    head = f"{topics.prefix}/"
    if not topic.startswith(head) or not topic.endswith("/set"):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 3 or parts[1] not in ("recording", "detection"):
        return None
    text = payload.decode("utf-8", "replace").strip().upper()
    if text not in (ON, OFF):
        return None
    switch: Switch = "recording" if parts[1] == "recording" else "detection"
    return Command(parts[0], switch, text == ON)
