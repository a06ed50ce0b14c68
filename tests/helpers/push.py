"""Push cameras for tests: a push stream made through the API, the simulator pushing as a
real process (``camserver sim --push``) and its counters."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets

from camserver.sim.camera import free_port_pair
from tests.conftest import Server, wait_for

__all__ = ["bearer", "closed_with", "create_push", "sim_process", "sim_stats"]


async def create_push(server: Server, name: str, **extra: Any) -> dict[str, Any]:
    r = await server.client.post("/api/streams", json={"name": name, "source": "push", **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def closed_with(ws: websockets.ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes ``ws``: its close code and reason."""
    with contextlib.suppress(websockets.ConnectionClosed):  # (raised for codes but 1000/1001)
        async for _ in ws:
            pass
    return ws.close_code, ws.close_reason


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def sim_process(*args: str) -> AsyncIterator[str]:
    """``camserver sim`` as a real process; yields its HTTP base URL (``/sim/stats``)."""
    port = free_port_pair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "camserver", "sim", "--http-port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False) as c:

            async def up() -> bool:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    return (await c.get(url + "/sim/stats")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, 20, 0.1, what="the simulator")
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)


async def sim_stats(url: str) -> dict[str, int]:
    async with httpx.AsyncClient(trust_env=False) as c:
        data: dict[str, int] = (await c.get(url + "/sim/stats")).json()
        return data
