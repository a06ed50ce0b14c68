"""Recording (issue 16, first part): settings through the API, persisted; continuous
recording into playable Matroska segments, listed and downloaded through the API; repair
after a kill -9; retention by size; a full disk that costs live viewers nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from playwright.async_api import async_playwright

from camserver.api.recordings import EXPORTS
from camserver.codecs.mjpeg import NEED_DATA, Frame, MJPEGParser
from camserver.config import Settings, recordings_root
from camserver.recording.index import SQLiteIndex
from camserver.recording.recorder import POST_ROLL, PRE_ROLL
from camserver.recording.timelapse import Timelapse, day_of
from camserver.sim.frames import FrameRenderer, read_send_time
from camserver.streaming.hub import HubFrame
from tests.conftest import ARGS, CHROMIUM, CameraFactory, Proc, start_server, wait_for, wait_healthy
from tests.helpers.mjpeg import mjpeg_viewers

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


STREAM = "stream=codec_name,pix_fmt,width,height,nb_read_packets:format=duration"


def ffprobe(path: str, entries: str = STREAM) -> dict[str, Any]:
    """What ffprobe reports of the first video track (``entries``), as JSON."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            entries,
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


@pytest.mark.beside  # a minute of waiting: beside the suite (tests/helpers/beside.py)
@pytest.mark.requires("ffprobe")
async def test_continuous_recording_keeps_every_frame_in_playable_segments(
    settings: Settings, camera: CameraFactory
) -> None:
    settings = settings.model_copy(update={"recording_segment_seconds": 12.0})
    cam = await camera("c1", fps=20)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam)
        await server.wait_state("c1", "streaming")
        # A live Socket.IO viewer of the same camera, counted while the recording runs.
        sio = socketio.AsyncClient(reconnection=False)
        live: list[float] = []
        sio.on("frame", lambda data: live.append(time.monotonic()))
        await sio.connect(server.url, transports=["websocket"])
        stack.push_async_callback(sio.disconnect)
        assert (await sio.call("join_stream", {"name": "c1"}))["ok"]
        sent0 = cam.frames_sent
        r = await server.client.patch("/api/streams/c1", json={"recording": {"mode": "continuous"}})
        assert r.status_code == 200
        t0 = time.monotonic()
        await asyncio.sleep(60)  # a minute of recording
        r = await server.client.patch("/api/streams/c1", json={"recording": {"mode": "off"}})
        sent = cam.frames_sent - sent0
        got = sum(1 for t in live if t >= t0)
        assert got >= 0.95 * sent, f"the live viewer got {got} of {sent} frames while recording"
        service = server.state.recording
        assert service is not None
        await wait_for(lambda: not service.recorder.recording("c1"), 10, what="recording off")

        async def all_closed() -> bool:
            # (The last segment's row is closed by the writer thread just after recording
            # stops: a fresh-clone run under load read it a moment before.)
            rows = (await server.client.get("/api/streams/c1/recordings")).json()
            return bool(rows) and all(s["closed"] for s in rows)

        await wait_for(all_closed, 10, what="every segment closed")
        r = await server.client.get("/api/streams/c1/recordings")
        assert r.status_code == 200
        segments = r.json()
        assert len(segments) >= 5, segments
        assert all(s["closed"] and s["kind"] == "continuous" for s in segments)
        frames = sum(s["frames"] for s in segments)
        assert frames >= 0.98 * sent, (frames, sent)
        assert service.recorder.dropped == 0
        assert all(s["end"] - s["start"] <= 12.5 for s in segments)
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


POST = {"X-Requested-With": "camserver-tests"}


