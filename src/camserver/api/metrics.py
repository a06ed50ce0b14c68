"""``GET /metrics``: Prometheus text format (what is exported: ``camserver.telemetry``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from camserver.api.deps import GrantDep, RuntimeDep
from camserver.telemetry import StateCollector

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(runtime: RuntimeDep, grant: GrantDep) -> Response:
    """Per-stream state, frames, bytes, bad frames, reconnects, fps and viewers by kind;
    event-loop lag, Socket.IO and MJPEG clients, discovery datagrams by outcome. A token
    scoped to some streams gets only theirs."""
    registry = runtime.metrics
    if grant.streams is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(runtime, grant.streams))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
