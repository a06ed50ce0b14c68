"""Requests camserver makes to a camera besides the stream (a snapshot, CameraWebServer's
``/status`` and ``/control``), each bounded: the connection goes to the address the
:class:`~camserver.netguard.NetworkGuard` checked, the body is read as it arrives and no
further than a size cap, and the whole exchange has one deadline (httpx's own timeouts
are per read: a body that drips one byte every few seconds would never time out).
Cancelling the awaiting task (the requester went away) closes the camera connection at
once, which matters to an ESP32 that serves one client at a time.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from camserver.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from camserver.netguard import NetworkGuard

__all__ = [
    "MAX_CONTROL_BYTES",
    "MAX_STATUS_BYTES",
    "REQUEST_ERRORS",
    "Fetched",
    "describe_error",
    "fetch",
    "read_status",
    "set_control",
]

# What making a request to a camera can raise besides an HTTP error: httpx.InvalidURL, and
# UnicodeError when a host name cannot be IDNA-encoded (e.g. "xn--").
REQUEST_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)
MAX_STATUS_BYTES = 64 * 1024
"""CameraWebServer's /status is about 600 bytes of JSON."""
MAX_CONTROL_BYTES = 4 * 1024
"""/control answers an empty body."""


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    body: bytes


async def fetch(
    client: httpx.AsyncClient,
    guard: NetworkGuard,
    url: str,
    *,
    max_bytes: int,
    deadline: float,
    auth: httpx.Auth | None = None,
    params: dict[str, str] | None = None,
) -> Fetched:
    """GET ``url``: at most ``max_bytes`` of body, all within ``deadline`` seconds.

    Raises TargetNotAllowed, UpstreamTimeout, UpstreamConnectError (no connection) or
    UpstreamProtocolError (a body over the cap, a broken response).
    """
    target = await guard.pin(url)
    try:
        async with asyncio.timeout(deadline):
            async with client.stream(
                "GET",
                target.url,
                params=params,
                headers=target.headers,
                extensions=target.extensions,
                timeout=deadline,
                auth=auth,
            ) as resp:
                declared = resp.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                    raise UpstreamProtocolError(
                        f"{url} answered {int(declared)} bytes, more than the {max_bytes} "
                        "bytes camserver reads"
                    )
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise UpstreamProtocolError(
                            f"{url} sent more than the {max_bytes} bytes camserver reads"
                        )
                return Fetched(resp.status_code, bytes(body))
    except (TimeoutError, httpx.TimeoutException) as exc:  # the deadline, or httpx's own
        raise UpstreamTimeout(f"{url} did not answer within {deadline:g} s") from exc
    except (httpx.ConnectError, UnicodeError, httpx.InvalidURL) as exc:
        raise UpstreamConnectError(f"cannot reach {url}: {describe_error(exc)}") from exc
    except REQUEST_ERRORS as exc:
        raise UpstreamProtocolError(f"{url} broke off: {describe_error(exc)}") from exc


async def read_status(
    client: httpx.AsyncClient,
    guard: NetworkGuard,
    host: str,
    deadline: float = 5.0,
    auth: httpx.Auth | None = None,
) -> dict[str, Any]:
    """The camera's ``/status`` JSON. Raises UpstreamError with a readable reason."""
    url = f"http://{host}/status"
    got = await fetch(client, guard, url, max_bytes=MAX_STATUS_BYTES, deadline=deadline, auth=auth)
    if got.status != 200:
        raise UpstreamConnectError(f"{url} answered HTTP {got.status}")
    try:
        data = json.loads(got.body)
    except ValueError as exc:
        raise UpstreamProtocolError(f"{url} did not return JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{url} did not return a JSON object")
    return data


async def set_control(
    client: httpx.AsyncClient,
    guard: NetworkGuard,
    host: str,
    var: str,
    value: int,
    deadline: float = 5.0,
    auth: httpx.Auth | None = None,
) -> str | None:
    """Call ``/control?var=…&val=…``; None on success, else why it failed."""
    try:
        got = await fetch(
            client,
            guard,
            f"http://{host}/control",
            params={"var": var, "val": str(value)},
            max_bytes=MAX_CONTROL_BYTES,
            deadline=deadline,
            auth=auth,
        )
    except UpstreamConnectError as exc:
        return f"camera unreachable: {exc}"
    except UpstreamError as exc:
        return str(exc)
    if got.status != 200:
        return f"camera answered HTTP {got.status}"
    return None


def describe_error(exc: BaseException) -> str:
    """The most specific cause: anyio's "All connection attempts failed" hides the
    ConnectionRefusedError or name-lookup error underneath."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused (is the camera on, and is this its address?)"
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve the host name ({seen.strerror})"
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        seen = seen.__cause__ or seen.__context__
    return str(exc).strip() or type(exc).__name__