@pytest.mark.requires("ffprobe")
async def test_a_kill_9_while_recording_loses_at_most_a_second(
    spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    cam = await camera("c1", fps=20)
    db = tmp_path / "k.db"
    p = spawn("--db", str(db))
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, trust_env=False, headers=POST) as c:
        body = {"name": "c1", "host": cam.address, "recording": {"mode": "continuous"}}
        assert (await c.post("/api/streams", json=body)).status_code == 201

        async def recorded() -> int:
            segments = (await c.get("/api/streams/c1/recordings")).json()
            return sum(s["frames"] for s in segments)

        async def enough() -> bool:
            return await recorded() >= 60

        await wait_for(enough, 20, what="60 frames recorded")
        await asyncio.sleep(1.0)
        before = await recorded()  # what the index knew a moment before the kill
        killed_at = time.time()
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(10)
    again = spawn("--db", str(db))
    await wait_healthy(again)
    async with httpx.AsyncClient(base_url=again.url, trust_env=False, headers=POST) as c:
        await c.patch("/api/streams/c1", json={"recording": {"mode": "off"}})
        segments = (await c.get("/api/streams/c1/recordings")).json()
        assert segments, "the interrupted segment is listed"
        first = segments[0]
        assert first["closed"], first
        # Every frame written before the kill is there but the last, and the recording
        # reaches to within a second of the kill.
        assert first["frames"] >= before - 1, (first, before)
        assert first["end"] >= killed_at - 1.0, (first["end"], killed_at)
        r = await c.get(first["file_url"])
        assert r.status_code == 200
        path = tmp_path / "repaired.mkv"
        path.write_bytes(r.content)
        probe = ffprobe(str(path))
        assert int(probe["streams"][0]["nb_read_packets"]) == first["frames"]
        duration = float(probe["format"]["duration"])
        assert abs(duration - (first["end"] - first["start"])) < 0.2, (duration, first)
    assert "repaired" in again.output()


async def test_retention_keeps_a_stream_under_its_byte_limit(
    settings: Settings, camera: CameraFactory
) -> None:
    settings = settings.model_copy(
        update={"recording_segment_seconds": 2.0, "recording_retention_seconds": 0.5}
    )
    # ~40 KB frames at 20 fps: ~0.8 MB a second.
    cam = await camera("c1", fps=20, framesize=12, replay=10)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "continuous", "max_bytes": 3_000_000})
        service = server.state.recording
        assert service is not None
        await wait_for(lambda: service.recorder.counters.deleted_files >= 2, 30, what="deletions")
        segments = (await server.client.get("/api/streams/c1/recordings")).json()
        closed = [s for s in segments if s["closed"]]
        # Closed ones stay under the limit (the one being written may add a segment more).
        assert sum(s["bytes"] for s in closed) <= 3_000_000
        root = settings.db.parent / "recordings"
        files = sorted(root.rglob("*.mkv"))
        assert len(files) == len(segments), (files, segments)
        # The oldest went first: what is left is the newest segments, with no gap.
        ids = [s["id"] for s in segments]
        assert ids == list(range(ids[-1] - len(ids) + 1, ids[-1] + 1)), ids
        assert ids[0] > service.recorder.counters.deleted_files
        r = await server.client.get("/metrics")
        assert "camserver_recording_deleted_files_total" in r.text


