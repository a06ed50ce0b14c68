"""Hostile web pages: DNS rebinding (Host), cross-site POSTs, framing and sniffing."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
import pytest
import websockets

from camserver.api.browser import host_allowed
from camserver.config import Settings
from tests.conftest import Server, start_server


@pytest.mark.parametrize(
    ("host", "names", "allowed"),
    [
        ("127.0.0.1:8000", [], True),
        ("192.168.1.20", [], True),
        ("[::1]:8000", [], True),
        ("localhost:8000", [], True),
        ("cams.localhost", [], True),
        ("attacker.example:8000", [], False),  # a rebound name
        ("attacker.example.", [], False),
        ("", [], False),
        ("cams.example:8000", ["cams.example"], True),
        ("CAMS.Example", ["cams.example"], True),
        ("a.cams.example", ["*.cams.example"], True),
        ("cams.example.evil", ["cams.example"], False),
        ("anything", ["*"], True),
    ],
)
def test_host_rule(host: str, names: list[str], allowed: bool) -> None:
    assert host_allowed(host, names) is allowed


async def test_a_rebound_name_is_refused_everywhere(server: Server) -> None:
    evil = {"Host": "attacker.example"}
    for path in ("/api/streams", "/", "/healthz", "/socket.io/?EIO=4&transport=polling"):
        r = await server.client.get(path, headers=evil)
        assert r.status_code == 400, (path, r.text)
        assert "CAMSERVER_ALLOWED_HOSTS" in r.json()["detail"]
    assert (await server.client.get("/api/streams", headers={"Host": "localhost"})).is_success
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    # A WebSocket upgrade from the rebound page: refused before it is accepted.
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: attacker.example\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.startswith(b"HTTP/1.1 403"), status
    async with websockets.connect(url) as ws:  # the same socket with its own address
        assert str(await ws.recv()).startswith("0{")


async def test_configured_names_are_served(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        s = await start_server(stack, settings.model_copy(update={"allowed_hosts": "cams.lan"}))
        assert (await s.client.get("/healthz", headers={"Host": "cams.lan:80"})).is_success
        assert (await s.client.get("/healthz", headers={"Host": "x.lan"})).status_code == 400


async def test_a_post_a_page_on_another_site_could_send_is_refused(server: Server) -> None:
    body = {"name": "x", "host": "192.0.2.1", "enabled": False}
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as bare:
        # What a cross-site <form> or no-CORS fetch can send: simple content types.
        for headers in (
            {},
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/x-www-form-urlencoded"},
        ):
            r = await bare.post("/api/discovery/scan", headers=headers)
            assert r.status_code == 415, r.text
            assert "another site" in r.json()["detail"]
        r = await bare.post("/api/streams", json=body)  # application/json: allowed
        assert r.status_code == 201
        r = await bare.post("/api/streams/x/stop", headers={"X-Requested-With": "x"})
        assert r.status_code == 200


async def test_security_headers(server: Server) -> None:
    page = await server.client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    api = await server.client.get("/api/streams")
    for r in (page, api):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert api.headers["content-security-policy"] == "frame-ancestors 'none'"
