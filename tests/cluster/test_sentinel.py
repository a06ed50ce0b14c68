"""Cluster mode on Redis Sentinel (issue 31, Must show 1-3): three nodes and three cameras
with viewers on every node, a master, its replica and three sentinels (the shipped
configuration, faster timeouts). kill -9 of the master: the sentinels promote the replica,
every camera has one holder again and frames reach every viewer within 15 s, no camera ever
has two readers, no viewer sees a token go backwards; a change acknowledged just before the
kill survives it, one that no replica can take is refused; the old master comes back as a
replica, and its stale leases admit nobody."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, ClusterFactory, text
from tests.conftest import wait_for
from tests.helpers.sentinel import SentinelSet, in_sync

pytestmark = pytest.mark.requires("redis-server", "redis-sentinel")

CAMS = ("cam0", "cam1", "cam2")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    s = SentinelSet(tmp_path / "sentinel")
    s.start()
    yield s
    try:
        refused = s.denied()
    finally:
        s.stop()
    assert not refused, f"users.acl denied the nodes: {refused}"


async def holders(s: SentinelSet) -> dict[str, str]:
    port = await s.master_port()
    assert port is not None
    async with s.client(port) as r:
        out = {}
        for name in CAMS:
            value = await r.get(f"cs:lease:{name}")
            if value:
                out[name] = text(value).rpartition("|")[0]
        return out


def frames_after(v: Any, name: str, t: float) -> list[dict[str, Any]]:
    return [f for f in v.frames if f["name"] == name and f["received"] >= t]


@pytest.mark.beside  # Sentinel's failover timers: beside the suite (tests/helpers/beside.py)
async def test_a_master_killed_under_three_nodes_fails_over_without_two_readers(
    make_cluster: ClusterFactory, sentinels: SentinelSet
) -> None:
    await sentinels.ready()
    urls = {f"n{i}": sentinels.url for i in (1, 2, 3)}
    c: Cluster = await make_cluster(redis_urls=urls)
    await c.add_streams()

    async def all_held() -> bool:
        return len(await holders(sentinels)) == len(CAMS)

    await wait_for(all_held, 20, 0.2, what="a holder for every camera")
    viewers = [await c.viewer(i, *CAMS) for i in range(3)]
    await wait_for(
        lambda: all(len(frames_after(v, n, 0)) >= 10 for v in viewers for n in CAMS),
        20,
        what="frames of every camera on every node",
    )
    # A change acknowledged just before the kill (a replica had it: WAIT).
    r = await c.http.post(
        c.url(0) + "/api/streams",
        json={"name": "late", "host": "127.0.0.1:9", "enabled": False},
    )
    assert r.status_code == 201, r.text
    killed = sentinels.kill9("a")
    wall_killed = time.time()

    async def promoted() -> bool:
        return await sentinels.master_port() == sentinels.ports["b"]

    await wait_for(promoted, 20, 0.2, what="the sentinels to promote the replica")

    def back() -> bool:
        return all(len(frames_after(v, n, wall_killed + 0.5)) >= 3 for v in viewers for n in CAMS)

    await wait_for(back, 20, 0.1, what="frames on every node after the failover")
    took = time.monotonic() - killed
    # The gap each viewer saw, per camera: within 15 s of the kill.
    gaps = {}
    for i, v in enumerate(viewers):
        for n in CAMS:
            times = [f["received"] for f in v.frames if f["name"] == n]
            around = [t for t in times if t >= wall_killed - 5]
            gaps[(i, n)] = max(b - a for a, b in itertools.pairwise(around))
            tokens = [f["token"] for f in v.frames if f["name"] == n]
            assert tokens == sorted(tokens), f"node {i} saw {n}'s token go backwards"
    print(f"\nfailover: frames on every node {took:.1f} s after the kill; gaps {gaps}")
    assert max(gaps.values()) < 15, gaps
    assert took < 15, took
    assert c.max_clients() == [1, 1, 1]  # never two readers of a camera
    assert len(await holders(sentinels)) == len(CAMS)
    # The change acknowledged before the kill is on the new master, on every node.
    for i in range(3):
        assert (await c.http.get(c.url(i) + "/api/streams/late")).status_code == 200
    # No replica now: a change is refused, not falsely acknowledged.
    r = await c.http.post(
        c.url(1) + "/api/streams",
        json={"name": "lonely", "host": "127.0.0.1:9", "enabled": False},
    )
    assert r.status_code == 503, r.text
    assert "replica" in r.json()["detail"]

    # The old master comes back: the sentinels make it a replica of the new one; its stale
    # leases never admit a second reader.
    sentinels.start_server("a")
    await wait_for(lambda: in_sync(sentinels, "a"), 30, 0.2, what="the old master as a replica")
    marks = [len(v.frames) for v in viewers]
    await asyncio.sleep(3)
    assert all(len(v.frames) > m for v, m in zip(viewers, marks, strict=True))
    assert c.max_clients() == [1, 1, 1]
    assert await sentinels.master_port() == sentinels.ports["b"]
    r = await c.http.post(
        c.url(2) + "/api/streams",
        json={"name": "again", "host": "127.0.0.1:9", "enabled": False},
    )
    assert r.status_code == 201, r.text  # a replica again: changes are acknowledged
