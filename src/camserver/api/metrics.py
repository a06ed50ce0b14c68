"""``GET /metrics``: Prometheus text format (what is exported: ``camserver.telemetry``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from camserver.api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Per-stream state, frames, bytes, bad frames, reconnects, fps and viewers by kind;
    event-loop lag, Socket.IO and MJPEG clients, discovery datagrams by outcome."""
    return Response(generate_latest(runtime.metrics), media_type=CONTENT_TYPE_LATEST)
