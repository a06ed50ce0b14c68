"""``/onvif/device_service`` and ``/onvif/media_service``: ONVIF Profile S, minimal, so
NVRs and Home Assistant's ONVIF integration can add camserver's cameras (docs/rtsp.md).

WS-Security UsernameToken authenticates: any user name and a token as the password
(PasswordText: any token; PasswordDigest: the environment's tokens, whose secret the server
has). ``GetSystemDateAndTime`` needs none (a client needs the clock for its digest). A token
scoped to some streams sees only their profiles. What is not supported gets a SOAP fault.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request, Response

from camserver import __version__
from camserver.api.deps import RuntimeDep
from camserver.codecs.jpeg import dimensions
from camserver.onvif import services, soap
from camserver.onvif.services import Context, NoSuchProfile, NotSupported, Source
from camserver.runtime import Runtime
from camserver.tokens import ALL, Grant

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/onvif", tags=["onvif"], include_in_schema=False)
SOAP = "application/soap+xml; charset=utf-8"


def _reply(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=SOAP)


def _grant(runtime: Runtime, call: soap.Call) -> Grant | None:
    checker = runtime.checker
    if not checker.enabled:
        return ALL
    token = call.token
    if token is None:
        return None
    if not token.digest:
        found: Grant | None = checker.grant(token.password)
        return found
    secret = soap.check_username_token(token, checker.plain_tokens())
    return checker.grant(secret) if secret is not None else None


def _context(runtime: Runtime, request: Request, grant: Grant) -> Context:
    host = request.url.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    http_base = f"{request.url.scheme}://{host}" + (
        f":{request.url.port}" if request.url.port else ""
    )
    rtsp = runtime.rtsp
    sources = []
    manager = runtime.manager
    for name in manager.names():
        if not grant.sees(name):
            continue
        size = (640, 480)
        latest = manager.hub(name).latest
        if latest is not None:
            size = dimensions(latest.data) or size
        fps = manager.status(name).fps or 15.0
        sources.append(Source(name, size[0], size[1], fps))
    mac = ":".join(f"{(uuid.getnode() >> s) & 0xFF:02x}" for s in range(40, -1, -8))
    return Context(
        http_base=http_base,
        rtsp_base=f"rtsp://{host}:{rtsp.port}" if rtsp is not None else None,
        sources=sources,
        version=__version__,
        mac=mac,
        hostname=runtime.settings.effective_node_id(),
    )


async def _serve(
    runtime: Runtime, request: Request, service: dict[str, services.Operation]
) -> Response:
    try:
        call = soap.parse(await request.body())
    except soap.BadRequest as exc:
        return _reply(soap.fault("Sender", "InvalidArgVal", str(exc)), 400)
    grant = ALL if call.operation in services.PUBLIC else _grant(runtime, call)
    if grant is None:
        return _reply(soap.fault("Sender", "NotAuthorized", "a valid token is needed"), 400)
    try:
        body = services.answer(service, _context(runtime, request, grant), call)
    except NotSupported as exc:
        return _reply(soap.fault("Receiver", "ActionNotSupported", str(exc)), 400)
    except NoSuchProfile as exc:
        return _reply(soap.fault("Sender", "NoProfile", f"no profile {exc}"), 400)
    return _reply(soap.envelope(body))


@router.post("/device_service")
async def device_service(runtime: RuntimeDep, request: Request) -> Response:
    return await _serve(runtime, request, services.DEVICE)


@router.post("/media_service")
async def media_service(runtime: RuntimeDep, request: Request) -> Response:
    return await _serve(runtime, request, services.MEDIA)
