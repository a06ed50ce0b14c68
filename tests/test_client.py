"""camserver.client against a real server: every method, with and without tokens, the
errors it maps, live frames (Socket.IO and MJPEG, reconnecting) and ``camserver watch``."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from PIL import Image

from camserver.client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    Frame,
    Invalid,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from camserver.client.errors import APIError
from camserver.config import Settings
from tests.conftest import CameraFactory, Server, free_port, start_server, wait_for
from tests.helpers.auth import ADMIN, VIEW

Call = Callable[..., Any]


def _asynchronous(client: AsyncClient) -> Call:
    async def call(method: str, *args: Any, **kw: Any) -> Any:
        return await getattr(client, method)(*args, **kw)

    return call


def _blocking(client: Client) -> Call:
    # The server runs on this test's event loop: a blocking call runs in a thread.
    async def call(method: str, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(getattr(client, method), *args, **kw)

    return call


async def _take(frames: AsyncIterator[Frame], n: int) -> list[Frame]:
    got = []
    async for frame in frames:
        got.append(frame)
        if len(got) == n:
            break
    await frames.aclose()  # type: ignore[attr-defined]
    return got


def _take_blocking(client: Client, how: str, name: str, n: int, **kw: Any) -> list[Frame]:
    got = []
    for frame in getattr(client, how)(name, **kw):
        got.append(frame)
        if len(got) == n:
            break
    return got


async def _frames(client: AsyncClient | Client, how: str, name: str, n: int, **kw: Any) -> Any:
    if isinstance(client, Client):
        return await asyncio.to_thread(_take_blocking, client, how, name, n, **kw)
    return await asyncio.wait_for(_take(getattr(client, how)(name, **kw), n), 20)


async def _raises(kind: type[APIError], call: Any, message: str = "") -> APIError:
    with pytest.raises(kind) as info:
        await call
    assert message in str(info.value), str(info.value)
    return info.value


async def _every_method(
    server: Server, camera: CameraFactory, client: AsyncClient | Client, call: Call
) -> None:
    """The whole API through ``call``: once asynchronous, once blocking."""
    port = server.settings.discovery_port
    cam = await camera("c1", fps=10, scene={}, discovery_port=port)
    assert (await call("health")).status == "ok"
    assert await call("streams") == []
    made = await call(
        "create_stream",
        "c1",
        host=cam.address,
        recording={"mode": "continuous"},
        motion={"enabled": True, "cooldown": 1.0},
    )
    assert made.status.state == "connecting"
    await _raises(Conflict, call("create_stream", "c1", host=cam.address), "already exists")
    bad = await _raises(Invalid, call("create_stream", "no spaces!", host=cam.address))
    assert bad.status == 422
    assert bad.errors
    assert bad.errors[0]["field"].endswith("name")
    assert (await call("stream", "c1")).name == "c1"
    assert [s.name for s in await call("streams")] == ["c1"]
    await wait_for(
        lambda: _state(call, "c1", "streaming"), 15, what="c1 streaming through the client"
    )
    jpeg = await call("snapshot", "c1")
    assert jpeg[:2] == b"\xff\xd8"
    # The ESP32's own settings, through the server to the simulator.
    assert "framesize" in await call("camera_settings", "c1")
    changed = await call("set_camera_settings", "c1", quality=20)
    assert changed.ok
    assert (await call("camera_settings", "c1"))["quality"] == 20
    await _raises(Invalid, call("set_camera_settings", "c1", quality=999), "quality")
    patched = await call("update_stream", "c1", motion={"min_frames": 2})
    assert patched.motion.min_frames == 2
    assert patched.motion.enabled  # fields left out kept
    await _raises(NotFound, call("status", "nope"), "no stream named 'nope'")

    # Live frames: Socket.IO and MJPEG, newest first, decoded.
    frames = await _frames(client, "frames", "c1", 5)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert all(f.data[:2] == b"\xff\xd8" and f.name == "c1" for f in frames)
    assert all(0 <= f.latency < 2 for f in frames), [f.latency for f in frames]
    picture = frames[-1].to_numpy()
    width, height = frames[-1].to_pil().size
    assert picture.shape == (height, width, 3)
    assert (frames[-1].to_numpy(bgr=True)[:, :, ::-1] == picture).all()
    t0 = time.monotonic()
    await _frames(client, "frames", "c1", 4, fps=2)
    assert time.monotonic() - t0 >= 1.4  # 2 a second: 1.5 s for four
    mjpeg = await _frames(client, "mjpeg", "c1", 3, fps=5)
    assert all(f.data[:2] == b"\xff\xd8" and not f.resent for f in mjpeg)
    assert all(abs(f.ts - time.time()) < 5 for f in mjpeg)  # the server's X-Timestamp
    await _raises(NotFound, _frames(client, "frames", "nope", 1), "nope")
    await _raises(NotFound, _frames(client, "mjpeg", "nope", 1), "nope")

    # Discovery: the simulated camera answers a probe on loopback.
    found = await call("scan", timeout=0.5)
    assert [c.name for c in found] == ["c1"]
    assert found[0].stream == "c1"  # already read by stream c1
    assert [c.name for c in await call("discovered")] == ["c1"]
    await _raises(Invalid, call("scan", interface="nope0"), "nope0")
    await _raises(Conflict, call("add_discovered", "c1", name="c1"))
    added = await call("add_discovered", "c1", name="c1-again")
    assert added.name == "c1-again"
    await call("delete_stream", "c1-again")
    await _raises(NotFound, call("add_discovered", "ghost"))

    # Recordings (continuous): list, one, its file, a frame at a time, a clip.
    await wait_for(lambda: _has(call("recordings", "c1")), 15, what="a recording segment")
    seg = (await call("recordings", "c1"))[0]
    assert (await call("recording", seg.id)).stream == "c1"
    assert (await call("recording_file", seg.id))[:4] == b"\x1a\x45\xdf\xa3"  # Matroska
    await asyncio.sleep(1.5)
    now = time.time()
    assert (await call("recorded_frame", "c1", now - 0.5))[:2] == b"\xff\xd8"
    mp4 = await call("clip", "c1", seg.start, min(now - 0.2, seg.start + 2))
    assert mp4[4:8] == b"ftyp"
    await _raises(Conflict, call("delete_recording", seg.id), "being written")
    await _raises(Conflict, call("mark_event", "c1"), "events")
    await call("update_stream", "c1", recording={"mode": "events"})
    window = await call("mark_event", "c1", seconds=2)
    assert window.stream == "c1"
    assert window.start < time.time() < window.end
    await _raises(NotFound, call("recording", 987654))
    await _raises(Invalid, call("recordings", "c1", start="not a time"), "start")

    # Motion: an object crosses; one event with a snapshot.
    cam.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})
    await wait_for(lambda: _has(call("events", stream="c1")), 20, what="a motion event")
    event = (await call("events", stream="c1"))[0]
    assert (await call("event", event.id)).stream == "c1"
    assert (await call("event_snapshot", event.id))[:2] == b"\xff\xd8"
    cam.set_scene({"moving_object": False})

    # Stop, start, and what only a stopped camera allows.
    assert (await call("stop", "c1")).state == "stopped"
    assert (await call("start", "c1")).state == "connecting"
    await call("update_stream", "c1", recording={"mode": "off"})
    await wait_for(
        lambda: _closed(call("recording", seg.id)), 10, what="the segment closed (mode off)"
    )
    await call("delete_recording", seg.id)
    await _raises(NotFound, call("recording", seg.id))
    await wait_for(lambda: _ended(call("event", event.id)), 15, what="the event's end")
    await call("delete_event", event.id)
    await _raises(NotFound, call("event", event.id))
    await call("delete_stream", "c1")
    await _raises(NotFound, call("stream", "c1"))


async def _state(call: Call, name: str, state: str) -> bool:
    return bool((await call("status", name)).state == state)


async def _has(rows: Any) -> bool:
    return bool(await rows)


async def _closed(row: Any) -> bool:
    return bool((await row).closed)


async def _ended(row: Any) -> bool:
    return (await row).end is not None


async def test_every_method_of_the_async_client_without_a_token(
    server: Server, camera: CameraFactory
) -> None:
    async with AsyncClient(server.url) as client:
        await _every_method(server, camera, client, _asynchronous(client))
    with pytest.raises(ServerUnreachable):  # nobody listens there
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody:
            await nobody.health()


async def test_every_method_of_the_blocking_client_with_tokens(
    locked: Server, camera: CameraFactory
) -> None:
    client = await asyncio.to_thread(Client, locked.url, token=ADMIN)
    try:
        await _every_method(locked, camera, client, _blocking(client))
    finally:
        await asyncio.to_thread(client.close)
    cam = await camera("c2", fps=10)
    async with AsyncClient(locked.url, token=ADMIN) as admin:
        await admin.create_stream("c2", host=cam.address)
    async with AsyncClient(locked.url, token=VIEW) as viewer:
        assert [s.name for s in await viewer.streams()] == ["c2"]
        await _raises(Forbidden, viewer.create_stream("c3", host=cam.address), "read-only")
        assert len(await _frames(viewer, "frames", "c2", 2)) == 2  # the view token watches
    for token in (None, "wrong-token-123456"):
        async with AsyncClient(locked.url, token=token) as stranger:
            await _raises(Unauthorized, stranger.streams(), "token")
            await _raises(Unauthorized, _frames(stranger, "frames", "c2", 1), "token")
            await _raises(Unauthorized, _frames(stranger, "mjpeg", "c2", 1), "token")
    # $CAMSERVER_URL and $CAMSERVER_TOKEN are the defaults.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CAMSERVER_URL", locked.url)
        env.setenv("CAMSERVER_TOKEN", VIEW)
        async with AsyncClient() as from_env:
            assert (await from_env.status("c2")).state in ("connecting", "streaming")


async def test_live_frames_resume_after_the_server_restarts(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10)
    port = free_port()
    got: list[Frame] = []
    async with AsyncExitStack() as first:
        server = await start_server(first, settings, port=port)
        await server.add_camera("c1", cam)
        client = AsyncClient(server.url)
        sio, mjpeg = client.frames("c1"), client.mjpeg("c1")

        async def collect(frames: AsyncIterator[Frame]) -> None:
            async for frame in frames:
                got.append(frame)

        readers = [asyncio.create_task(collect(sio)), asyncio.create_task(collect(mjpeg))]
        await wait_for(lambda: len(got) >= 10, 15, what="frames before the restart")
    stopped = time.time()
    await asyncio.sleep(1)
    assert not any(r.done() for r in readers), [r.exception() for r in readers if r.done()]
    async with AsyncExitStack() as second:
        await start_server(second, settings, port=port)  # the same database: c1 again
        await wait_for(
            lambda: sum(f.ts > stopped for f in got) >= 10, 30, what="frames after the restart"
        )
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await client.aclose()
    assert not any(f.resent for f in got)


async def test_frames_end_with_not_found_when_the_stream_is_deleted(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10)
    await server.add_camera("c1", cam)
    async with AsyncClient(server.url) as client:
        frames = client.frames("c1")
        await anext(frames)
        await client.delete_stream("c1")

        async def drain() -> None:
            async for _ in frames:
                pass

        with pytest.raises(NotFound, match="deleted"):
            await asyncio.wait_for(drain(), 10)


async def _watch(url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "camserver",
        "watch",
        *args,
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_camserver_watch_prints_rate_and_latency(
    locked: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10)
    await locked.client.post(
        "/api/streams",
        json={"name": "c1", "host": cam.address},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    # (The four watchers run at once: each is a process of its own.)
    *watched, nope, tokenless = await asyncio.gather(
        *(
            _watch(locked.url, "c1", "--token", VIEW, "--seconds", "3.5", *extra)
            for extra in ((), ("--mjpeg",))
        ),
        _watch(locked.url, "nope", "--token", VIEW, "--seconds", "3"),
        _watch(locked.url, "c1", "--seconds", "3"),
    )
    for code, out, err in watched:
        assert code == 0, err
        lines = re.findall(r"^c1: +([\d.]+) fps  latency (\d+) ms \(max (\d+)\)", out, re.M)
        assert len(lines) >= 2, out
        # The camera sends 10 a second; the first second may include the connection.
        assert max(float(fps) for fps, _, _ in lines) >= 6, out
        assert all(int(median) < 1000 for _, median, _ in lines), out
    code, out, err = nope
    assert code == 1
    assert "no stream named 'nope'" in err
    code, out, err = tokenless
    assert code == 1
    assert "token" in err


def test_frame_decodes_to_pillow_and_numpy() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (250, 10, 10)).save(buf, "JPEG", quality=95)
    frame = Frame("x", 1, time.time() - 0.25, buf.getvalue(), time.time())
    assert 0.2 < frame.latency < 1
    rgb, bgr = frame.to_numpy(), frame.to_numpy(bgr=True)
    assert rgb.shape == (6, 8, 3)
    assert rgb[0, 0, 0] > 200 > rgb[0, 0, 2]
    assert bgr[0, 0, 2] > 200 > bgr[0, 0, 0]


def test_the_blocking_client_has_every_method_of_the_async_one() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))}

    assert public(AsyncClient) - {"aclose"} == public(Client) - {"close"}
    assert Client.snapshot.__doc__ == AsyncClient.snapshot.__doc__


BREAK_OUT = """
import asyncio, sys, time
from camserver.client import AsyncClient, Client

