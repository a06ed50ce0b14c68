"""Mixed versions (issue 31, Must show 7): a node of a newer cluster version appears (its
heartbeat written by the test, version bumped) and every older node says so, lets its
cameras go and refuses configuration writes, rather than misread what the newer node
writes; once the newer node is gone (or, in a rolling upgrade, every node is upgraded),
they carry on."""

from __future__ import annotations

import json
import time

import pytest

from camserver.cluster.wire import VERSION
from tests.cluster.conftest import Cluster, ClusterFactory
from tests.conftest import wait_for

pytestmark = pytest.mark.requires("redis-server")


async def test_a_node_of_a_newer_version_is_refused_readably(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=1)
    await c.add_streams()
    await wait_for(c.all_held, 15, 0.1, what="a holder")
    newer = VERSION + 1
    future = {
        "address": "127.0.0.1:1",
        "cameras": [],
        "viewers": 0,
        "started": time.time(),
        "beat": time.time(),
        "pulls": True,
        "wire": newer,
    }
    async with c.redis.client() as redis:
        await redis.zadd("cs:nodes", {"n9": (time.time() + 600) * 1000})
        await redis.set("cs:node:n9", json.dumps(future), px=600_000)

    async def both_say_so() -> bool:
        infos = [(await c.http.get(c.url(i) + "/api/cluster")).json() for i in range(2)]
        return all(f"cluster version {newer}" in (info["outdated"] or "") for info in infos)

    await wait_for(both_say_so, 10, 0.2, what="every node to say it is outdated")
    info = (await c.http.get(c.url(0) + "/api/cluster")).json()
    assert {n["id"]: n["version"] for n in info["nodes"]} == {"n1": 1, "n2": 1, "n9": newer}
    # It lets its camera go and writes no configuration.
    await wait_for(lambda: c.cams[0].stream_clients == 0, 10, what="the camera let go")
    r = await c.http.post(c.url(1) + "/api/streams", json={"name": "x", "host": "127.0.0.1:9"})
    assert r.status_code == 503, r.text
    assert f"cluster version {newer}" in r.json()["detail"]
    assert "upgraded" in r.json()["detail"]
    # The newer node leaves: the others carry on.
    async with c.redis.client() as redis:
        await redis.zrem("cs:nodes", "n9")
        await redis.delete("cs:node:n9")

    async def both_carry_on() -> bool:
        infos = [(await c.http.get(c.url(i) + "/api/cluster")).json() for i in range(2)]
        return all(info["outdated"] is None for info in infos)

    await wait_for(both_carry_on, 10, 0.2, what="every node to carry on")
    await wait_for(c.all_held, 15, 0.1, what="the camera held again")
    await wait_for(lambda: c.cams[0].stream_clients == 1, 10, what="the camera read again")
    r = await c.http.post(c.url(1) + "/api/streams", json={"name": "x", "host": "127.0.0.1:9"})
    assert r.status_code == 201, r.text
    assert c.max_clients() == [1]
