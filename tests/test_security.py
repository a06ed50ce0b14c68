"""Access control, camera logins, allowed networks, CORS and limits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio
import websockets
from pydantic import SecretStr

from camserver.config import Settings
from camserver.logs import RedactTokens
from camserver.sim.http import Login
from tests.conftest import CameraFactory, Proc, Server, start_server, wait_for, wait_healthy
from tests.helpers.auth import ADMIN, VIEW, auth


async def test_public_routes_need_no_token(locked: Server) -> None:
    for path in (
        "/healthz",
        "/",
        "/app.js",
        "/style.css",
        "/vendor/socket.io.min.js",
        "/docs",
        "/openapi.json",
    ):
        r = await locked.client.get(path)
        assert r.status_code == 200, path


async def test_missing_and_wrong_tokens_are_401_with_a_reason(locked: Server) -> None:
    r = await locked.client.get("/api/streams")
    assert r.status_code == 401
    assert "token is required" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await locked.client.get("/api/streams", headers=auth("nope"))
    assert (r.status_code, r.json()["detail"]) == (401, "invalid token")
    r = await locked.client.get("/api/streams", headers={"Authorization": f"Basic {ADMIN}"})
    assert r.status_code == 401
    assert (await locked.client.get("/api/streams", headers=auth(ADMIN))).status_code == 200
    assert (await locked.client.get(f"/api/streams?token={ADMIN}")).status_code == 200
    assert (await locked.client.get("/api/discovery", headers=auth(VIEW))).status_code == 200


async def test_view_token_is_read_only(locked: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=15)
    r = await locked.client.post(
        "/api/streams", json={"name": "c1", "host": cam.address}, headers=auth(ADMIN)
    )
    assert r.status_code == 201
    await wait_for(lambda: _streaming(locked), 10, what="streaming")
    changes = [
        ("POST", "/api/streams", {"name": "x", "host": "127.0.0.1"}),
        ("DELETE", "/api/streams/c1", None),
        ("POST", "/api/streams/c1/start", None),
        ("POST", "/api/streams/c1/stop", None),
        ("PATCH", "/api/streams/c1", {"on_demand": True}),
        ("PUT", "/api/streams/c1/settings", {"quality": 10}),
        ("POST", "/api/discovery/scan", None),
        ("POST", "/api/discovery/c1/add", None),
    ]
    for method, path, body in changes:
        r = await locked.client.request(method, path, json=body, headers=auth(VIEW))
        assert r.status_code == 403, (method, path)
        assert "read-only" in r.json()["detail"]
    for path in (
        "/api/streams",
        "/api/streams/c1/status",
        "/api/streams/c1/snapshot",
        "/api/streams/c1/settings",
        f"/api/frame.jpeg?src=c1&token={VIEW}",
    ):
        r = await locked.client.get(path, headers=auth(VIEW))
        assert r.status_code == 200, path
    # An <img>/VLC URL carries the token in the query string.
    async with locked.client.stream("GET", f"/api/streams/c1/mjpeg?token={VIEW}") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("multipart/x-mixed-replace")
    r = await locked.client.get("/api/streams/c1/mjpeg")
    assert r.status_code == 401
    assert (await locked.client.get("/api/streams/c1", headers=auth(ADMIN))).status_code == 200


async def _streaming(server: Server) -> bool:
    r = await server.client.get("/api/streams/c1/status", headers=auth(ADMIN))
    return bool(r.json()["state"] == "streaming")


async def test_socketio_checks_the_token_at_connect(locked: Server) -> None:
    # A wrong token in the Engine.IO handshake is refused at once.
    r = await locked.client.get(
        "/socket.io/", params={"EIO": "4", "transport": "polling", "token": "wrong"}
    )
    assert r.status_code == 401
    # A parameter that merely ends in "sid" does not make a handshake a session.
    r = await locked.client.get(
        "/socket.io/", params={"EIO": "4", "transport": "polling", "xsid": "1", "token": "x"}
    )
    assert r.status_code == 401
    # The CONNECT packet's token alone is enough (Socket.IO's own way), over both
    # transports; with a token in the handshake too, the CONNECT packet's is checked.
    for transports in (["websocket"], ["polling", "websocket"]):
        async with aiohttp.ClientSession() as session:
            sio = socketio.AsyncClient(reconnection=False, http_session=session)
            await sio.connect(locked.url, transports=transports, auth={"token": VIEW})
            ack = await sio.call("join_stream", {"name": "none"})
            assert ack == {"ok": False, "error": "no stream named 'none'", "status": 404}
            await sio.disconnect()
    for handshake, connect in ((None, None), (None, "bad"), (auth(VIEW), "bad")):
        async with aiohttp.ClientSession() as session:
            sio = socketio.AsyncClient(reconnection=False, http_session=session)
            refusals: list[Any] = []
            sio.on("connect_error", refusals.append)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await sio.connect(
                    locked.url,
                    transports=["websocket"],
                    headers=handshake or {},
                    auth={"token": connect} if connect else None,
                )
        assert "a valid token is required" in str(refusals[0]), refusals
    for token in (ADMIN, VIEW):
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(
            locked.url, transports=["websocket"], headers=auth(token), auth={"token": token}
        )
        ack = await sio.call("join_stream", {"name": "none"})
        assert ack == {"ok": False, "error": "no stream named 'none'", "status": 404}
        await sio.disconnect()


TOKENLESS = {"socketio_connect_timeout": 1.5, "max_tokenless_sessions_per_client": 4}


async def test_sessions_without_a_token_are_few_and_short(
    settings: Settings, camera: CameraFactory
) -> None:
    """A handshake without a token opens a session that must CONNECT with one in time; an
    address holds a few such sessions at most. M2: ``/socket.io`` without the trailing
    slash (python-engineio adds it) skipped the gate: 3,000 sessions in 4 s."""
    tokens = {"api_token": SecretStr(ADMIN), "view_token": SecretStr(VIEW), **TOKENLESS}
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=tokens))
        tokenless = server.state.realtime.tokenless
        handshakes = []
        for path in ("/socket.io", "/socket.io/", "/socket.io", "/socket.io/", "/socket.io"):
            r = await server.client.get(path, params={"EIO": "4", "transport": "polling"})
            handshakes.append(r)
        assert [r.status_code for r in handshakes] == [200, 200, 200, 200, 429]
        assert "too many Socket.IO sessions without a token" in handshakes[-1].json()["detail"]
        assert tokenless.waiting("127.0.0.1") == 4
        # A raw WebSocket likewise; meanwhile a client with a token is never held back.
        ws_url = server.url.replace("http://", "ws://") + "/socket.io?EIO=4&transport=websocket"
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(ws_url)
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.url, transports=["websocket"], headers=auth(VIEW))
        await sio.disconnect()
        # The deadline ends the waiting sessions: a poll on one gets 400 (unknown session).
        sid = json.loads(handshakes[0].text[1:])["sid"]
        await wait_for(lambda: tokenless.waiting() == 0, 10, what="the waiting sessions ended")
        r = await server.client.get(
            "/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid}
        )
        assert r.status_code == 400
        # Room again: a raw WebSocket that connects with the token in CONNECT stays.
        async with websockets.connect(ws_url) as ws:
            assert str(await ws.recv()).startswith("0{")
            await ws.send("40" + json.dumps({"token": VIEW}))
            assert str(await ws.recv()).startswith("40")
            assert tokenless.waiting() == 0
            await asyncio.sleep(TOKENLESS["socketio_connect_timeout"] + 0.5)
            await ws.send('421["join_stream", {"name": "none"}]')
            assert str(await ws.recv()).startswith("431")


async def test_malformed_packets_log_one_line_not_a_traceback_each(
    locked: Server, caplog: pytest.LogCaptureFixture
) -> None:
    url = locked.url.replace("http://", "ws://")
    url += f"/socket.io/?EIO=4&transport=websocket&token={VIEW}"
    with caplog.at_level(logging.INFO, logger="engineio.server"):
        async with websockets.connect(url) as ws:
            assert str(await ws.recv()).startswith("0{")
            await ws.send("40" + json.dumps({"token": VIEW}))
            assert str(await ws.recv()).startswith("40")
            for _ in range(300):
                await ws.send('42["join_stream", {')  # not JSON
            await ws.send('421["join_stream", {"name": "none"}]')
            while not str(reply := await ws.recv()).startswith("431"):
                pass
            assert "no stream named" in str(reply)  # the session still works
    records = [r for r in caplog.records if r.name == "engineio.server"]
    errors = [r for r in records if r.levelno >= logging.WARNING]
    assert 1 <= len(errors) <= 2, [r.getMessage() for r in errors]
    assert all(r.exc_info is None for r in records)
    assert "could not be handled" in errors[0].getMessage()


async def test_socketio_token_in_the_query_string(locked: Server) -> None:
    # Clients that cannot send an auth payload (older libraries, a URL pasted into a
    # tool) put the token in the connection URL, as for MJPEG.
    for token, admitted in ((ADMIN, True), (VIEW, True), ("wrong", False)):
        sio = socketio.AsyncClient(reconnection=False)
        url = f"{locked.url}?token={token}"
        if admitted:
            await sio.connect(url, transports=["websocket"])
            ack = await sio.call("join_stream", {"name": "none"})
            assert ack == {"ok": False, "error": "no stream named 'none'", "status": 404}
            await sio.disconnect()
        else:  # refused at the Engine.IO handshake already
            async with aiohttp.ClientSession() as session:
                sio = socketio.AsyncClient(reconnection=False, http_session=session)
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await sio.connect(url, transports=["websocket"])


def test_tokens_are_redacted_from_access_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/streams/x/mjpeg?fps=5&token={VIEW}", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert VIEW not in record.getMessage()
    assert "token=***" in record.getMessage()
    assert "fps=5" in record.getMessage()
    for query in (f"?%74oken={VIEW}", f"?a=1&t%6fken={VIEW}&b=2", f"?token={VIEW}#x"):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, f"GET /s{query}", (), None)
        RedactTokens().filter(record)
        assert VIEW not in record.getMessage(), query


async def test_public_paths_match_whole(locked: Server) -> None:
    # "$" also matches before a trailing newline: /docs%0A once passed as public.
    for path in ("/docs%0A", "/healthz%0A", "/openapi.json%0Ax"):
        r = await locked.client.get(path)
        assert r.status_code == 401, (path, r.status_code)


async def test_logins_in_urls_are_refused(server: Server) -> None:
    for field in ("stream_url", "snapshot_url"):
        body = {"name": "x", "stream_url": "http://10.0.0.9/s", field: "http://u:p@10.0.0.9/s"}
        r = await server.client.post("/api/streams", json=body)
        assert r.status_code == 422
        assert "must not contain a login" in r.json()["detail"]


async def test_database_is_private(server: Server) -> None:
    # It holds camera passwords.
    r = await server.client.post(
        "/api/streams",
        json={"name": "x", "host": "10.0.0.9", "username": "u", "password": "p", "enabled": False},
    )
    assert r.status_code == 201
    db = server.settings.db
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    assert all(f.exists() for f in files)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600, (f, oct(f.stat().st_mode))


async def test_tokens_never_reach_the_log_of_a_real_server(spawn: Any, tmp_path: Path) -> None:
    p: Proc = spawn(
        "--db",
        str(tmp_path / "t.db"),
        "--log-level",
        "info",
        env={"CAMSERVER_API_TOKEN": ADMIN, "CAMSERVER_VIEW_TOKEN": VIEW},
    )
    await wait_healthy(p)
    async with httpx.AsyncClient(trust_env=False) as c:
        assert (await c.get(f"{p.url}/api/streams?token={VIEW}")).status_code == 200
        assert (await c.get(f"{p.url}/api/streams", headers=auth(ADMIN))).status_code == 200
        assert (await c.get(f"{p.url}/api/streams?token=wrong")).status_code == 401
        # An encoded parameter name is the token to the server: redacted alike.
        assert (await c.get(f"{p.url}/api/streams?%74oken={VIEW}")).status_code == 200
        assert (await c.get(f"{p.url}/api/streams?x=1&t%6Fken={ADMIN}")).status_code == 200
    p.proc.terminate()
    p.proc.wait(10)
    log = p.output()
    assert "/api/streams?token=***" in log
    assert ADMIN not in log
    assert VIEW not in log


async def test_open_server_says_so(spawn: Any, tmp_path: Path) -> None:
    p: Proc = spawn("--db", str(tmp_path / "o.db"))
    await wait_healthy(p)
    assert "no CAMSERVER_API_TOKEN set" in p.output()
    assert "127.0.0.1" in p.output()


@pytest.mark.parametrize("value", ["", "   ", "short-token"])
@pytest.mark.parametrize("variable", ["CAMSERVER_API_TOKEN", "CAMSERVER_VIEW_TOKEN"])
def test_empty_or_short_tokens_are_refused(value: str, variable: str, tmp_path: Path) -> None:
    # An empty CAMSERVER_API_TOKEN used to leave the server open while `config` said "set".
    env = {**os.environ, variable: value}
    for command in (["config"], ["serve", "--port", "0", "--db", str(tmp_path / "t.db")]):
        out = subprocess.run(
            [sys.executable, "-m", "camserver", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert f"{variable} must be at least 16 characters" in out.stderr
        assert "unset the variable for an open server" in out.stderr


@pytest.mark.parametrize("scheme", ["basic", "digest"])
async def test_camera_login_is_used_and_never_returned(
    server: Server, camera: CameraFactory, scheme: str
) -> None:
    cam = await camera("c1", fps=15, login=Login("admin", "cam-pass-123", scheme))
    body = {
        "name": "c1",
        "host": cam.address,
        "username": "admin",
        "password": "cam-pass-123",
        "auth_scheme": scheme,
    }
    r = await server.client.post("/api/streams", json=body)
    assert r.status_code == 201
    assert "cam-pass-123" not in r.text
    assert r.json()["has_password"] is True
    assert r.json()["username"] == "admin"
    await server.wait_state("c1", "streaming")
    for path in ("/api/streams", "/api/streams/c1", "/openapi.json"):
        assert "cam-pass-123" not in (await server.client.get(path)).text
    # Snapshot and settings passthrough log in too.
    assert (await server.client.get("/api/streams/c1/settings")).status_code == 200
    # Stored only in the database.
    db = sqlite3.connect(server.settings.db)
    assert db.execute("SELECT password FROM streams").fetchone() == ("cam-pass-123",)
    db.close()

    # A wrong password gives a readable error, and a PATCH fixes it.
    r = await server.client.patch("/api/streams/c1", json={"password": "wrong"})
    assert r.status_code == 200
    st = await server.wait_state("c1", "retrying")
    assert "asks for a login" in st["last_error"]
    await server.client.patch("/api/streams/c1", json={"password": "cam-pass-123"})
    await server.wait_state("c1", "streaming")


async def test_allowed_networks_refuse_other_targets(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=15)
    update = {"allowed_networks": "127.0.0.0/8,::1/128"}
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=update))
        for body, words in (
            ({"name": "a", "host": "10.1.2.3"}, "outside the allowed networks"),
            ({"name": "b", "stream_url": "http://192.168.0.9:81/stream"}, "outside"),
            (
                {
                    "name": "d",
                    "stream_url": "http://127.0.0.1/s",
                    "snapshot_url": "http://10.0.0.1/",
                },
                "outside",
            ),
        ):
            r = await server.client.post("/api/streams", json=body)
            assert r.status_code == 422, r.text
            assert words in r.json()["detail"]
        r = await server.client.post("/api/streams", json={"name": "ok", "host": cam.address})
        assert r.status_code == 201
        r = await server.client.post(
            "/api/streams", json={"name": "local", "host": "localhost", "enabled": False}
        )
        assert r.status_code == 201  # resolves to loopback only
        r = await server.client.patch("/api/streams/ok", json={"host": "10.9.9.9"})
        assert r.status_code == 422
        assert (await server.client.get("/api/streams")).json()[0]["host"] == cam.address


async def test_cors_is_off_by_default_and_configurable(server: Server, settings: Settings) -> None:
    origin = {"Origin": "http://elsewhere.test"}
    r = await server.client.get("/api/streams", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    async with AsyncExitStack() as stack:
        s2 = await start_server(
            stack, settings.model_copy(update={"cors_origins": "http://elsewhere.test"})
        )
        r = await s2.client.options(
            "/api/streams",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://elsewhere.test"
        r = await s2.client.get("/api/streams", headers={"Origin": "http://other.test"})
        assert "access-control-allow-origin" not in r.headers


async def test_limits(settings: Settings, camera: CameraFactory) -> None:
    update = {"max_streams": 2, "max_viewers": 2, "max_body_bytes": 2048}
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=update))
        cam = await camera("c1", fps=15)
        await server.add_camera("c1", cam)
        await server.client.post(
            "/api/streams", json={"name": "c2", "host": "127.0.0.1", "enabled": False}
        )
        r = await server.client.post(
            "/api/streams", json={"name": "c3", "host": "127.0.0.1", "enabled": False}
        )
        assert r.status_code == 409
        assert "maximum of 2 streams" in r.json()["detail"]

        r = await server.client.post(
            "/api/streams",
            content=b"{" + b" " * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        assert "larger than 2048 bytes" in r.json()["detail"]

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        r = await server.client.post(
            "/api/streams", content=chunked(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

        await server.wait_state("c1", "streaming")
        url = "/api/streams/c1/mjpeg"
        async with server.client.stream("GET", url) as a, server.client.stream("GET", url) as b:
            assert (a.status_code, b.status_code) == (200, 200)
            await wait_for(lambda: _viewers(server, 2), 5, what="2 viewers")
            # A snapshot is a viewer too (it wakes an on-demand camera): refused alike.
            await _every_kind_refused(server, "maximum of 2 viewers")
        await wait_for(lambda: _viewers(server, 0), 5, what="no viewers")
        r = await server.client.get("/api/streams/c1/snapshot")
        assert r.status_code == 200
        await asyncio.sleep(0)


async def test_one_client_cannot_take_every_viewer_slot(
    settings: Settings, camera: CameraFactory
) -> None:
    update = {"max_viewers": 10, "max_viewers_per_client": 3}
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=update))
        cam = await camera("c1", fps=15)
        await server.add_camera("c1", cam)
        await server.wait_state("c1", "streaming")
        url = "/api/streams/c1/mjpeg"
        async with AsyncExitStack() as views:
            for _ in range(2):
                r = await views.enter_async_context(server.client.stream("GET", url))
                assert r.status_code == 200
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(server.url, transports=["websocket"])
            assert (await sio.call("join_stream", {"name": "c1"}))["ok"]  # the third
            await wait_for(lambda: _viewers(server, 3), 5, what="3 viewers")
            await _every_kind_refused(server, "already watches stream 'c1' 3 times")
            await sio.disconnect()
        await wait_for(lambda: _viewers(server, 0), 5, what="no viewers")
        r = await server.client.get("/api/streams/c1/snapshot")
        assert r.status_code == 200


async def _every_kind_refused(server: Server, words: str) -> None:
    """One more MJPEG viewer, snapshot or Socket.IO join of c1 is refused with ``words``."""
    for path in ("/api/streams/c1/mjpeg", "/api/streams/c1/snapshot"):
        r = await server.client.get(path)
        assert r.status_code == 503, path
        assert words in r.json()["detail"]
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(server.url, transports=["websocket"])
    ack = await sio.call("join_stream", {"name": "c1"})
    await sio.disconnect()
    assert ack["ok"] is False
    assert words in ack["error"]


async def _viewers(server: Server, n: int) -> bool:
    return bool((await server.status("c1"))["viewers"] == n)


async def test_webhook_urls_are_secrets_like_camera_passwords(
    locked: Server, camera: CameraFactory, tmp_path: Path
) -> None:
    """M5: GET /api/streams showed motion.webhook_url whole to view and scoped tokens (a
    Home Assistant webhook's id is a secret) and `camserver config` printed
    CAMSERVER_WEBHOOK_URLS with its password and key."""
    cam = await camera("c1")
    hook = "http://127.0.0.1:8123/api/webhook/secret-hook-id?key=k3y"
    body = {"name": "c1", "host": cam.address, "motion": {"webhook_url": hook}}
    assert (await locked.client.post("/api/streams", json=body, headers=auth(ADMIN))).is_success
    scoped = await locked.client.post(
        "/api/tokens", json={"name": "c1 only", "streams": ["c1"]}, headers=auth(ADMIN)
    )
    assert scoped.status_code == 201, scoped.text
    for token in (ADMIN, VIEW, scoped.json()["token"]):
        for path in ("/api/streams", "/api/streams/c1"):
            r = await locked.client.get(path, headers=auth(token))
            assert r.status_code == 200
            assert "secret-hook-id" not in r.text, r.text
            assert "k3y" not in r.text
            assert "http://127.0.0.1:8123/***" in r.text
    # The dashboard saves the motion form whole: the masked value sent back keeps the URL.
    shown = (await locked.client.get("/api/streams/c1", headers=auth(ADMIN))).json()
    r = await locked.client.patch(
        "/api/streams/c1", json={"motion": shown["motion"] | {"cooldown": 7}}, headers=auth(ADMIN)
    )
    assert r.status_code == 200, r.text
    assert locked.state.manager.config("c1").motion.webhook_url == hook
    assert locked.state.manager.config("c1").motion.cooldown == 7

    # camserver config: which receivers, not their secrets; an invalid one likewise.
    def config(urls: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "camserver", "config"],
            env={**os.environ, "CAMSERVER_WEBHOOK_URLS": urls},
            capture_output=True,
            text=True,
            timeout=30,
        )

    out = config(f"{hook},http://ha:hook-pass@h:1/x?token=t0ken")
    assert out.returncode == 0, out.stderr
    assert "http://127.0.0.1:8123/***, http://h:1/***" in out.stdout
    shown = out.stdout
    out = config("ftp://u:ftp-pass@h/x")
    assert out.returncode == 2
    assert "URL 1 (ftp://h/***) is not an http(s) URL" in out.stderr
    for secret in ("secret-hook-id", "hook-pass", "k3y", "t0ken", "ftp-pass"):
        assert secret not in shown + out.stdout + out.stderr
