"""Facts about Espressif's CameraWebServer firmware shared by the simulator and the API."""

from __future__ import annotations

from typing import Any

import httpx

from camserver.errors import UpstreamConnectError, UpstreamProtocolError
from camserver.models import REQUEST_ERRORS

__all__ = ["CONTROL_RANGES", "check_control", "read_status", "set_control"]

# /control variables of CameraWebServer and the values the sensor accepts.
CONTROL_RANGES: dict[str, tuple[int, int]] = {
    "framesize": (0, 15),
    "quality": (4, 63),
    "contrast": (-2, 2),
    "brightness": (-2, 2),
    "saturation": (-2, 2),
    "gainceiling": (0, 6),
    "colorbar": (0, 1),
    "awb": (0, 1),
    "agc": (0, 1),
    "aec": (0, 1),
    "hmirror": (0, 1),
    "vflip": (0, 1),
    "awb_gain": (0, 1),
    "agc_gain": (0, 30),
    "aec_value": (0, 1200),
    "aec2": (0, 1),
    "dcw": (0, 1),
    "bpc": (0, 1),
    "wpc": (0, 1),
    "raw_gma": (0, 1),
    "lenc": (0, 1),
    "special_effect": (0, 6),
    "wb_mode": (0, 4),
    "ae_level": (-2, 2),
    "led_intensity": (0, 255),
}


def check_control(var: str, value: object) -> str | None:
    """Why ``/control?var=<var>&val=<value>`` would be refused, or None if it is valid."""
    limits = CONTROL_RANGES.get(var)
    if limits is None:
        return f"unknown camera setting; known: {', '.join(sorted(CONTROL_RANGES))}"
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    lo, hi = limits
    if not lo <= value <= hi:
        return f"must be from {lo} to {hi}"
    return None


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
