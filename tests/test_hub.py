"""LocalHub on its own: newest-frame-wins, waking, closing, viewer counts, encode-once."""

from __future__ import annotations

import asyncio

import pytest

from camserver.streaming.hub import FrameHub, HubFrame, LocalHub


def test_local_hub_is_a_frame_hub() -> None:
    hub: FrameHub = LocalHub("x")  # mypy checks the protocol; this checks it at run time
    assert hub.latest is None
    assert hub.viewers == 0
    assert hub.closed is False


async def test_next_frame_is_the_newest_after_the_one_given() -> None:
    hub = LocalHub("x")
    first = hub.publish(b"a")
    hub.publish(b"b")
    third = hub.publish(b"c", camera_ts="12.5")
    assert (first.seq, third.seq) == (1, 3)
    got = await hub.next_frame(0)
    assert got is third  # a slow viewer skips straight to the newest
    assert got is not None
    assert (got.data, got.camera_ts) == (b"c", "12.5")
    assert await hub.next_frame(3, timeout=0.05) is None  # nothing newer: times out


async def test_waiters_wake_on_publish_and_on_close() -> None:
    hub = LocalHub("x")
    waiters = [asyncio.create_task(hub.next_frame(0)) for _ in range(5)]
    await asyncio.sleep(0)
    frame = hub.publish(b"j")
    assert [await w for w in waiters] == [frame] * 5
    late = asyncio.create_task(hub.next_frame(frame.seq))
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(late, 1) is None
    assert hub.closed
    assert await hub.next_frame(frame.seq) is None  # closed: never waits again
    assert await hub.next_frame(0) is frame  # but a frame newer than asked is still given


async def test_a_cancelled_waiter_does_not_break_the_others() -> None:
    hub = LocalHub("x")
    a = asyncio.create_task(hub.next_frame(0))
    b = asyncio.create_task(hub.next_frame(0))
    await asyncio.sleep(0)
    a.cancel()
    await asyncio.sleep(0)
    frame = hub.publish(b"j")
    assert await asyncio.wait_for(b, 1) is frame


def test_viewer_counts_by_kind_and_change_callback() -> None:
    hub = LocalHub("x")
    seen: list[int] = []
    hub.demand.on_change = lambda: seen.append(hub.viewers)
    with hub.viewer("mjpeg"), hub.viewer("mjpeg"):
        hub.demand.set_viewers("socketio", 3)
        hub.demand.set_viewers("socketio", 3)  # unchanged: no callback
        assert hub.viewers == 5
        assert hub.demand.viewers_by_kind() == {"mjpeg": 2, "socketio": 3}
    assert hub.viewers == 3
    assert seen == [1, 2, 5, 4, 3]


def test_counted_viewers_come_and_go_one_at_a_time_with_their_clients() -> None:
    hub = LocalHub("x")
    seen: list[int] = []
    hub.demand.on_change = lambda: seen.append(hub.viewers)
    for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        hub.demand.count_viewer("socketio", client, 1)
    assert hub.viewers == 3
    assert (hub.demand.viewers_from("10.0.0.1"), hub.demand.viewers_from("10.0.0.2")) == (2, 1)
    hub.demand.count_viewer("socketio", "10.0.0.1", -1)
    hub.demand.count_viewer("socketio", "10.0.0.9", -1)  # never counted here: nothing
    assert hub.viewers == 2
    assert hub.demand.viewers_from("10.0.0.1") == 1
    assert hub.demand.viewers_from("10.0.0.9") == 0
    assert seen == [1, 2, 3, 2]


def test_recording_and_motion_are_demand_by_name_not_viewers() -> None:
    hub = LocalHub("x")
    changes: list[bool] = []
    hub.demand.on_change = lambda: changes.append(hub.demand.needed)
    assert not hub.demand.needed
    hub.demand.need("recording")
    hub.demand.need("recording")  # unchanged: no callback
    hub.demand.need("motion")
    assert hub.viewers == 0
    assert hub.demand.needed
    assert hub.demand.reasons().model_dump() == {
        "viewers": 0,
        "recording": True,
        "motion": True,
        "remote": 0,
    }
    with hub.viewer("mjpeg", "10.0.0.1"):
        assert hub.demand.reasons().viewers == 1
        assert hub.demand.viewers_from("10.0.0.1") == 1
    hub.demand.need("recording", False)
    hub.demand.need("motion", False)
    assert not hub.demand.needed
    assert changes == [True, True, True, True, True, False]


def test_viewer_count_drops_even_when_the_viewer_fails() -> None:
    hub = LocalHub("x")
    try:
        with hub.viewer("mjpeg"):
            raise RuntimeError("client went away")
    except RuntimeError:
        pass
    assert hub.viewers == 0


def test_encoded_once_per_frame_and_key() -> None:
    hub = LocalHub("x")
    calls: list[int] = []

    def encode(frame: HubFrame) -> bytes:
        calls.append(frame.seq)
        return b"<" + frame.data + b">"

    f1 = hub.publish(b"a")
    assert [hub.encoded("k", f1, encode) for _ in range(3)] == [b"<a>"] * 3
    f2 = hub.publish(b"b")
    assert hub.encoded("k", f2, encode) == b"<b>"
    assert hub.encoded("other", f2, encode) == b"<b>"
    assert calls == [1, 2, 2]


async def test_timeouts_and_cancels_leave_no_waiter_behind() -> None:
    """A camera that is down for hours must not pile up one waiter per viewer per timeout."""
    hub = LocalHub("cam")
    for _ in range(50):
        assert await hub.next_frame(0, timeout=0.001) is None
    task = asyncio.create_task(hub.next_frame(0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub._waiters == []
    waiting = asyncio.create_task(hub.next_frame(0, timeout=5))
    await asyncio.sleep(0)
    hub.publish(b"jpeg")
    frame = await waiting
    assert frame is not None
    assert frame.seq == 1
    assert hub._waiters == []
