"""Motion detection in cluster mode, on a real cluster (redis-server, two node processes,
a simulated camera with a scene, real mosquitto): the camera's holder detects, every node
lists the event, exactly one node talks to MQTT, and when that node dies another takes
over and says ``online`` again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster, ClusterFactory, text
from tests.conftest import wait_for
from tests.helpers.cluster import settled
from tests.helpers.mqtt import HomeAssistant, Mosquitto

pytestmark = pytest.mark.requires("redis-server", "mosquitto")


async def test_the_holder_detects_every_node_lists_and_one_node_speaks_mqtt(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path)
    await broker.start()
    try:
        c: Cluster = await make_cluster(
            nodes=2, cams=1, mqtt_url=broker.url, recordings_dir=str(tmp_path / "shared")
        )
        c.cams[0].set_scene({})
        await c.add_streams(motion={"enabled": True, "cooldown": 1.0})
        holders = await settled(c)
        home = HomeAssistant(broker)
        await home.connect()
        try:
            await wait_for(lambda: len(home.configs()) == 4, 15, what="discovery configs")
            await wait_for(lambda: home.last("camserver/status") == b"online", 5, what="online")
            async with c.redis.client() as redis:
                leader = text(await redis.get("cs:lease:~mqtt") or b"").rpartition("|")[0]
            assert leader in ("n1", "n2")
            await asyncio.sleep(2)
            mark = len(home.messages)
            c.cams[0].set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})

            def states() -> list[bytes]:
                return [p for t, p, _, _ in home.messages[mark:] if t == "camserver/cam0/motion"]

            # The holder detects; the edges reach MQTT through whichever node talks to it.
            await wait_for(lambda: states()[:2] == [b"ON", b"OFF"], 20, what="ON then OFF")
            lists = []
            for i in range(2):
                r = await c.http.get(c.url(i) + "/api/events")
                assert r.status_code == 200, r.text
                lists.append(r.json())
            assert lists[0] == lists[1]
            (event,) = lists[0]
            assert event["stream"] == "cam0"
            assert event["end"] is not None
            other = 1 - c.node_index(holders["cam0"])
            r = await c.http.get(c.url(other) + event["snapshot_url"])
            assert r.status_code == 200, r.text  # from the shared folder
            assert r.content[:2] == b"\xff\xd8"
            # One bridge: Home Assistant saw "online" from one node and no "offline" yet.
            assert b"offline" not in [p for t, p, _, _ in home.messages if t == "camserver/status"]

            # The MQTT node dies: its last will says offline, the other node takes over.
            c.nodes[c.node_index(leader)].proc.kill()
            mark = len(home.messages)

            def status() -> list[bytes]:
                return [p for t, p, _, _ in home.messages[mark:] if t == "camserver/status"]

            await wait_for(lambda: status()[-1:] == [b"online"], 30, what="online again")
            assert b"offline" in status()
            async with c.redis.client() as redis:
                now = text(await redis.get("cs:lease:~mqtt") or b"").rpartition("|")[0]
            assert now not in ("", leader)
        finally:
            await home.close()
    finally:
        broker.kill()