@pytest.mark.requires("root")
async def test_a_full_disk_costs_recordings_only(
    settings: Settings, camera: CameraFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        settings = settings.model_copy(update={"recordings_dir": disk, "recording_min_free_mb": 0})
        cam = await camera("c1", fps=20, framesize=12, replay=10)
        async with AsyncExitStack() as stack:
            server = await start_server(stack, settings)
            await server.add_camera("c1", cam, recording={"mode": "continuous"})
            service = server.state.recording
            assert service is not None
            async with mjpeg_viewers(f"{server.url}/api/streams/c1/mjpeg", 1) as (viewer,):
                await wait_for(
                    lambda: service.recorder.counters.write_errors > 0, 20, what="disk full"
                )
                n, t0 = len(viewer.frames), time.monotonic()
                await asyncio.sleep(3)
                rate = (len(viewer.frames) - n) / (time.monotonic() - t0)
                assert rate >= 15, f"the live viewer got {rate:.1f} fps while the disk was full"
            assert "live viewers are not affected" in caplog.text
            r = await server.client.get("/metrics")
            assert 'camserver_recording_dropped_frames_total{reason="disk_error"}' in r.text
            assert "camserver_recording_write_errors_total" in r.text
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_scrub_to_a_time_and_replay_at_the_recorded_rate(
    settings: Settings, camera: CameraFactory
) -> None:
    settings = settings.model_copy(update={"recording_segment_seconds": 2.0})
    cam = await camera("c1", fps=20, embed_time=True)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "continuous"})
        await asyncio.sleep(5)
        await server.client.patch("/api/streams/c1", json={"recording": {"mode": "off"}})
        service = server.state.recording
        assert service is not None
        await wait_for(lambda: not service.recorder.recording("c1"), 10, what="recording off")
        segments = (await server.client.get("/api/streams/c1/recordings")).json()
        t_first, t_last = segments[0]["start"], segments[-1]["end"]
        # Scrubbing: the frame received at t or just before, across segment boundaries.
        for t in (t_first, t_first + 1.234, segments[1]["start"] + 0.01, t_last):
            r = await server.client.get("/api/streams/c1/frame.jpeg", params={"t": t})
            assert r.status_code == 200, r.text
            received = float(r.headers["x-timestamp"])
            assert t - 0.2 <= received <= t + 1e-6, (t, received)  # (6 decimals)
            sent = read_send_time(r.content)
            assert sent is not None
            assert sent <= received + 0.001
        for params, code in (
            ({"t": t_first - 60}, 404),
            ({"t": "soon"}, 422),
            ({}, 422),
        ):
            r = await server.client.get("/api/streams/c1/frame.jpeg", params=params)
            assert r.status_code == code, (params, r.text)
        # Replay: every recorded frame from `start`, at the recorded pace times `speed`.
        start = t_first + 1.0
        for speed in (1.0, 4.0):
            t0 = time.monotonic()
            stamps: list[float] = []
            async with server.client.stream(
                "GET", "/api/streams/c1/replay.mjpeg", params={"start": start, "speed": speed}
            ) as resp:
                assert resp.status_code == 200
                parser = MJPEGParser.from_content_type(resp.headers["content-type"])
                async for chunk in resp.aiter_raw():
                    parser.receive_data(chunk)
                    while (e := parser.next_event()) is not NEED_DATA:
                        assert isinstance(e, Frame)
                        stamps.append(float(e.camera_ts or 0))
            took = time.monotonic() - t0
            span = stamps[-1] - stamps[0]
            assert stamps == sorted(stamps)
            assert stamps[0] >= start - 1e-6  # (X-Timestamp carries 6 decimals)
            frames = sum(s["frames"] for s in segments)
            assert len(stamps) >= frames * (t_last - start) / (t_last - t_first) * 0.9
            assert span / speed * 0.8 <= took <= span / speed * 1.3 + 1.0, (speed, span, took)
        r = await server.client.get("/api/streams/c1/replay.mjpeg", params={"speed": 100})
        assert r.status_code == 422
        r = await server.client.get("/api/streams/c1/replay.mjpeg", params={"start": t_last + 60})
        assert r.status_code == 404
        # Deleting a finished segment: its file and its entry go.
        first = segments[0]
        row = service.index.get(first["id"])
        assert row is not None
        path = service.root / row.path
        assert path.is_file()
        r = await server.client.delete(f"/api/recordings/{first['id']}")
        assert r.status_code == 204, r.text
        assert not path.exists()
        r = await server.client.get(f"/api/recordings/{first['id']}")
        assert r.status_code == 404
        listed = (await server.client.get("/api/streams/c1/recordings")).json()
        assert first["id"] not in [x["id"] for x in listed]
        r = await server.client.delete(f"/api/recordings/{first['id']}")
        assert r.status_code == 404


