"""StreamRegistry on its own: a real SQLite store and httpx client, no HTTP server; the
camera (when one is needed) is the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from camserver.errors import (
    SnapshotUnavailable,
    StreamExists,
    StreamNotFound,
    TooManyStreams,
    TooManyViewers,
)
from camserver.schema import StreamConfig, StreamPatch, StreamState, StreamStatus
from camserver.sources import SourceTiming
from camserver.store import SQLiteStore
from camserver.streaming.registry import StreamRegistry
from tests.conftest import CameraFactory, wait_for

FAST = SourceTiming(connect_timeout=2, read_timeout=1.5, backoff_initial=0.1, backoff_max=0.5)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[StreamRegistry]:
    store = await SQLiteStore.open(tmp_path / "m.db")
    async with httpx.AsyncClient(trust_env=False) as client:
        m = StreamRegistry(store, client, FAST, max_streams=3, max_viewers=2, on_demand_grace=0.2)
        await m.load()
        try:
            yield m
        finally:
            await m.close()
            await store.close()


def off(name: str, **kw: object) -> StreamConfig:
    return StreamConfig.for_host(name, "192.0.2.1").model_copy(update={"enabled": False, **kw})


async def test_create_list_delete_and_limits(manager: StreamRegistry) -> None:
    out = await manager.create(off("a"))
    assert out.status.state is StreamState.STOPPED
    with pytest.raises(StreamExists):
        await manager.create(off("a"))
    await manager.create(off("b"))
    await manager.create(off("c"))
    with pytest.raises(TooManyStreams):
        await manager.create(off("d"))
    assert [s.name for s in manager.list()] == ["a", "b", "c"]
    assert manager.names_by_url() == {
        "http://192.0.2.1:81/stream": "c"  # three streams on one URL: the last one named
    }
    await manager.delete("b")
    assert "b" not in manager
    assert [c.name for c in await manager.store.list()] == ["a", "c"]
    with pytest.raises(StreamNotFound):
        await manager.delete("b")
    with pytest.raises(StreamNotFound):
        manager.status("b")


async def test_put_replaces_and_update_patches(manager: StreamRegistry) -> None:
    await manager.put(off("a"))
    out = await manager.put(off("a", on_demand=True))
    assert out.on_demand is True
    out = await manager.update("a", StreamPatch(host="192.0.2.9:8080"))
    assert out.stream_url == "http://192.0.2.9:8081/stream"
    assert (await manager.store.list())[0].stream_url == out.stream_url
    with pytest.raises(StreamNotFound):
        await manager.update("nope", StreamPatch(enabled=True))


async def test_admission_counts_every_kind(manager: StreamRegistry) -> None:
    await manager.create(off("a"))
    hub = manager.admission.admit("a")
    with hub.viewer("mjpeg"):
        hub.demand.set_viewers("socketio", 1)
        with pytest.raises(TooManyViewers, match="maximum of 2 viewers"):
            manager.admission.admit("a")
        with pytest.raises(TooManyViewers):
            await manager.snapshots.take("a")
        hub.demand.set_viewers("socketio", 0)
        assert manager.admission.admit("a") is hub
    with pytest.raises(StreamNotFound):
        manager.admission.admit("ghost")


async def test_snapshot_without_frame_or_url(manager: StreamRegistry) -> None:
    cfg = StreamConfig(name="raw", stream_url="http://192.0.2.1/s", enabled=False)
    await manager.create(cfg)
    with pytest.raises(SnapshotUnavailable, match="no snapshot URL"):
        await manager.snapshots.take("raw")
    assert manager.hub("raw").viewers == 0  # the snapshot viewer was counted out again


async def test_on_demand_follows_viewers(manager: StreamRegistry, camera: CameraFactory) -> None:
    cam = await camera("od", fps=20)
    events: list[tuple[str, StreamState]] = []

    def on_status(name: str, status: StreamStatus) -> None:
        events.append((name, status.state))

    manager.add_listener(on_status)
    await manager.create(
        StreamConfig.for_host("od", cam.address).model_copy(update={"on_demand": True})
    )
    assert manager.status("od").state is StreamState.IDLE
    hub = manager.hub("od")
    with hub.viewer("mjpeg"):
        frame = await hub.next_frame(0, timeout=10)
        assert frame is not None
        assert manager.status("od").state is StreamState.STREAMING
    # 0.2 s after the last viewer left, the camera is let go.
    await wait_for(lambda: manager.status("od").state is StreamState.IDLE, what="idle again")
    await wait_for(lambda: cam.active_streams == 0, what="camera let go")
    assert ("od", StreamState.STREAMING) in events
    assert events[-1] == ("od", StreamState.IDLE)


async def test_a_failing_listener_does_not_stop_the_others(manager: StreamRegistry) -> None:
    seen: list[str] = []

    def broken(name: str, status: StreamStatus) -> None:
        raise RuntimeError("listener bug")

    manager.add_listener(broken)
    manager.add_listener(lambda name, status: seen.append(name))
    await manager.create(off("a", enabled=True))  # connects (and fails) in the background
    await wait_for(lambda: len(seen) >= 2, what="status events")
    await manager.set_enabled("a", False)
    await asyncio.sleep(0)
    assert manager.status("a").state is StreamState.STOPPED
