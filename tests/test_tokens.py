"""Managed tokens, and tokens scoped to cameras: every route and Socket.IO event, table
driven. A scoped token gets 404 for a stream outside its scope (names do not leak) and
403 on routes about no single stream."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from camserver.config import Settings
from tests.conftest import CameraFactory, Server, start_server, wait_for
from tests.helpers.auth import ADMIN, auth

# (method, path, status for a token scoped to stream "a", as a viewer)
ROUTES: list[tuple[str, str, int]] = [
    ("GET", "/api/streams/a", 200),
    ("GET", "/api/streams/b", 404),
    ("GET", "/api/streams/a/status", 200),
    ("GET", "/api/streams/b/status", 404),
    ("GET", "/api/streams/a/snapshot", 200),
    ("GET", "/api/streams/b/snapshot", 404),
    ("GET", "/api/streams/a/mjpeg", 200),
    ("GET", "/api/streams/b/mjpeg", 404),
    ("GET", "/api/frame.jpeg?src=a", 200),
    ("GET", "/api/frame.jpeg?src=b", 404),
    ("GET", "/api/stream.mjpeg?src=a", 200),
    ("GET", "/api/stream.mjpeg?src=b", 404),
    ("GET", "/api/streams/a/settings", 200),
    ("GET", "/api/streams/b/settings", 404),
    ("GET", "/api/streams/ghost", 404),
    ("GET", "/api/streams/a/recordings", 200),
    ("GET", "/api/streams/b/recordings", 404),
    ("GET", "/api/streams/b/frame.jpeg?t=1", 404),
    ("GET", "/api/streams/b/replay.mjpeg", 404),
    ("GET", "/api/streams/b/clip.mp4?start=1&end=2", 404),
    ("POST", "/api/streams/a/recordings/event", 403),
    ("DELETE", "/api/recordings/1", 403),
    ("GET", "/api/events", 200),
    ("GET", "/api/events?stream=a", 200),
    ("GET", "/api/events?stream=b", 404),
    ("GET", "/api/events/999999", 404),
    ("DELETE", "/api/events/1", 403),
    ("GET", "/api/discovery", 403),
    ("GET", "/api/tokens", 403),
    ("POST", "/api/tokens", 403),
    ("POST", "/api/streams", 403),  # a viewer: read-only first of all
    ("POST", "/api/streams/a/stop", 403),
    ("DELETE", "/api/streams/a", 403),
]
# The same token as an admin of stream "a".
ADMIN_ROUTES: list[tuple[str, str, int]] = [
    ("POST", "/api/streams/a/stop", 200),
    ("POST", "/api/streams/a/start", 200),
    ("PATCH", "/api/streams/b", 404),
    ("POST", "/api/streams/b/stop", 404),
    ("DELETE", "/api/streams/b", 404),
    ("POST", "/api/streams/b/recordings/event", 404),
    ("DELETE", "/api/recordings/999999", 404),
    ("DELETE", "/api/events/999999", 404),
    ("POST", "/api/streams", 403),
    ("GET", "/api/discovery", 403),
    ("POST", "/api/tokens", 403),
    ("GET", "/api/tokens", 403),
]


async def _token(server: Server, **body: Any) -> dict[str, Any]:
    r = await server.client.post("/api/tokens", json=body, headers=auth(ADMIN))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def _status(client: httpx.AsyncClient, method: str, path: str, token: str) -> int:
    body: dict[str, Any] = {}
    if path.endswith(("/api/streams", "/tokens")):
        body = {"name": "c", "host": "10.0.0.9"}
    if method == "PATCH":
        body = {"on_demand": False}
    async with client.stream(
        method, path, headers=auth(token), json=body if method != "GET" else None
    ) as r:
        return r.status_code  # headers only: MJPEG never ends


@pytest.fixture
async def two(locked: Server, camera: CameraFactory) -> Server:
    cam = await camera("a", fps=15)
    r = await locked.client.post(
        "/api/streams", json={"name": "a", "host": cam.address}, headers=auth(ADMIN)
    )
    assert r.status_code == 201
    r = await locked.client.post(
        "/api/streams",
        json={"name": "b", "host": "127.0.0.1:9", "enabled": False},
        headers=auth(ADMIN),
    )
    assert r.status_code == 201

    async def streaming() -> bool:
        r = await locked.client.get("/api/streams/a/status", headers=auth(ADMIN))
        return bool(r.json()["state"] == "streaming")

    await wait_for(streaming, what="a streaming")
    return locked


async def test_a_scoped_token_sees_only_its_streams_everywhere(two: Server) -> None:
    view = (await _token(two, name="neighbour", role="view", streams=["a"]))["token"]
    admin = (await _token(two, name="a-admin", role="admin", streams=["a"]))["token"]
    for table, token in ((ROUTES, view), (ADMIN_ROUTES, admin)):
        for method, path, expected in table:
            got = await _status(two.client, method, path, token)
            assert got == expected, (method, path, got)
    r = await two.client.get("/api/streams", headers=auth(view))
    assert [s["name"] for s in r.json()] == ["a"]
    text = (await two.client.get("/metrics", headers=auth(view))).text
    streams = {
        s.labels["stream"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "stream" in s.labels
    }
    assert streams == {"a"}
    assert "process_resident_memory_bytes" not in text  # nothing about the server
    assert "camserver_stream_frames" in text


async def test_a_scoped_token_over_socketio(two: Server) -> None:
    view = (await _token(two, name="neighbour", role="view", streams=["a"]))["token"]
    scoped, full = (socketio.AsyncClient(reconnection=False) for _ in range(2))
    heard: dict[str, list[str]] = {"scoped": [], "full": []}
    scoped.on("stream_status", lambda d: heard["scoped"].append(d["name"]))
    full.on("stream_status", lambda d: heard["full"].append(d["name"]))
    for client, token in ((scoped, view), (full, ADMIN)):
        await client.connect(
            two.url, transports=["websocket"], headers=auth(token), auth={"token": token}
        )
    assert (await scoped.call("join_stream", {"name": "a"}))["ok"] is True
    ack = await scoped.call("join_stream", {"name": "b"})
    assert ack == {"ok": False, "error": "no stream named 'b'", "status": 404}
    for name in ("b", "a"):  # state changes on both streams
        r = await two.client.post(f"/api/streams/{name}/start", headers=auth(ADMIN))
        assert r.status_code == 200
        await two.client.post(f"/api/streams/{name}/stop", headers=auth(ADMIN))
    await wait_for(lambda: "a" in heard["full"] and "b" in heard["full"], what="events")
    await wait_for(lambda: "a" in heard["scoped"], what="the scoped client's event")
    await asyncio.sleep(0.2)
    assert set(heard["scoped"]) == {"a"}
    for client in (scoped, full):
        await client.disconnect()


async def test_revoked_and_expired_tokens_stop_working(two: Server) -> None:
    made = await _token(two, name="short", role="view", expires_in=0.5)
    kept = await _token(two, name="kept", role="view")
    assert (await two.client.get("/api/streams", headers=auth(made["token"]))).status_code == 200
    time.sleep(0.6)
    assert (await two.client.get("/api/streams", headers=auth(made["token"]))).status_code == 401
    r = await two.client.delete(f"/api/tokens/{kept['id']}", headers=auth(ADMIN))
    assert r.status_code == 204
    assert (await two.client.get("/api/streams", headers=auth(kept["token"]))).status_code == 401
    r = await two.client.delete(f"/api/tokens/{kept['id']}", headers=auth(ADMIN))
    assert r.status_code == 404
    listed = (await two.client.get("/api/tokens", headers=auth(ADMIN))).json()
    assert [t["name"] for t in listed] == ["short"]
    assert "token" not in listed[0]
    assert listed[0]["last_used"] is not None


async def test_only_the_hash_is_stored(two: Server) -> None:
    made = await _token(two, name="x", role="admin")
    with sqlite3.connect(two.settings.db) as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
    conn.close()
    dump = repr(rows)
    assert made["token"] not in dump
    assert made["id"] in dump


async def test_no_managed_tokens_on_an_open_server(server: Server) -> None:
    r = await server.client.post("/api/tokens", json={"name": "x"})
    assert r.status_code == 403
    assert "the server is open" in r.json()["detail"]


async def test_tokens_and_their_last_use_survive_a_restart(settings: Settings) -> None:
    tokens = {"api_token": SecretStr(ADMIN)}
    async with AsyncExitStack() as stack:
        first = await start_server(stack, settings.model_copy(update=tokens))
        made = await _token(first, name="kept", role="view", streams=["a"])
        r = await first.client.get("/api/streams", headers=auth(made["token"]))
        assert r.status_code == 200
    async with AsyncExitStack() as stack:
        second = await start_server(stack, settings.model_copy(update=tokens))
        (listed,) = (await second.client.get("/api/tokens", headers=auth(ADMIN))).json()
        assert listed["id"] == made["id"]
        assert listed["streams"] == ["a"]
        assert listed["last_used"] is not None  # written when the first server stopped
        r = await second.client.get("/api/streams/a", headers=auth(made["token"]))
        assert r.status_code == 404  # scoped to "a", which does not exist here: still 404
        r = await second.client.get("/api/streams", headers=auth(made["token"]))
        assert r.status_code == 200


async def _open_with(server: Server, token: str, stack: AsyncExitStack) -> dict[str, Any]:
    """A Socket.IO session that joined "a", a direct MJPEG response and a per-viewer one
    (``?fps=``, uvicorn's own path), all opened with ``token``; what they got is counted."""
    got: dict[str, Any] = {"frames": 0, "disconnected": asyncio.Event(), "mjpeg": []}
    sio = socketio.AsyncClient(reconnection=False)

    def on_frame(data: Any) -> None:
        got["frames"] += 1

    def on_disconnect(*_: Any) -> None:
        got["disconnected"].set()

    sio.on("frame", on_frame)
    sio.on("disconnect", on_disconnect)
    await sio.connect(server.url, transports=["websocket"], auth={"token": token})
    stack.push_async_callback(sio.disconnect)
    assert (await sio.call("join_stream", {"name": "a"}))["ok"]
    got["sio"] = sio
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=10))
    for path in ("/api/streams/a/mjpeg", "/api/streams/a/mjpeg?fps=5"):
        done = asyncio.Event()
        parts = {"n": 0}

        async def read(path: str = path, done: asyncio.Event = done, parts: Any = parts) -> None:
            try:
                async with client.stream("GET", path, headers=auth(token)) as r:
                    assert r.status_code == 200
                    async for chunk in r.aiter_raw():
                        parts["n"] += chunk.count(b"--camserverframe")
            except httpx.HTTPError:
                pass  # cut off: what a revocation does
            finally:
                done.set()

        task = asyncio.create_task(read())
        stack.callback(task.cancel)
        got["mjpeg"].append((done, parts))
    await wait_for(
        lambda: got["frames"] >= 2 and all(p["n"] >= 2 for _, p in got["mjpeg"]),
        10,
        what="frames on every way in",
    )
    return got


