"""The stores of recordings and of motion events: each contract held by both
implementations, SQLite (one node) and Redis (cluster mode, against a real redis-server),
and what only the cluster's need (writers that are gone, claims, Redis away)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from camserver.cluster.motion_events import RedisEvents
from camserver.cluster.recording_index import RedisIndex
from camserver.cluster.wire import Keys
from camserver.errors import MotionError, RecordingError
from camserver.motion.events import EventStore, SQLiteEvents
from camserver.recording.index import RecordingIndex, SQLiteIndex
from tests.cluster.conftest import RedisServer, local_or_redis
from tests.conftest import free_port

pytestmark = pytest.mark.requires("redis-server")


@pytest.fixture(params=["sqlite", "redis"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordingIndex]:
    idx: RecordingIndex = await local_or_redis(
        request, lambda: SQLiteIndex(tmp_path / "db"), lambda url: RedisIndex(url, Keys(), "n1")
    )
    yield idx
    idx.close()


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    events: EventStore = await local_or_redis(
        request, lambda: SQLiteEvents(tmp_path / "db"), lambda url: RedisEvents(url, Keys(), "n1")
    )
    yield events
    events.close()


async def test_rows_ranges_sizes_and_retention_order(index: RecordingIndex) -> None:
    a = index.begin("porch", "continuous", "porch/d/a.mkv", 100.0)
    index.update(a, 160.0, 900, 9_000, closed=True)
    b = index.begin("porch", "continuous", "porch/d/b.mkv", 160.0)
    index.update(b, 175.5, 200, 2_000, closed=False)  # being written
    t = index.begin("porch", "timelapse", "porch/2026-11-24/timelapse.mkv", 50.0)
    index.update(t, 170.0, 10, 500, closed=True)
    e = index.begin("porch", "event", "porch/d/e.mkv", 120.0)
    index.update(e, 130.0, 100, 1_000, closed=True)
    other = index.begin("yard", "continuous", "yard/d/a.mkv", 90.0)
    index.update(other, 95.0, 10, 100, closed=True)

    got = index.get(a)
    assert got is not None
    assert (got.stream, got.kind, got.path, got.start, got.end) == (
        "porch",
        "continuous",
        "porch/d/a.mkv",
        100.0,
        160.0,
    )
    assert (got.frames, got.bytes, got.closed) == (900, 9_000, True)
    assert index.get(10_000) is None
    # Overlap with a range, oldest first, the open one with its end so far.
    assert [r.id for r in index.between("porch", 125.0, 170.0)] == [t, a, e, b]
    assert [r.id for r in index.between("porch", 171.0, 200.0)] == [b]
    assert index.between("porch", 176.0, 200.0) == []
    assert index.between("nobody", 0.0, 1e12) == []
    at = index.at("porch", 161.0)
    assert at is not None
    assert at.id == b
    assert index.at("porch", 10.0) is None
    # Sizes with derived files; retention's order: continuous, timelapse, events.
    assert index.total_bytes("porch") == 12_500
    index.set_derived(t, 300)
    assert index.total_bytes("porch") == 12_800
    assert [r.id for r in index.oldest_closed("porch")] == [a, t, e]
    assert [r.id for r in index.oldest_closed()] == [other, a, t, e]
    assert [r.id for r in index.oldest_closed(limit=2)] == [other, a]
    assert [r.id for r in index.closed_before("porch", 165.0)] == [a, e]
    assert index.timelapse_days() == {("porch", "2026-11-24")}
    index.delete(t)
    index.delete(t)  # twice: harmless
    assert index.total_bytes("porch") == 12_000
    assert index.get(t) is None
    assert [r.id for r in index.oldest_closed("porch")] == [a, e]
    assert index.timelapse_days() == set()
    # Open rows: this node's count as unfinished only at start-up (own=True).
    assert [r.id for r in index.unfinished(own=True)] == [b]
    assert index.unfinished(own=False) == []
    index.update(b, 180.0, 300, 3_000, closed=True)
    assert index.unfinished(own=True) == []
    assert index.total_bytes("porch") == 13_000


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


# The cluster's stores: how to open one, add an open row, and what an error says.
CLUSTER: dict[str, tuple[Callable[[str, str], Any], Callable[[Any], int], type[Exception], str]] = {
    "recordings": (
        lambda url, node: RedisIndex(url, Keys(), node),
        lambda s: s.begin("porch", "continuous", "porch/d/x.mkv", 10.0),
        RecordingError,
        "recordings index",
    ),
    "events": (
        lambda url, node: RedisEvents(url, Keys(), node),
        lambda s: s.add("porch", 10.0, 4.0),
        MotionError,
        "motion events",
    ),
}


@pytest.mark.parametrize("kind", CLUSTER)
async def test_another_nodes_open_rows_are_unfinished_once_it_is_gone(
    redis_server: RedisServer, kind: str
) -> None:
    make, add_open, _, _ = CLUSTER[kind]
    await redis_server.ready()
    n1, n2 = make(redis_server.url, "n1"), make(redis_server.url, "n2")
    beat = redis.Redis.from_url(redis_server.url)
    try:
        beat.set(Keys().node("n2"), "{}", px=60_000)  # n2 is alive
        rid = add_open(n2)
        assert n1.get(rid) is not None
        assert n1.unfinished(own=False) == []  # n2 writes it
        beat.delete(Keys().node("n2"))  # n2's heartbeat expired
        assert [r.id for r in n1.unfinished(own=False)] == [rid]
        assert n2.unfinished(own=False) == []  # its own: only at start-up
    finally:
        n1.close()
        n2.close()
        beat.close()


async def test_one_node_claims_a_job_until_the_claim_expires(redis_server: RedisServer) -> None:
    await redis_server.ready()
    n1 = RedisIndex(redis_server.url, Keys(), "n1")
    n2 = RedisIndex(redis_server.url, Keys(), "n2")
    try:
        rid = n2.begin("porch", "continuous", "porch/d/x.mkv", 10.0)
        assert n1.get(rid).node == "n2"  # type: ignore[union-attr]
        # One node repairs it: the first claim wins until it expires.
        assert n1.claim(f"repair:{rid}", 30)
        assert not n2.claim(f"repair:{rid}", 30)
        assert n1.claim("other-job", 30)
    finally:
        n1.close()
        n2.close()


@pytest.mark.parametrize("kind", CLUSTER)
def test_a_redis_that_is_away_gives_the_stores_error_quickly(kind: str) -> None:
    make, add_open, error, what = CLUSTER[kind]
    store = make(f"redis://127.0.0.1:{free_port()}/0", "n1")
    try:
        with pytest.raises(error, match=what):
            add_open(store)
        with pytest.raises(error):
            store.get(1)
    finally:
        store.close()
