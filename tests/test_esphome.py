"""ESPHome cameras (issue 30) against a real server: the simulator's ESPHome device in a
real process (Noise) feeds every kind of viewer, the recorder and the motion detector; the
API's shapes and refusals."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from camserver.config import Settings
from tests.conftest import Server, start_server, wait_for
from tests.helpers.esphome import KEY, add_esphome, digest, esphome_process
from tests.helpers.mjpeg import mjpeg_viewers
from tests.helpers.socketio import Viewer

FPS = 15
WINDOW = 4.0


async def test_an_encrypted_esphome_camera_feeds_viewers_recording_and_motion(
    settings: Settings,
) -> None:
    """Must show 1: a Noise-encrypted device (real process) → Socket.IO and MJPEG viewers at
    its rate, recorded, analysed; the bytes served are the bytes the device sent."""
    settings = settings.model_copy(update={"recording_segment_seconds": 2.0})
    async with AsyncExitStack() as stack:
        device = await stack.enter_async_context(
            esphome_process("--encryption-key", KEY, "--fps", str(FPS), "--framesize", "VGA")
        )
        server = await start_server(stack, settings)
        created = await add_esphome(
            server,
            "porch",
            device.api_port,
            KEY,
            recording={"mode": "continuous"},
            motion={"enabled": True},
        )
        assert created["source"] == "esphome"
        assert created["has_encryption_key"] is True
        assert created["port"] == device.api_port
        status = await server.wait_state("porch", "streaming", 15)
        # What the device says of itself, and its flash and switch (read-only).
        assert status["device"]["name"] == "esp32-cam-1"
        assert status["device"]["model"] == "esp32cam"
        assert status["device"]["esphome_version"]
        assert status["device"]["mac_address"].startswith("24:0A:C4:")
        assert status["device"]["encrypted"] is True
        await wait_for(
            lambda: _entities(server, "porch"),
            5,
            what="the entities' states",
        )
        viewer = Viewer()
        await viewer.sio.connect(server.url, transports=["websocket"])
        stack.push_async_callback(viewer.sio.disconnect)
        assert (await viewer.join("porch"))["ok"]
        analysed = server.state.motion.worker.counters.analysed
        url = f"{server.url}/api/streams/porch/mjpeg"
        async with mjpeg_viewers(url, 1) as (mjpeg,):
            await wait_for(lambda: bool(mjpeg.frames and viewer.frames), 10, what="frames")
            before = (await device.stats())["esphome_images_sent"]
            sio0, mjpeg0 = len(viewer.frames), len(mjpeg.frames)
            t0 = time.monotonic()
            await asyncio.sleep(WINDOW)
            took = time.monotonic() - t0
            sent = (await device.stats())["esphome_images_sent"] - before
            got_sio = len(viewer.frames) - sio0
            got_mjpeg = len(mjpeg.frames) - mjpeg0
        assert sent >= FPS * took * 0.9, (sent, took)
        for got in (got_sio, got_mjpeg):
            assert abs(got - sent) <= 3, (got_sio, got_mjpeg, sent)
        # Byte for byte what the device sent (its last 2,000 images' digests).
        sent_digests = await device.sent()
        served = [f["data"] for f in viewer.frames] + [f.data for _, f in mjpeg.frames]
        assert all(digest(bytes(d)) in sent_digests for d in served)
        stats = await device.stats()
        assert stats["max_esphome_clients"] == 1  # one connection, whatever the viewers
        assert stats["esphome_stream_requests"] >= 2  # asked again within the 5 s
        # Recorded and analysed.
        await wait_for(
            lambda: server.state.motion.worker.counters.analysed >= analysed + 10,
            10,
            what="motion analysis",
        )
        rows = (await server.client.get("/api/streams/porch/recordings")).json()
        assert sum(r["frames"] for r in rows) >= FPS * WINDOW * 0.9, rows
        # The key is write-only.
        for path in ("/api/streams", "/api/streams/porch", "/api/streams/porch/status"):
            assert KEY not in (await server.client.get(path)).text


async def _entities(server: Server, name: str) -> bool:
    entities = (await server.status(name)).get("entities") or []
    return sorted((e["kind"], e["name"], e["on"]) for e in entities) == [
        ("light", "Flash", False),
        ("switch", "Status LED", True),
    ]


async def test_esphome_streams_take_host_port_and_key_and_refuse_the_rest(
    server: Server,
) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"source": "esphome"}, "needs its host"),
        ({"source": "esphome", "host": "cam.local", "encryption_key": "c2hvcnQ="}, "32 bytes"),
        ({"source": "esphome", "host": "cam.local", "encryption_key": "!!"}, "base64"),
        ({"source": "esphome", "host": "cam.local:6053"}, "as port"),
        ({"source": "esphome", "host": "cam.local", "stream_url": "http://a/"}, "stream_url"),
        ({"source": "esphome", "host": "cam.local", "port": 70000}, "65535"),
        ({"host": "10.0.0.9", "encryption_key": KEY}, "for ESPHome cameras"),
        ({"source": "push", "port": 6053}, "for ESPHome cameras"),
    ]
    for body, words in bad:
        r = await server.client.post("/api/streams", json={"name": "x", **body})
        assert r.status_code == 422, (body, r.text)
        assert words in r.text, (body, r.text)
    r = await server.client.post(
        "/api/streams",
        json={"name": "hall", "source": "esphome", "host": "hall-cam.local", "enabled": False},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["port"], r.json()["host"], r.json()["has_encryption_key"]) == (
        6053,
        "hall-cam.local",
        False,
    )
    r = await server.client.patch("/api/streams/hall", json={"encryption_key": KEY, "port": 6054})
    assert r.status_code == 200, r.text
    assert (r.json()["port"], r.json()["has_encryption_key"]) == (6054, True)
    assert KEY not in r.text
    r = await server.client.patch("/api/streams/hall", json={"encryption_key": ""})
    assert r.json()["has_encryption_key"] is False
    r = await server.client.patch("/api/streams/hall", json={"stream_url": "http://a/b"})
    assert r.status_code == 409
    assert "ESPHome camera" in r.json()["detail"]
    # ESPHome's API does not expose the camera's settings: said, not faked.
    r = await server.client.get("/api/streams/hall/settings")
    assert r.status_code == 409
    assert "in its YAML" in r.json()["detail"]
    r = await server.client.put("/api/streams/hall/settings", json={"framesize": 8})
    assert r.status_code == 409
    # An HTTP camera takes no ESPHome fields.
    r = await server.client.post("/api/streams", json={"name": "cam", "host": "10.0.0.9"})
    assert r.status_code == 201
    r = await server.client.patch("/api/streams/cam", json={"port": 6053})
    assert r.status_code == 409
