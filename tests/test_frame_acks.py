"""Flow control for Socket.IO viewers that acknowledge frames (``join_stream`` with
``"ack": true``, then ``frame_ack``): a viewer that falls behind catches up."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from camserver.live.counters import counters
from camserver.live.frame_acks import MAX_UNACKED, MIN_IN_FLIGHT, Unacked
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.socketio import raw_viewer


def test_unacked_blocks_on_an_old_frame_and_opens_on_its_ack() -> None:
    w = Unacked()
    assert not w.blocked(100.0)
    w.sent(7, 100.0)
    w.sent(8, 100.2)
    assert not w.blocked(100.0 + MAX_UNACKED)
    assert w.blocked(100.01 + MAX_UNACKED)
    assert not w.ack(42, 100.6)  # never sent: nothing changes
    assert w.blocked(100.01 + MAX_UNACKED)
    assert w.ack(7, 100.6)
    assert len(w) == 1
    assert not w.blocked(100.6)
    assert w.blocked(100.21 + MAX_UNACKED)
    assert w.ack(8, 100.8)
    assert len(w) == 0
    assert not w.blocked(1e9)


def test_unacked_limits_frames_in_flight_to_what_the_viewer_shows() -> None:
    w = Unacked()
    # Nothing acknowledged yet: MIN_IN_FLIGHT.
    for seq in range(MIN_IN_FLIGHT):
        assert not w.blocked(0.0)
        w.sent(seq, 0.0)
    assert w.blocked(0.0)
    # A viewer that shows 30 frames a second may have 15 in flight (MAX_UNACKED = 0.5 s) ...
    assert MAX_UNACKED == 0.5
    w = Unacked()
    t = 0.0
    for seq in range(30):
        w.sent(seq, t)
        w.ack(seq, t)
        t += 1 / 30
    assert w.limit(t) == 15
    # ... one that showed 4 in the last second has MIN_IN_FLIGHT.
    assert w.limit(t + 1.0 - 4 / 30) == MIN_IN_FLIGHT
    assert w.limit(t + 5.0) == MIN_IN_FLIGHT


def test_unacked_matches_a_seq_that_started_again() -> None:
    # A stream made again under its name counts from 1: acks match by identity, not order.
    w = Unacked()
    for seq in (500, 501, 1, 2):
        w.sent(seq, 0.0)
    assert w.ack(1, 0.1)
    assert len(w) == 1
    assert not w.ack(501, 0.1)  # already done
    assert len(w) == 1


class RawViewer:
    """A Socket.IO client on a bare WebSocket that takes ``delay`` seconds per frame, like a
    page whose renderer cannot keep up; frames wait meanwhile in the sockets' buffers."""

    def __init__(self, ws: websockets.ClientConnection, ack: bool) -> None:
        self.ws = ws
        self.ack = ack
        self.lags: list[tuple[float, float]] = []
        """(when shown, seconds since the server got the frame)."""
        self.acks_sent = 0

    @classmethod
    async def join(cls, url: str, name: str, ack: bool) -> RawViewer:
        join: dict[str, Any] = {"name": name, "ack": True} if ack else {"name": name}
        # The same, ample buffer for both viewers (Linux grows them to this much and more).
        return cls(await raw_viewer(url, join, rcvbuf=1 << 20), ack)

    async def watch(self, name: str, delay: float, seconds: float) -> None:
        end = time.monotonic() + seconds
        head: Any = None
        while time.monotonic() < end:
            msg = await self.ws.recv()
            if isinstance(msg, str):
                if msg == "2":
                    await self.ws.send("3")  # Engine.IO ping
                elif msg.startswith("451-"):
                    head = json.loads(msg[4:])[1]  # the frame event; its JPEG comes next
                continue
            if head is None:
                continue
            await asyncio.sleep(delay)  # "decoding and drawing"
            self.lags.append((time.monotonic(), time.time() - head["ts"]))
            if self.ack:
                await self.ws.send("42" + json.dumps(["frame_ack", {name: head["seq"]}]))
                self.acks_sent += 1
            head = None

    async def close(self) -> None:
        self.ws.transport.abort()
        await self.ws.wait_closed()


async def test_a_viewer_that_acknowledges_frames_stays_live_when_it_falls_behind(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=15, replay=10)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    realtime = server.state.realtime
    skipped = counters.socketio.skipped_unacked
    acking = await RawViewer.join(server.url, "c1", ack=True)
    plain = await RawViewer.join(server.url, "c1", ack=False)
    await wait_for(lambda: realtime.delivery.acking("c1") == 1, 5, what="ack join")
    # Both show a frame in 0.2 s: 5 of the camera's 15 a second. For 8 s.
    await asyncio.gather(
        acking.watch("c1", 0.2, 8.0),
        plain.watch("c1", 0.2, 8.0),
    )
    late = {v: max(lag for when, lag in v.lags if when > v.lags[0][0] + 4) for v in (acking, plain)}
    # Without acks the frames queue up in socket buffers: the picture falls further behind
    # the longer it is watched (this is what a slow page saw). With them it stays within
    # MAX_UNACKED plus one frame's handling, on a busy machine too.
    assert late[plain] > 3.0, late
    assert late[acking] < 1.5, late
    assert counters.socketio.skipped_unacked > skipped + 20
    assert len(acking.lags) >= 20  # it still shows frames at its own pace
    await acking.close()
    await plain.close()
    await wait_for(lambda: realtime.delivery.viewers("c1") == 0, 5, what="the window forgotten")


async def test_bad_frame_acks_are_ignored(server: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=10)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    v = await RawViewer.join(server.url, "c1", ack=True)
    for bad in ([1, 2], "x", {"c1": "7"}, {"c1": True}, {"nope": 3}, None):
        await v.ws.send("42" + json.dumps(["frame_ack", bad]))
    await v.watch("c1", 0.0, 1.5)  # still connected and served
    assert len(v.lags) >= 5
    await v.close()
