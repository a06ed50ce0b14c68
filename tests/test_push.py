"""Push cameras against a real server (issue 28): the three ways in, the key, the states,
pausing, and what the simulator does with the answers."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

import websockets

from camserver.sim.camera import SimCamera
from camserver.sim.frames import read_send_time
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.mjpeg import mjpeg_viewers
from tests.helpers.push import bearer, closed_with, create_push, sim_process, sim_stats
from tests.helpers.socketio import Viewer


async def test_a_push_stream_shows_its_key_once_and_never_again(
    server: Server, camera: CameraFactory
) -> None:
    created = await create_push(server, "garage", expect_every=60)
    push = created["push"]
    key = push["key"]
    port = server.url.rsplit(":", 1)[1]
    assert push["ws_url"] == f"ws://127.0.0.1:{port}/api/streams/garage/push"
    assert push["frame_url"] == f"http://127.0.0.1:{port}/api/streams/garage/frame"
    assert push["mjpeg_url"] == f"http://127.0.0.1:{port}/api/streams/garage/push.mjpeg"
    assert created["source"] == "push"
    assert created["expect_every"] == 60
    assert created["status"]["state"] in ("connecting", "waiting")
    await server.wait_state("garage", "waiting")
    for path in ("/api/streams", "/api/streams/garage", "/api/streams/garage/status"):
        text = (await server.client.get(path)).text
        assert key not in text
        assert "push_key" not in text
    # Push streams take no pull settings; pulled ones take no interval.
    for body in (
        {"name": "x", "source": "push", "host": "10.0.0.9"},
        {"name": "x", "source": "push", "stream_url": "http://10.0.0.9/"},
        {"name": "x", "host": "10.0.0.9", "expect_every": 5},
        {"name": "x", "source": "push", "expect_every": 0},
        {"name": "x", "source": "rtsp"},
    ):
        r = await server.client.post("/api/streams", json=body)
        assert r.status_code == 422, (body, r.text)
    r = await server.client.patch("/api/streams/garage", json={"host": "10.0.0.9"})
    assert r.status_code == 409
    assert "push camera" in r.json()["detail"]
    r = await server.client.patch("/api/streams/garage", json={"expect_every": 0})
    assert r.status_code == 200
    assert r.json()["expect_every"] is None
    # A new key: shown once; the old one stops working.
    r = await server.client.post("/api/streams/garage/push/key")
    assert r.status_code == 200
    new = r.json()["key"]
    assert new != key
    jpeg = SimCamera("k").render()
    headers = {"Content-Type": "image/jpeg"}
    r = await server.client.post(
        "/api/streams/garage/frame", content=jpeg, headers={**headers, **bearer(key)}
    )
    assert r.status_code == 401
    r = await server.client.post(
        f"/api/streams/garage/frame?key={new}", content=jpeg, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"next_in": None, "set": {}, "pause": False}
    # A pulled camera has no key to make, and takes no pushes.
    await server.add_camera("pulled", await camera("pulled"))
    r = await server.client.post("/api/streams/pulled/push/key")
    assert r.status_code == 409
    r = await server.client.post(
        f"/api/streams/pulled/frame?key={new}", content=jpeg, headers=headers
    )
    assert r.status_code == 401


async def test_a_websocket_pusher_feeds_every_viewer_at_its_rate(server: Server) -> None:
    """Must show 1: the simulator (a real process) at 15 fps VGA over a WebSocket;
    Socket.IO, MJPEG and snapshot viewers get every frame at the camera's rate; the
    latency from the camera's send to a viewer is measured."""
    push = (await create_push(server, "yard"))["push"]
    args = ("--push", push["ws_url"], "--key", push["key"], "--fps", "15", "--framesize", "VGA")
    async with sim_process(*args, "--embed-time") as sim:
        await server.wait_state("yard", "streaming", 20)
        viewer = Viewer()
        await viewer.sio.connect(server.url, transports=["websocket"])
        try:
            assert (await viewer.join("yard"))["ok"]
            async with mjpeg_viewers(f"{server.url}/api/streams/yard/mjpeg", 1) as (mjpeg,):
                await wait_for(lambda: len(mjpeg.frames) > 0 and len(viewer.frames) > 0, 10)
                sio_before, mjpeg_before = len(viewer.frames), len(mjpeg.frames)
                published_before = (await server.status("yard"))["frames"]
                snapshots = 0
                began = time.monotonic()
                while time.monotonic() - began < 4.0:
                    r = await server.client.get("/api/streams/yard/snapshot")
                    assert r.status_code == 200
                    assert r.content[:2] == b"\xff\xd8"
                    snapshots += 1
                    await asyncio.sleep(0.25)
                await asyncio.sleep(0.3)  # the last frames on their way
                status = await server.status("yard")
                published = status["frames"] - published_before
                got_sio = len(viewer.frames) - sio_before
                got_mjpeg = len(mjpeg.frames) - mjpeg_before
                latencies = [
                    t - sent
                    for t, f in mjpeg.frames[mjpeg_before:]
                    if (sent := read_send_time(f.data)) is not None
                ]
        finally:
            await viewer.sio.disconnect()
        stats = await sim_stats(sim)
    elapsed = 4.3
    print(
        f"\npushed {published} frames in ~{elapsed} s ({published / elapsed:.1f} fps): "
        f"Socket.IO {got_sio}, MJPEG {got_mjpeg}, {snapshots} snapshots; push → MJPEG "
        f"viewer latency median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    assert published / elapsed >= 12, status
    assert status["pusher"] is not None
    assert status["telemetry"]["values"]["rssi"] == -67
    assert stats["push_connects"] == 1
    assert stats["push_paused"] == 0
    # Every frame: both viewers got what was published (±2 at the window's edges).
    assert abs(got_sio - published) <= 2, (got_sio, published)
    assert abs(got_mjpeg - published) <= 2, (got_mjpeg, published)
    assert statistics.median(latencies) < 0.25


async def test_two_websocket_pushers_the_newest_wins(server: Server) -> None:
    push = (await create_push(server, "door"))["push"]
    jpeg = SimCamera("d").render()
    headers = bearer(push["key"])
    async with websockets.connect(push["ws_url"], additional_headers=headers) as old:
        assert json.loads(await old.recv()) == {"pause": False}
        await old.send(jpeg)
        await server.wait_state("door", "streaming")
        first = (await server.status("door"))["pusher"]
        async with websockets.connect(push["ws_url"], additional_headers=headers) as new:
            assert json.loads(await new.recv()) == {"pause": False}
            await closed_with(old)
            assert old.close_code == 1000
            assert old.close_reason == "a newer connection for this camera took over"
            await new.send(jpeg)
            status = await server.status("door")
            assert status["pusher"] != first
            assert status["state"] == "streaming"


async def test_an_on_demand_push_camera_pauses_while_nobody_watches(
    server: Server, camera: CameraFactory
) -> None:
    """Must show 4: no frames sent while nobody watches (counted at the simulator), and
    frames within a second of the first viewer joining."""
    push = (await create_push(server, "attic", on_demand=True))["push"]
    cam = await camera("attic-cam", fps=15)
    cam.push_to(push["ws_url"], push["key"])
    assert cam.pusher is not None
    await wait_for(lambda: cam.pusher.stats.push_connects == 1, 10, what="the camera to connect")
    await wait_for(lambda: cam.pusher.stats.push_paused == 1, 5, what="pause")
    sent = cam.pusher.stats.push_frames
    await asyncio.sleep(2.0)
    assert cam.pusher.stats.push_frames == sent, "frames were sent while paused"
    assert (await server.status("attic"))["state"] == "idle"
    joined = time.monotonic()
    async with mjpeg_viewers(f"{server.url}/api/streams/attic/mjpeg", 1) as (viewer,):
        await wait_for(lambda: len(viewer.frames) > 0, 5, 0.01, what="a frame")
        first = time.monotonic() - joined
        assert cam.pusher.stats.push_paused == 0
    print(f"\nfirst frame {first * 1000:.0f} ms after the viewer joined")
    assert first < 1.0
    # The viewer left: after the grace period the camera is told to pause again.
    await wait_for(lambda: cam.pusher.stats.push_paused == 1, 20, what="pause again")


async def test_ffmpeg_pushes_multipart_and_ffprobe_reads_the_restream(
    server: Server, tmp_path: Any
) -> None:
    """Must show 3: ``ffmpeg -re -i clip -f mpjpeg`` POSTing to push.mjpeg and to go2rtc's
    ``?dst=`` form feeds viewers; ffprobe reads the re-stream."""
    clip = tmp_path / "clip.avi"
    subprocess.run(
        [
            *("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x480:rate=15"),
            *("-t", "12", "-c:v", "mjpeg", "-q:v", "5", str(clip)),
        ],
        check=True,
        timeout=60,
    )
    for name, url in (
        ("mp1", "{base}/api/streams/mp1/push.mjpeg?key={key}"),
        ("mp2", "{base}/api/stream.mjpeg?dst=mp2&key={key}"),
    ):
        key = (await create_push(server, name))["push"]["key"]
        target = url.format(base=server.url, key=key)
        ffmpeg = await asyncio.create_subprocess_exec(
            *("ffmpeg", "-loglevel", "error", "-re", "-i", str(clip)),
            *("-c:v", "copy", "-f", "mpjpeg", "-method", "POST", target),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await server.wait_state(name, "streaming", 15)
            async with mjpeg_viewers(f"{server.url}/api/streams/{name}/mjpeg", 2) as viewers:
                await asyncio.sleep(2.0)
                counts = [len(v.frames) for v in viewers]
            probe = await asyncio.create_subprocess_exec(
                *("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height"),
                *("-of", "json", f"{server.url}/api/streams/{name}/mjpeg"),
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(probe.communicate(), 20)
            stream = json.loads(out)["streams"][0]
            assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 640, 480)
            assert all(c >= 20 for c in counts), counts  # 15 fps for 2 s
            status = await server.status(name)
            assert status["bad_frames"] == 0
            assert status["fps"] >= 12
        finally:
            if ffmpeg.returncode is None:
                ffmpeg.kill()
            await ffmpeg.wait()
