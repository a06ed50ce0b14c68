"""``GET /api/cluster``: the live nodes, the cameras each holds, and Redis' health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from camserver.api.deps import RuntimeDep, Unscoped

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
    return runtime.cluster.describe()
