"""The cluster's list of discovered cameras (``camserver.cluster.discovery``) on a real
redis-server, with discovery services that hear cameras as servers would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from camserver.cluster.backend import Backend
from camserver.cluster.discovery import SharedDiscovered
from camserver.cluster.wire import Keys
from camserver.discovery.service import DiscoveryService
from camserver.errors import NameConflict
from camserver.schema import DiscoveredCamera
from tests.cluster.conftest import RedisServer
from tests.conftest import wait_for

pytestmark = pytest.mark.requires("redis-server")


def camera(name: str, ip: str, port: int = 80, seen: float | None = None) -> DiscoveredCamera:
    now = time.time() if seen is None else seen
    return DiscoveredCamera(
        name=name,
        ip=ip,
        port=port,
        stream_port=port + 1,
        first_seen=now,
        last_seen=now,
        legacy=False,
    )


class Node:
    """One server's discovery with its listener, on the shared list."""

    def __init__(self, url: str, name: str, ttl: float = 900.0) -> None:
        self.backend = Backend(url, Keys(), name)
        self.service = DiscoveryService(
            listen_port=0, camera_port=0, interfaces=[], bind="127.0.0.1"
        )
        self.service.ttl = ttl
        self.board = SharedDiscovered(self.backend, ttl)
        self.service.board = self.board
        self.told: list[str] = []
        self.service.add_listener(lambda cam: self.told.append(cam.name))

    async def close(self) -> None:
        await self.service.close()
        await self.backend.close()


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[Node]]:
    await redis_server.ready()
    made = [Node(redis_server.url, n) for n in ("a", "b", "c")]
    for n in made:
        await n.service.start()
    yield made
    for n in made:
        await n.close()


async def settled(nodes: list[Node]) -> None:
    for n in nodes:
        await asyncio.gather(*n.service._claims)


async def test_three_servers_hearing_one_camera_tell_once_and_list_alike(
    nodes: list[Node],
) -> None:
    a, b, c = nodes
    for n in nodes:  # all three hear the porch camera at once
        n.service.found(camera("porch", "10.0.0.5"))
    a.service.found(camera("yard", "10.0.0.6"))  # only a hears the yard
    await settled(nodes)
    assert sorted(a.told + b.told + c.told) == ["porch", "yard"]  # once each, cluster-wide
    lists = [[(x.name, x.ip) for x in await n.service.listed()] for n in nodes]
    assert lists[0] == lists[1] == lists[2]
    assert sorted(lists[0]) == [("porch", "10.0.0.5"), ("yard", "10.0.0.6")]
    assert (await c.service.lookup("yard")) is not None  # c can add what only a heard

    # Heard again: nobody is told again; first_seen is the first time anyone heard it.
    first = next(x for x in await c.service.listed() if x.name == "porch").first_seen
    for n in nodes:
        n.service._cameras.clear()
        n.service.found(camera("porch", "10.0.0.5", seen=time.time() + 1))
    await settled(nodes)
    assert sorted(a.told + b.told + c.told) == ["porch", "yard"]
    again = next(x for x in await b.service.listed() if x.name == "porch")
    assert again.first_seen == pytest.approx(first, abs=0.01)
    assert again.last_seen > first

    # Renamed at the same address: a new camera, told once; the old name is gone.
    b.service.found(camera("porch-2", "10.0.0.5"))
    await settled(nodes)
    assert sorted(a.told + b.told + c.told) == ["porch", "porch-2", "yard"]
    names = sorted(x.name for x in await a.service.listed())
    assert names == ["porch-2", "yard"]

    # Two addresses announcing one name: flagged on the merged list, refused by name.
    c.service.found(camera("yard", "10.0.0.9"))
    await settled(nodes)
    assert [x.conflict for x in await b.service.listed() if x.name == "yard"] == [True, True]
    with pytest.raises(NameConflict):
        await b.service.lookup("yard")


async def test_stale_unreadable_and_too_many_entries(
    nodes: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, _ = nodes
    redis = a.backend.redis
    key = a.backend.keys.discovered
    old = camera("gone", "10.0.0.7", seen=time.time() - 2000)  # older than the TTL
    await redis.hset(key, mapping={"10.0.0.7|80": old.model_dump_json(), "x|1": b"{not json"})
    with caplog.at_level(logging.WARNING):
        assert await b.service.listed() == []
    assert await redis.hlen(key) == 0  # both dropped by whoever listed them
    assert "unreadable discovered camera" in caplog.text

    # An entry gone stale is a new camera when heard again (as on one server).
    await redis.hset(key, "10.0.0.7|80", old.model_dump_json())
    b.service.found(camera("gone", "10.0.0.7"))
    await settled(nodes)
    assert b.told == ["gone"]

    # The list is bounded: beyond the cap a camera is not listed, and said so.
    a.board.cap = 1
    with caplog.at_level(logging.WARNING):
        a.service.found(camera("extra", "10.0.0.8"))
        await settled(nodes)
    assert a.told == []
    assert "list of discovered cameras is full" in caplog.text


async def test_while_redis_is_away_a_server_lists_its_own_and_tells_once_it_is_back(
    redis_server: RedisServer,
) -> None:
    await redis_server.ready()
    a = Node(redis_server.url, "a")
    a.board.refresh = 0.2
    await a.service.start()
    try:
        redis_server.kill9()
        a.service.found(camera("porch", "10.0.0.5"))
        await settled([a])
        assert a.told == []  # not claimed: not told yet
        assert [x.name for x in await a.service.listed()] == ["porch"]  # its own list
        redis_server.start()
        await redis_server.ready()

        async def told() -> bool:
            return a.told == ["porch"]

        await wait_for(told, 10, 0.1, what="the claim after Redis came back")
        await asyncio.sleep(0.6)  # later refreshes tell nobody again
        assert a.told == ["porch"]
    finally:
        await a.close()
