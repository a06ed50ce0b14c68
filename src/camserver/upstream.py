"""Requests camserver makes to a camera besides the stream: its ``/status`` and
``/control`` (CameraWebServer), and what such a request can raise."""

from __future__ import annotations

from typing import Any

import httpx

from camserver.errors import UpstreamConnectError, UpstreamProtocolError

__all__ = ["REQUEST_ERRORS", "read_status", "set_control"]

# What making a request to a camera can raise besides an HTTP error: httpx.InvalidURL, and
# UnicodeError when a host name cannot be IDNA-encoded (e.g. "xn--").
REQUEST_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)


async def read_status(
    client: httpx.AsyncClient, host: str, timeout: float = 5.0, auth: httpx.Auth | None = None
) -> dict[str, Any]:
    """The camera's ``/status`` JSON. Raises UpstreamError with a readable reason."""
    url = f"http://{host}/status"
    try:
        resp = await client.get(url, timeout=timeout, auth=auth)
    except REQUEST_ERRORS as exc:
        raise UpstreamConnectError(f"cannot read {url}: {str(exc) or type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise UpstreamConnectError(f"{url} answered HTTP {resp.status_code}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise UpstreamProtocolError(f"{url} did not return JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{url} did not return a JSON object")
    return data


async def set_control(
    client: httpx.AsyncClient,
    host: str,
    var: str,
    value: int,
    timeout: float = 5.0,
    auth: httpx.Auth | None = None,
) -> str | None:
    """Call ``/control?var=…&val=…``; None on success, else why it failed."""
    try:
        resp = await client.get(
            f"http://{host}/control",
            params={"var": var, "val": str(value)},
            timeout=timeout,
            auth=auth,
        )
    except REQUEST_ERRORS as exc:
        return f"camera unreachable: {str(exc) or type(exc).__name__}"
    if resp.status_code != 200:
        return f"camera answered HTTP {resp.status_code}"
    return None
