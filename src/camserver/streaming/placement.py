"""Where and when a stream's source runs.

A :class:`Placement` decides, from a stream's configuration and its demand, whether its
source runs here. :class:`LocalPlacement` is the single-node rule: ``enabled`` off →
stopped; ``on_demand`` off → running; ``on_demand`` on → running while the stream is
needed (someone watches, it records, motion watches it), stopped ``grace`` seconds after
it no longer is (state ``idle``). Cluster mode (``camserver.cluster``) provides another
behind the same interface: a stream's source runs only on the node holding its lease.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from camserver.schema import StreamConfig, StreamState, StreamStatus
from camserver.sources import Supervisor
from camserver.streaming.hub import LocalHub

__all__ = ["LocalPlacement", "Placement", "StreamRecord"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamRecord:
    """One configured stream and the objects it runs with."""

    cfg: StreamConfig
    hub: LocalHub
    supervisor: Supervisor
    target: tuple[str | None, ...]
    """What the source connects with: a change restarts it."""


class Placement(Protocol):
    def new_hub(self, name: str) -> LocalHub:
        """The hub for a new stream."""
        ...

    async def reconcile(self, stream: StreamRecord) -> None:
        """The stream is new or its configuration changed: start or stop its source."""

    def demand_changed(self, stream: StreamRecord) -> None:
        """The stream's demand changed (a viewer came or left, recording or motion)."""

    def forget(self, stream: StreamRecord) -> None:
        """The stream is being deleted."""

    def status(self, stream: StreamRecord, local: StreamStatus) -> StreamStatus:
        """The stream's status as every node reports it (``local``: this node's source)."""
        ...

    async def claim(self, stream: StreamRecord) -> bool:
        """A push camera connected here: its source should run here (cluster mode: this
        node takes the camera's lease, from another node if need be). True when that
        starts its source now."""
        ...

    def frames_coming(self, stream: StreamRecord) -> bool:
        """Whether a frame is on its way for an on-demand stream just asked for (its
        source connects): worth waiting for rather than asking the camera for a still."""
        ...


class LocalPlacement:
    """Every stream runs here (see the module docstring)."""

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self._grace: dict[str, asyncio.Task[None]] = {}

    def new_hub(self, name: str) -> LocalHub:
        return LocalHub(name)

    async def reconcile(self, stream: StreamRecord) -> None:
        cfg, supervisor = stream.cfg, stream.supervisor
        if not cfg.enabled:
            self._cancel_grace(cfg.name)
            await supervisor.stop(StreamState.STOPPED)
        elif not cfg.on_demand or stream.hub.demand.needed:
            self._cancel_grace(cfg.name)
            supervisor.start()
        elif supervisor.running:
            self._start_grace(stream)
        else:
            supervisor.set_state(StreamState.IDLE)

    def demand_changed(self, stream: StreamRecord) -> None:
        if not (stream.cfg.enabled and stream.cfg.on_demand):
            return
        if stream.hub.demand.needed:
            self._cancel_grace(stream.cfg.name)
            if not stream.supervisor.running:
                log.info("stream %s: wanted, connecting on demand", stream.cfg.name)
                stream.supervisor.start()
        elif stream.supervisor.running:
            self._start_grace(stream)

    def forget(self, stream: StreamRecord) -> None:
        self._cancel_grace(stream.cfg.name)

    def status(self, stream: StreamRecord, local: StreamStatus) -> StreamStatus:
        return local

    async def claim(self, stream: StreamRecord) -> bool:
        return False  # every source runs here already, as the local rule says

    def frames_coming(self, stream: StreamRecord) -> bool:
        return stream.supervisor.running

    def _start_grace(self, stream: StreamRecord) -> None:
        task = self._grace.get(stream.cfg.name)
        if task is None or task.done():
            self._grace[stream.cfg.name] = asyncio.create_task(self._grace_stop(stream))

    def _cancel_grace(self, name: str) -> None:
        task = self._grace.pop(name, None)
        if task is not None:
            task.cancel()

    async def _grace_stop(self, stream: StreamRecord) -> None:
        await asyncio.sleep(self.grace)
        cfg = stream.cfg
        if not stream.hub.demand.needed and cfg.on_demand and cfg.enabled:
            log.info("stream %s: not wanted for %g s, disconnecting", cfg.name, self.grace)
            self._grace.pop(cfg.name, None)
            await stream.supervisor.stop(StreamState.IDLE)
