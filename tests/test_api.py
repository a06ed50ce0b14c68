"""REST API against a real uvicorn and simulated cameras."""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import AsyncExitStack

import pytest
from PIL import Image

from camserver.config import Settings
from camserver.schema import StreamConfig
from tests.conftest import CameraFactory, Server, start_server, wait_for


async def test_healthz(server: Server) -> None:
    r = await server.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_the_201_of_a_new_stream_tells_its_real_state(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=5)
    r = await server.client.post("/api/streams", json={"name": "c1", "host": cam.address})
    assert r.status_code == 201, r.text
    assert r.json()["status"]["state"] == "connecting"  # it was "stopped" (issue 19)
    r = await server.client.post(
        "/api/streams", json={"name": "c2", "host": cam.address, "on_demand": True}
    )
    assert r.json()["status"]["state"] == "idle"  # on-demand and unwatched
    r = await server.client.post(
        "/api/streams", json={"name": "c3", "host": cam.address, "enabled": False}
    )
    assert r.json()["status"]["state"] == "stopped"


async def test_create_by_host_follows_the_firmware_rule(server: Server) -> None:
    r = await server.client.post(
        "/api/streams", json={"name": "porch", "host": "192.0.2.50", "enabled": False}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["stream_url"] == "http://192.0.2.50:81/stream"
    assert body["snapshot_url"] == "http://192.0.2.50:80/capture"
    assert body["status"]["state"] == "stopped"
    r = await server.client.post(
        "/api/streams", json={"name": "yard", "host": "192.0.2.51:8080", "enabled": False}
    )
    assert r.json()["stream_url"] == "http://192.0.2.51:8081/stream"
    assert r.json()["snapshot_url"] == "http://192.0.2.51:8080/capture"
    r = await server.client.post(
        "/api/streams",
        json={
            "name": "any_1",
            "stream_url": "https://example.invalid/video.mjpg",
            "enabled": False,
        },
    )
    assert r.status_code == 201
    assert r.json()["snapshot_url"] is None
    names = [s["name"] for s in (await server.client.get("/api/streams")).json()]
    assert names == ["porch", "yard", "any_1"]


async def test_duplicate_name_is_409(server: Server) -> None:
    body = {"name": "porch", "host": "192.0.2.50", "enabled": False}
    assert (await server.client.post("/api/streams", json=body)).status_code == 201
    r = await server.client.post("/api/streams", json=body)
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "Porch", "host": "1.2.3.4"}, "name", "pattern"),
        ({"name": "", "host": "1.2.3.4"}, "name", "pattern"),
        ({"name": "a" * 65, "host": "1.2.3.4"}, "name", "pattern"),
        ({"name": "p", "host": "http://1.2.3.4"}, "host", "stream_url"),
        ({"name": "p", "host": "1.2.3.4:99999"}, "host", "port"),
        ({"name": "p", "host": "1.2.3.4:65535"}, "host", "port"),
        ({"name": "p", "host": "bad host!"}, "host", "not a valid host"),
        ({"name": "p"}, None, "either host or stream_url"),
        ({"name": "p", "host": "1.2.3.4", "stream_url": "http://x/"}, None, "exactly one"),
        ({"name": "p", "stream_url": "ftp://x/y"}, "stream_url", "http://"),
        ({"name": "p", "stream_url": "http:///nohost"}, "stream_url", "no host"),
        ({"name": "p", "stream_url": "http://x:notaport/"}, "stream_url", "port"),
        ({"name": "p", "host": "1.2.3.4", "extra": 1}, "extra", "not permitted"),
        ({"name": "p", "host": "xn--"}, "host", "invalid host name"),
        ({"name": "p", "stream_url": "http://xn--/s"}, "stream_url", "invalid host name"),
        ({"name": "p", "stream_url": "http://a..b/s"}, "stream_url", "invalid host name"),
    ],
)
async def test_invalid_input_is_422_with_a_clear_message(
    server: Server, body: dict[str, object], field: str | None, words: str
) -> None:
    r = await server.client.post("/api/streams", json=body)
    assert r.status_code == 422, r.text
    data = r.json()
    assert words in data["detail"], data
    assert any(e["field"] == field for e in data["errors"]), data


