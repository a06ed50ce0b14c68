"""This node's part in the cluster: which cameras it pulls, what it tells the others, and
what it shows about the whole cluster.

One loop (every quarter second) does the work in a few Redis round trips:

- **fence**: a lease whose local deadline passed is dropped and its ingest stopped (a
  separate watchdog that wakes at the earliest deadline, so a slow Redis call cannot
  delay it);
- **sync** (every second, or at once when local viewers change): heartbeat into
  ``<prefix>nodes`` (live nodes), this node's viewers per camera into the demand records
  (which on-demand cameras are wanted) and viewer counts, the status of the cameras it
  holds, and a read of everyone's statuses and nodes;
- **renew** the leases it holds; **place**: take free leases of wanted cameras up to a fair
  share (``ceil(wanted / live nodes)``; an orphan left for a second is taken regardless),
  give up cameras nobody wants any longer (after the on-demand grace), and hand one camera
  back every few seconds while it holds more than its share (a node that joins gets some).

On SIGTERM the node stops its ingests and releases its leases at once, so the others take
over within one loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from camserver.cluster.backend import Backend
from camserver.cluster.lease import Lease, Leases
from camserver.cluster.push import let_pusher_go, pushed_here
from camserver.cluster.relay import ClusterHub, FrameRelay
from camserver.cluster.store import ConfigFeed
from camserver.cluster.wire import VERSION, describe_node, outdated
from camserver.errors import ClusterUnavailable
from camserver.schema import StreamConfig, StreamState, StreamStatus
from camserver.streaming.registry import StreamRegistry

if TYPE_CHECKING:
    pass

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

TICK = 0.25
SYNC_EVERY = 1.0
NODE_TTL_MS = 5000
ORPHAN_AFTER = 1.0
"""A free camera this long is taken by any node, whatever its share."""
REBALANCE_EVERY = 3.0


class Cluster:
    """This node in the cluster; :class:`~camserver.cluster.placement.ClusterPlacement`
    is the registry's placement on top of it."""

    def __init__(
        self,
        backend: Backend,
        manager: StreamRegistry,
        feed: ConfigFeed,
        *,
        address: str,
        lease_ttl: float,
        grace: float,
        pulls: bool = True,
    ) -> None:
        self.backend = backend
        self.node = backend.node
        self.address = address
        self.manager = manager
        self.leases = Leases(backend, lease_ttl)
        self.hubs: dict[str, ClusterHub] = {}
        self.relay = FrameRelay(backend, self.hubs)
        self.held: dict[str, Lease] = {}
        self.grace = grace
        self.pulls = pulls
        """False: this node serves viewers only and never takes a camera."""
        self.started = time.time()
        self.feed = feed
        """Configuration and tokens from Redis (built by ``camserver.cluster.setup``)."""
        self.nodes: list[str] = []
        self.node_info: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        """Camera → the status its holder last reported (read by the placement)."""
        self._viewers: dict[str, dict[str, int]] = {}
        self._demand: dict[str, int] = {}
        self._idle_since: dict[str, float] = {}
        self._free_since: dict[str, float] = {}
        self._cooldown: dict[str, float] = {}
        """Camera → until when this node leaves it to others (it just handed it over)."""
        self.last_sync = 0.0
        self._last_rebalance = time.monotonic()
        self._last_check = time.monotonic()
        self._dirty = True
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._warned = 0.0
        self.hold_listeners: list[Callable[[str], None]] = []
        """``listener(name)`` when this node takes or lets go of a camera."""
        manager.add_listener(self._on_state)

    # -- for the placement (camserver.cluster.placement) ---------------------------------

    def new_hub(self, name: str) -> ClusterHub:
        hub = ClusterHub(name, self.relay.counters)
        self.hubs[name] = hub
        return hub

    def changed(self, name: str) -> None:
        """A stream's configuration or local demand changed: decide again soon."""
        self._dirty = True
        self._wake.set()
        self.relay.update()

    async def _halt(self, name: str) -> None:
        """This node no longer holds the camera: let it go."""
        if name in self.manager:
            await self.manager.supervisor(name).stop(StreamState.STOPPED)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.feed.start()
        self.relay.start()
        self._tasks = [
            asyncio.create_task(self._loop(), name="cluster-loop"),
            asyncio.create_task(self._watchdog(), name="cluster-fence"),
        ]

    async def close(self) -> None:
        """Hand every camera over at once, leave the node list, close subscriptions."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # (3.11's wait_for can lose a cancel: the flag ends the loops too)
            await asyncio.wait(self._tasks, timeout=3)
        for name in list(self.held):
            await self._give_up(name, "node shutting down")
        try:
            k = self.backend.keys
            await self.backend.call("leave", lambda: self.backend.redis.zrem(k.nodes, self.node))
        except ClusterUnavailable:
            pass
        await self.relay.close()
        await self.feed.close()

    # -- the loop ---------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        while not self._closing:
            # Wake at the earliest deadline (a renewal only moves it later), at least 4x/s.
            first = min((lease.deadline for lease in self.held.values()), default=math.inf)
            await asyncio.sleep(min(TICK, max(0.005, first - time.monotonic())))
            now = time.monotonic()
            for name, lease in list(self.held.items()):
                if now >= lease.deadline:
                    self.leases.expired += 1
                    await self._drop(name, "its lease could not be renewed in time")

    async def _loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK * random.uniform(0.8, 1.2))
            self._wake.clear()
            try:
                await self._tick()
            except ClusterUnavailable as exc:
                if time.monotonic() - self._warned > 10:
                    self._warned = time.monotonic()
                    log.warning("cluster: %s", exc)
            except Exception:
                log.exception("cluster: loop turn failed")

    async def _tick(self) -> None:
        now = time.monotonic()
        if self._dirty or now - self.last_sync >= SYNC_EVERY:
            self._dirty = False
            await self._sync()
        if now - self._last_check >= 5.0:  # a lost config message, at the latest now
            self._last_check = now
            self.feed.check()
        await self._renew()
        await self._place()

    async def _sync(self) -> None:
        b, k = self.backend, self.backend.keys
        for gone in [n for n, hub in self.hubs.items() if hub.closed]:
            del self.hubs[gone]  # a deleted stream's (a new one of that name has a new hub)
        names = self.manager.names()
        counts = [self._local_viewers(n) for n in names]
        me = describe_node(self.address, sorted(self.held), sum(counts), self.started, self.pulls)
        nodes = await b.script(
            "heartbeat", [k.nodes, k.node(self.node)], [self.node, NODE_TTL_MS, json.dumps(me)]
        )
        self.nodes = sorted(n.decode() for n in nodes)
        if names:
            pairs = [key for n in names for key in (k.demand(n), k.viewers(n))]
            demand = await b.script("demand", pairs, [self.node, NODE_TTL_MS, *counts])
            self._demand = dict(zip(names, (int(d) for d in demand), strict=True))

        held = [name for name in self.held if name in self.manager]

        async def exchange() -> list[Any]:
            async with b.redis.pipeline(transaction=False) as pipe:
                for name in held:
                    status = self.manager.status(name).model_dump(mode="json")
                    pipe.set(k.status(name), json.dumps(status), px=NODE_TTL_MS)
                for name in names:
                    pipe.get(k.status(name))
                    pipe.hgetall(k.viewers(name))
                pipe.mget([k.node(n) for n in self.nodes])
                pipe.set(k.format, VERSION, nx=True)  # the stored configuration's format
                pipe.get(k.format)
                result: list[Any] = await pipe.execute()
                return result

        got = await b.call("sync", exchange)
        got = got[len(held) :]
        for i, name in enumerate(names):
            raw, viewers = got[2 * i], got[2 * i + 1]
            if raw:
                self.statuses[name] = json.loads(raw)
            else:
                self.statuses.pop(name, None)
            self._viewers[name] = {key.decode(): int(v) for key, v in viewers.items()}
        self.node_info = {
            n: json.loads(raw) for n, raw in zip(self.nodes, got[-3], strict=True) if raw
        }
        b.versions(outdated(self.node_info, int(got[-1] or VERSION)))
        self.last_sync = time.monotonic()

    async def _renew(self) -> None:
        now = time.monotonic()
        for name, lease in list(self.held.items()):
            if now - lease.renewed >= self.leases.renew_every and not await self.leases.renew(
                lease
            ):
                await self._drop(name, "another node holds its lease now")
            elif name in self.hubs:
                self.hubs[name].deadline = lease.deadline

    def wanted_by_viewers(self, name: str) -> bool:
        return self._local_viewers(name) > 0 or self._demand.get(name, 0) > 0

    def _should_run(self, name: str, now: float) -> bool:
        if name not in self.manager:
            return False
        if pushed_here(self.manager, name) is False:
            return False  # a push camera runs where it is connected, nowhere else
        return wanted(
            self.manager.config(name),
            self.wanted_by_viewers(name),
            name in self.held,
            self._idle_since,
            self.grace,
            now,
        )

    async def _place(self) -> None:
        b, k = self.backend, self.backend.keys
        now = time.monotonic()
        names = self.manager.names()
        for name in list(self.held):
            if self.backend.outdated is not None:
                await self._give_up(name, "a newer node is in the cluster")
            elif name not in names or not self._should_run(name, now):
                await self._give_up(name, "no longer wanted")
        wanted = [n for n in names if self._should_run(n, now)]
        for name in wanted:
            if name in self.held and not self.manager.supervisor(name).running:
                self.manager.supervisor(name).start()  # restarted after a change of URL or login
        share = math.ceil(len(wanted) / max(1, len(self._pullers())))
        pulls = self.pulls and self.backend.outdated is None
        candidates = [n for n in wanted if n not in self.held] if pulls else []
        if candidates:
            keys = [k.lease(n) for n in candidates] + [k.quiet]
            *values, quiet = await b.call("leases", lambda: b.redis.mget(keys))
            if quiet is not None:  # Redis lost its data: no leases yet, the wait starts later
                self._free_since.clear()
                candidates = []
            free = [n for n, v in zip(candidates, values, strict=False) if v is None]
            for name in candidates:
                if name not in free:
                    self._free_since.pop(name, None)
            random.shuffle(free)
            room = share - len(self.held)
            for name in free:
                since = self._free_since.setdefault(name, now)
                if self._cooldown.get(name, 0.0) > now and now - since < ORPHAN_AFTER:
                    continue
                orphan = now - since >= ORPHAN_AFTER
                # The node with viewers of an on-demand camera goes first, so that its
                # frames need not cross Redis.
                if name not in self.manager:
                    continue
                if (
                    self.manager.config(name).on_demand
                    and not self._local_viewers(name)
                    and now - since < 2 * TICK
                ):
                    continue
                if room <= 0 and not orphan:
                    continue
                lease = await self.leases.acquire(name)
                if self.leases.quiet:  # nobody gets a lease yet: the waiting starts afresh
                    self._free_since.clear()
                    break
                if lease is not None:
                    room -= 1
                    self._free_since.pop(name, None)
                    self.take(lease)
        if now - self._last_rebalance >= REBALANCE_EVERY and overloaded(
            len(self.held),
            share,
            [
                len(self.node_info[node].get("cameras", []))
                for node in self._pullers()
                if node != self.node and node in self.node_info
            ],
        ):
            self._last_rebalance = now
            # The camera with the fewest viewers here, held longest (not one just taken).
            name = min(self.held, key=lambda n: (self._local_viewers(n), self.held[n].since))
            # Another node takes it: not this one again for a while.
            self._cooldown[name] = now + REBALANCE_EVERY
            await self._give_up(name, f"holding {len(self.held)} cameras, fair share {share}")

    def _pullers(self) -> list[str]:
        """Live nodes that take cameras (a node not heard from yet counts as one)."""
        return [n for n in self.nodes if self.node_info.get(n, {}).get("pulls", True)]

    # -- taking and letting go ------------------------------------------------------------

    def take(self, lease: Lease) -> None:
        self.held[lease.name] = lease
        log.info("cluster: took camera %s (token %d)", lease.name, lease.token)
        hub = self.hubs.get(lease.name)
        if hub is not None:
            hub.hold(lease, self.backend)
        self.manager.supervisor(lease.name).start()
        self.relay.update()
        self._dirty = True
        self._held_changed(lease.name)

    async def _drop(self, name: str, why: str) -> None:
        """Stop pulling ``name`` because its lease is (or may be) someone else's."""
        if self.held.pop(name, None) is None:
            return
        log.warning("cluster: lease lost for camera %s: %s", name, why)
        hub = self.hubs.get(name)
        if hub is not None:
            hub.release()
        await self._halt(name)
        let_pusher_go(self.manager, name, f"this node lost the camera's lease: {why}")
        self.relay.update()
        self._dirty = True
        self._held_changed(name)

    async def _give_up(self, name: str, why: str) -> None:
        """Stop pulling ``name`` first, then free its lease for another node."""
        lease = self.held.pop(name, None)
        if lease is None:
            return
        log.info("cluster: handing over camera %s (%s)", name, why)
        hub = self.hubs.get(name)
        if hub is not None:
            hub.release()
        await self._halt(name)
        self._held_changed(name)  # (the recorder stops taking frames before it is free)
        with contextlib.suppress(ClusterUnavailable):  # else it expires by itself
            await self.leases.release(lease)
        self.relay.update()
        self._dirty = True

    def _held_changed(self, name: str) -> None:
        for listener in self.hold_listeners:
            try:
                listener(name)
            except Exception:
                log.exception("cluster: a listener failed for camera %s", name)

    # -- views ----------------------------------------------------------------------------

    def _local_viewers(self, name: str) -> int:
        hub = self.hubs.get(name)
        return hub.viewers if hub is not None and not hub.closed else 0

    def cluster_viewers(self, name: str) -> int:
        others = self._viewers.get(name, {})
        live = set(self.nodes)
        return self._local_viewers(name) + sum(
            count for node, count in others.items() if node != self.node and node in live
        )

    def _on_state(self, name: str, status: StreamStatus) -> None:
        if name in self.held:
            self._dirty = True
            self._wake.set()


def wanted(
    cfg: StreamConfig,
    watched: bool,
    held: bool,
    idle_since: dict[str, float],
    grace: float,
    now: float,
) -> bool:
    """Whether camera ``cfg`` should be pulled somewhere: enabled, and not on demand, or
    recorded, or watched for motion, or ``watched`` (viewers on some node); a held camera
    nobody wants any longer stays for ``grace`` seconds (``idle_since`` keeps the start)."""
    if not cfg.enabled:
        return False
    # A recorded or watched-for-motion camera is wanted with no viewer, as on one node.
    if not cfg.on_demand or cfg.recording.active or cfg.motion.enabled or watched:
        idle_since.pop(cfg.name, None)
        return True
    if not held:
        return False
    idle = idle_since.setdefault(cfg.name, now)
    return now - idle < grace


def overloaded(held: int, share: int, others: list[int]) -> bool:
    """A node holding ``held`` cameras holds too many: more than the fair ``share``, or two
    more than the least busy other live node (``others``: what each holds; say one that
    just joined)."""
    return held > share or (bool(others) and held - min(others) >= 2)
