"""Push cameras in a cluster (issue 28): the node a camera connects to takes its lease,
from another node if need be (the newest connection wins); a node that loses the lease lets
its connection to the camera go."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from camserver.sources import PushSource
from camserver.streaming.registry import StreamRegistry

if TYPE_CHECKING:
    from camserver.cluster.node import Cluster

__all__ = ["claim", "let_pusher_go", "pushed_here"]

log = logging.getLogger(__name__)


async def claim(cluster: Cluster, name: str) -> bool:
    """Push camera ``name`` connected to this node (or posted to it): take its lease here,
    from another node if need be; the other node's next fenced publish and renewal fail,
    and it closes its connection to the camera. True when the camera's source starts here
    now."""
    if name in cluster.held:
        return False
    lease = await cluster.leases.steal(name)
    log.info("cluster: push camera %s connected here: took its lease (token %d)", name, lease.token)
    cluster.take(lease)
    return True


def pushed_here(manager: StreamRegistry, name: str) -> bool | None:
    """For a push camera: whether it is connected to (or last posted to) this node; None
    for a camera that is pulled."""
    source = manager.record(name).supervisor.source
    return source.present() if isinstance(source, PushSource) else None


def let_pusher_go(manager: StreamRegistry, name: str, why: str) -> None:
    """This node lost a push camera's lease: its newer connection is on another node."""
    if name in manager:
        source = manager.record(name).supervisor.source
        if isinstance(source, PushSource):
            source.close(why)