async def test_not_json_is_422(server: Server) -> None:
    r = await server.client.post(
        "/api/streams", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/streams/ghost"),
        ("DELETE", "/api/streams/ghost"),
        ("POST", "/api/streams/ghost/start"),
        ("POST", "/api/streams/ghost/stop"),
        ("GET", "/api/streams/ghost/status"),
        ("GET", "/api/streams/ghost/snapshot"),
    ],
)
async def test_unknown_name_is_404_json(server: Server, method: str, path: str) -> None:
    r = await server.client.request(method, path)
    assert r.status_code == 404
    assert r.json() == {"detail": "no stream named 'ghost'"}


async def test_stream_lifecycle_against_a_camera(server: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    st = await server.wait_state("c1", "streaming")
    await wait_for(lambda: cam.frames_sent >= 20, what="frames")
    st = await server.status("c1")
    assert st["frames"] >= 10
    assert st["bytes"] > st["frames"] * 1000
    assert 12 <= st["fps"] <= 25, st
    assert st["last_frame_at"] is not None
    assert st["upstream_connects"] == 1
    assert st["bad_frames"] == 0
    assert set(st) == {
        "state",
        "fps",
        "frames",
        "bytes",
        "bad_frames",
        "last_frame_at",
        "last_error",
        "last_error_at",
        "retry_at",
        "upstream_connects",
        "viewers",
        "demand",
        "node",
        "pusher",
        "telemetry",
        "device",
        "entities",
    }
    assert (st["pusher"], st["telemetry"]) == (None, None)  # (push cameras' fields)
    assert (st["device"], st["entities"]) == (None, None)  # (ESPHome cameras' fields)
    # Nobody watches, nothing records: no demand (the camera is not on demand anyway).
    assert st["demand"] == {"viewers": 0, "recording": False, "motion": False, "remote": 0}
    assert st["node"] is None  # one node: no cluster
    assert st["retry_at"] is None  # streaming: no attempt to wait for

    r = await server.client.post("/api/streams/c1/stop")
    assert r.status_code == 200
    assert r.json()["state"] == "stopped"
    await wait_for(lambda: cam.active_streams == 0, what="camera connection closed")
    assert (await server.client.get("/api/streams/c1")).json()["enabled"] is False

    r = await server.client.post("/api/streams/c1/start")
    assert r.status_code == 200
    await server.wait_state("c1", "streaming")
    assert cam.stream_connections == 2

    assert (await server.client.delete("/api/streams/c1")).status_code == 204
    await wait_for(lambda: cam.active_streams == 0, what="camera connection closed")
    assert (await server.client.get("/api/streams/c1")).status_code == 404


async def test_snapshot_latest_frame_then_camera_then_503(
    settings: Settings, camera: CameraFactory
) -> None:
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"snapshot_max_age": 0.3}))
        await _snapshot_checks(server, camera)


