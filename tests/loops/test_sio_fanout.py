"""Socket.IO frames straight to the kernel (``camserver.live.sio_fanout``): a WebSocket
that uvicorn also writes to (replies, pings) and that watches several streams must still
get whole WebSocket messages, each frame event followed by its own JPEG, in order; a
connection the server closes ends at once (the duplicate descriptor is closed with it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from types import SimpleNamespace
from typing import Any, cast

import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from camserver.live.counters import counters
from camserver.live.sio_fanout import Client, Member, Room
from camserver.live.sockets import DirectWebSocket
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.kernel import read_all, tcp_pair
from tests.helpers.mjpeg import streaming_camera
from tests.helpers.socketio import raw_viewer


class Checked:
    """Reads a raw viewer's messages and checks the wire as it goes."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.seqs: dict[str, list[int]] = {}
        self.replies = 0
        self._head: dict[str, Any] | None = None

    async def read(
        self, seconds: float, pause: float = 0.0, until: asyncio.Event | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end and not (until is not None and until.is_set()):
            msg = await asyncio.wait_for(self.ws.recv(), 10)
            if isinstance(msg, bytes):
                assert self._head is not None, "a binary message with no frame event before it"
                assert msg.startswith(b"\xff\xd8"), "not a whole JPEG"
                assert msg.endswith(b"\xff\xd9"), "not a whole JPEG"
                self.seqs.setdefault(self._head["name"], []).append(self._head["seq"])
                self._head = None
            else:
                assert self._head is None, f"{msg[:40]!r} between a frame event and its JPEG"
                if msg == "2":
                    await self.ws.send("3")  # Engine.IO ping
                elif msg.startswith("451-"):
                    self._head = json.loads(msg[4:])[1]
                else:
                    assert msg.startswith(("43", "42")), msg[:80]
                    self.replies += msg.startswith("43")
            if pause:
                await asyncio.sleep(pause)

    def in_order(self) -> None:
        for name, seqs in self.seqs.items():
            assert seqs == sorted(set(seqs)), f"{name}: frames out of order or repeated"


async def _ask(ws: websockets.ClientConnection, stop: asyncio.Event) -> None:
    """Requests with replies, as fast as they go: uvicorn writes each reply to the socket
    that frames go to directly (``leave_stream`` of a stream it is not in changes nothing)."""
    n = 10
    while not stop.is_set():
        await ws.send(f"42{n}" + json.dumps(["leave_stream", {"name": "nope"}]))
        n += 1
        await asyncio.sleep(0.005)


async def test_a_websocket_of_two_streams_gets_whole_messages_beside_uvicorns_writes(
    server: Server, camera: CameraFactory
) -> None:
    for name in ("c1", "c2"):
        await streaming_camera(server, camera, name, fps=25, framesize=8, replay=10)
    delivery = server.state.realtime.delivery
    viewers = []
    for rcvbuf in (1 << 20, 16384):  # one that keeps up, one that falls behind
        ws = await raw_viewer(server.url, {"name": "c1"}, rcvbuf=rcvbuf)
        await ws.send("422" + json.dumps(["join_stream", {"name": "c2"}]))
        viewers.append(Checked(ws))
    fast, slow = viewers
    await wait_for(lambda: delivery.viewers("c1") == delivery.viewers("c2") == 2, what="joins")
    # The slow one's socket takes frames in pieces: small kernel buffers on both ends.
    for direct in delivery.direct():
        if direct.transport() is not None and direct.fd >= 0:
            sock = socket.socket(fileno=direct.fd)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
            finally:
                sock.detach()
    # (It ends when told: cancelled, it waited up to a minute on a busy machine.)
    stop = asyncio.Event()
    reader = asyncio.create_task(fast.read(60, until=stop))
    try:
        # Alone on its socket, a viewer that keeps up is on the fast path in both rooms.
        await wait_for(
            lambda: all(delivery.fast(name) >= 1 for name in ("c1", "c2")),
            10,
            what="the fast path in both rooms",
        )
        sent, slow_skips = counters.socketio.sent, counters.socketio.skipped_slow
        askers = [asyncio.create_task(_ask(v.ws, stop)) for v in viewers]
        seen_fast = False

        async def watch_paths() -> None:
            nonlocal seen_fast
            while not stop.is_set():
                # Both viewers fast in a room: the slow one's kernel took a whole frame.
                seen_fast |= any(delivery.fast(name) == 2 for name in ("c1", "c2"))
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch_paths())
        await slow.read(6, pause=0.01)
        stop.set()
        await asyncio.gather(*askers, watcher, reader)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 30)
    for v in viewers:
        v.in_order()
        assert set(v.seqs) == {"c1", "c2"}, v.seqs.keys()
        assert v.replies >= 10, "uvicorn wrote few replies"
    assert counters.socketio.sent > sent + 100
    # It fell behind (frames skipped, parts finished through the transport) and caught up
    # in between (written whole, straight to the kernel): both paths, one socket, two rooms.
    assert counters.socketio.skipped_slow > slow_skips, "the slow viewer skipped nothing"
    assert seen_fast, "the slow viewer never took the fast path"
    for v in viewers:
        # Dropped, not closed: their unread frames fill the client library's queue, and a
        # closing handshake would wait its 10 s timeout for the server's close frame.
        v.ws.transport.abort()


