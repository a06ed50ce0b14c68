"""Must show 6 (issue 28): bad input from push cameras gets a clear answer and costs
nothing else: garbage, a 20 MB picture, 200 fps, wrong and old keys, a push key used to
view or to push elsewhere, and 2,000 attempts with bad keys from one address, while
another camera and its viewer go on (frame counters) and memory stays put."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

import httpx
import psutil
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from camserver.sim.camera import SimCamera
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.auth import ADMIN, auth
from tests.helpers.mjpeg import mjpeg_viewers
from tests.helpers.push import closed_with

JPEG = SimCamera("p", framesize=6).render()


async def create(server: Server, name: str, **extra: Any) -> dict[str, Any]:
    r = await server.client.post(
        "/api/streams", json={"name": name, "source": "push", **extra}, headers=auth(ADMIN)
    )
    assert r.status_code == 201, r.text
    push: dict[str, Any] = r.json()["push"]
    return push


async def status(server: Server, name: str) -> dict[str, Any]:
    r = await server.client.get(f"/api/streams/{name}/status", headers=auth(ADMIN))
    data: dict[str, Any] = r.json()
    return data


def uxga_jpeg(size: int = 130_000) -> bytes:
    """A UXGA picture of at least ``size`` bytes (padded with a comment segment, as big
    as an ESP32's UXGA JPEG is)."""
    jpeg = SimCamera("big", framesize=15, quality=4).render()
    pad = max(0, size - len(jpeg))
    segments = b""
    while pad > 0:
        n = min(pad, 65533)
        segments += b"\xff\xfe" + (n + 2).to_bytes(2, "big") + b"c" * n
        pad -= n + 4
    return jpeg[:2] + segments + jpeg[2:]


async def test_garbage_too_big_too_fast_and_the_uxga_picture_that_must_pass(
    locked: Server,
) -> None:
    push = await create(locked, "gate")
    headers = {"Authorization": f"Bearer {push['key']}"}
    # Garbage: a few bad messages are forgiven (counted), sustained garbage closes.
    async with websockets.connect(push["ws_url"], additional_headers=headers) as ws:
        for _ in range(3):
            await ws.send(b"\x00garbage" * 50)
        await ws.send(JPEG)
        await ws.send("not json {")
        await ws.send(JPEG)
        await wait_for(lambda: locked.state.manager.status("gate").frames == 2, 5, what="2 frames")
        assert (await status(locked, "gate"))["bad_frames"] == 3
        for _ in range(8):
            await ws.send(b"\xff\xd8 truncated")
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason is not None
    assert "8 messages in a row were refused" in reason
    # A UXGA picture of 130 KB passes every way in; a 20 MB one gets 413 / close 1009.
    big = uxga_jpeg()
    assert len(big) >= 130_000
    async with httpx.AsyncClient(base_url=locked.url, trust_env=False, timeout=30) as c:
        r = await c.post(
            "/api/streams/gate/frame",
            content=big,
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 200, r.text
        huge = b"\xff\xd8" + b"\x00" * (20 * 1024 * 1024) + b"\xff\xd9"
        r = await c.post(
            "/api/streams/gate/frame",
            content=huge,
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 413
        assert "CAMSERVER_MAX_FRAME_BYTES" in r.json()["detail"]

        async def chunked() -> Any:  # no Content-Length: the cap holds as it arrives
            for _ in range(20):
                yield b"\x00" * (1024 * 1024)

        r = await c.post(
            "/api/streams/gate/frame",
            content=chunked(),
            headers={**headers, "Content-Type": "image/jpeg"},
        )
        assert r.status_code == 413
        r = await c.post("/api/streams/gate/frame", content=big, headers=headers)
        assert r.status_code == 415
    async with websockets.connect(push["ws_url"], additional_headers=headers, max_size=None) as ws:
        await ws.send(big)
        hub = locked.state.manager.hub("gate")
        await wait_for(
            lambda: hub.latest is not None and hub.latest.data == big, 5, what="the UXGA picture"
        )
        await ws.send(b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024) + b"\xff\xd9")
        code, _ = await closed_with(ws)
        assert code == 1009
    async with websockets.connect(push["ws_url"], additional_headers=headers, max_size=None) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(b"\xff\xd8" + b"\x00" * (20 * 1024 * 1024) + b"\xff\xd9")
        code, _ = await closed_with(ws)
        assert code == 1009
    # 200 pictures a second for 2 s: beyond 30 a second they are dropped and counted.
    before = locked.state.manager.status("gate").frames
    async with websockets.connect(push["ws_url"], additional_headers=headers) as ws:
        began = time.monotonic()
        for i in range(400):
            await ws.send(JPEG)
            await asyncio.sleep(max(0.0, began + (i + 1) / 200 - time.monotonic()))
        elapsed = time.monotonic() - began
        await asyncio.sleep(0.3)
    published = locked.state.manager.status("gate").frames - before
    assert published <= 30 * elapsed + 16, (published, elapsed)
    assert published >= 30 * elapsed * 0.8, (published, elapsed)
    metrics = (await locked.client.get("/metrics", headers=auth(ADMIN))).text
    dropped = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('camserver_push_pictures_total{outcome="too_fast",stream="gate"}')
    )
    assert dropped >= 400 - published - 1


async def test_keys_open_only_their_own_stream_and_only_to_push(
    locked: Server, camera: CameraFactory
) -> None:
    push = await create(locked, "gate")
    other = await create(locked, "shed")
    key = push["key"]
    jpeg_headers = {"Content-Type": "image/jpeg"}
    c = locked.client
    # A wrong key: 401 at the handshake (no accept-then-close), and on a POST.
    for bad in ("wrong", other["key"], ""):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(push["ws_url"] + (f"?key={bad}" if bad else ""))
        assert refused.value.response.status_code == 401
        r = await c.post(f"/api/streams/gate/frame?key={bad}", content=JPEG, headers=jpeg_headers)
        assert r.status_code == 401
        assert r.json()["detail"] == "wrong or old push key for this stream"
    # The same answer for a stream that does not exist: nothing learnt about streams.
    r = await c.post(f"/api/streams/nosuch/frame?key={key}", content=JPEG, headers=jpeg_headers)
    assert (r.status_code, r.json()["detail"]) == (401, "wrong or old push key for this stream")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(push["ws_url"].replace("/gate/", "/nosuch/") + f"?key={key}")
    assert refused.value.response.status_code == 401
    # A push key views nothing and calls nothing else.
    for method, path in (
        ("GET", "/api/streams"),
        ("GET", "/api/streams/gate"),
        ("GET", "/api/streams/gate/snapshot"),
        ("GET", "/api/streams/gate/status"),
        ("GET", "/api/frame.jpeg?src=gate"),
        ("POST", "/api/streams/gate/push/key"),
        ("DELETE", "/api/streams/gate"),
        ("GET", "/metrics"),
    ):
        for how in ({"headers": {"Authorization": f"Bearer {key}"}}, {"params": {"token": key}}):
            r = await c.request(method, path, **how)
            assert r.status_code == 401, (method, path, r.text)
    async with httpx.AsyncClient(trust_env=False, timeout=5) as plain:
        r = await plain.get(f"{locked.url}/api/streams/gate/mjpeg?token={key}")
        assert r.status_code == 401
        r = await plain.get(f"{locked.url}/api/stream.mjpeg?src=gate&key={key}")
        assert r.status_code == 401
    # Old key after rotation: 401, and the camera connected with it is disconnected.
    async with websockets.connect(push["ws_url"] + f"?key={key}") as ws:
        assert json.loads(await ws.recv()) == {"pause": False}
        r = await c.post("/api/streams/gate/push/key", headers=auth(ADMIN))
        assert r.status_code == 200
        code, reason = await closed_with(ws)
    assert (code, reason) == (1000, "the push key was changed: connect with the new one")
    r = await c.post(f"/api/streams/gate/frame?key={key}", content=JPEG, headers=jpeg_headers)
    assert r.status_code == 401
    new = (await c.post("/api/streams/gate/push/key", headers=auth(ADMIN))).json()["key"]
    r = await c.post(f"/api/streams/gate/frame?key={new}", content=JPEG, headers=jpeg_headers)
    assert r.status_code == 200
    # A stopped stream takes nothing: 409 says why.
    assert (await c.post("/api/streams/gate/stop", headers=auth(ADMIN))).status_code == 200
    r = await c.post(f"/api/streams/gate/frame?key={new}", content=JPEG, headers=jpeg_headers)
    assert r.status_code == 409
    assert "stopped" in r.json()["detail"]
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(push["ws_url"] + f"?key={new}")
    assert refused.value.response.status_code == 409


async def test_two_thousand_bad_keys_from_one_address_cost_other_cameras_nothing(
    locked: Server, camera: CameraFactory
) -> None:
    push = await create(locked, "gate")
    cam = await camera("porch", fps=15)
    r = await locked.client.post(
        "/api/streams", json={"name": "porch", "host": cam.address}, headers=auth(ADMIN)
    )
    assert r.status_code == 201
    await wait_for(
        lambda: locked.state.manager.status("porch").state.value == "streaming", 10, what="porch"
    )
    rss = psutil.Process().memory_info().rss
    url = f"{locked.url}/api/streams/porch/mjpeg?token={ADMIN}"
    async with mjpeg_viewers(url, 1) as (viewer,):
        await wait_for(lambda: len(viewer.frames) > 5, 10, what="the viewer's frames")
        frames_before = locked.state.manager.status("porch").frames
        seen_before = len(viewer.frames)
        began = time.monotonic()
        refused = {"ws": 0, "post": 0}
        sem = asyncio.Semaphore(50)

        async def attempt(i: int, c: httpx.AsyncClient) -> None:
            async with sem:
                if i % 2:
                    with contextlib.suppress(InvalidStatus):
                        async with websockets.connect(f"{push['ws_url']}?key=bad{i}"):
                            return
                    refused["ws"] += 1
                else:
                    r = await c.post(
                        f"/api/streams/gate/frame?key=bad{i}",
                        content=JPEG,
                        headers={"Content-Type": "image/jpeg"},
                    )
                    refused["post"] += r.status_code == 401

        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=locked.url, trust_env=False, limits=limits) as c:
            await asyncio.gather(*(attempt(i, c) for i in range(2000)))
        elapsed = time.monotonic() - began
        await asyncio.sleep(0.5)
        published = locked.state.manager.status("porch").frames - frames_before
        seen = len(viewer.frames) - seen_before
    grown = (psutil.Process().memory_info().rss - rss) / 1e6
    print(
        f"\n2,000 bad keys in {elapsed:.1f} s; porch published {published} frames "
        f"({published / (elapsed + 0.5):.1f} fps), its viewer got {seen}; RSS +{grown:.1f} MB"
    )
    assert refused == {"ws": 1000, "post": 1000}
    # The flood's clients run in this process too, and the suite's background benchmarks
    # beside it on 2 cores: the camera's rate is its share of a saturated process (two
    # fresh-clone runs of the suite saw 0.56 and 0.45 of it, alone 0.87). What bad keys
    # must not do is stop it: a third of its rate at least, and no gap over 2 s.
    assert published >= 15 * (elapsed + 0.5) * 0.3
    assert max(b - a for a, b in itertools.pairwise(t for t, _ in viewer.frames)) < 2.0
    assert seen >= published - 2
    assert grown < 50
    assert locked.state.manager.push_source("gate").counters.refused_keys == 2000