@pytest.mark.requires("ffprobe", "chromium")
async def test_a_clip_plays_in_chromium_with_the_right_duration(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=15)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "continuous"})
        await asyncio.sleep(4)
        segments = (await server.client.get("/api/streams/c1/recordings")).json()
        t0 = segments[0]["start"] + 0.5
        t1 = t0 + 3.0
        params = {"start": t0, "end": t1}
        r = await server.client.get("/api/streams/c1/clip.mp4", params=params, timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "video/mp4"
        path = settings.db.parent / "clip.mp4"
        path.write_bytes(r.content)
        probe = ffprobe(str(path))
        stream = probe["streams"][0]
        assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
        assert (stream["width"], stream["height"]) == (320, 240)
        assert abs(float(probe["format"]["duration"]) - 3.0) < 0.3, probe
        # A browser's <video> plays it.
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(server.url + "/")
                url = f"/api/streams/c1/clip.mp4?start={t0}&end={t1}"
                duration = await page.evaluate(
                    """(url) => new Promise((ok, fail) => {
                        const v = document.createElement("video");
                        v.muted = true;
                        v.oncanplay = () => ok(v.duration);
                        v.onerror = () => fail(new Error("video error " + v.error.code));
                        v.src = url;
                        document.body.appendChild(v);
                    })""",
                    url,
                )
            finally:
                await browser.close()
        assert abs(duration - 3.0) < 0.3, duration
        for bad in ({"start": t1, "end": t0}, {"start": t0, "end": t0 + 4000}, {"start": t0}):
            r = await server.client.get("/api/streams/c1/clip.mp4", params=bad)
            assert r.status_code == 422, (bad, r.text)
        r = await server.client.get(
            "/api/streams/c1/clip.mp4", params={"start": t0 - 3600, "end": t0 - 3500}
        )
        assert r.status_code == 404


async def test_an_event_clip_has_its_pre_roll_and_post_roll(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=20)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam)
        event = "/api/streams/c1/recordings/event"
        r = await server.client.post(event, json={"seconds": 1})
        assert r.status_code == 409, r.text  # not recording events
        assert "'events'" in r.json()["detail"]
        await server.client.patch("/api/streams/c1", json={"recording": {"mode": "events"}})
        await asyncio.sleep(PRE_ROLL + 1.0)  # more than a pre-roll of frames go by
        assert (await server.client.get("/api/streams/c1/recordings")).json() == []
        marked = time.time()
        r = await server.client.post(event, json={"seconds": 1})
        assert r.status_code == 202, r.text
        window = r.json()
        assert window["end"] - window["start"] == pytest.approx(PRE_ROLL + 1 + POST_ROLL, abs=0.1)

        async def clip_done() -> bool:
            clips = (await server.client.get("/api/streams/c1/recordings")).json()
            return bool(clips) and all(c["closed"] for c in clips)

        await wait_for(clip_done, 1 + POST_ROLL + 10, what="the clip to end")
        (clip,) = (await server.client.get("/api/streams/c1/recordings")).json()
        assert clip["kind"] == "event"
        assert clip["start"] == pytest.approx(marked - PRE_ROLL, abs=0.3)
        assert clip["end"] == pytest.approx(marked + 1 + POST_ROLL, abs=0.3)
        assert clip["frames"] >= 0.9 * 20 * (PRE_ROLL + 1 + POST_ROLL)
        r = await server.client.post(event, json={"seconds": 0})
        assert r.status_code == 422


@pytest.mark.requires("ffprobe")
async def test_timelapse_keeps_one_frame_per_interval_and_plays_as_mp4(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=20)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "off", "timelapse_interval": 1})
        await asyncio.sleep(5.5)
        rows = (await server.client.get("/api/streams/c1/recordings")).json()
        assert [r["kind"] for r in rows] == ["timelapse"], rows
        assert 5 <= rows[0]["frames"] <= 7, rows  # one a second, not the camera's 20
        r = await server.client.delete(f"/api/recordings/{rows[0]['id']}")
        assert r.status_code == 409, r.text  # still being written
        assert "still being written" in r.json()["detail"]
        path = settings.db.parent / "tl.mkv"
        path.write_bytes((await server.client.get(rows[0]["file_url"])).content)
        packets = ffprobe(str(path), "packet=pts_time")["packets"]
        times = [float(x["pts_time"]) for x in packets]
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times
        r = await server.client.get("/api/streams/c1/timelapse.mp4", timeout=60)
        assert r.status_code == 200, r.text
        mp4 = settings.db.parent / "tl.mp4"
        mp4.write_bytes(r.content)
        probe = ffprobe(str(mp4))
        stream = probe["streams"][0]
        assert stream["codec_name"] == "h264"
        frames = int(stream["nb_read_packets"])
        assert frames >= 5
        assert float(probe["format"]["duration"]) == pytest.approx(frames / 15, abs=0.15)
        r = await server.client.get("/api/streams/c1/timelapse.mp4", params={"day": "2001-01-01"})
        assert r.status_code == 404
        r = await server.client.get("/api/streams/c1/timelapse.mp4", params={"day": "2001-13-45"})
        assert r.status_code == 422


