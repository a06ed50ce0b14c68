"""The motion events store's contract, held by both implementations: SQLite (one node) and
Redis (cluster mode, against a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from camserver.cluster.motion_events import RedisEvents
from camserver.cluster.wire import Keys
from camserver.errors import MotionError
from camserver.motion.events import EventStore, SQLiteEvents
from tests.cluster.conftest import RedisServer, local_or_redis
from tests.conftest import free_port

pytestmark = pytest.mark.requires("redis-server")


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    events: EventStore = await local_or_redis(
        request, lambda: SQLiteEvents(tmp_path / "db"), lambda url: RedisEvents(url, Keys(), "n1")
    )
    yield events
    events.close()


async def test_events_ranges_updates_retention_and_deletion(store: EventStore) -> None:
    a = store.add("porch", 100.0, 2.5)
    store.update(a, end=110.0, peak_area=7.25, snapshot="porch/events/a.jpg")
    b = store.add("porch", 200.0, 1.0)  # going on
    c = store.add("yard", 150.0, 3.0)
    store.update(c, end=160.0, peak_area=3.0, snapshot=None)
    got = store.get(a)
    assert got is not None
    assert (got.stream, got.start, got.end, got.peak_area, got.snapshot) == (
        "porch",
        100.0,
        110.0,
        7.25,
        "porch/events/a.jpg",
    )
    assert store.get(9_999) is None
    # Overlapping a range, newest first; a going-on event overlaps everything after it.
    assert [e.id for e in store.between(None, 0.0, 1e12, 100)] == [b, c, a]
    assert [e.id for e in store.between(["porch"], 105.0, 300.0, 100)] == [b, a]
    assert [e.id for e in store.between(["porch", "yard"], 111.0, 199.0, 100)] == [c]
    assert [e.id for e in store.between(None, 0.0, 1e12, 2)] == [b, c]
    assert store.between(["nobody"], 0.0, 1e12, 10) == []
    # Retention: finished events that ended before a time, oldest first.
    assert [e.id for e in store.older_than(200.0, 10)] == [a, c]
    assert [e.id for e in store.older_than(150.0, 10)] == [a]
    # Open events: this node's count as unfinished only at start-up (own=True).
    assert [e.id for e in store.unfinished(own=True)] == [b]
    assert store.unfinished(own=False) == []
    store.update(b, end=210.0, peak_area=1.5, snapshot=None)
    assert store.unfinished(own=True) == []
    store.delete(a)
    store.delete(a)  # twice: harmless
    assert store.get(a) is None
    assert [e.id for e in store.between(None, 0.0, 1e12, 100)] == [b, c]


async def test_another_nodes_open_events_are_unfinished_once_it_is_gone(
    redis_server: RedisServer,
) -> None:
    await redis_server.ready()
    n1 = RedisEvents(redis_server.url, Keys(), "n1")
    n2 = RedisEvents(redis_server.url, Keys(), "n2")
    beat = redis.Redis.from_url(redis_server.url)
    try:
        beat.set(Keys().node("n2"), "{}", px=60_000)  # n2 is alive
        eid = n2.add("porch", 10.0, 4.0)
        assert n1.get(eid) is not None
        assert n1.unfinished(own=False) == []  # n2 will close it
        beat.delete(Keys().node("n2"))  # n2's heartbeat expired
        assert [e.id for e in n1.unfinished(own=False)] == [eid]
    finally:
        n1.close()
        n2.close()
        beat.close()


def test_a_redis_that_is_away_gives_a_motion_error_quickly() -> None:
    events = RedisEvents(f"redis://127.0.0.1:{free_port()}/0", Keys(), "n1")
    try:
        with pytest.raises(MotionError, match="motion events"):
            events.add("porch", 1.0, 1.0)
        with pytest.raises(MotionError):
            events.between(None, 0.0, 1.0, 10)
    finally:
        events.close()
