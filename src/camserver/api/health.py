"""``GET /healthz``: answers once the server accepts requests."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 ``{"status": "ok"}``."""
    return {"status": "ok"}