@pytest.mark.requires("ffprobe")
async def test_a_finished_days_timelapse_becomes_mp4_in_the_background_at_low_priority(
    settings: Settings, camera: CameraFactory
) -> None:
    settings = settings.model_copy(update={"recording_retention_seconds": 0.5})
    today = day_of(time.time())
    yesterday = day_of(time.time() - 86400)
    noon = datetime.fromisoformat(yesterday).replace(tzinfo=UTC).timestamp() + 12 * 3600
    # Yesterday's timelapse as a server that ran then left it, written by the recorder's
    # own Timelapse: 30 frames 10 s apart, the day's file closed when the day is over.
    index = SQLiteIndex(settings.db)
    root = recordings_root(settings)
    tl = Timelapse(root, index, "c1")
    tl.interval = 10
    frames = FrameRenderer("c1", replay=3)
    for i in range(30):
        assert tl.offer(HubFrame(i + 1, noon + 10 * i, frames.render(i, 8, 12)))
    tl.end_day(yesterday)  # the same day: still open
    assert [r.closed for r in index.unfinished(own=True)] == [False]
    tl.end_day(today)
    assert index.unfinished(own=True) == []
    index.close()
    mp4 = root / "c1" / yesterday / "timelapse.mp4"
    cam = await camera("c1", fps=5)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        service = server.state.recording
        assert service is not None
        # Nobody asked: the renderer found the finished day through the index at start-up.
        await wait_for(lambda: service.days.made == 1, 60, what="yesterday's MP4")
        assert mp4.is_file()
        assert not list(mp4.parent.glob("*.part"))
        assert service.days.nice == 19  # the lowest CPU priority, for its thread alone
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # the server's own is unchanged
        metrics = (await server.client.get("/metrics")).text
        assert 'camserver_recording_timelapse_days_total{outcome="made"} 1.0' in metrics
        probe = ffprobe(str(mp4))
        assert probe["streams"][0]["codec_name"] == "h264"
        assert int(probe["streams"][0]["nb_read_packets"]) == 30
        assert float(probe["format"]["duration"]) == pytest.approx(30 / 15, abs=0.1)
        await server.add_camera("c1", cam)
        r = await server.client.get("/api/streams/c1/timelapse.mp4", params={"day": yesterday})
        assert r.status_code == 200, r.text
        assert r.content == mp4.read_bytes()  # served as made, not made again
        assert service.days.made == 1
        # Its bytes count against the stream's max_bytes, with the day's timelapse.
        mkv = root / "c1" / yesterday / "timelapse.mkv"
        (row,) = service.index.between("c1", 0, time.time())
        assert service.index.total_bytes("c1") == row.bytes + mp4.stat().st_size
        # A request that comes first (here: the file was lost) makes it on the spot.
        made = mp4.read_bytes()
        mp4.unlink()
        r = await server.client.get("/api/streams/c1/timelapse.mp4", params={"day": yesterday})
        assert r.status_code == 200, r.text
        assert service.days.made == 2
        assert len(r.content) == pytest.approx(len(made), rel=0.01)
        # Retention deletes the day's timelapse, and its MP4 with it.
        r = await server.client.patch("/api/streams/c1", json={"recording": {"max_age_hours": 1}})
        assert r.status_code == 200, r.text
        await wait_for(lambda: not mp4.exists(), 10, what="retention")
        assert not mkv.exists()
        r = await server.client.get("/api/streams/c1/timelapse.mp4", params={"day": yesterday})
        assert r.status_code == 404, r.text