async def _all_ended(got: dict[str, Any], within: float) -> None:
    start = time.monotonic()
    await asyncio.wait_for(got["disconnected"].wait(), within)
    for done, _ in got["mjpeg"]:
        await asyncio.wait_for(done.wait(), max(0.01, within - (time.monotonic() - start)))


async def test_revoking_or_expiry_ends_what_the_token_opened(two: Server) -> None:
    """M1 (issue 26): an open Socket.IO session kept receiving frames and could still
    join; open MJPEG responses kept flowing after the token was revoked or expired."""
    revoked = await _token(two, name="revoked")
    expiring = await _token(two, name="expiring", expires_in=3)
    kept = await _token(two, name="kept", streams=["a"])
    async with AsyncExitStack() as stack:
        by_token = {
            name: await _open_with(two, t["token"], stack)
            for name, t in (("revoked", revoked), ("expiring", expiring), ("kept", kept))
        }
        r = await two.client.delete(f"/api/tokens/{revoked['id']}", headers=auth(ADMIN))
        assert r.status_code == 204
        await _all_ended(by_token["revoked"], 1.5)  # "within a second", with a margin
        # Expiry: at its time, whoever is watching.
        wait = expiring["expires_at"] - time.time()
        assert wait > 0.5, "the test was too slow to see the token before it expired"
        await asyncio.sleep(wait)
        await _all_ended(by_token["expiring"], 1.5)
        # The other token's viewers are untouched and still get frames.
        kept_got = by_token["kept"]
        assert not kept_got["disconnected"].is_set()
        before = [kept_got["frames"], *(p["n"] for _, p in kept_got["mjpeg"])]
        await asyncio.sleep(1.0)
        after = [kept_got["frames"], *(p["n"] for _, p in kept_got["mjpeg"])]
        assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)
        assert not any(done.is_set() for done, _ in kept_got["mjpeg"])
    held = two.state.checker.held
    await wait_for(lambda: len(held) == 0, 10, what="nothing left held once the clients left")


def test_new_secrets_never_read_as_an_option() -> None:
    # One push key in 64 began with "-": `camserver sim --key -x…` (argparse), curl and
    # ffmpeg took it for an option (a CI run's deep-sleep camera never started).
    from camserver.tokens import new_token

    tokens = [new_token() for _ in range(2000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert {len(t) for t in tokens} == {43}
    assert len(set(tokens)) == 2000
