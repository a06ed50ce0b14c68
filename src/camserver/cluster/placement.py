"""The registry's placement in cluster mode: a stream's source runs only on the node that
holds the camera's lease (``camserver.cluster.node.Cluster`` decides in its loop), and its
status is the one the holder reports, seen from any node."""

from __future__ import annotations

import time

from camserver.cluster.node import Cluster
from camserver.cluster.push import claim
from camserver.errors import StreamNotFound
from camserver.schema import StreamState, StreamStatus
from camserver.streaming.hub import LocalHub
from camserver.streaming.placement import StreamRecord

__all__ = ["ClusterPlacement"]


class ClusterPlacement:
    """Implements :class:`~camserver.streaming.placement.Placement` on a :class:`Cluster`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def new_hub(self, name: str) -> LocalHub:
        return self.cluster.new_hub(name)

    async def reconcile(self, stream: StreamRecord) -> None:
        if not stream.cfg.enabled:
            await stream.supervisor.stop(StreamState.STOPPED)
        self.cluster.changed(stream.cfg.name)

    def demand_changed(self, stream: StreamRecord) -> None:
        self.cluster.changed(stream.cfg.name)

    def forget(self, stream: StreamRecord) -> None:
        pass  # (the cluster's loop gives up a deleted camera's lease)

    async def claim(self, stream: StreamRecord) -> bool:
        return await claim(self.cluster, stream.cfg.name)

    def frames_coming(self, stream: StreamRecord) -> bool:
        return True  # the holder connects on demand and relays the first frame

    def status(self, stream: StreamRecord, local: StreamStatus) -> StreamStatus:
        """The holder's status (viewers: on every node), else what can be said here."""
        cluster, name = self.cluster, stream.cfg.name
        viewers = cluster.cluster_viewers(name)
        remote = viewers - stream.hub.viewers
        if name in cluster.held:
            demand = local.demand.model_copy(update={"viewers": viewers, "remote": remote})
            return local.model_copy(
                update={"node": cluster.node, "viewers": viewers, "demand": demand}
            )
        raw = cluster.statuses.get(name)
        if raw is not None and raw.get("node") in cluster.nodes:
            status = StreamStatus(**{**raw, "viewers": viewers})
            demand = status.demand.model_copy(update={"viewers": viewers, "remote": remote})
            return _unless_cut_off(cluster, stream, status.model_copy(update={"demand": demand}))
        try:
            cfg = cluster.manager.config(name)
        except StreamNotFound:
            return local
        if not cfg.enabled:
            state = StreamState.STOPPED
        elif cfg.pushed:
            state = StreamState.WAITING  # no node has the camera connected
        elif cfg.on_demand and not cluster.wanted_by_viewers(name):
            state = StreamState.IDLE
        else:
            state = StreamState.CONNECTING
        demand = stream.hub.demand.reasons(viewers=viewers, remote=remote)
        return _unless_cut_off(
            cluster, stream, StreamStatus(state=state, viewers=viewers, demand=demand)
        )


STALE_AFTER = 2.0
"""Seconds without a word from Redis after which the holder's last report is not shown as
it was: with the frame relay's 1 s sync, a camera whose frames stopped with Redis is said
to be so within 3 s of its last frame."""


def _unless_cut_off(cluster: Cluster, stream: StreamRecord, status: StreamStatus) -> StreamStatus:
    """The holder's last report, or, when Redis has not answered for ``STALE_AFTER`` s (no
    frame can come from another node then), ``retrying`` with Redis named in ``last_error``
    and the last frame this node saw."""
    quiet = time.monotonic() - cluster.last_sync
    pulled = (StreamState.STREAMING, StreamState.CONNECTING, StreamState.RETRYING)
    if quiet < STALE_AFTER or status.state not in pulled:
        return status  # (stopped, idle, waiting: true with or without Redis)
    latest = stream.hub.latest
    seen = latest.ts if latest is not None else None
    last = max((t for t in (status.last_frame_at, seen) if t is not None), default=None)
    why = cluster.backend.last_error or "no answer"
    return status.model_copy(
        update={
            "state": StreamState.RETRYING,
            "fps": 0.0,
            "last_frame_at": last,
            "last_error": f"the cluster's Redis cannot be reached ({why}): the camera's "
            "frames cannot come from the node that pulls it",
            "last_error_at": time.time() - quiet,
        }
    )
