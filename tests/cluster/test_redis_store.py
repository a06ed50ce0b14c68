"""RedisStore and the Lua lease scripts against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from camserver.cluster.backend import Backend
from camserver.cluster.lease import Leases
from camserver.cluster.store import ConfigFeed, RedisStore
from camserver.cluster.wire import Keys
from camserver.errors import ClusterUnavailable, StreamExists, StreamNotFound
from camserver.schema import StreamConfig
from camserver.tokens import ManagedToken
from tests.cluster.conftest import RedisServer

pytestmark = pytest.mark.requires("redis-server")


@pytest.fixture
async def backends(redis_server: RedisServer) -> AsyncIterator[tuple[Backend, Backend]]:
    await redis_server.ready()
    a = Backend(redis_server.url, Keys(), "a")
    b = Backend(redis_server.url, Keys(), "b")
    yield a, b
    await a.close()
    await b.close()


async def test_streams_and_tokens_round_trip_with_errors(
    backends: tuple[Backend, Backend],
) -> None:
    store = RedisStore(backends[0])
    cfg = StreamConfig.for_host("porch", "10.0.0.5").model_copy(
        update={"username": "admin", "password": "pw", "auth_scheme": "digest", "on_demand": True}
    )
    await store.add(cfg)
    await store.add(StreamConfig.for_host("yard", "10.0.0.6"))
    with pytest.raises(StreamExists):
        await store.add(cfg)
    assert [c.name for c in await store.list()] == ["porch", "yard"]  # in creation order
    got = (await store.list())[0]
    assert got == cfg
    assert got.password == "pw"
    await store.update(cfg.model_copy(update={"enabled": False, "password": None}))
    changed = (await store.list())[0]
    assert changed.enabled is False
    assert changed.password is None
    with pytest.raises(StreamNotFound):
        await store.update(StreamConfig.for_host("nope", "10.0.0.7"))
    await store.delete("yard")
    with pytest.raises(StreamNotFound):
        await store.delete("yard")
    assert await store.version() == 4

    token = ManagedToken("t1", "phone", "hash1", "view", ["porch"], 1.0)
    await store.add_token(token)
    await store.touch_token("t1", 5.0)
    await store.touch_token("t1", 3.0)  # older: ignored
    assert await store.list_tokens() == [
        ManagedToken("t1", "phone", "hash1", "view", ["porch"], 1.0, None, 5.0)
    ]
    assert await store.delete_token("t1") is True
    assert await store.delete_token("t1") is False
    assert await store.list_tokens() == []


async def test_lease_is_exclusive_fenced_and_released_only_by_its_holder(
    backends: tuple[Backend, Backend], redis_server: RedisServer
) -> None:
    a, b = (Leases(x, 1.0) for x in backends)
    # A Redis without data (new, or restarted without persistence) hands out no lease for
    # one TTL: a holder it forgot may still be pulling until its own deadline.
    assert await a.acquire("cam") is None
    await asyncio.sleep(1.1)
    first = await a.acquire("cam")
    assert first is not None
    assert first.token > 10**15
    assert await b.acquire("cam") is None
    assert await a.holders(["cam", "other"]) == {"cam": "a"}
    # The fenced publish refuses a non-holder.
    k = backends[1].keys
    refused = await backends[1].script(
        "publish", [k.lease("cam"), k.frames("cam")], [f"b|{first.token}", b"x"]
    )
    assert refused == -1
    assert (
        await backends[0].script(
            "publish", [k.lease("cam"), k.frames("cam")], [first.value("a"), b"x"]
        )
        == 0
    )  # ours, nobody listening
    await asyncio.sleep(1.2)  # expired: b takes it with a higher token
    second = await b.acquire("cam")
    assert second is not None
    assert second.token > first.token
    # A fence that went back (a replica promoted before it had the last increments) still
    # hands out higher tokens: the fence is kept at or above Redis' clock in µs.
    await backends[0].redis.set(k.fence("cam"), first.token - 1000)
    await b.release(second)
    second = await b.acquire("cam")
    assert second is not None
    assert second.token > first.token + 1000
    assert await a.renew(first) is False
    assert a.lost == 1
    await a.release(first)  # not a's any more: nothing happens
    assert await a.holders(["cam"]) == {"cam": "b"}
    await b.release(second)
    assert await a.holders(["cam"]) == {}
    async with redis_server.client() as admin:
        await admin.flushall()  # Redis lost everything
    assert await a.acquire("cam") is None
    await asyncio.sleep(1.1)
    third = await a.acquire("cam")
    assert third is not None
    assert third.token > second.token  # reseeded from Redis' clock: still increasing


async def test_an_unreachable_redis_is_one_clear_error(redis_server: RedisServer) -> None:
    await redis_server.ready()
    redis_server.stop()
    backend = Backend(redis_server.url.replace("redis://", "redis://:secret@"), Keys(), "a")
    store = RedisStore(backend)
    with pytest.raises(ClusterUnavailable, match=r"redis://\*\*\*@127\.0\.0\.1.*refused"):
        await store.add(StreamConfig.for_host("porch", "10.0.0.5"))
    assert backend.reachable is False
    assert "secret" not in str(backend.last_error)
    await backend.close()


async def test_one_unreadable_stream_does_not_stop_the_others_syncing(
    backends: tuple[Backend, Backend], caplog: pytest.LogCaptureFixture
) -> None:
    """L4 (issue 26): one malformed value in a stream's hash made every resync fail with
    a traceback every 5 s. That stream is skipped with one clear line (and kept as the
    node has it); the others stay in step."""
    backend = backends[0]
    store = RedisStore(backend)
    for name in ("porch", "yard"):
        await store.add(StreamConfig.for_host(name, "10.0.0.5"))
    await backend.redis.hset(backend.keys.stream("porch"), "motion", "{not json")
    applied: list[str] = []
    dropped: list[str] = []
    tokens: list[list[ManagedToken]] = []

    async def apply(cfg: StreamConfig) -> None:
        applied.append(cfg.name)

    async def drop(name: str) -> None:
        dropped.append(name)

    feed = ConfigFeed(
        backend, store, apply, drop, lambda: ["porch", "yard"], tokens.append, lambda: ([], [])
    )
    with caplog.at_level(logging.ERROR, logger="camserver.cluster.store"):
        for _ in range(3):
            await feed.resync()  # no exception, each time
    assert applied == ["yard"] * 3
    assert dropped == []  # the unreadable one is not dropped either
    assert len(tokens) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # said once, not every resync
    assert "stream 'porch' in Redis cannot be read" in lines[0]
    assert store.unreadable == {"porch"}
    # Saved again whole, it is read again.
    await store.update(StreamConfig.for_host("porch", "10.0.0.9"))
    await feed.resync()
    assert applied[-2:] == ["porch", "yard"]
    assert store.unreadable == set()
