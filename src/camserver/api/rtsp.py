"""``GET /api/rtsp``: whether RTSP out runs and on which port (docs/rtsp.md); the
dashboard builds each camera's ``rtsp://`` URL from it."""

from __future__ import annotations

from fastapi import APIRouter

from camserver.api.deps import RuntimeDep
from camserver.schema import RtspOut

router = APIRouter(prefix="/api/rtsp", tags=["rtsp"])


@router.get("")
async def rtsp_info(runtime: RuntimeDep) -> RtspOut:
    """``{"enabled": true, "port": 8554, "udp_ports": [...]}``, or why it is off."""
    server = runtime.rtsp
    if server is None:
        return RtspOut(enabled=False, reason=runtime.rtsp_off)
    return RtspOut(enabled=True, port=server.port, udp_ports=list(server.udp_ports))
