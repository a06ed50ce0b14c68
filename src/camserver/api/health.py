"""``GET /healthz``: answers once the server accepts requests; in cluster mode it also says
whether this node reaches Redis."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "Cluster mode: Redis is unreachable"}})
async def healthz(request: Request, response: Response) -> dict[str, Any]:
    """200 ``{"status": "ok"}``. A cluster node adds ``node`` and ``redis``, and answers
    503 ``{"status": "degraded"}`` while it cannot reach Redis (it stays up and serves what
    it can; a load balancer checking this route sends viewers to healthy nodes)."""
    runtime = getattr(request.state, "runtime", None)
    cluster = runtime.cluster if runtime is not None else None
    if cluster is None:
        return {"status": "ok"}
    backend = cluster.backend
    if backend.reachable:
        return {"status": "ok", "node": cluster.node, "redis": "ok"}
    response.status_code = 503
    return {
        "status": "degraded",
        "node": cluster.node,
        "redis": f"unreachable: {backend.last_error or 'no answer yet'}",
    }
