"""The recordings index's contract, held by both implementations: SQLite (one node) and
Redis (cluster mode, against a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from camserver.cluster.recording_index import RedisIndex
from camserver.cluster.wire import Keys
from camserver.errors import RecordingError
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


async def test_another_nodes_open_rows_are_unfinished_once_it_is_gone(
    redis_server: RedisServer,
) -> None:
    await redis_server.ready()
    n1 = RedisIndex(redis_server.url, Keys(), "n1")
    n2 = RedisIndex(redis_server.url, Keys(), "n2")
    beat = redis.Redis.from_url(redis_server.url)
    try:
        beat.set(Keys().node("n2"), "{}", px=60_000)  # n2 is alive
        rid = n2.begin("porch", "continuous", "porch/d/x.mkv", 10.0)
        assert n2.get(rid) is not None
        assert n1.get(rid).node == "n2"  # type: ignore[union-attr]
        assert n1.unfinished(own=False) == []  # n2 writes it
        beat.delete(Keys().node("n2"))  # n2's heartbeat expired
        assert [r.id for r in n1.unfinished(own=False)] == [rid]
        # One node repairs it: the first claim wins until it expires.
        assert n1.claim(f"repair:{rid}", 30)
        assert not n2.claim(f"repair:{rid}", 30)
        assert n1.claim("other-job", 30)
    finally:
        n1.close()
        n2.close()
        beat.close()


def test_a_redis_that_is_away_gives_a_recording_error_quickly() -> None:
    index = RedisIndex(f"redis://127.0.0.1:{free_port()}/0", Keys(), "n1")
    try:
        with pytest.raises(RecordingError, match="recordings index"):
            index.begin("porch", "continuous", "porch/d/a.mkv", 1.0)
        with pytest.raises(RecordingError):
            index.total_bytes("porch")
    finally:
        index.close()
