"""Must show 6 (issue 30): an ESPHome camera in a cluster is pulled once cluster-wide (one
API connection, its key read from the shared configuration) and served on every node;
kill -9 of the node holding it: another node connects and every viewer gets frames again."""

from __future__ import annotations

import asyncio
import time

import pytest

from camserver.sim.camera import SimCamera
from tests.cluster.conftest import Cluster, ClusterFactory, text
from tests.conftest import wait_for
from tests.helpers.esphome import KEY, digest
from tests.helpers.socketio import Viewer

pytestmark = pytest.mark.requires("redis-server")


async def holder(c: Cluster) -> str | None:
    async with c.redis.client() as r:
        value = await r.get("cs:lease:porch")
    return text(value).rpartition("|")[0] if value else None


async def test_an_esphome_camera_is_pulled_once_and_served_on_every_node(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster(cams=0)
    cam = SimCamera("porch", fps=10, framesize=5)
    await cam.start()
    try:
        api = await cam.serve_esphome(0, key=KEY)
        body = {
            "name": "porch",
            "source": "esphome",
            "host": "127.0.0.1",
            "port": api.port,
            "encryption_key": KEY,
        }
        r = await c.http.post(c.url(1) + "/api/streams", json=body)
        assert r.status_code == 201, r.text
        viewers = [await c.viewer(i, "porch") for i in range(3)]
        await wait_for(lambda: all(len(v.frames) >= 20 for v in viewers), 20, what="frames")
        marks = [len(v.frames) for v in viewers]
        await asyncio.sleep(2.0)
        rates = [(len(v.frames) - m) / 2.0 for v, m in zip(viewers, marks, strict=True)]
        assert all(rate >= 8 for rate in rates), rates  # the camera's 10 fps on every node
        # One API connection for the whole cluster, the camera's own bytes everywhere.
        assert (api.connections, api.max_clients) == (1, 1)
        assert all(digest(bytes(f["data"])) in api.sent for v in viewers for f in v.frames)
        first = await holder(c)
        assert first is not None
        for i in range(3):
            status = (await c.streams(i))["porch"]["status"]
            assert (status["node"], status["state"]) == (first, "streaming")
            assert KEY not in (await c.http.get(c.url(i) + "/api/streams/porch")).text
        # kill -9 of the holder: another node takes the camera, one connection again.
        a = c.node_index(first)
        others = [v for i, v in enumerate(viewers) if i != a]
        old = max(f["token"] for v in others for f in v.frames)
        c.nodes[a].proc.kill()
        killed = time.monotonic()

        def back(v: Viewer) -> bool:
            return any(f["token"] > old for f in v.frames)

        for v in others:
            await wait_for(lambda v=v: back(v), 15, 0.05, what="frames again")
        took = time.monotonic() - killed
        assert took < 10, took
        second = await holder(c)
        assert second not in (None, first)
        assert api.connections == 2
        assert api.max_clients == 1  # never two readers
    finally:
        await cam.stop()
