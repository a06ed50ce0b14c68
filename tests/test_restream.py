"""MJPEG re-stream, go2rtc aliases, on-demand upstream, PATCH and camera settings."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import socketio
from PIL import Image

from camserver.config import Settings
from tests.conftest import CameraFactory, Server, start_server, wait_for
from tests.helpers.mjpeg import mjpeg_viewers, slow_reader, streaming_camera


@pytest.mark.requires("ffmpeg")
async def test_ffmpeg_decodes_the_restream(server: Server, camera: CameraFactory) -> None:
    await streaming_camera(server, camera, fps=20)
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "info",
        "-i",
        f"{server.url}/api/streams/x/mjpeg",
        "-frames:v",
        "30",
        "-f",
        "null",
        "-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Input #0, mpjpeg" in text
    assert "frame=   30" in text
    await wait_for(lambda: _viewers(server, "x", 0), 5, what="ffmpeg cleaned up")


async def _viewers(server: Server, name: str, n: int) -> bool:
    return bool((await server.status(name))["viewers"] == n)


async def test_parts_have_type_length_and_timestamp(server: Server, camera: CameraFactory) -> None:
    await streaming_camera(server, camera, fps=20)
    async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg", 1) as (v,):
        await wait_for(lambda: len(v.frames) >= 5, what="frames")
    assert v.content_type == "multipart/x-mixed-replace; boundary=camserverframe"
    t, frame = v.frames[-1]
    assert Image.open(io.BytesIO(frame.data)).size == (320, 240)
    assert frame.camera_ts is not None
    assert 0 <= t - float(frame.camera_ts) < 1.0  # the server's receive time, epoch


async def test_home_assistant_style_multipart_reader(server: Server, camera: CameraFactory) -> None:
    # Home Assistant's MJPEG camera reads the stream with aiohttp.
    await streaming_camera(server, camera, fps=20)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/api/streams/x/mjpeg") as resp,
    ):
        reader = aiohttp.MultipartReader.from_response(resp)
        for _ in range(3):
            part = await reader.next()
            assert isinstance(part, aiohttp.BodyPartReader)
            assert part.headers["Content-Type"] == "image/jpeg"
            data = await part.read()
            assert len(data) == int(part.headers["Content-Length"])
            assert data[:2] == b"\xff\xd8"


async def test_fifty_mjpeg_and_twenty_socketio_viewers_one_upstream(
    server: Server, camera: CameraFactory
) -> None:
    cam = await streaming_camera(server, camera, fps=15)
    # 70 viewers from one address: above the default cap of 50 per client and stream.
    server.state.manager.admission.max_viewers_per_client = 100
    sios = []
    got: dict[int, int] = {}
    try:
        for i in range(20):
            sio = socketio.AsyncClient(reconnection=False)
            got[i] = 0

            def on_frame(data: object, i: int = i) -> None:
                got[i] += 1

            sio.on("frame", on_frame)
            await sio.connect(server.url, transports=["websocket"])
            assert (await sio.call("join_stream", {"name": "x"}))["ok"]
            sios.append(sio)
        async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg", 50) as viewers:
            await wait_for(
                lambda: all(len(v.frames) >= 10 for v in viewers) and min(got.values()) >= 10,
                20,
                what="every viewer to get 10 frames",
            )
            st = await server.status("x")
            assert st["viewers"] == 70
        assert cam.tcp_connections == 1
        assert cam.stream_connections == 1
        assert st["upstream_connects"] == 1
    finally:
        for sio in sios:
            await sio.disconnect()


async def test_a_client_that_stops_reading_does_not_slow_another(
    server: Server, camera: CameraFactory
) -> None:
    await streaming_camera(server, camera, fps=25, framesize=12, replay=10)  # ~1.5 MB/s
    url = f"{server.url}/api/streams/x/mjpeg"
    slow = [await slow_reader(url) for _ in range(3)]
    hub = server.state.manager.hub("x")
    try:
        await wait_for(lambda: _viewers(server, "x", 3), what="three slow clients counted")
        await asyncio.sleep(3.0)  # ~4.5 MB sent: their socket buffers are full by now
        async with mjpeg_viewers(url, 1) as (fast,):
            assert hub.latest is not None
            start = hub.latest.ts
            # 40 frames newer than that (X-Timestamp is the server's receive time, one per
            # frame): the slow ones never hold the fast client back.

            def stamps() -> list[float]:
                return [float(f.camera_ts or 0) for _, f in fast.frames]

            await wait_for(lambda: sum(t > start for t in stamps()) >= 40, 20, what="40 frames")
            newer = [t for t in stamps() if t > start]
            assert newer == sorted(set(newer)), "frames out of order or repeated"
        assert (await server.status("x"))["viewers"] == 3
    finally:
        for s in slow:
            s.close()
    await wait_for(lambda: _viewers(server, "x", 0), 5, what="slow clients cleaned up")


async def test_disconnect_is_cleaned_up_at_once_and_fps_cap(
    server: Server, camera: CameraFactory
) -> None:
    await streaming_camera(server, camera, fps=20)
    async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg?fps=5", 1) as (v,):
        await wait_for(lambda: len(v.frames) >= 2, what="frames")
        assert (await server.status("x"))["viewers"] == 1
        # The camera sends 20 fps; this viewer never gets more than 5 a second.
        n0, t0 = len(v.frames), time.monotonic()
        await wait_for(lambda: len(v.frames) >= n0 + 6, 10, what="six more frames")
        await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        assert len(v.frames) - n0 <= 5 * elapsed + 1, (len(v.frames) - n0, elapsed)
    await wait_for(lambda: _viewers(server, "x", 0), 1.0, what="viewer count back to 0")
    r = await server.client.get("/api/streams/x/mjpeg", params={"fps": 0})
    assert r.status_code == 422
    assert (await server.client.get("/api/streams/nope/mjpeg")).status_code == 404


@pytest.mark.beside  # an outage of waiting: beside the suite (tests/helpers/beside.py)
async def test_mjpeg_viewers_with_a_read_timeout_survive_a_camera_outage(
    server: Server, camera: CameraFactory, settings: Settings, tmp_path: Path
) -> None:
    """Issue 19: during an outage the viewers got nothing, and readers with a read timeout
    (17 in the soak) gave up. Now the last frame comes again every few seconds, marked."""
    cam = await streaming_camera(server, camera, fps=10)
    async with AsyncExitStack() as stack:
        # The same camera through a server on uvicorn's own protocol: the per-viewer path.
        plain = await start_server(
            stack, settings.model_copy(update={"db": tmp_path / "plain.db"}), http="httptools"
        )
        cam2 = await camera("y", fps=10)  # an ESP32 serves one stream client
        await plain.add_camera("x", cam2)
        await plain.wait_state("x", "streaming")
        urls = (f"{server.url}/api/streams/x/mjpeg", f"{plain.url}/api/streams/x/mjpeg")
        async with (
            mjpeg_viewers(urls[0], 1, timeout=8) as (direct,),
            mjpeg_viewers(urls[1], 1, timeout=8) as (fallback,),
        ):
            viewers = (direct, fallback)
            await wait_for(lambda: all(len(v.frames) >= 5 for v in viewers), what="frames")
            # The cameras are gone for 18 s: more than two read timeouts.
            await asyncio.gather(cam.set_faults(refuse=True), cam2.set_faults(refuse=True))
            down = time.time()
            await asyncio.sleep(18)
            for v in viewers:
                assert v.task is not None
                assert not v.task.done(), v.task.exception()  # a ReadTimeout before issue 19
                during = [(t, f) for t, f in v.frames if t > down + 1]
                assert len(during) >= 2, len(during)
                assert all(f.resent for _, f in during)
                gaps = [b[0] - a[0] for a, b in itertools.pairwise(during)]
                assert max(gaps, default=0) < 7, gaps  # every KEEPALIVE (5 s) or so
            await asyncio.gather(cam.set_faults(refuse=False), cam2.set_faults(refuse=False))
            back = len(direct.frames), len(fallback.frames)
            await wait_for(
                lambda: all(
                    sum(not f.resent for _, f in v.frames[n:]) >= 5
                    for v, n in zip(viewers, back, strict=True)
                ),
                30,
                what="live frames again on the same connections",
            )
        metrics = (await server.client.get("/metrics")).text
        assert re.search(r'camserver_mjpeg_frames_total\{outcome="resent"\} [1-9]', metrics)


async def test_deleting_a_stream_ends_its_mjpeg_viewers(
    server: Server, camera: CameraFactory
) -> None:
    cam = await streaming_camera(server, camera, fps=20)
    async with mjpeg_viewers(f"{server.url}/api/streams/x/mjpeg", 3) as viewers:
        await wait_for(lambda: all(v.frames for v in viewers), what="frames for all three")
        r = await server.client.delete("/api/streams/x")
        assert r.status_code == 204
        # Each response ends cleanly (the client sees the end of the body, no error).
        tasks = [v.task for v in viewers if v.task is not None]
        done, _ = await asyncio.wait(tasks, timeout=10)
        assert len(done) == 3
        assert all(t.exception() is None for t in done)
    await wait_for(lambda: cam.active_streams == 0, what="the camera let go")
    assert (await server.client.get("/api/streams/x/mjpeg")).status_code == 404
    assert "x" not in server.state.manager


async def test_go2rtc_aliases(server: Server, camera: CameraFactory) -> None:
    await streaming_camera(server, camera, fps=20)
    r = await server.client.get("/api/frame.jpeg", params={"src": "x"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8"
    async with mjpeg_viewers(f"{server.url}/api/stream.mjpeg?src=x", 1) as (v,):
        await wait_for(lambda: len(v.frames) >= 3, what="frames from the alias")
    assert (await server.client.get("/api/frame.jpeg", params={"src": "nope"})).status_code == 404
    assert (await server.client.get("/api/stream.mjpeg")).status_code == 422


async def test_on_demand_connects_for_viewers_and_leaves_after_grace(
    settings: Settings, camera: CameraFactory
) -> None:
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"on_demand_grace": 1.5}))
        cam = await camera("od", fps=20)
        await server.add_camera("od", cam, on_demand=True)
        await server.wait_state("od", "idle")
        await asyncio.sleep(0.5)
        assert cam.tcp_connections == 0  # nobody watches: the camera is left alone

        url = f"{server.url}/api/streams/od/mjpeg"
        async with mjpeg_viewers(url, 1) as (v,):
            await wait_for(lambda: len(v.frames) >= 1, 10, what="first frame")
            assert cam.active_streams == 1
        await asyncio.sleep(0.5)
        assert cam.active_streams == 1  # within the grace period
        await server.wait_state("od", "idle", timeout=10)
        await wait_for(lambda: cam.active_streams == 0, 5, what="camera disconnected")

        # A viewer returning within the grace period keeps the one connection.
        async with mjpeg_viewers(url, 1) as (v,):
            await wait_for(lambda: len(v.frames) >= 1, 10, what="frame")
        async with mjpeg_viewers(url, 1) as (v,):
            await wait_for(lambda: len(v.frames) >= 1, 10, what="frame")
        assert cam.stream_connections == 2

        # Socket.IO viewers and snapshots wake it too.
        await server.wait_state("od", "idle", timeout=10)
        r = await server.client.get("/api/streams/od/snapshot")
        assert r.status_code == 200
        assert cam.stream_connections == 3
        await server.wait_state("od", "idle", timeout=10)
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.url, transports=["websocket"])
        assert (await sio.call("join_stream", {"name": "od"}))["ok"]
        await server.wait_state("od", "streaming", timeout=10)
        await sio.disconnect()
        await server.wait_state("od", "idle", timeout=10)


async def test_patch(server: Server, camera: CameraFactory) -> None:
    cam1 = await streaming_camera(server, camera, "x", fps=15)
    cam2 = await camera("other", fps=15)
    r = await server.client.patch("/api/streams/x", json={"host": cam2.address})
    assert r.status_code == 200, r.text
    assert r.json()["stream_url"] == f"http://127.0.0.1:{cam2.stream_port}/stream"
    await server.wait_state("x", "streaming")
    await wait_for(lambda: cam2.active_streams == 1, what="new camera connected")
    assert cam1.active_streams == 0  # the old connection was closed cleanly

    r = await server.client.patch("/api/streams/x", json={"enabled": False})
    assert r.json()["status"]["state"] == "stopped"
    r = await server.client.patch("/api/streams/x", json={"enabled": True, "on_demand": True})
    assert r.json()["on_demand"] is True
    await server.wait_state("x", "idle")
    r = await server.client.patch(
        "/api/streams/x", json={"stream_url": f"http://127.0.0.1:{cam1.stream_port}/stream"}
    )
    assert r.json()["host"] is None
    assert r.json()["snapshot_url"] is None

    assert (await server.client.patch("/api/streams/x", json={"host": "a b"})).status_code == 422
    r = await server.client.patch(
        "/api/streams/x", json={"host": "1.2.3.4", "stream_url": "http://x/"}
    )
    assert r.status_code == 422
    assert (await server.client.patch("/api/streams/x", json={"bogus": 1})).status_code == 422
    assert (await server.client.patch("/api/streams/nope", json={})).status_code == 404


async def test_camera_settings_passthrough(server: Server, camera: CameraFactory) -> None:
    cam = await streaming_camera(server, camera, "x", fps=20, framesize=10)
    r = await server.client.get("/api/streams/x/settings")
    assert r.status_code == 200
    assert r.json()["framesize"] == 10

    r = await server.client.put("/api/streams/x/settings", json={"framesize": 6, "quality": 30})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ok": True,
        "results": {
            "framesize": {"ok": True, "error": None},
            "quality": {"ok": True, "error": None},
        },
    }
    assert cam.settings["framesize"] == 6

    async def small_frames() -> bool:
        snap = (await server.client.get("/api/streams/x/snapshot")).content
        return Image.open(io.BytesIO(snap)).size == (320, 240)

    await wait_for(small_frames, 5, what="frames at QVGA")

    r = await server.client.put("/api/streams/x/settings", json={"quality": 99, "framesize": 6})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "quality", "message": "must be from 4 to 63"}]
    r = await server.client.put("/api/streams/x/settings", json={"nope": 1})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "nope"
    assert (await server.client.put("/api/streams/x/settings", json={})).status_code == 422
    r = await server.client.put("/api/streams/x/settings", json={"quality": "10"})
    assert r.status_code == 422

    await server.client.post(
        "/api/streams",
        json={"name": "byurl", "stream_url": "http://127.0.0.1:9/s", "enabled": False},
    )
    r = await server.client.get("/api/streams/byurl/settings")
    assert r.status_code == 409
    assert "added by URL" in r.json()["detail"]
    assert (
        await server.client.put("/api/streams/byurl/settings", json={"quality": 10})
    ).status_code == 409

    await cam.stop()
    r = await server.client.get("/api/streams/x/settings")
    assert r.status_code == 502
    assert "cannot reach" in r.json()["detail"]
    assert "connection refused" in r.json()["detail"]
    r = await server.client.put("/api/streams/x/settings", json={"quality": 10})
    assert r.status_code == 200
    assert r.json()["ok"] is False
    assert "unreachable" in r.json()["results"]["quality"]["error"]
