"""MJPEG viewers served in one pass per frame (``camserver.live.mjpeg``): the raw
wire format, slow and stalled viewers, viewers that leave mid-frame, metrics, and the
fallback under an ASGI server that offers no direct socket."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
from contextlib import AsyncExitStack

import pytest
import uvloop

from camserver.codecs.mjpeg import NEED_DATA, Frame, MJPEGParser
from camserver.config import Settings
from camserver.connections import UNSENT_LIMIT
from camserver.live.counters import counters
from camserver.live.mjpeg import HIGH_WATER, MJPEGFanout, Viewer, encode_part
from camserver.streaming.hub import HubFrame, LocalHub
from tests.conftest import CameraFactory, Server, start_server, wait_for
from tests.helpers.kernel import read_all, tcp_pair, unsent_in_kernel
from tests.helpers.mjpeg import mjpeg_viewers, slow_reader, streaming_camera


async def raw_get(server: Server, path: str, version: str) -> tuple[socket.socket, bytes, bytes]:
    """A GET over a plain socket: (socket, response head, what followed it)."""
    loop = asyncio.get_running_loop()
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, int(port)))
    await loop.sock_sendall(sock, f"GET {path} HTTP/{version}\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, f"closed before the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head, rest


async def read_frames(sock: socket.socket, parser: MJPEGParser, rest: bytes, n: int) -> list[Frame]:
    loop = asyncio.get_running_loop()
    frames: list[Frame] = []
    parser.receive_data(rest)
    while True:
        while (e := parser.next_event()) is not NEED_DATA:
            assert isinstance(e, Frame), e
            frames.append(e)
        if len(frames) >= n:
            return frames
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, "the response ended"
        parser.receive_data(chunk)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_parts_go_out_raw_without_chunked_framing(
    server: Server, camera: CameraFactory, version: str
) -> None:
    # HTTP/1.0 allows no chunked encoding at all; uvicorn used it anyway.
    await streaming_camera(server, camera, fps=20)
    sock, head, rest = await raw_get(server, "/api/streams/x/mjpeg", version)
    try:
        lines = head.decode().lower().split("\r\n")
        assert lines[0].endswith("200 ok"), lines[0]
        assert not any(line.startswith("transfer-encoding") for line in lines), lines
        assert "connection: close" in lines
        assert "cache-control: no-store" in lines
        assert "x-content-type-options: nosniff" in lines  # the middleware still sees it
        fields = dict(line.partition(":")[::2] for line in lines[1:])
        ctype = fields["content-type"].strip()
        assert ctype.startswith("multipart/x-mixed-replace")
        parser = MJPEGParser.from_content_type(ctype)
        frames = await read_frames(sock, parser, rest, 3)
        assert all(f.data[:2] == b"\xff\xd8" and f.data[-2:] == b"\xff\xd9" for f in frames)
        stamps = [float(f.camera_ts or 0) for f in frames]
        assert stamps == sorted(set(stamps))
    finally:
        sock.close()


async def test_a_stalled_viewer_skips_frames_and_holds_at_most_one_part(
    server: Server, camera: CameraFactory
) -> None:
    await streaming_camera(server, camera, fps=25, framesize=12, replay=10)  # ~60 KB frames
    url = f"{server.url}/api/streams/x/mjpeg"
    hub = server.state.manager.hub("x")
    skipped = counters.mjpeg.skipped_slow
    stalled = [await slow_reader(url) for _ in range(2)]
    try:
        await wait_for(lambda: hub.viewers == 2, what="two stalled viewers counted")
        await wait_for(
            lambda: counters.mjpeg.skipped_slow > skipped + 20, 20, what="frames skipped"
        )
        out = MJPEGFanout._active[id(hub)]
        assert out.viewers == 2
        assert hub.latest is not None
        part = 2 * len(hub.latest.data) + 200  # (frames of the replay vary in size)
        for viewer in out.members():
            # Never more than the high-water mark plus the one part written under it.
            assert viewer.transport.get_write_buffer_size() <= HIGH_WATER + part
            # Nor in the kernel: at most UNSENT_LIMIT not yet sent, plus the write that
            # crossed it (Linux alone held up to 4 MB: 158 VGA frames behind).
            assert unsent_in_kernel(viewer.fd) <= UNSENT_LIMIT + part
        r = await server.client.get("/metrics")
        assert 'camserver_mjpeg_frames_total{outcome="slow"}' in r.text
        async with mjpeg_viewers(url, 1) as (fast,):
            # The stalled ones cost the fast one nothing: it gets every frame in order.
            await wait_for(lambda: len(fast.frames) >= 30, 20, what="30 frames")
            stamps = [float(f.camera_ts or 0) for _, f in fast.frames]
            assert stamps == sorted(set(stamps))
            steps = [b - a for a, b in itertools.pairwise(stamps)]
            assert max(steps) < 0.5, "the fast viewer skipped frames"
    finally:
        for s in stalled:
            s.close()
    await wait_for(lambda: hub.viewers == 0, 10, what="stalled viewers cleaned up")
    assert id(hub) not in MJPEGFanout._active


async def test_a_slow_reader_gets_only_whole_parts_in_order(
    server: Server, camera: CameraFactory
) -> None:
    # A part goes to the socket directly and what the kernel does not take goes through
    # the transport: a reader slower than the camera must still see whole parts, in order.
    await streaming_camera(server, camera, fps=25, framesize=12, replay=10)  # ~60 KB frames
    skipped = counters.mjpeg.skipped_slow
    hub = server.state.manager.hub("x")
    sock, head, rest = await raw_get(server, "/api/streams/x/mjpeg", "1.1")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    # Small kernel buffers on both sides, so that the kernel takes parts in pieces at once.
    await wait_for(lambda: id(hub) in MJPEGFanout._active, what="the viewer served")
    for viewer in MJPEGFanout._active[id(hub)].members():
        viewer.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 16384
        )
    loop = asyncio.get_running_loop()
    ctype = next(
        line.split(":", 1)[1].strip()
        for line in head.decode().split("\r\n")
        if line.lower().startswith("content-type:")
    )
    parser = MJPEGParser.from_content_type(ctype)
    parser.receive_data(rest)
    frames: list[Frame] = []
    try:
        deadline = loop.time() + 4
        while loop.time() < deadline:  # ~400 KB/s: a quarter of what the camera sends
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 8192), 10)
            assert chunk, "the response ended"
            parser.receive_data(chunk)
            while (e := parser.next_event()) is not NEED_DATA:
                assert isinstance(e, Frame), e
                frames.append(e)
            await asyncio.sleep(0.02)
    finally:
        sock.close()
    assert len(frames) >= 5, len(frames)
    assert all(f.data[:2] == b"\xff\xd8" and f.data[-2:] == b"\xff\xd9" for f in frames)
    stamps = [float(f.camera_ts or 0) for f in frames]
    assert stamps == sorted(set(stamps)), "parts out of order or repeated"
    assert counters.mjpeg.skipped_slow > skipped, "the slow reader skipped nothing"


async def test_a_cut_viewer_gets_nothing_more_at_once(
    server: Server, camera: CameraFactory
) -> None:
    # A viewer writes through its own duplicate of the socket, which would keep the
    # connection open after the transport closed: cutting it (a revoked token) shuts the
    # socket itself down, so nothing more goes out, not even before its task ends.
    await streaming_camera(server, camera, fps=20)
    hub = server.state.manager.hub("x")
    sock, _, _ = await raw_get(server, "/api/streams/x/mjpeg", "1.1")
    try:
        await wait_for(lambda: id(hub) in MJPEGFanout._active, what="the viewer served")
        (viewer,) = MJPEGFanout._active[id(hub)].members()
        await wait_for(lambda: viewer.fd >= 0, what="its own descriptor")
        fd = viewer.fd
        viewer.cut()
        with pytest.raises(BrokenPipeError):
            os.write(fd, b"--more")
        loop = asyncio.get_running_loop()
        while await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            pass  # what was sent before the cut, then the end
        await wait_for(lambda: hub.viewers == 0, 5, what="the viewer gone")
    finally:
        sock.close()


async def test_a_viewer_that_leaves_mid_frame(
    server: Server, camera: CameraFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await streaming_camera(server, camera, fps=20)
    hub = server.state.manager.hub("x")
    caplog.set_level(logging.WARNING)
    async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg", 1) as (other,):
        for _ in range(3):
            sock, _, rest = await raw_get(server, "/api/streams/x/mjpeg", "1.1")
            # Part of a frame, then a reset (SO_LINGER 0) in the middle of the next.
            assert rest or await asyncio.get_running_loop().sock_recv(sock, 1000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        await wait_for(lambda: hub.viewers == 1, 5, what="the three gone at once")
        n = len(other.frames)
        await wait_for(lambda: len(other.frames) >= n + 10, 10, what="the other viewer going on")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_fps_cap_and_stream_deletion_on_the_direct_path(
    server: Server, camera: CameraFactory
) -> None:
    await streaming_camera(server, camera, fps=20)
    rate = counters.mjpeg.skipped_rate
    async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg?fps=4", 1) as (v,):
        await wait_for(lambda: len(v.frames) >= 9, 10, what="nine frames at 4 fps")
        stamps = [float(f.camera_ts or 0) for _, f in v.frames]
        span = stamps[-1] - stamps[1]
        assert len(stamps) - 2 <= 4 * span + 1, (len(stamps), span)
        assert counters.mjpeg.skipped_rate > rate
        assert (await server.client.delete("/api/streams/x")).status_code == 204
        assert v.task is not None
        await asyncio.wait_for(v.task, 10)  # ended cleanly: no exception


async def test_other_asgi_servers_get_the_per_viewer_fallback(
    settings: Settings, camera: CameraFactory
) -> None:
    # uvicorn's h11 protocol offers no direct socket: the response streams as before.
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings, http="h11")
        await streaming_camera(server, camera, fps=20)
        async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg", 2) as viewers:
            await wait_for(lambda: all(len(v.frames) >= 5 for v in viewers), 10, what="frames")
            assert server.state.manager.hub("x").viewers == 2
            assert id(server.state.manager.hub("x")) not in MJPEGFanout._active


async def test_a_burst_of_viewers_from_one_client_stays_under_its_cap(
    server: Server, camera: CameraFactory
) -> None:
    # Each request is admitted (checked against the cap) and counted with no await in
    # between: eight at once from one address must not all pass a cap of three.
    await streaming_camera(server, camera, fps=20)
    server.state.manager.admission.max_viewers_per_client = 3
    got = await asyncio.gather(*(raw_get(server, "/api/streams/x/mjpeg", "1.1") for _ in range(8)))
    try:
        codes = sorted(head.split(b" ", 2)[1] for _, head, _ in got)
        assert codes == [b"200"] * 3 + [b"503"] * 5, codes
        assert server.state.manager.hub("x").viewers == 3
    finally:
        for sock, _, _ in got:
            sock.close()


async def test_each_loop_is_the_one_named(request: pytest.FixtureRequest) -> None:
    # (the hook in this folder's conftest.py is what runs every test here under both)
    named = request.node.name.rpartition("[")[2].rstrip("]")
    assert named in ("asyncio", "uvloop"), request.node.name
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop) == (named == "uvloop")


async def test_a_part_the_kernel_took_in_part_is_not_written_again() -> None:
    # The kernel takes part of a part on the fast path; the rest goes through the
    # transport and the viewer joins the general path, which runs for the same frame: it
    # must not write that part a second time (the rest is under HIGH_WATER).
    peer, transport = await tcp_pair(sndbuf=16384, rcvbuf=16384)
    fanout = MJPEGFanout(LocalHub("x"))
    viewer = Viewer(transport, None)
    serving = asyncio.create_task(fanout.serve(viewer))
    try:
        await wait_for(lambda: viewer.fd >= 0, what="the viewer served")
        # Parts of ~20 KB (under HIGH_WATER) until the kernel takes one in part.
        frames = []
        for i in range(200):
            frame = HubFrame(seq=i + 1, ts=1e9 + i, data=bytes([65 + i % 26]) * 20_000)
            fanout.deliver(frame)
            frames.append(frame)
            if transport.get_write_buffer_size():
                break
        assert transport.get_write_buffer_size(), "the kernel took every part whole"
        want = b"".join(encode_part(f) for f in frames)
        got = await read_all(peer, bytearray(), len(want))
        assert len(got) == len(want), f"{len(got) - len(want)} bytes more than sent once"
        assert got == want
    finally:
        viewer.finish()
        await serving
        transport.close()
        peer.close()
