"""Socket.IO's own way of passing a token, ``auth: {token}`` in the CONNECT packet and
nothing in the handshake, with real clients: Node's socket.io-client (how every Socket.IO
front end does it) and python-socketio. It failed with a bare "xhr poll error" while the
handshake had to carry the token too (issue 26)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from pydantic import SecretStr

from bench.harness import npm_ci
from camserver.config import Settings
from tests.conftest import CameraFactory, Server, start_server
from tests.helpers.auth import ADMIN, VIEW

NODE_DIR = Path(__file__).parent / "node"


def node() -> str:
    """``node``, with the test clients' packages installed (once, from the lock file)."""
    return npm_ci(NODE_DIR, "socket.io-client")


@pytest.fixture
async def locked(settings: Settings, camera: CameraFactory) -> AsyncIterator[Server]:
    tokens = {"api_token": SecretStr(ADMIN), "view_token": SecretStr(VIEW)}
    cam = await camera("c1", fps=15)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=tokens))
        r = await server.client.post(
            "/api/streams",
            json={"name": "c1", "host": cam.address},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        yield server


async def _node_viewer(url: str, token: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        node(),
        str(NODE_DIR / "socketio_viewer.js"),
        url,
        token,
        "c1",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.requires("node", "npm")
async def test_node_socketio_client_with_auth_only(locked: Server) -> None:
    seen = await _node_viewer(locked.url, VIEW)
    assert seen["connected"] is True, seen
    assert seen["frames"] == 5, seen
    assert seen["transport"] == "websocket", seen  # upgraded from long-polling
    assert all(size > 1000 for size in seen["sizes"]), seen
    refused = await _node_viewer(locked.url, "not-the-token")
    assert refused["connected"] is False
    assert "a valid token is required" in refused["error"], refused
    assert locked.state.realtime.tokenless.waiting() <= 1  # (the refused one, until its deadline)


async def _python_viewer(url: str, transports: list[str]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:  # closed here, whatever the transport
        return await _viewing(url, transports, session)


async def _viewing(
    url: str, transports: list[str], session: aiohttp.ClientSession
) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    got = asyncio.Event()
    sio = socketio.AsyncClient(reconnection=False, http_session=session)

    async def on_frame(data: dict[str, Any]) -> None:
        frames.append(data)
        if len(frames) >= 3:
            got.set()

    sio.on("frame", on_frame)

    await sio.connect(url, transports=transports, auth={"token": VIEW})
    ack = await sio.call("join_stream", {"name": "c1"})
    assert ack["ok"] is True, ack
    await asyncio.wait_for(got.wait(), 15)
    await sio.disconnect()
    return frames


async def test_python_socketio_client_with_auth_only(locked: Server) -> None:
    for transports in (["polling", "websocket"], ["websocket"]):
        frames = await _python_viewer(locked.url, transports)
        assert frames[0]["data"][:2] == b"\xff\xd8"
    assert locked.state.realtime.tokenless.waiting() == 0