async def test_a_websocket_the_server_closes_ends_at_once(
    server: Server, camera: CameraFactory
) -> None:
    # The fan-out writes through its own duplicate of the socket, which would keep the
    # connection open after uvicorn closed its own: it is closed with the connection.
    await streaming_camera(server, camera, "c1", fps=20)
    delivery = server.state.realtime.delivery
    ws = await raw_viewer(server.url, {"name": "c1"}, rcvbuf=1 << 20)
    checked = Checked(ws)
    await checked.read(1)
    await wait_for(lambda: delivery.fast("c1") == 1, 10, what="the fast path")
    (direct,) = delivery.direct()
    fd = direct.fd
    assert fd >= 0
    (sid,) = delivery.members("c1")
    await server.state.realtime.sio.disconnect(sid)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def until_disconnected() -> None:
        while await ws.recv() != "41":
            pass

    async def drain() -> None:  # (websockets reads nothing more while a message waits)
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()

    # Socket.IO's disconnect; the client closes the WebSocket, as socket.io-client does:
    # the close handshake, then uvicorn ends the TCP connection (websockets' client waits
    # up to 10 s for that: the duplicate descriptor would keep it open that long).
    await asyncio.wait_for(until_disconnected(), 8)
    drained = asyncio.create_task(drain())
    await asyncio.wait_for(ws.close(), 15)
    await drained
    assert loop.time() - start < 3
    assert direct.fd == -1
    assert delivery.viewers("c1") == 0


def _open_websocket(transport: asyncio.Transport) -> tuple[DirectWebSocket, Client]:
    """A DirectWebSocket over ``transport`` and its client (it reads three things of
    uvicorn's protocol: an open WebSocket with no extension)."""
    ws_state = SimpleNamespace(state=State.OPEN, extensions=[])
    protocol = cast(WebSocketsSansIOProtocol, SimpleNamespace(close_sent=False, conn=ws_state))
    direct = DirectWebSocket(protocol, transport)
    return direct, Client(direct)


def _no_backlog(eio_sid: str) -> int:
    return 0


async def test_what_waits_in_the_transport_is_not_overtaken_from_another_room() -> None:
    # One client in two rooms, on the fast path in both. The kernel takes part of a frame
    # in the first room and the rest waits in the transport; the client then reads a
    # little (the kernel has room again) before the loop flushes the transport: the next
    # frame from the *other* room must queue behind that rest, not go straight to the
    # kernel ahead of it.
    #
    # (Buffers small enough that the kernel takes part of a frame; a receive buffer large
    # enough that reading reopens the window at once.)
    peer, transport = await tcp_pair(sndbuf=16384, rcvbuf=65536)
    direct, client = _open_websocket(transport)
    assert direct.fd >= 0
    rooms = [Room(), Room()]
    no_backlog = _no_backlog
    for room in rooms:
        member = Member("sid", "eio", client, None)
        room.add(member)
        assert room.first(member, b"0" * 100, 1, no_backlog)
        assert room.fast == 1
    try:
        big, small = b"A" * 1_000_000, b"B" * 1000
        rooms[0].deliver(big, 2, no_backlog)
        assert transport.get_write_buffer_size() > 0, "the kernel took all of it"
        assert [room.fast for room in rooms] == [0, 0]
        peer.setblocking(False)
        got = bytearray(peer.recv(1 << 20))
        assert len(got) > 200
        # The kernel has room again (its acknowledgements processed), and the loop has not
        # run: the rest still waits in the transport.
        time.sleep(0.05)
        # (Skipped, as the transport holds more than HIGH_WATER, or queued behind.)
        rooms[1].deliver(small, 3, no_backlog)
        data = await read_all(peer, got, 200 + len(big))
        at = data.find(b"B")
        assert data.startswith(b"0" * 200 + big), f"the other room's frame came at byte {at}"
        assert data[200 + len(big) :] in (b"", small)
    finally:
        client.close()
        transport.close()
        peer.close()
        direct._closed()


async def test_a_frame_the_kernel_took_in_part_is_not_written_again() -> None:
    # The kernel takes part of a frame on the fast path; the rest goes through the
    # transport and the member joins the general path, which runs for the same frame:
    # it must not write that frame a second time (the rest is under HIGH_WATER).
    peer, transport = await tcp_pair(sndbuf=16384, rcvbuf=16384)
    direct, client = _open_websocket(transport)
    room = Room()  # (one member)
    member = Member("sid", "eio", client, None)
    room.add(member)
    no_backlog = _no_backlog
    try:
        assert room.first(member, b"0" * 100, 1, no_backlog)
        assert room.fast == 1
        # Frames of 20 KB (under HIGH_WATER) until the kernel takes one in part.
        sent = [b"0" * 100]
        for i in range(200):
            frame = bytes([65 + i % 26]) * 20_000
            room.deliver(frame, 2 + i, no_backlog)
            sent.append(frame)
            if transport.get_write_buffer_size():
                break
        assert transport.get_write_buffer_size(), "the kernel took every frame whole"
        want = b"".join(sent)
        got = await read_all(peer, bytearray(), len(want))
        assert len(got) == len(want), f"{len(got) - len(want)} bytes more than sent once"
        assert got == want
    finally:
        client.close()
        transport.close()
        peer.close()
        direct._closed()
