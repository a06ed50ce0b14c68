"""Recording in cluster mode, on a real cluster (redis-server, three node processes,
simulated cameras): the lease holder records, into a folder the nodes share, indexed in
Redis; every node lists and plays every recording; a holder's kill -9 hands recording
over and its open segment is repaired by a live node; an event marked through any node
reaches the recording node."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from camserver.recording.recorder import PRE_ROLL
from tests.cluster.conftest import Cluster, ClusterFactory
from tests.conftest import wait_for
from tests.helpers.cluster import settled

pytestmark = pytest.mark.requires("redis-server")

FAST = {"recording_segment_seconds": "2", "recording_retention_seconds": "1"}


async def rows(c: Cluster, node: int, stream: str) -> list[dict[str, Any]]:
    r = await c.http.get(c.url(node) + f"/api/streams/{stream}/recordings")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()
    return data


async def test_the_holder_records_and_every_node_plays_it(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-recordings"
    c: Cluster = await make_cluster(nodes=3, cams=2, recordings_dir=str(shared), **FAST)
    await c.add_streams(recording={"mode": "continuous"})
    holders = await settled(c)
    sent0 = c.cams[0].frames_sent
    await asyncio.sleep(7)
    # Every node sees the same index; each camera was written by its holder alone.
    lists = [await rows(c, i, "cam0") for i in range(3)]
    assert lists[0], "nothing recorded"
    # (The open segment grows between the three requests; finished ones never change.)
    done = [r for r in lists[0] if r["closed"]]
    assert done
    for later in lists[1:]:
        assert [r for r in later if r["id"] in {d["id"] for d in done}] == done
        assert {r["id"] for r in lists[0]} <= {r["id"] for r in later}
    assert {r["node"] for r in lists[0]} == {holders["cam0"]}
    assert {r["node"] for r in await rows(c, 1, "cam1")} == {holders["cam1"]}
    # One recorder per camera: segments follow each other, none overlaps another.
    for a, b in itertools.pairwise(lists[0]):
        assert b["start"] >= a["end"] - 0.001, (a, b)
    recorded = sum(r["frames"] for r in lists[0])
    sent = c.cams[0].frames_sent - sent0
    assert recorded >= 0.9 * sent - 10, (recorded, sent)  # (it started before sent0)
    # A node that does not hold the camera plays its recording from the shared folder.
    other = next(i for i in range(3) if f"n{i + 1}" != holders["cam0"])
    seg = lists[0][0]
    r = await c.http.get(c.url(other) + seg["file_url"])
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"\x1a\x45\xdf\xa3"  # Matroska (EBML)
    t = (seg["start"] + seg["end"]) / 2
    r = await c.http.get(c.url(other) + "/api/streams/cam0/frame.jpeg", params={"t": t})
    assert r.status_code == 200, r.text
    assert r.content[:2] == b"\xff\xd8"
    assert t - 0.5 <= float(r.headers["x-timestamp"]) <= t

    # kill -9 of the holder: another node records on, and a live node repairs (closes)
    # the segment the dead one left open, found through the index.
    victim = c.node_index(holders["cam0"])
    c.nodes[victim].proc.kill()
    killed = time.time()
    live = next(i for i in range(3) if i != victim)

    async def repaired_and_recording_again() -> bool:
        got = await rows(c, live, "cam0")
        mine = [r for r in got if r["node"] == holders["cam0"]]
        theirs = [r for r in got if r["node"] != holders["cam0"] and r["start"] > killed - 1]
        return bool(mine) and all(r["closed"] for r in mine) and bool(theirs)

    await wait_for(repaired_and_recording_again, 30, 0.2, what="a repair and a new recorder")
    got = await rows(c, live, "cam0")
    last_old = max(r["end"] for r in got if r["node"] == holders["cam0"])
    first_new = min(r["start"] for r in got if r["node"] != holders["cam0"])
    assert first_new - last_old < 8.0, (last_old, first_new)  # the lease's takeover time
    dead = [r for r in got if r["node"] == holders["cam0"]][-1]
    r = await c.http.get(c.url(live) + dead["file_url"])
    assert r.status_code == 200, r.text


async def test_an_event_marked_through_any_node_is_recorded_by_the_holder(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=1, **FAST)
    await c.add_streams(recording={"mode": "events"})
    holders = await settled(c)
    await asyncio.sleep(PRE_ROLL + 0.5)  # a full pre-roll in the holder's memory
    other = 1 - c.node_index(holders["cam0"])
    marked = time.time()
    r = await c.http.post(c.url(other) + "/api/streams/cam0/recordings/event", json={"seconds": 1})
    assert r.status_code == 202, r.text

    async def clip() -> bool:
        got = await rows(c, other, "cam0")
        return bool(got) and all(x["closed"] for x in got)

    await wait_for(clip, 30, 0.2, what="the event clip")
    got = await rows(c, other, "cam0")
    assert {x["kind"] for x in got} == {"event"}
    assert {x["node"] for x in got} == {holders["cam0"]}
    assert got[0]["start"] <= marked - PRE_ROLL + 0.5
    # A stream that does not record events: a clear 409, from any node.
    await c.http.patch(c.url(0) + "/api/streams/cam0", json={"recording": {"mode": "off"}})
    await asyncio.sleep(1.5)  # the change reaches the other node
    r = await c.http.post(c.url(other) + "/api/streams/cam0/recordings/event", json={"seconds": 1})
    assert r.status_code == 409, r.text