async def _snapshot_checks(server: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    hub = server.state.manager.hub("c1")
    r = await server.client.get("/api/streams/c1/snapshot")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (320, 240)
    # A recent frame is served from the hub: the camera's /capture was not asked.
    assert cam.captures == 0
    cached = r.content

    # Stopped: the last frame gets old, so the snapshot comes from the camera's /capture.
    await server.client.post("/api/streams/c1/stop")
    last = hub.latest
    assert last is not None
    await wait_for(lambda: time.time() - last.ts > 0.3, what="the last frame to be stale")
    r = await server.client.get("/api/streams/c1/snapshot")
    assert r.status_code == 200
    assert cam.captures == 1  # one /capture was made
    assert r.content not in (cached, last.data)  # a new picture, not a cached frame
    assert hub.latest is last  # and it did not pass through the hub

    # No frame and no snapshot URL: 503 with a reason.
    r = await server.client.post(
        "/api/streams",
        json={"name": "raw", "stream_url": "http://127.0.0.1:9/stream", "enabled": False},
    )
    r = await server.client.get("/api/streams/raw/snapshot")
    assert r.status_code == 503
    assert "no snapshot URL" in r.json()["detail"]

    # A camera that cannot be reached: 503, not 500.
    await cam.stop()
    r = await server.client.get("/api/streams/c1/snapshot")
    assert r.status_code == 503
    assert "snapshot URL failed" in r.json()["detail"]


async def test_openapi_docs(server: Server) -> None:
    r = await server.client.get("/openapi.json")
    paths = r.json()["paths"]
    for p in (
        "/api/streams",
        "/api/streams/{name}",
        "/api/streams/{name}/snapshot",
        "/api/streams/{name}/start",
        "/api/streams/{name}/stop",
        "/api/streams/{name}/status",
        "/healthz",
    ):
        assert p in paths
    assert (await server.client.get("/docs")).status_code == 200


async def test_a_stored_url_that_cannot_be_requested_never_kills_the_stream(server: Server) -> None:
    # Such a URL is refused by the API now, but may come from an older database.
    manager = server.state.manager
    await manager.put(
        StreamConfig(name="odd", stream_url="http://xn--/stream", snapshot_url="http://xn--/c")
    )
    st = await server.wait_state("odd", "retrying")
    assert "cannot resolve 'xn--'" in st["last_error"]
    r = await server.client.get("/api/streams/odd/snapshot")
    assert r.status_code == 503
    await asyncio.sleep(0.6)
    assert (await server.status("odd"))["state"] == "retrying"  # still retrying, not dead


def test_every_endpoint_and_dependency_is_async() -> None:
    """FastAPI runs a plain ``def`` endpoint or dependency in a worker thread on every
    request: a thread hop per request, and threads that come and go (RSS creep)."""
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from camserver.api import camera_settings, compat, discovery, health, metrics, streams

    sync: list[str] = []

    def walk(dep: Dependant, where: str) -> None:
        if dep.call is not None and not asyncio.iscoroutinefunction(dep.call):
            call = getattr(dep.call, "__call__", None)  # noqa: B004 - class-based dependency
            if not asyncio.iscoroutinefunction(call):
                sync.append(f"{where}: {getattr(dep.call, '__qualname__', dep.call)}")
        for sub in dep.dependencies:
            walk(sub, where)

    modules = (camera_settings, compat, discovery, health, metrics, streams)
    routes = [r for m in modules for r in m.router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 10
    for route in routes:
        walk(route.dependant, route.path)
    assert sync == []


async def test_recording_and_motion_keep_an_on_demand_camera_as_demand_not_viewers(
    settings: Settings, camera: CameraFactory
) -> None:
    """Issue 27: the recorder and the motion detector are demand by name; ``viewers``
    counts only people and programs watching (the demo showed "3 viewers" for one page)."""
    cam = await camera("c1", fps=10)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"on_demand_grace": 0.5}))
        await server.add_camera(
            "c1",
            cam,
            on_demand=True,
            recording={"mode": "continuous"},
            motion={"enabled": True},
        )
        st = await server.wait_state("c1", "streaming")  # wanted with nobody watching
        assert st["viewers"] == 0
        assert st["demand"] == {"viewers": 0, "recording": True, "motion": True, "remote": 0}
        async with server.client.stream("GET", "/api/streams/c1/mjpeg") as resp:
            assert resp.status_code == 200
            st = await server.status("c1")
            assert st["viewers"] == 1
            assert st["demand"]["viewers"] == 1
            listed = (await server.client.get("/api/streams")).json()
            assert listed[0]["status"]["viewers"] == 1
            metrics = (await server.client.get("/metrics")).text
            kinds = [
                line
                for line in metrics.splitlines()
                if line.startswith("camserver_stream_viewers{")
            ]
            assert sum(float(line.rsplit(" ", 1)[1]) for line in kinds) == 1, kinds
        r = await server.client.patch(
            "/api/streams/c1", json={"recording": {"mode": "off"}, "motion": {"enabled": False}}
        )
        assert r.status_code == 200, r.text
        st = await server.wait_state("c1", "idle")  # nothing needs it: let go after the grace
        assert st["demand"] == {"viewers": 0, "recording": False, "motion": False, "remote": 0}
        await wait_for(lambda: cam.active_streams == 0, what="the camera connection closed")
