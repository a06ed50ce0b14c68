"""Camera leases: which node pulls a camera, decided in Redis.

A lease is ``<prefix>lease:<camera>`` = ``"<node>|<token>"`` with a TTL (``SET`` only when
absent, in one Lua step with ``INCR`` of the camera's fencing counter). The holder renews
it every fifth of the TTL and keeps a local deadline on its own monotonic clock, measured
from *before* each request: ``sent + ttl - margin``. Redis starts the TTL after the request
arrives, so the deadline always passes before Redis can give the lease to another node: a
holder that is paused or cut off from Redis lets the camera go first, which a camera that
serves one client at a time (the ESP32) needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from camserver.cluster.backend import Backend

__all__ = ["Lease", "Leases"]

MARGIN = 0.5
"""Seconds of the TTL a holder gives up, for clock-rate error and a slow stop."""


@dataclass(slots=True)
class Lease:
    name: str
    token: int
    deadline: float
    """Monotonic time by which the holder must have stopped, unless renewed."""
    renewed: float
    """Monotonic time of the last renewal request that succeeded."""
    since: float
    """Monotonic time it was taken."""

    def value(self, node: str) -> str:
        return f"{node}|{self.token}"


class Leases:
    def __init__(self, backend: Backend, ttl: float) -> None:
        self._b = backend
        self.ttl = ttl
        self._ms = int(ttl * 1000)
        self.acquired = 0
        self.lost = 0
        self.expired = 0
        self.released = 0
        self.quiet = False
        """The last acquire found Redis handing out no leases (it just lost its data)."""

    @property
    def renew_every(self) -> float:
        # Often, so that the deadline stays far: a holder's loop may stall for up to
        # ttl - margin - renew_every (1.5 s with the default 2.5 s) without losing its
        # cameras, while a dead holder's cameras move after ttl - renew_every .. ttl.
        return self.ttl / 5

    def _deadline(self, sent: float) -> float:
        return sent + self.ttl - min(MARGIN, self.ttl / 4)

    async def acquire(self, name: str) -> Lease | None:
        """The lease if it was free (raises ClusterUnavailable)."""
        k = self._b.keys
        sent = time.monotonic()
        token = int(
            await self._b.script(
                "acquire",
                [k.lease(name), k.fence(name), k.alive, k.quiet],
                [self._b.node, self._ms],
            )
        )
        self.quiet = token == -1
        if token <= 0:
            return None
        self.acquired += 1
        return Lease(name, token, self._deadline(sent), sent, sent)

    async def steal(self, name: str) -> Lease:
        """The lease, taken from whoever holds it (a push camera connected here: the
        newest connection wins). The fencing token goes up (raises ClusterUnavailable)."""
        k = self._b.keys
        sent = time.monotonic()
        token = int(
            await self._b.script("steal", [k.lease(name), k.fence(name)], [self._b.node, self._ms])
        )
        self.acquired += 1
        return Lease(name, token, self._deadline(sent), sent, sent)

    async def renew(self, lease: Lease) -> bool:
        """Extend ``lease``; False when it is someone else's now (raises ClusterUnavailable)."""
        sent = time.monotonic()
        ok = await self._b.script(
            "renew", [self._b.keys.lease(lease.name)], [lease.value(self._b.node), self._ms]
        )
        if ok:
            lease.deadline = self._deadline(sent)
            lease.renewed = sent
        else:
            self.lost += 1
        return bool(ok)

    async def release(self, lease: Lease) -> None:
        self.released += 1
        await self._b.script(
            "release", [self._b.keys.lease(lease.name)], [lease.value(self._b.node)]
        )

    async def holders(self, names: list[str]) -> dict[str, str]:
        """Camera → node holding it (cameras nobody holds are left out)."""
        if not names:
            return {}
        k = self._b.keys
        values = await self._b.call(
            "holders", lambda: self._b.redis.mget([k.lease(n) for n in names])
        )
        out = {}
        for name, value in zip(names, values, strict=True):
            if value:
                out[name] = value.decode().rpartition("|")[0]
        return out
