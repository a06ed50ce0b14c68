"""``GET /api/cluster``: the live nodes, the cameras each holds, and Redis' health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException

from camserver.api.deps import RuntimeDep, Unscoped
from camserver.schema import ClusterNode, ClusterOut, RedisHealth

if TYPE_CHECKING:
    from camserver.cluster.node import Cluster

router = APIRouter(prefix="/api/cluster", tags=["cluster"])


@router.get(
    "",
    dependencies=[Unscoped],
    responses={404: {"description": "Not a cluster node (CAMSERVER_REDIS_URL unset)"}},
)
async def cluster(runtime: RuntimeDep) -> dict[str, Any]:
    """This node's id, Redis' health, and every live node: id, address, cameras held,
    local viewers, last heartbeat (epoch seconds)."""
    if runtime.cluster is None:
        raise HTTPException(404, "this server is not in cluster mode (CAMSERVER_REDIS_URL unset)")
    return describe(runtime.cluster).model_dump()


def describe(cluster: Cluster) -> ClusterOut:
    """What ``GET /api/cluster`` shows (``camserver.client`` reads it as :class:`ClusterOut`)."""
    nodes = []
    for node in cluster.nodes:
        info = cluster.node_info.get(node, {})
        nodes.append(
            ClusterNode(
                id=node,
                address=info.get("address"),
                cameras=sorted(cluster.held) if node == cluster.node else info.get("cameras", []),
                viewers=info.get("viewers", 0),
                last_heartbeat=info.get("beat"),
                pulls=info.get("pulls", True),
                started=info.get("started"),
                version=info.get("wire", 1),
            )
        )
    backend = cluster.backend
    redis = RedisHealth(
        url=backend.safe_url, reachable=backend.reachable, last_error=backend.last_error
    )
    return ClusterOut(node=cluster.node, redis=redis, nodes=nodes, outdated=backend.outdated)
