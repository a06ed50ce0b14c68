"""A hostile camera, written for these tests, against a real camserver process: bodies
that never end, that drip, that claim 100 GB, and a snapshot URL that is really an
endless MJPEG stream. Each call must end within its deadline with a clear 502/504, and the
server's memory must not follow what the camera sends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from camserver.config import Settings
from tests.conftest import Proc, free_port, start_server, wait_for, wait_healthy

DEADLINE = 1.5  # CAMSERVER_SNAPSHOT_TIMEOUT for these servers


class HostileCamera:
    """HTTP on 127.0.0.1: what it answers depends on the path's first segment."""

    def __init__(self) -> None:
        self.open = 0
        self.closed_at: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HostileCamera:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            await self._answer(path, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self.closed_at.append(time.monotonic())
            writer.close()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        junk = b"\xff" * 65536
        if path.startswith("/huge"):  # claims 100 GB and keeps sending
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 100000000000\r\n\r\n"
            )
            while True:
                writer.write(junk)
                await writer.drain()
        elif path.startswith("/endless") or path == "/status":  # chunked, no end
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            writer.write(b"1\r\n[\r\n")
            while True:
                writer.write(b"%x\r\n" % len(junk) + junk.replace(b"\xff", b"1") + b"\r\n")
                await writer.drain()
        elif path.startswith("/drip"):  # one byte every 0.3 s: each read is quick
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
            )
            for _ in range(1000):
                writer.write(b"\xff")
                await writer.drain()
                await asyncio.sleep(0.3)
        elif path.startswith("/mjpeg"):  # a stream behind a snapshot URL
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n"
            )
            while True:
                writer.write(b"--b\r\nContent-Type: image/jpeg\r\n\r\n" + junk[:20000])
                await writer.drain()
                await asyncio.sleep(0.05)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileCamera]:
    async with HostileCamera() as cam:
        yield cam


async def _server(spawn: Callable[..., Proc], tmp_path: Path, **env: str) -> Proc:
    p = spawn(
        "--db",
        str(tmp_path / "h.db"),
        env={"CAMSERVER_SNAPSHOT_TIMEOUT": str(DEADLINE), **env},
    )
    await wait_healthy(p)
    return p


async def test_endless_dripping_and_huge_bodies_end_in_time_and_memory_stays(
    spawn: Callable[..., Proc], tmp_path: Path, hostile: HostileCamera
) -> None:
    p = await _server(spawn, tmp_path)
    rss = psutil.Process(p.proc.pid).memory_info
    async with httpx.AsyncClient(base_url=p.url, timeout=30, trust_env=False) as c:
        base = f"http://{hostile.address}"
        for name, path in (("huge", "/huge"), ("endless", "/endless"), ("drip", "/drip")):
            body = {"name": name, "stream_url": f"{base}/s", "snapshot_url": base + path}
            r = await c.post("/api/streams", json={**body, "enabled": False})
            assert r.status_code == 201, r.text
        # The camera's own settings read /status from the host: an endless JSON body.
        r = await c.post(
            "/api/streams", json={"name": "esp", "host": hostile.address, "enabled": False}
        )
        assert r.status_code == 201
        before = rss().rss
        expect = {
            "/api/streams/huge/snapshot": (502, "more than the 4194304 bytes"),
            "/api/streams/endless/snapshot": (502, "more than the 4194304 bytes"),
            "/api/streams/drip/snapshot": (504, f"did not answer within {DEADLINE:g} s"),
            "/api/streams/esp/settings": (502, "more than the 65536 bytes"),
        }
        for _ in range(2):  # twice: memory freed after the first round stays freed
            for url, (code, words) in expect.items():
                t0 = time.monotonic()
                r = await c.get(url)
                took = time.monotonic() - t0
                assert r.status_code == code, (url, r.text)
                assert words in r.json()["detail"], (url, r.text)
                assert took < DEADLINE + 3.0, (url, took)  # the deadline holds
        grown = (rss().rss - before) / 2**20
        assert grown < 50, f"RSS grew {grown:.0f} MiB"
        await wait_for(lambda: hostile.open == 0, 5, what="every camera connection closed")


async def test_a_snapshot_fetch_ends_when_its_client_leaves(
    spawn: Callable[..., Proc], tmp_path: Path, hostile: HostileCamera
) -> None:
    # A long deadline, so only the client leaving can end the fetch early.
    p = await _server(spawn, tmp_path, CAMSERVER_SNAPSHOT_TIMEOUT="30")
    async with httpx.AsyncClient(base_url=p.url, timeout=30, trust_env=False) as c:
        url = f"http://{hostile.address}"
        r = await c.post(
            "/api/streams",
            json={
                "name": "m",
                "stream_url": url + "/s",
                "snapshot_url": url + "/mjpeg",
                "enabled": False,
            },
        )
        assert r.status_code == 201
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/api/streams/m/snapshot", timeout=1.0)
        left = time.monotonic()
    await wait_for(lambda: hostile.open == 0, 10, what="the camera connection closed")
    assert hostile.closed_at[-1] - left < 5.0  # not the 30 s deadline


async def _json_server(host: str, port: int, body: bytes) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, host, port)


async def test_dns_rebinding_cannot_reach_a_service_outside_the_allowed_networks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The camera network is 127.0.0.2/32; a loopback-only service listens on 127.0.0.3 on
    # the same port. "rebind.test" answers the camera's address for the two lookups that
    # save the stream, then the service's and the camera's in turn: before this was fixed,
    # the guard's lookup and the connection's lookup got different answers.
    port = free_port()
    camera = await _json_server("127.0.0.2", port, b'{"framesize": 8}')
    secret = await _json_server("127.0.0.3", port, b'{"secret": "loopback only"}')
    answers = itertools.chain(
        ["127.0.0.2", "127.0.0.2"], itertools.cycle(["127.0.0.2", "127.0.0.3"])
    )
    real = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "rebind.test":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        async with AsyncExitStack() as stack:
            update = {"allowed_networks": "127.0.0.2/32"}
            server = await start_server(stack, settings.model_copy(update=update))
            r = await server.client.post(
                "/api/streams",
                json={"name": "r", "host": f"rebind.test:{port}", "enabled": False},
            )
            assert r.status_code == 201, r.text  # checked: rebind.test was 127.0.0.2
            seen = set()
            for path in ["/api/streams/r/settings", "/api/streams/r/snapshot"] * 4:
                r = await server.client.get(path)
                assert "loopback only" not in r.text
                seen.add((path.rsplit("/", 1)[1], r.status_code))
            # Settings: the check saw the camera, the connection would have gone to the
            # service: refused. Snapshots: each connection is checked itself.
            assert ("settings", 422) in seen, seen
    finally:
        for s in (camera, secret):
            s.close()
