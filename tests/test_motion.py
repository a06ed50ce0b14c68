"""Motion detection (issue 17): settings through the API, persisted and checked; on real
processes (the simulator with a scene the test drives, a real server)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from camserver.config import Settings
from tests.conftest import CameraFactory, start_server

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
            "webhook_url": "http://127.0.0.1:9/hook",
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
