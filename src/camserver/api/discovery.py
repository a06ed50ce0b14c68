"""``/api/discovery``: cameras found by UDP discovery; scan; add one as a stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from camserver.api.deps import DiscoveryDep, ManagerDep, Unscoped
from camserver.errors import NotDiscovered, UnknownInterface
from camserver.schema import AddBody, DiscoveredCamera, DiscoveredOut, StreamOut
from camserver.sources import target_url
from camserver.streaming.registry import StreamRegistry

# Discovery is about every camera: not for tokens scoped to some streams.
router = APIRouter(prefix="/api/discovery", tags=["discovery"], dependencies=[Unscoped])

_ERROR = {"content": {"application/json": {"example": {"detail": "..."}}}}


def _out(cams: list[DiscoveredCamera], manager: StreamRegistry) -> list[DiscoveredOut]:
    """The cameras, each with the stream already reading it, if any."""
    by_url = manager.names_by_url()
    return [
        DiscoveredOut(**c.model_dump(), stream=by_url.get(target_url(c.stream_config())))
        for c in cams
    ]


@router.get("")
async def list_discovered(discovery: DiscoveryDep, manager: ManagerDep) -> list[DiscoveredOut]:
    """Every camera seen since the server started (announced or answering a probe); in a
    cluster, every camera any node found (one list on every node)."""
    return _out(await discovery.listed(), manager)


@router.post("/scan", responses={503: {"description": "Discovery is off", **_ERROR}})
async def scan(
    discovery: DiscoveryDep,
    manager: ManagerDep,
    timeout: Annotated[float, Query(gt=0, le=10, description="Seconds to wait")] = 2.0,
    interface: Annotated[
        str | None, Query(max_length=200, description="Probe only these (comma-separated)")
    ] = None,
) -> list[DiscoveredOut]:
    """Probe each selected interface's broadcast address, wait, return who answered."""
    ifaces = None
    if interface is not None:
        # Only interfaces the server is configured to probe: a request cannot widen
        # discovery beyond CAMSERVER_DISCOVERY_INTERFACES.
        enabled = {i.name: i for i in discovery.interfaces}
        wanted = [n.strip() for n in interface.split(",") if n.strip()]
        refused = [n for n in wanted if n not in enabled]
        if refused or not wanted:
            raise UnknownInterface(
                f"interface {', '.join(refused) or repr(interface)} is not enabled for discovery; "
                f"enabled: {', '.join(enabled) or 'none'} (CAMSERVER_DISCOVERY_INTERFACES)"
            )
        ifaces = [enabled[n] for n in wanted]
    return _out(await discovery.scan(timeout, ifaces), manager)


@router.post(
    "/{name}/add",
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "Not discovered", **_ERROR}, 409: _ERROR},
)
async def add_discovered(
    name: str, discovery: DiscoveryDep, manager: ManagerDep, body: AddBody | None = None
) -> StreamOut:
    """Turn a discovered camera into a stream (optionally under another name; an encrypted
    ESPHome device with its ``encryption_key``)."""
    cam = await discovery.lookup(name)
    if cam is None:
        raise NotDiscovered(name)
    key = body.encryption_key.get_secret_value() if body and body.encryption_key else None
    cfg = cam.stream_config(body.name if body else None, key)
    return await manager.create(cfg)