async def test_a_segment_still_being_written_downloads_whole_as_far_as_it_was(
    settings: Settings, camera: CameraFactory
) -> None:
    """The file of an open segment was cut short when it grew during the download
    (FileResponse declared the length it saw and read to the end: more than declared, and
    uvicorn closed the connection). Found by the client test under CI load."""
    cam = await camera("c1", fps=30, framesize=13, replay=5)  # big frames, fast growth
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "continuous"})
        await server.wait_state("c1", "streaming")

        segment: dict[str, Any] = {}

        async def big_open_segment() -> bool:
            # Larger than what the kernel's socket buffers take at once (a few MB).
            rows = (await server.client.get("/api/streams/c1/recordings")).json()
            open_ = [r for r in rows if not r["closed"] and r["bytes"] > 12 * 1024 * 1024]
            segment.update(open_[0] if open_ else {})
            return bool(open_)

        await wait_for(big_open_segment, 60, what="an open segment of 12 MB")
        data = bytearray()
        async with server.client.stream("GET", segment["file_url"]) as r:
            assert r.status_code == 200
            length = int(r.headers["content-length"])
            async for chunk in r.aiter_bytes(64 * 1024):  # slowly: the file grows meanwhile
                data += chunk
                await asyncio.sleep(0.02)
        assert len(data) == length
        assert data[:4] == b"\x1a\x45\xdf\xa3"  # Matroska
        grown = (await server.client.get(f"/api/recordings/{segment['id']}")).json()
        assert grown["bytes"] > length or grown["closed"]


async def test_clip_exports_stop_when_their_client_leaves_and_their_cache_is_bounded(
    settings: Settings, camera: CameraFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """M4 (issue 26): abandoned clip.mp4 requests kept both conversion slots busy and left
    115 MB files in the clip cache, which retention did not count (free-disk retention
    then deleted real recordings first)."""
    settings = settings.model_copy(
        update={
            "recording_retention_seconds": 0.5,
            "recording_clip_cache_mb": 0,
            "recording_segment_seconds": 2.0,
        }
    )
    cam = await camera("c1", fps=30, framesize=13, replay=5)  # big frames: slow to convert
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera("c1", cam, recording={"mode": "continuous"})
        service = server.state.recording
        assert service is not None
        root = settings.db.parent / "recordings"
        await asyncio.sleep(6)
        now = time.time()

        async def export(t0: float, client: httpx.AsyncClient) -> httpx.Response:
            params = {"start": t0, "end": now}
            return await client.get("/api/streams/c1/clip.mp4", params=params, timeout=60)

        # Two exports from one address are made at once; a third is refused at once.
        leaving = [asyncio.create_task(export(now - 6 + i * 0.1, server.client)) for i in (0, 1)]
        await wait_for(lambda: sum(EXPORTS.going.values()) == 2, 10, what="two exports going")
        third = await export(now - 5, server.client)
        assert third.status_code == 429, third.text
        assert "already has 2 MP4 exports being made" in third.json()["detail"]
        await wait_for(lambda: any(root.glob(".clips/c1/*.part")), 10, what="a conversion")
        # Their client leaves: the conversions stop, their slots free up, nothing is left.
        for task in leaving:
            task.cancel()
        await asyncio.gather(*leaving, return_exceptions=True)
        await wait_for(lambda: not EXPORTS.going, 5, what="the exports given up")
        assert not list(root.glob(".clips/c1/*.part"))
        await asyncio.sleep(3)  # longer than the rest of a conversion would have taken
        assert not list(root.glob(".clips/c1/*")), "an abandoned conversion went on"
        # A clip that was fetched is a cache entry: counted, and over the cap it goes.
        clip = await export(now - 2, server.client)
        assert clip.status_code == 200
        assert clip.content[4:8] == b"ftyp"
        await wait_for(lambda: service.recorder.counters.clips_deleted >= 1, 10, what="cap")
        assert not list(root.glob(".clips/c1/*.mp4"))
        # When the disk is short, the cache goes before any recording.
        service.recorder.clip_cache_bytes = 1 << 40
        assert (await export(now - 2, server.client)).status_code == 200
        with caplog.at_level(logging.INFO, logger="camserver.recording.recorder"):
            service.recorder.min_free_bytes = 1 << 60  # never enough
            await wait_for(lambda: service.recorder.counters.deleted_files >= 1, 10, what="rm")
        lines = [r.getMessage() for r in caplog.records if "deleted" in r.getMessage()]
        assert "cached clip" in lines[0], lines
        assert "the disk is short of free space" in lines[0], lines
        assert any("short of free space" in line and ".mkv" in line for line in lines[1:])
