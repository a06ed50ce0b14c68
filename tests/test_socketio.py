"""Socket.IO fan-out with real python-socketio clients over WebSocket."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import socketio
import websockets

from camserver.connections import UNSENT_LIMIT
from camserver.live.counters import counters
from camserver.live.mjpeg import HIGH_WATER
from camserver.live.socketio import MAX_BACKLOG
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.kernel import unsent_in_kernel
from tests.helpers.socketio import Viewer, raw_viewer

ViewerFactory = Callable[[], Awaitable[Viewer]]


@pytest.fixture
async def viewer(server: Server) -> AsyncIterator[ViewerFactory]:
    async with AsyncExitStack() as stack:

        async def make() -> Viewer:
            v = Viewer()
            await v.sio.connect(server.url, transports=["websocket"], wait_timeout=5)
            stack.push_async_callback(v.sio.disconnect)
            return v

        yield make


async def test_join_errors(server: Server, viewer: ViewerFactory) -> None:
    v = await viewer()
    assert await v.join("ghost") == {"ok": False, "error": "no stream named 'ghost'", "status": 404}
    ack = await v.sio.call("join_stream", "porch", timeout=5)
    assert ack["ok"] is False
    assert "name" in ack["error"]
    ack = await v.sio.call("leave_stream", {}, timeout=5)
    assert ack["ok"] is False


async def test_frames_are_binary_with_consecutive_seq(
    server: Server, camera: CameraFactory, viewer: ViewerFactory
) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    v = await viewer()
    ack = await v.join("c1")
    assert ack["ok"] is True
    assert ack["status"]["state"] == "streaming"
    await wait_for(lambda: len(v.frames) >= 20, what="20 frames")
    f = v.frames[-1]
    assert set(f) == {"name", "seq", "ts", "token", "data", "received"}
    assert f["token"] == 0  # one node: no cluster lease
    assert f["name"] == "c1"
    assert isinstance(f["data"], bytes)
    assert f["data"][:2] == b"\xff\xd8"
    assert f["data"][-2:] == b"\xff\xd9"
    assert abs(f["ts"] - time.time()) < 5
    seqs = [x["seq"] for x in v.frames[1:]]  # the first is the latest frame, sent on join
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert (await server.status("c1"))["viewers"] == 1

    ack = await v.sio.call("leave_stream", {"name": "c1"}, timeout=5)
    assert ack["ok"] is True
    await asyncio.sleep(0.2)
    n = len(v.frames)
    await asyncio.sleep(0.5)
    assert len(v.frames) == n
    assert (await server.status("c1"))["viewers"] == 0


async def test_twenty_viewers_one_upstream_connection(
    server: Server, camera: CameraFactory, viewer: ViewerFactory
) -> None:
    cam = await camera("c1", fps=15)
    await server.add_camera("c1", cam)
    viewers = [await viewer() for _ in range(20)]
    for v in viewers:
        assert (await v.join("c1"))["ok"]
    await wait_for(lambda: all(len(v.frames) >= 15 for v in viewers), 15, what="frames")
    assert cam.tcp_connections == 1
    assert cam.stream_connections == 1
    st = await server.status("c1")
    assert st["upstream_connects"] == 1
    assert st["viewers"] == 20
    # Every viewer got the same frames, each exactly once, in order: after the frame sent
    # on join, every frame the camera sent while all twenty watched.
    first = max(v.frames[1]["seq"] for v in viewers)
    last = min(v.frames[-1]["seq"] for v in viewers)
    assert last - first >= 10
    for v in viewers:
        seqs = [f["seq"] for f in v.frames[1:]]
        assert seqs == sorted(set(seqs))
        assert [s for s in seqs if first <= s <= last] == list(range(first, last + 1))


async def test_stream_status_events(
    server: Server, camera: CameraFactory, viewer: ViewerFactory
) -> None:
    cam = await camera("c1", fps=15)
    v = await viewer()
    await server.add_camera("c1", cam)
    await wait_for(
        lambda: any(s["status"]["state"] == "streaming" for s in v.statuses), what="status"
    )
    await server.client.post("/api/streams/c1/stop")
    await wait_for(lambda: v.statuses[-1]["status"]["state"] == "stopped", what="stopped event")
    assert v.statuses[-1]["name"] == "c1"
    # Configuration changes: one event each (a PATCH that changes nothing sends none).
    await server.client.patch("/api/streams/c1", json={"on_demand": True})
    await server.client.patch("/api/streams/c1", json={"on_demand": True})
    await server.client.delete("/api/streams/c1")
    expected = [
        {"name": "c1", "change": "created"},
        {"name": "c1", "change": "updated"},  # the stop
        {"name": "c1", "change": "updated"},
        {"name": "c1", "change": "deleted"},
    ]
    await wait_for(lambda: len(v.changes) >= 4, what="stream_changed events")
    assert v.changes == expected


async def slow_viewer(url: str, name: str) -> websockets.ClientConnection:
    """An Engine.IO/Socket.IO client that joins a room, then never reads again."""
    # A tiny receive buffer, so the server feels the backpressure within a second or two.
    return await raw_viewer(url, {"name": name}, rcvbuf=4096)


async def stalled_polling_viewer(server: Server, name: str) -> str:
    """A long-polling Socket.IO client that joins a room, then never polls again (frames
    reach it through python-socketio's queue, not the direct WebSocket path)."""
    path = "/socket.io/?EIO=4&transport=polling"
    r = await server.client.get(path)
    sid = json.loads(r.text[1:])["sid"]
    path += f"&sid={sid}"
    assert (await server.client.post(path, content="40")).text == "OK"
    assert (await server.client.get(path)).text.startswith("40")
    body = "421" + json.dumps(["join_stream", {"name": name}])
    assert (await server.client.post(path, content=body)).text == "OK"
    return str(sid)


async def test_slow_viewer_does_not_slow_another(
    server: Server, camera: CameraFactory, viewer: ViewerFactory
) -> None:
    # XGA frames at 25 fps (~1.5 MB/s) fill the slow sockets' kernel buffers (a few MB on
    # loopback) within seconds; after that, only the server's own buffers could grow.
    cam = await camera("c1", fps=25, framesize=12, replay=10)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    realtime = server.state.realtime
    skipped = counters.socketio.skipped_slow
    slow = [await slow_viewer(server.url, "c1") for _ in range(2)]
    polling = await stalled_polling_viewer(server, "c1")
    fast = await viewer()
    await fast.join("c1")
    sockets = server.state.realtime.sockets
    # The WebSocket ones are written to directly: once their socket holds more than
    # HIGH_WATER unsent bytes they skip frames. The polling one goes through
    # python-socketio's queue, where the server keeps at most MAX_BACKLOG packets.
    await wait_for(
        lambda: (
            counters.socketio.skipped_slow >= skipped + 20
            and sockets.queue_size(polling) >= MAX_BACKLOG
        ),
        20,
        what="slow viewers skipping frames",
    )
    hub = server.state.manager.hub("c1")
    assert hub.latest is not None
    start = hub.latest.seq
    peak_queue = peak_unsent = 0
    direct = [ws.transport() for ws in realtime.delivery.direct()]

    def forty_more() -> bool:
        nonlocal peak_queue, peak_unsent
        peak_queue = max(peak_queue, *sockets.queue_sizes().values())
        peak_unsent = max(t.get_write_buffer_size() for t in direct if t is not None)
        return any(f["seq"] >= start + 40 for f in fast.frames)

    await wait_for(forty_more, 20, 0.02, what="40 more frames for the fast viewer")
    # The server holds at most a couple of frames for a slow viewer.
    assert peak_queue <= MAX_BACKLOG + 2, f"{peak_queue} packets queued for one viewer"
    assert hub.latest is not None
    assert peak_unsent <= HIGH_WATER + 2 * len(hub.latest.data) + 1000, peak_unsent
    # Nor in the kernel: at most UNSENT_LIMIT not yet sent, plus the write that crossed it.
    kernel = [unsent_in_kernel(d.fd) for d in realtime.delivery.direct() if d.fd >= 0]
    assert len(kernel) == 3
    assert max(kernel) <= UNSENT_LIMIT + 2 * len(hub.latest.data) + 1000, kernel
    # The fast viewer got the camera's frames in order, none twice, most of them (a frame
    # is skipped only while its own socket is behind: a busy machine).
    seqs = [f["seq"] for f in fast.frames if f["seq"] > start]
    assert seqs == sorted(set(seqs))
    assert len(seqs) >= 20, seqs
    for ws in slow:
        ws.transport.abort()
        await ws.wait_closed()


async def test_polling_and_websocket_viewers_get_the_same_frames(
    server: Server, camera: CameraFactory, viewer: ViewerFactory
) -> None:
    # A WebSocket viewer is written to directly; a long-polling one through an emit.
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    ws = await viewer()
    polling = socketio.AsyncClient(reconnection=False)
    got: list[dict[str, Any]] = []
    polling.on("frame", lambda data: got.append(data))
    await polling.connect(server.url, transports=["polling"], headers={"X-Requested-With": "t"})
    try:
        assert (await polling.call("join_stream", {"name": "c1"}))["ok"]
        await ws.join("c1")
        sent = counters.socketio.sent
        await wait_for(lambda: len(got) >= 10 and len(ws.frames) >= 10, 20, what="frames")
        assert counters.socketio.sent > sent  # the WebSocket one: direct
        for frames in (got, ws.frames):
            assert all(f["name"] == "c1" and f["data"][:2] == b"\xff\xd8" for f in frames)
            seqs = [f["seq"] for f in frames]
            assert seqs == sorted(set(seqs))
            assert all(isinstance(f["ts"], float) and f["token"] == 0 for f in frames)
    finally:
        await polling.disconnect()


# Quirk (python-engineio's client): a polling client's disconnect leaves the response to
# its last POST unread, and aiohttp warns about the connection when it is collected: that
# warning is the client library's, and this test collects it here.
@pytest.mark.filterwarnings("ignore:Unclosed connection:ResourceWarning")
async def test_a_long_polling_client_disconnects_at_once(server: Server) -> None:
    """python-engineio's server closed a polling session without answering the client's
    pending GET: python-socketio's client then took 30 s to disconnect."""
    for transports in (["polling"], ["websocket"]):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(server.url, transports=transports, headers={"X-Requested-With": "t"})
        await wait_for(lambda: server.state.realtime.sockets.count() == 1, what="a session")
        t0 = time.monotonic()
        await asyncio.wait_for(client.disconnect(), 10)
        assert time.monotonic() - t0 < 3, transports
        await wait_for(lambda: server.state.realtime.sockets.count() == 0, what="no session")
        del client
        gc.collect()


async def test_websocket_frames_are_not_deflated(server: Server) -> None:
    """Browsers offer permessage-deflate; JPEGs do not compress, so deflating each frame
    once per viewer would only burn CPU. The server must decline it."""
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert str(await ws.recv()).startswith("0{")  # the Engine.IO open packet


async def test_engineio_internals_are_what_the_adapter_reads(
    server: Server, viewer: ViewerFactory
) -> None:
    """Fails loudly if a python-engineio upgrade moves the per-client packet queues that
    ``camserver.live.engineio`` reads to skip slow viewers."""
    sockets = server.state.realtime.sockets
    v = await viewer()
    sockets.verify()
    assert sockets.count() == 1
    (eio_sid,) = sockets.queue_sizes()
    assert sockets.queue_size(eio_sid) == 0
    assert sockets.queue_size("gone") == 0
    await v.sio.disconnect()
    await wait_for(lambda: sockets.count() == 0, what="the client gone")


async def test_joining_again_and_again_without_reading_holds_a_bounded_backlog(
    server: Server, camera: CameraFactory
) -> None:
    """M3 (issue 26): each join_stream wrote the latest frame with no high-water check, so
    a client repeating it without reading grew the server's memory without bound (+98 MB
    in 24 s). Every write to a viewer now goes through the same bound, on both transports."""
    cam = await camera("c1", fps=5, framesize=10, replay=5)  # UXGA-ish frames: big
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    realtime = server.state.realtime
    hub = server.state.manager.hub("c1")
    await wait_for(lambda: hub.latest is not None, 10, what="a first frame")
    assert hub.latest is not None
    size = len(hub.latest.data)
    ws = await raw_viewer(server.url, {"name": "c1"}, rcvbuf=4096)
    try:
        polling = await stalled_polling_viewer(server, "c1")
        join = "42" + json.dumps(["join_stream", {"name": "c1"}])
        path = f"/socket.io/?EIO=4&transport=polling&sid={polling}"
        for _ in range(200):
            await ws.send(join)
            await server.client.post(path, content=join)
        (direct,) = [d.transport() for d in realtime.delivery.direct()]
        assert direct is not None
        await asyncio.sleep(0.5)  # the last joins handled
        # One frame past the high-water mark at most (old code: 5 MB after 300 joins).
        assert direct.get_write_buffer_size() <= HIGH_WATER + 2 * size + 1000
        # Below MAX_BACKLOG when checked, then at most one frame (2 packets) in flight from
        # the room's broadcaster and one from a join (old code: one more per join).
        assert realtime.sockets.queue_size(polling) <= MAX_BACKLOG - 1 + 2 + 2
    finally:
        ws.transport.abort()
        await ws.wait_closed()
