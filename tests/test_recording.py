"""Recording (issue 16, first part): settings through the API, persisted; continuous
recording into playable Matroska segments, listed and downloaded through the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest

from camserver.config import Settings
from tests.conftest import CameraFactory, start_server, wait_for

FULL = {"mode": "continuous", "timelapse_interval": 10, "max_age_hours": 72, "max_bytes": 2e10}


async def test_recording_settings_are_patched_shown_persisted_and_checked(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        r = await server.client.post("/api/streams", json={"name": "c1", "host": cam.address})
        assert r.json()["recording"] == {
            "mode": "off",
            "timelapse_interval": None,
            "max_age_hours": None,
            "max_bytes": None,
        }
        r = await server.client.patch("/api/streams/c1", json={"recording": FULL})
        assert r.status_code == 200, r.text
        assert r.json()["recording"] == {**FULL, "max_bytes": 20_000_000_000}
        # Fields left out stay; a field given as null is cleared.
        r = await server.client.patch(
            "/api/streams/c1", json={"recording": {"mode": "off", "timelapse_interval": None}}
        )
        assert r.json()["recording"] == {
            "mode": "off",
            "timelapse_interval": None,
            "max_age_hours": 72,
            "max_bytes": 20_000_000_000,
        }
        bad: list[dict[str, Any]] = [
            {"mode": None},
            {"mode": "sometimes"},
            {"max_bytes": 5},
            {"max_age_hours": -1},
            {"timelapse_interval": 0.1},
            {"colour": "red"},
        ]
        for body in bad:
            r = await server.client.patch("/api/streams/c1", json={"recording": body})
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"], r.text
    async with AsyncExitStack() as stack:  # the same database, a new server
        server = await start_server(stack, settings)
        r = await server.client.get("/api/streams/c1")
        assert r.json()["recording"]["max_age_hours"] == 72


def ffprobe(path: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_packets:format=duration",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.mark.requires("ffprobe")
async def test_continuous_recording_keeps_every_frame_in_playable_segments(
    settings: Settings, camera: CameraFactory
) -> None:
    settings = settings.model_copy(update={"recording_segment_seconds": 4.0})
    cam = await camera("c1", fps=20)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam)
        await server.wait_state("c1", "streaming")
        sent0 = cam.frames_sent
        r = await server.client.patch("/api/streams/c1", json={"recording": {"mode": "continuous"}})
        assert r.status_code == 200
        await asyncio.sleep(10)
        r = await server.client.patch("/api/streams/c1", json={"recording": {"mode": "off"}})
        sent = cam.frames_sent - sent0
        service = server.state.recording
        assert service is not None
        await wait_for(lambda: not service.recorder.recording("c1"), 10, what="recording off")
        r = await server.client.get("/api/streams/c1/recordings")
        assert r.status_code == 200
        segments = r.json()
        assert len(segments) >= 3, segments
        assert all(s["closed"] and s["kind"] == "continuous" for s in segments)
        frames = sum(s["frames"] for s in segments)
        assert frames >= 0.98 * sent, (frames, sent)
        assert service.recorder.dropped == 0
        assert all(s["end"] - s["start"] <= 4.5 for s in segments)
        r = await server.client.get(f"/api/recordings/{segments[0]['id']}")
        assert r.json() == segments[0]
        # Each file, as ffprobe sees it: MJPEG of the camera's size, every frame there.
        for s in segments:
            r = await server.client.get(s["file_url"])
            assert r.status_code == 200
            assert r.headers["content-type"] == "video/x-matroska"
            tmp = settings.db.parent / f"seg{s['id']}.mkv"
            tmp.write_bytes(r.content)
            probe = ffprobe(str(tmp))
            stream = probe["streams"][0]
            assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 320, 240)
            assert int(stream["nb_read_packets"]) == s["frames"]
            duration = float(probe["format"]["duration"])
            assert abs(duration - (s["end"] - s["start"])) < 0.2, (duration, s)
        # Range requests, for players that seek.
        first = segments[0]
        r = await server.client.get(first["file_url"], headers={"Range": "bytes=0-99"})
        assert r.status_code == 206
        assert len(r.content) == 100
        # Time ranges and bad input.
        t = first["start"] + 0.5
        r = await server.client.get(
            "/api/streams/c1/recordings", params={"start": t, "end": t + 0.1}
        )
        assert [s["id"] for s in r.json()] == [first["id"]]
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first["start"] - 60))
        r = await server.client.get("/api/streams/c1/recordings", params={"start": iso})
        assert len(r.json()) == len(segments)
        for params in ({"start": "yesterday"}, {"start": 10, "end": 5}, {"end": "1e300"}):
            r = await server.client.get("/api/streams/c1/recordings", params=params)
            assert r.status_code == 422, (params, r.text)
        assert (await server.client.get("/api/recordings/999999")).status_code == 404
        assert (await server.client.get("/api/streams/nope/recordings")).status_code == 404
