"""PushSource without a network: what the camera is told, which connection wins, when a
camera is waiting or overdue, what the rate cap drops (issue 28)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from camserver.schema import StreamConfig, StreamState
from camserver.sources.base import SourceTiming
from camserver.sources.push import PushSource
from tests.conftest import wait_for

JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
TIMING = SourceTiming(frame_timeout=0.6)


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.states: list[tuple[StreamState, str | None]] = []
        self.connects = 0
        self.bad: list[str] = []

    def connected(self) -> None:
        self.connects += 1

    def publish(self, data: bytes, camera_ts: str | None = None) -> None:
        self.frames.append(data)
        if not self.states or self.states[-1][0] is not StreamState.STREAMING:
            self.states.append((StreamState.STREAMING, None))

    def bad_frame(self, reason: str) -> None:
        self.bad.append(reason)

    def show(self, state: StreamState, reason: str | None = None) -> None:
        self.states.append((state, reason))

    @property
    def state(self) -> StreamState | None:
        return self.states[-1][0] if self.states else None


class Camera:
    def __init__(self, address: str, mode: str = "ws") -> None:
        self.address = address
        self.mode = mode
        self.told: list[dict[str, object]] = []
        self.closed: str | None = None

    def send(self, message: str) -> None:
        self.told.append(json.loads(message))

    def close(self, reason: str) -> None:
        self.closed = reason


@contextlib.asynccontextmanager
async def running(source: PushSource) -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(source.run(sink))
    await asyncio.sleep(0)
    try:
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_waiting_until_pictures_come_and_again_when_the_camera_goes() -> None:
    source = PushSource("shed", None, TIMING)
    async with running(source) as sink:
        await wait_for(lambda: sink.state is StreamState.WAITING, 2, what="waiting")
        cam = Camera("10.0.0.5:4000")
        source.attach(cam)
        assert cam.told == [{"pause": False}]
        assert sink.connects == 1
        assert source.offer(JPEG) == "published"
        assert sink.state is StreamState.STREAMING
        assert source.extra_status()["pusher"] == "10.0.0.5:4000"
        source.detach(cam)
        await wait_for(lambda: sink.states[-1][0] is StreamState.WAITING, 2, what="waiting again")
        assert sink.states[-1] == (StreamState.WAITING, "the camera disconnected")
    # Not running (the stream stopped, an idle on-demand camera): told to pause, and
    # what it still sends is dropped, counted.
    cam2 = Camera("10.0.0.5:4001")
    source.attach(cam2)
    assert cam2.told == [{"pause": True}]
    assert source.offer(JPEG) == "paused"
    assert source.counters.paused == 1


async def test_the_newest_connection_wins_and_the_old_one_is_told_why() -> None:
    source = PushSource("shed", None, TIMING)
    async with running(source):
        old, new = Camera("10.0.0.5:4000"), Camera("10.0.0.5:4100")
        source.attach(old)
        source.attach(new)
        assert old.closed == "a newer connection for this camera took over"
        assert new.closed is None
        assert source.pusher is new
        source.detach(old)  # the old one's ending does not unseat the new one
        assert source.pusher is new
        assert source.counters.replaced == 1


async def test_a_camera_that_posts_now_and_then_is_overdue_after_two_intervals() -> None:
    source = PushSource("shed", 0.3, TIMING)
    async with running(source) as sink:
        source.posted("10.0.0.7:5000")
        assert source.next_in() == 0.3  # no picture yet: one interval
        assert source.offer(JPEG) == "published"
        assert 0.2 < (source.next_in() or 0) <= 0.3
        await wait_for(lambda: sink.state is StreamState.OVERDUE, 3, what="overdue")
        _, reason = sink.states[-1]
        assert reason is not None
        assert "expected every 0.3 s" in reason
        assert source.counters.overdue == 1
        assert source.offer(JPEG) == "published"
        assert sink.state is StreamState.STREAMING
        assert source.extra_status()["pusher"] == "10.0.0.7:5000"


async def test_settings_go_to_a_connected_camera_now_or_wait_for_the_next_post() -> None:
    source = PushSource("shed", None, TIMING)
    assert source.apply_settings({"framesize": 11, "quality": 12}) is False
    assert source.take_pending() == {"framesize": "SVGA", "quality": 12}
    assert source.take_pending() == {}
    source.apply_settings({"brightness": 1})
    cam = Camera("10.0.0.5:4000")
    source.attach(cam)  # what waited is told at once
    assert {"set": {"brightness": 1}} in cam.told
    assert source.apply_settings({"framesize": 8}) is True
    assert cam.told[-1] == {"set": {"framesize": "CIF"}}


async def test_pictures_over_the_rate_cap_are_dropped_and_counted() -> None:
    source = PushSource("shed", None, TIMING, max_fps=30)
    async with running(source) as sink:
        # 200 pictures a second for one (simulated) second.
        outcomes = [source.offer(JPEG, now=100 + i / 200) for i in range(200)]
    assert outcomes.count("published") == len(sink.frames)
    assert 30 <= len(sink.frames) <= 30 + 16  # the rate plus one burst
    assert source.counters.too_fast == 200 - len(sink.frames)


async def test_a_new_key_disconnects_the_camera_that_used_the_old_one() -> None:
    cfg = StreamConfig(name="shed", source="push", stream_url="", push_key_hash="a")
    source = PushSource.for_config(cfg, None, TIMING, None)
    cam = Camera("10.0.0.5:4000")
    source.attach(cam)
    source.reconfigure(cfg.model_copy(update={"expect_every": 60.0}))
    assert cam.closed is None
    assert source.expect_every == 60.0
    source.reconfigure(cfg.model_copy(update={"push_key_hash": "b"}))
    assert cam.closed == "the push key was changed: connect with the new one"
    assert source.pusher is None


@pytest.mark.parametrize("mode", ["mjpeg", "frame"])
async def test_settings_wait_for_cameras_that_cannot_be_told(mode: str) -> None:
    source = PushSource("shed", None, TIMING)
    source.attach(Camera("10.0.0.5:4000", mode))
    assert source.apply_settings({"quality": 20}) is False
    assert source.take_pending() == {"quality": 20}


def test_a_camera_is_present_where_it_connected_or_last_posted() -> None:
    """Cluster mode keeps the camera's lease on the node where it is present."""
    source = PushSource("shed", 5.0, TIMING)
    assert not source.present()
    source.posted("10.0.0.7:5000")
    assert source.present()  # overdue or not: until another node takes it
    source.close("this node lost the camera's lease")
    assert not source.present()
    cam = Camera("10.0.0.5:4000")
    source.attach(cam)
    assert source.present()
    source.detach(cam)
    assert not source.present()
