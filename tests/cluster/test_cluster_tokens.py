"""A managed token revoked on one node ends what it opened on every node (issue 26 M1)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import socketio

from tests.cluster.conftest import ClusterFactory
from tests.conftest import wait_for

pytestmark = pytest.mark.requires("redis-server")
ADMIN = "cluster-admin-token-0001"


async def test_a_token_revoked_on_one_node_ends_its_sessions_on_the_others(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(nodes=2, cams=1, api_token=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = await cluster.http.post(
        cluster.url(0) + "/api/streams",
        json={"name": "cam0", "host": cluster.cams[0].address},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await cluster.http.post(
        cluster.url(0) + "/api/tokens", json={"name": "phone"}, headers=admin
    )
    assert r.status_code == 201, r.text
    token = r.json()
    # Opened on the other node: a Socket.IO session that joined, and an MJPEG response.
    sio = socketio.AsyncClient(reconnection=False)
    disconnected = asyncio.Event()
    sio.on("disconnect", lambda *_: disconnected.set())

    async def joined() -> bool:  # (the token reaches node 2 through Redis)
        try:
            await sio.connect(
                cluster.url(1), transports=["websocket"], auth={"token": token["token"]}
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    await wait_for(joined, 10, what="the new token working on node 2")
    ack: dict[str, Any] = await sio.call("join_stream", {"name": "cam0"})
    assert ack["ok"], ack
    parts = 0
    ended = asyncio.Event()

    async def watch() -> None:
        nonlocal parts
        headers = {"Authorization": f"Bearer {token['token']}"}
        try:
            async with (
                httpx.AsyncClient(timeout=10, trust_env=False) as c,
                c.stream("GET", cluster.url(1) + "/api/streams/cam0/mjpeg", headers=headers) as r,
            ):
                async for chunk in r.aiter_raw():
                    parts += chunk.count(b"--camserverframe")
        except httpx.HTTPError:
            pass
        finally:
            ended.set()

    task = asyncio.create_task(watch())
    try:
        await wait_for(lambda: parts >= 3, 20, what="MJPEG frames on node 2")
        r = await cluster.http.delete(cluster.url(0) + f"/api/tokens/{token['id']}", headers=admin)
        assert r.status_code == 204
        start = time.monotonic()
        await asyncio.wait_for(disconnected.wait(), 3)
        await asyncio.wait_for(ended.wait(), 3)
        # "Within a second": the feed's message plus one sweep; a margin for a busy machine.
        assert time.monotonic() - start < 2.5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if sio.connected:
            await sio.disconnect()