async def main(url):
    async with AsyncClient(url) as client:
        async for frame in client.frames("c1"):
            break
        held = client.frames("c1")  # kept: nothing collects it
        async for frame in held:
            break
        async for frame in client.mjpeg("c1"):
            break
    print("closed", flush=True)
    await asyncio.sleep(4)  # still running: closing the client must have released it all

asyncio.run(main(sys.argv[1]))
with Client(sys.argv[1]) as client:
    for frame in client.frames("c1"):
        break
    for frame in client.mjpeg("c1"):
        break
print("blocking done")
"""


async def test_breaking_out_of_live_frames_leaves_nothing_open(
    server: Server, camera: CameraFactory
) -> None:
    """Issue 26: ``async for f in client.frames("x"): break`` inside ``async with
    AsyncClient(...)`` left python-socketio's aiohttp session open ("Unclosed client
    session" at exit): closing the client now ends every live iterator it handed out.
    Run as a user would, warnings as errors and asyncio's debug mode."""
    cam = await camera("c1", fps=10)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-W",
        "error",
        "-c",
        BREAK_OUT,
        server.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line == b"closed\n"
    sockets = server.state.realtime.sockets
    await wait_for(lambda: sockets.count() == 0, 2, what="no Socket.IO client left open")
    rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert rest.decode().split() == ["blocking", "done"]
    assert "Unclosed" not in err.decode(), err.decode()
    assert "Warning" not in err.decode(), err.decode()
