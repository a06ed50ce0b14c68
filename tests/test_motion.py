"""Motion detection (issue 17): settings through the API, persisted and checked; on real
processes (the simulator with a scene the test drives, a real server)."""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import socketio
from pydantic import SecretStr

from camserver.config import Settings
from camserver.recording.recorder import POST_ROLL, PRE_ROLL
from tests.conftest import CameraFactory, Server, free_port, start_server, wait_for
from tests.helpers.mjpeg import mjpeg_viewers
from tests.helpers.webhooks import Receiver

DEFAULTS = {
    "enabled": False,
    "fps": 5.0,
    "threshold": 15,
    "min_area": 1.0,
    "min_frames": 2,
    "cooldown": 5.0,
    "light_change_pause": 2.0,
    "zones": [],
    "webhook_url": None,
}
ZONE = {"kind": "exclude", "points": [[0, 0], [0.5, 0], [0.5, 1]], "name": "tree"}


async def test_motion_settings_are_patched_shown_persisted_and_checked(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=5)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        r = await server.client.post("/api/streams", json={"name": "c1", "host": cam.address})
        assert r.json()["motion"] == DEFAULTS
        # {"enabled": true} alone is enough; fields left out stay.
        r = await server.client.patch("/api/streams/c1", json={"motion": {"enabled": True}})
        assert r.status_code == 200, r.text
        assert r.json()["motion"] == {**DEFAULTS, "enabled": True}
        change = {"threshold": 25, "zones": [ZONE], "webhook_url": "http://127.0.0.1:9/hook"}
        r = await server.client.patch("/api/streams/c1", json={"motion": change})
        assert r.status_code == 200, r.text
        want = {
            **DEFAULTS,
            "enabled": True,
            "threshold": 25,
            "zones": [{**ZONE, "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0]]}],
            "webhook_url": "http://127.0.0.1:9/***",  # a secret: shown masked
        }
        assert r.json()["motion"] == want
        bad: list[dict[str, Any]] = [
            {"enabled": None},
            {"fps": 0},
            {"fps": 100},
            {"threshold": 1},
            {"min_area": 0},
            {"min_area": 101},
            {"zones": [{"points": [[0, 0], [1, 1]]}]},  # two points: not a polygon
            {"zones": [{"points": [[0, 0], [1.5, 0], [1, 1]]}]},
            {"zones": [{"kind": "maybe", "points": [[0, 0], [1, 0], [1, 1]]}]},
            {"webhook_url": "ftp://example.com/x"},
            {"colour": "red"},
        ]
        for body in bad:
            r = await server.client.patch("/api/streams/c1", json={"motion": body})
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"], r.text
        r = await server.client.patch("/api/streams/c1", json={"motion": {"webhook_url": ""}})
        assert r.json()["motion"]["webhook_url"] is None
    async with AsyncExitStack() as stack:  # the same database, a new server
        server = await start_server(stack, settings)
        r = await server.client.get("/api/streams/c1")
        assert r.json()["motion"] == {**want, "webhook_url": None}


BAND = [[0.0, 0.2], [1.0, 0.2], [1.0, 0.8], [0.0, 0.8]]  # where the scene's object crosses


class MotionListener:
    """A Socket.IO client, as the dashboard is, recording ``motion`` events."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.sio.on("motion", self._motion)

    async def _motion(self, data: dict[str, Any]) -> None:
        self.events.append({**data, "received": time.time()})

    def of(self, name: str, state: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["name"] == name and e["state"] == state]


@pytest.mark.beside  # a minute of waiting: beside the suite (tests/helpers/beside.py)
async def test_an_object_starts_an_event_and_exposure_steps_and_excluded_zones_do_not(
    settings: Settings, camera: CameraFactory
) -> None:
    crossing = await camera("c1", fps=10, scene={})
    exposure = await camera("c2", fps=10, scene={"exposure_jumps": True})
    excluded = await camera("c3", fps=10, scene={"moving_object": True})
    cooldown = 2.0
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        listener = MotionListener()
        await listener.sio.connect(server.url, transports=["websocket"], wait_timeout=5)
        stack.push_async_callback(listener.sio.disconnect)
        motion = {"enabled": True, "cooldown": cooldown}
        await server.add_camera("c1", crossing, motion=motion, recording={"mode": "events"})
        await server.add_camera("c2", exposure, motion=motion)
        zone = {"kind": "exclude", "points": BAND}
        await server.add_camera("c3", excluded, motion={**motion, "zones": [zone]})
        began = time.monotonic()
        await asyncio.sleep(PRE_ROLL + 1)  # a full pre-roll in the recorder's memory
        assert listener.events == []
        # One crossing at half a picture width a second: ~2.3 s in view.
        crossing.set_scene({"moving_object": True, "object_speed": 0.5, "object_period": 1000})
        entered = time.time()
        await wait_for(lambda: bool(listener.of("c1", "start")), 5, what="the event's start")
        start = listener.of("c1", "start")[0]["event"]
        assert start["start"] - entered < 1.0, start  # (in frame times)
        assert listener.of("c1", "start")[0]["received"] - entered < 1.5
        await wait_for(lambda: bool(listener.of("c1", "end")), 15, what="the event's end")
        end = listener.of("c1", "end")[0]["event"]
        left = entered + 1.2 / 0.5  # the object's width (1/6) past the right edge
        assert left + cooldown - 0.6 <= end["end"] <= left + cooldown + 1.0, (end, left)
        assert end["id"] == start["id"]
        assert 3 < end["peak_area"] < 15  # the object is 1/18 of the picture
        # Through the API: listed, with a snapshot that is the camera's JPEG.
        r = await server.client.get("/api/events", params={"stream": "c1"})
        assert r.status_code == 200, r.text
        (listed,) = r.json()
        assert listed == {**end, "snapshot_url": f"/api/events/{end['id']}/snapshot.jpg"}
        r = await server.client.get(listed["snapshot_url"])
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.content[:2] == b"\xff\xd8"
        assert (await server.client.get(f"/api/events/{end['id']}")).json() == listed
        # Recording mode 'events': a clip that starts the pre-roll before the trigger.
        await wait_for(lambda: _closed_clip(server, "c1"), 20, what="the event clip", interval=0.5)
        clips = (await server.client.get("/api/streams/c1/recordings")).json()
        assert clips[0]["kind"] == "event"
        assert clips[0]["start"] <= start["start"] - PRE_ROLL + 0.3, (clips[0], start)
        assert clips[-1]["end"] >= end["end"] - cooldown + POST_ROLL - 0.5
        # A minute in all: exposure steps alone, and an object in an excluded zone, never.
        await asyncio.sleep(max(0.0, 60 - (time.monotonic() - began)))
        assert listener.of("c2", "start") == []
        assert listener.of("c3", "start") == []
        r = await server.client.get("/api/events")
        assert {e["stream"] for e in r.json()} == {"c1"}
        metrics = (await server.client.get("/metrics")).text
        assert "camserver_motion_frames_total" in metrics
        # Deleting: the event and its snapshot go.
        r = await server.client.delete(f"/api/events/{end['id']}")
        assert r.status_code == 204
        assert (await server.client.get(f"/api/events/{end['id']}")).status_code == 404
        assert (await server.client.get(listed["snapshot_url"])).status_code == 404
        for params in ({"start": "soon"}, {"limit": 0}, {"start": 10, "end": 5}):
            assert (await server.client.get("/api/events", params=params)).status_code == 422


async def _closed_clip(server: Server, name: str) -> bool:
    rows = (await server.client.get(f"/api/streams/{name}/recordings")).json()
    return bool(rows) and all(r["closed"] for r in rows)


async def test_webhooks_get_each_event_and_a_hanging_or_failing_receiver_delays_nothing(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10, scene={})
    other = await camera("c2", fps=10)
    async with AsyncExitStack() as stack:
        good, own, hangs, fails = (Receiver(b) for b in ("ok", "ok", "hang", "fail"))
        for receiver in (good, own, hangs, fails):
            await receiver.start(stack)
        port = free_port()
        settings = settings.model_copy(
            update={
                "webhook_urls": SecretStr(f"{hangs.url},{fails.url},{good.url}"),
                "webhook_timeout": 1.0,
                "public_url": f"http://127.0.0.1:{port}",
            }
        )
        server = await start_server(stack, settings, port=port)
        listener = MotionListener()
        await listener.sio.connect(server.url, transports=["websocket"], wait_timeout=5)
        stack.push_async_callback(listener.sio.disconnect)
        motion = {"enabled": True, "cooldown": 1.0, "webhook_url": own.url}
        await server.add_camera("c1", cam, motion=motion)
        await server.add_camera("c2", other)  # a live viewer of another camera meanwhile
        (viewer,) = await stack.enter_async_context(
            mjpeg_viewers(f"{server.url}/api/streams/c2/mjpeg", 1)
        )
        await asyncio.sleep(2)
        cam.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})
        await wait_for(lambda: bool(listener.of("c1", "end")), 15, what="an event")
        sio_start = listener.of("c1", "start")[0]["received"]
        sio_end = listener.of("c1", "end")[0]["received"]
        for rec in (good, own):
            await wait_for(lambda rec=rec: len(rec.posts) >= 2, 5, what=f"{rec.url}'s posts")
            assert [p["event"] for p in rec.posts] == ["motion_start", "motion_end"]
            assert rec.posts[0]["received"] - sio_start < 1.0  # the hanging one delayed nothing
            assert rec.posts[1]["received"] - sio_end < 1.0
            assert rec.posts[0]["id"] == rec.posts[1]["id"]
            assert rec.posts[1]["end"] is not None
        # The snapshot URL serves the JPEG.
        url = good.posts[1]["snapshot_url"]
        assert url == f"{server.url}/api/events/{good.posts[1]['id']}/snapshot.jpg"
        async with httpx.AsyncClient(trust_env=False) as http:
            r = await http.get(url)
        assert r.status_code == 200
        assert r.content[:2] == b"\xff\xd8"
        # The failing receiver was tried again with backoff; the hanging one timed out.
        await wait_for(lambda: len(fails.posts) >= 3, 10, what="retries")
        assert len(hangs.posts) >= 1
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(viewer.frames)]
        assert len(viewer.frames) > 50
        assert max(gaps) < 1.0  # live video went on throughout
        hooks = server.state.webhooks.counters
        assert hooks.sent >= 4
        # A webhook URL must be http(s): 422 otherwise.
        r = await server.client.patch(
            "/api/streams/c1", json={"motion": {"webhook_url": "file:///etc/passwd"}}
        )
        assert r.status_code == 422
