"""Discovery once per cluster: the cameras every node heard, on one list in Redis.

Each node still listens and probes on its own interfaces (``camserver.discovery``). A camera
a node hears for the first time is *claimed* on the hash ``<prefix>discovered`` (field
``ip|port``, the camera as JSON; the ``DISCOVERED`` script): only the node whose claim put it
there tells the clients (``camera_discovered``, carried to every node's clients) and adds it
when ``CAMSERVER_DISCOVERY_AUTO_ADD`` is on, so a camera heard by three nodes is announced
once. Every node lists the hash merged with what it heard itself: one list on every node,
including cameras only another node can hear.

Each node refreshes its own cameras' entries every ``refresh`` seconds (``last_seen``);
entries not refreshed within the discovery TTL are dropped by whoever lists them. While
Redis is away a node lists what it heard itself, and a camera it could not claim then is
claimed (and announced) at the next refresh.
"""

from __future__ import annotations

import logging
import time

from pydantic import ValidationError

from camserver.cluster.backend import Backend
from camserver.errors import ClusterUnavailable
from camserver.schema import DiscoveredCamera

__all__ = ["SharedDiscovered"]

log = logging.getLogger(__name__)


def _field(cam: DiscoveredCamera) -> str:
    return f"{cam.ip}|{cam.port}"


class SharedDiscovered:
    """The cluster's list of discovered cameras (``camserver.discovery.service.Board``)."""

    def __init__(self, backend: Backend, ttl: float, cap: int = 4096) -> None:
        self.backend = backend
        self.ttl = ttl
        self.cap = cap
        """At most this many cameras on the cluster's list (each node lists 1,024)."""
        self.refresh = min(30.0, ttl / 4)

    async def claim(self, cam: DiscoveredCamera) -> bool:
        """Put ``cam`` on the cluster's list; True when this call put it there (so this
        node announces it). ClusterUnavailable while Redis is away."""
        oldest = time.time() - self.ttl
        # (excluded: conflict is computed on the merged list, never stored)
        entry = cam.model_dump_json(exclude={"conflict"})
        keys = [self.backend.keys.discovered]
        result = await self.backend.script(
            "discovered", keys, [_field(cam), entry, cam.name, repr(oldest), self.cap]
        )
        if result == -1:
            log.warning(
                "cluster: the list of discovered cameras is full (%d): %s at %s:%d not listed",
                self.cap,
                cam.name,
                cam.ip,
                cam.port,
            )
        return bool(result == 1)

    async def listed(self, local: list[DiscoveredCamera]) -> list[DiscoveredCamera]:
        """The cluster's list merged with ``local`` (what this node heard), oldest first;
        ``local`` alone while Redis is away."""
        b, key = self.backend, self.backend.keys.discovered
        try:
            entries: dict[bytes, bytes] = await b.call("discovered", lambda: b.redis.hgetall(key))
        except ClusterUnavailable as exc:  # the node's own list is still true
            log.debug("cluster: listing what this node discovered only: %s", exc)
            return local
        oldest = time.time() - self.ttl
        merged = {_field(c): c for c in local}
        expired: list[bytes] = []
        for field, value in entries.items():
            try:
                cam = DiscoveredCamera.model_validate_json(value)
            except ValidationError:
                log.warning("cluster: an unreadable discovered camera %r dropped", field)
                expired.append(field)
                continue
            if cam.last_seen < oldest:
                expired.append(field)
                continue
            mine = merged.get(field.decode())
            if mine is None or mine.name != cam.name:
                merged[field.decode()] = cam
            else:  # heard here and elsewhere: the first time anyone heard it, the latest
                first, last = (
                    min(mine.first_seen, cam.first_seen),
                    max(mine.last_seen, cam.last_seen),
                )
                merged[field.decode()] = mine.model_copy(
                    update={"first_seen": first, "last_seen": last}
                )
        if expired:
            try:
                await b.call("discovered", lambda: b.redis.hdel(key, *expired))
            except ClusterUnavailable as exc:
                log.debug("cluster: expired discovered cameras stay for now: %s", exc)
        return sorted(merged.values(), key=lambda c: c.first_seen)
