"""Cluster mode on real processes: redis-server, three camserver nodes, simulated cameras.

Cameras run at 10 fps. Every wait has a deadline generous for a busy 2-core machine; what
is checked are counters (the simulator's connections, tokens and frames seen by viewers).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from camserver.sim.camera import SimCamera
from tests.cluster.conftest import (
    Cluster,
    ClusterFactory,
    RedisServer,
    TcpRelay,
    frames_of,
    sigcont_all,
    text,
)
from tests.conftest import wait_for, wait_healthy
from tests.helpers.cluster import settled

pytestmark = pytest.mark.requires("redis-server")

CAMS = ("cam0", "cam1", "cam2")


async def mjpeg_frames(url: str, count: int, cam: SimCamera | None = None) -> int:
    """Read ``count`` whole JPEG parts from an MJPEG URL; how many arrived. With ``cam``,
    also check they came at the camera's rate: no fewer than 70 % of what it sent
    meanwhile."""
    got = 0
    sent = cam.frames_sent if cam is not None else 0
    async with (
        httpx.AsyncClient(trust_env=False, timeout=10) as client,
        client.stream("GET", url) as resp,
    ):
        assert resp.status_code == 200
        buf = b""
        async for chunk in resp.aiter_bytes():
            buf += chunk
            while (end := buf.find(b"\xff\xd9")) >= 0:
                start = buf.find(b"\xff\xd8")
                assert 0 <= start < end, "a part that is not a whole JPEG"
                got += 1
                buf = buf[end + 2 :]
                if got >= count:
                    if cam is not None:
                        assert got >= 0.7 * (cam.frames_sent - sent) - 1, (got, sent)
                    return got
    return got


async def test_each_camera_pulled_once_and_served_on_every_node(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster()
    await c.add_streams()
    holders = await settled(c)
    # Spread: three cameras on three live nodes, one each.
    assert sorted(holders.values()) == ["n1", "n2", "n3"], holders
    viewers = [await c.viewer(i, *CAMS) for i in range(3)]
    # Every node's MJPEG of every camera (relayed, or pulled by that node).
    mjpeg = [
        mjpeg_frames(f"{c.url(i)}/api/streams/{name}/mjpeg", 30, c.cams[k])
        for i in range(3)
        for k, name in enumerate(CAMS)
    ]
    sent = [cam.frames_sent for cam in c.cams]
    start = [len(v.frames) for v in viewers]
    t0 = time.monotonic()
    assert await asyncio.wait_for(asyncio.gather(*mjpeg), 30) == [30] * 9

    def everyone_has(n: int) -> bool:
        return all(
            len(frames_of(v, name, s)) >= n
            for v, s in zip(viewers, start, strict=True)
            for name in CAMS
        )

    await wait_for(lambda: everyone_has(30), 30, what="30 frames of each camera on each node")
    elapsed = time.monotonic() - t0
    # At the camera's rate: every viewer got most of what each camera sent meanwhile.
    for v, s in zip(viewers, start, strict=True):
        for i, name in enumerate(CAMS):
            camera_sent = c.cams[i].frames_sent - sent[i]
            got = len(frames_of(v, name, s))
            assert got >= 0.7 * camera_sent, (name, got, camera_sent, elapsed)
            seqs = [f["seq"] for f in frames_of(v, name, s)]
            assert seqs == sorted(set(seqs)), "frames out of order or repeated"
    # One upstream per camera, the whole time.
    assert c.max_clients() == [1, 1, 1]
    assert [cam.stream_connections for cam in c.cams] == [1, 1, 1]
    # Frames cross Redis once per interested node: the two nodes that do not hold it.
    async with c.redis.client() as r:
        subs = dict(await r.pubsub_numsub(*(f"cs:frame:{n}" for n in CAMS)))
    assert {text(k): v for k, v in subs.items()} == {f"cs:frame:{n}": 2 for n in CAMS}

    # Status: the same holder and cluster-wide viewer count on every node
    # (3 Socket.IO viewers, one per node).
    async def same_status() -> bool:
        views = [await c.streams(i) for i in range(3)]
        return all(
            (v[name]["status"]["node"], v[name]["status"]["viewers"], v[name]["status"]["state"])
            == (holders[name], 3, "streaming")
            for v in views
            for name in CAMS
        )

    await wait_for(same_status, 10, 0.2, what="every node to report the same status")
    cluster = (await c.http.get(c.url(1) + "/api/cluster")).json()
    assert sorted(n["id"] for n in cluster["nodes"]) == ["n1", "n2", "n3"]
    assert sorted(cam for n in cluster["nodes"] for cam in n["cameras"]) == list(CAMS)
    assert cluster["redis"]["reachable"] is True

    # A node whose viewers leave unsubscribes from the cameras' channels.
    await viewers[0].sio.disconnect()

    async def unsubscribed() -> bool:
        async with c.redis.client() as r:
            subs = dict(await r.pubsub_numsub(*(f"cs:frame:{n}" for n in CAMS)))
        # n1's cameras: n2 and n3 listen; the others': the one node left besides the holder.
        expect = {f"cs:frame:{n}": 2 if holders[n] == "n1" else 1 for n in CAMS}
        return {text(k): v for k, v in subs.items()} == expect

    await wait_for(unsubscribed, 5, 0.1, what="n1 to unsubscribe")
    metrics = (await c.http.get(c.url(0) + "/metrics")).text
    assert 'camserver_cluster_leases_held{node="n1"} 1.0' in metrics


async def test_kill9_of_a_holder_hands_its_camera_over(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster()
    await c.add_streams()
    holders = await settled(c)
    victim = c.node_index(holders["cam0"])
    others = [i for i in range(3) if i != victim]
    viewers = {i: await c.viewer(i, "cam0") for i in others}
    await wait_for(
        lambda: all(len(v.frames) >= 5 for v in viewers.values()), 15, what="frames before"
    )
    old_token = max(f["token"] for v in viewers.values() for f in v.frames)
    connections = c.cams[0].stream_connections
    c.nodes[victim].proc.kill()
    killed = time.monotonic()

    def new_token_everywhere() -> bool:
        return all(any(f["token"] > old_token for f in v.frames) for v in viewers.values())

    await wait_for(new_token_everywhere, 10, 0.02, what="frames from a new holder")
    took = time.monotonic() - killed
    assert took < 5.0, f"takeover took {took:.2f} s"
    assert c.cams[0].stream_connections == connections + 1
    assert c.max_clients()[0] == 1
    new = (await c.holders())["cam0"]
    assert new != holders["cam0"]
    # The survivors keep every camera (the dead node's too, after its entry expires).
    await wait_for(c.all_held, 15, 0.1, what="every camera held again")
    assert set((await c.holders()).values()) <= {f"n{i + 1}" for i in others}


async def test_a_paused_holder_never_delivers_an_old_token(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster()
    await c.add_streams()
    holders = await settled(c)
    victim = c.node_index(holders["cam0"])
    viewers = [await c.viewer(i, "cam0") for i in range(3)]
    await wait_for(lambda: all(len(v.frames) >= 5 for v in viewers), 15, what="frames")
    try:
        c.pause(victim)
        await asyncio.sleep(5)  # longer than the 3 s lease
    finally:
        sigcont_all(c.nodes)
    mark = [len(v.frames) for v in viewers]
    await wait_for(
        lambda: all(len(v.frames) >= m + 10 for v, m in zip(viewers, mark, strict=True)),
        20,
        what="frames after the pause",
    )
    for v in viewers:
        seen = 0
        for f in v.frames:
            assert f["token"] >= seen, "a frame with an older fencing token reached a viewer"
            seen = f["token"]
    assert (await c.holders())["cam0"] != holders["cam0"]
    await wait_for(
        lambda: "lease lost for camera cam0" in c.nodes[victim].output(), 5, what="log line"
    )
    # The resumed node let the camera go: one reader again.
    await wait_for(lambda: c.cams[0].stream_clients == 1, 5, what="one camera client")


async def test_config_changes_reach_every_node_within_a_second(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster()

    async def seen_everywhere(check: object, what: str) -> float:
        t0 = time.monotonic()

        async def ok() -> bool:
            views = [await c.streams(i) for i in range(3)]
            return all(check(v) for v in views)  # type: ignore[operator]

        await wait_for(ok, 5, 0.02, what=what)
        return time.monotonic() - t0

    watchers = [await c.viewer(i) for i in (1, 2)]  # dashboards on the other nodes
    r = await c.http.post(
        c.url(0) + "/api/streams",
        json={"name": "porch", "host": c.cams[0].address, "username": "u", "password": "secret"},
    )
    assert r.status_code == 201, r.text
    took = await seen_everywhere(lambda v: "porch" in v, "a new stream")
    assert took < 1.0, took
    # Their pages hear of it at once, through the Socket.IO Redis manager.
    await wait_for(
        lambda: all(w.changes == [{"name": "porch", "change": "created"}] for w in watchers),
        2,
        0.02,
        what="stream_changed on the other nodes",
    )
    r = await c.http.patch(c.url(2) + "/api/streams/porch", json={"on_demand": True})
    assert r.status_code == 200, r.text
    took = await seen_everywhere(lambda v: v["porch"]["on_demand"] is True, "a change")
    assert took < 1.0, took
    views = [await c.streams(i) for i in range(3)]
    assert all(v["porch"]["has_password"] and "password" not in v["porch"] for v in views)
    r = await c.http.post(c.url(1) + "/api/streams", json={"name": "porch", "host": "127.0.0.1"})
    assert r.status_code == 409  # the name is taken cluster-wide
    r = await c.http.delete(c.url(1) + "/api/streams/porch")
    assert r.status_code == 204
    took = await seen_everywhere(lambda v: "porch" not in v, "a deletion")
    assert took < 1.0, took
    async with c.redis.client() as r2:
        assert (
            text(await r2.get("cs:config:version") or b"") == "3"
        )  # add, patch, delete; not the 409


async def test_redis_outage_and_restart(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster()
    await c.add_streams()
    await settled(c)
    viewers = [await c.viewer(i, *CAMS) for i in range(3)]
    await wait_for(lambda: all(len(v.frames) >= 15 for v in viewers), 15, what="frames")
    r = await c.http.patch(c.url(1) + "/api/streams/cam2", json={"on_demand": False})
    assert r.status_code == 200
    c.redis.kill9()
    down = time.monotonic()

    # Writes are refused with a clear 503; nodes stay up and say they are degraded.
    async def refused() -> bool:
        r = await c.http.post(
            c.url(2) + "/api/streams", json={"name": "late", "host": c.cams[0].address}
        )
        return r.status_code == 503 and "Redis" in r.json()["detail"]

    await wait_for(refused, 5, 0.2, what="a 503 for writes")

    async def degraded() -> bool:
        answers = [(await c.http.get(c.url(i) + "/healthz")) for i in range(3)]
        return all(a.status_code == 503 and a.json()["status"] == "degraded" for a in answers)

    await wait_for(degraded, 5, 0.2, what="/healthz degraded")
    # Every node says every camera is not streaming within 3 s of the last frame it got
    # (issue 31, Must show 5), and names Redis.
    said: dict[tuple[int, str], float] = {}

    async def look(i: int) -> None:
        views = await c.streams(i)
        seen = time.time()  # (the answer's time: the status changed before it)
        for name, s in views.items():
            if (i, name) not in said and s["status"]["state"] != "streaming":
                said[(i, name)] = seen

    while time.monotonic() - down < 10:
        await asyncio.gather(*(look(i) for i in range(3)))
        await asyncio.sleep(0.05)
    for i in range(3):
        for name, s in (await c.streams(i)).items():
            assert s["status"]["state"] == "retrying", (i, name, s["status"])
            assert "Redis" in s["status"]["last_error"], (i, name, s["status"])
    for i, v in enumerate(viewers):
        for name in CAMS:
            last = max(f["received"] for f in frames_of(v, name))
            assert (i, name) in said, f"node {i} still says {name} streams"
            assert said[(i, name)] - last <= 3.0, (i, name, said[(i, name)] - last)
    assert all(p.proc.poll() is None for p in c.nodes), "a node died with Redis"
    c.redis.start()
    back = time.monotonic()
    await c.redis.ready()
    mark = [len(v.frames) for v in viewers]
    await wait_for(c.all_held, 15, 0.1, what="every camera held again")

    def frames_again() -> bool:
        return all(
            len(frames_of(v, name, m)) >= 5
            for v, m in zip(viewers, mark, strict=True)
            for name in CAMS
        )

    await wait_for(frames_again, 15, 0.1, what="frames on every node again")
    assert time.monotonic() - back < 15

    async def streaming_everywhere() -> bool:
        views = [await c.streams(i) for i in range(3)]
        return all(v[n]["status"]["state"] == "streaming" for v in views for n in CAMS)

    await wait_for(streaming_everywhere, 10, 0.2, what="streaming again on every node")
    # Acknowledged changes survived kill -9 of Redis (AOF); the refused one never happened.
    views = [await c.streams(i) for i in range(3)]
    assert all(sorted(v) == list(CAMS) for v in views)
    assert all(v["cam2"]["on_demand"] is False for v in views)
    health = [(await c.http.get(c.url(i) + "/healthz")).status_code for i in range(3)]
    assert health == [200, 200, 200]
    # Still one reader per camera.
    await wait_for(lambda: [cam.stream_clients for cam in c.cams] == [1, 1, 1], 10)


async def test_on_demand_watched_through_another_node(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=1)
    await c.add_streams(on_demand=True)
    await asyncio.sleep(1.5)
    assert c.cams[0].stream_connections == 0  # nobody watches: not connected
    first = await c.viewer(0, "cam0")  # n1 watches first, so n1 holds the camera
    await wait_for(lambda: len(first.frames) >= 3, 15, what="frames on n1")
    assert (await c.holders()) == {"cam0": "n1"}
    remote = await c.viewer(1, "cam0")
    await first.sio.disconnect()  # the only viewer is now on n2, which does not hold it
    mark = len(remote.frames)
    await asyncio.sleep(4)  # twice the grace period
    assert (await c.holders()) == {"cam0": "n1"}
    assert c.cams[0].stream_clients == 1
    assert len(remote.frames) >= mark + 20, "the remote viewer stopped getting frames"
    await remote.sio.disconnect()
    await wait_for(lambda: c.cams[0].stream_clients == 0, 10, what="released after the grace")
    assert await c.holders() == {}
    assert c.max_clients() == [1]


async def test_sigterm_hands_cameras_over_at_once_and_a_new_node_takes_a_share(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=4)
    await c.add_streams()
    await wait_for(c.all_held, 15, 0.1, what="every camera held")

    async def two_each() -> bool:
        return await _held_by(c) == {"n1": 2, "n2": 2}

    await wait_for(two_each, 15, 0.1, what="two cameras per node")
    # A third node joins: it gets a share, handed over one camera at a time.
    c.nodes.append(c.start_node("n3"))
    await wait_healthy(c.nodes[2])

    async def shared() -> bool:
        held = await _held_by(c)
        return held.get("n3", 0) >= 1 and max(held.values()) <= 2 and sum(held.values()) == 4

    await wait_for(shared, 20, 0.2, what="the new node to take a share")
    assert max(c.max_clients()) == 1
    # SIGTERM: the leaving node releases its leases on the way out, so the others take
    # its cameras within a loop turn or two, not after the lease's 3 s.
    held = await c.holders()
    leaving = next(name for name, node in held.items() if node == "n3")
    before = c.cams[int(leaving.removeprefix("cam"))].stream_connections
    c.nodes[2].proc.terminate()
    t0 = time.monotonic()

    async def taken() -> bool:
        return (await c.holders()).get(leaving) in ("n1", "n2")

    await wait_for(taken, 10, 0.02, what="the camera taken over")
    took = time.monotonic() - t0
    assert c.nodes[2].proc.wait(10) == 0
    assert took < 2.0, f"hand-over took {took:.2f} s"
    moved = c.cams[int(leaving.removeprefix("cam"))]
    # (At least one: on a loaded machine the new holder's first attempt may time out while
    # the simulator, in this test's busy event loop, is still closing the old connection.)
    await wait_for(lambda: moved.stream_connections > before, 10, what="its new reader")
    await wait_for(lambda: moved.stream_clients == 1, 10, what="one reader")
    assert max(c.max_clients()) == 1


async def _held_by(c: Cluster) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in (await c.holders()).values():
        out[node] = out.get(node, 0) + 1
    return out


async def test_a_node_cut_off_from_redis_lets_its_cameras_go_first(
    make_cluster: ClusterFactory, redis_server: RedisServer
) -> None:
    await redis_server.ready()
    relay = TcpRelay(redis_server)
    c: Cluster = await make_cluster(redis_urls={"n3": await relay.start()})
    await c.add_streams()
    held = await settled(c)
    cut_off = next(name for name, node in held.items() if node == "n3")
    cam = c.cams[int(cut_off.removeprefix("cam"))]
    viewer = await c.viewer(0, cut_off)
    await wait_for(lambda: len(viewer.frames) >= 5, 15, what="frames")
    relay.cut()
    t0 = time.monotonic()

    async def unhealthy() -> bool:
        return (await c.http.get(c.url(2) + "/healthz")).status_code == 503

    await wait_for(unhealthy, 5, 0.1, what="n3 to report degraded")
    assert time.monotonic() - t0 < 3.5
    # n3 stops pulling before its lease can expire in Redis; then another node takes it.
    await wait_for(lambda: cam.stream_clients == 0, 5, 0.02, what="n3 to let the camera go")
    let_go = time.monotonic() - t0
    assert let_go < 3.0, let_go
    await wait_for(
        lambda: any(f["token"] > viewer.frames[0]["token"] for f in viewer.frames),
        10,
        what="frames from the new holder",
    )
    assert (await c.holders())[cut_off] in ("n1", "n2")
    assert cam.max_stream_clients == 1  # never two readers, even for a moment
    assert c.nodes[2].proc.poll() is None


async def test_a_dropped_subscriber_resubscribes_by_itself(make_cluster: ClusterFactory) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=1)
    await c.add_streams()
    holders = await settled(c)
    other = 1 - c.node_index(holders["cam0"])
    viewer = await c.viewer(other, "cam0")
    await wait_for(lambda: len(viewer.frames) >= 5, 15, what="relayed frames")
    async with c.redis.client() as r:
        # What Redis does to a subscriber over its output buffer limit.
        killed = await r.client_kill_filter(_type="pubsub")
        assert killed >= 2  # frames and config subscriptions at least
    mark = len(viewer.frames)
    await wait_for(lambda: len(viewer.frames) >= mark + 20, 15, what="frames again")
    r2 = await c.http.post(c.url(other) + "/api/streams", json={"name": "x", "host": "127.0.0.1"})
    assert r2.status_code == 201
    await wait_for(lambda: _has(c, 1 - other, "x"), 5, 0.05, what="config changes flowing again")


async def _has(c: Cluster, i: int, name: str) -> bool:
    return name in await c.streams(i)


async def test_redis_back_empty_gets_the_configuration_back(
    make_cluster: ClusterFactory,
) -> None:
    """A Redis restarted without its data (no AOF): nodes put back what they knew."""
    c: Cluster = await make_cluster()
    await c.add_streams()
    await settled(c)
    c.redis.kill9()
    for f in c.redis.dir.glob("appendonlydir/*"):
        f.unlink()
    c.redis.start()
    await c.redis.ready()
    back = time.monotonic()
    await wait_for(c.all_held, 15, 0.1, what="every camera held again")
    assert time.monotonic() - back < 15
    views = [await c.streams(i) for i in range(3)]
    assert all(sorted(v) == list(CAMS) for v in views)
    async with c.redis.client() as r:
        assert await r.zcard("cs:streams") == 3
    await wait_for(lambda: [cam.stream_clients for cam in c.cams] == [1, 1, 1], 10)
    assert max(c.max_clients()) == 1


async def test_a_serve_only_node_never_pulls_but_serves_every_camera(
    make_cluster: ClusterFactory,
) -> None:
    c: Cluster = await make_cluster(
        nodes=2, cams=2, per_node={"n2": {"CAMSERVER_CLUSTER_PULL": "false"}}
    )
    await c.add_streams(on=1)
    holders = await settled(c)
    assert holders == {"cam0": "n1", "cam1": "n1"}
    viewer = await c.viewer(1, "cam0", "cam1")
    await wait_for(
        lambda: all(len(frames_of(viewer, n)) >= 10 for n in ("cam0", "cam1")), 15, what="frames"
    )
    cluster = (await c.http.get(c.url(1) + "/api/cluster")).json()
    assert {n["id"]: n["pulls"] for n in cluster["nodes"]} == {"n1": True, "n2": False}
    assert await c.holders() == holders  # no rebalance towards a node that does not pull
