"""Limits that act before a request exists: header size, idle and slow connections,
connections per client address. Raw sockets against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
import socketio
import websockets

from camserver.config import Settings
from tests.conftest import CameraFactory, Server, start_server, wait_for

LIMITS = {
    "max_header_bytes": 8192,
    "idle_timeout": 0.5,
    "request_timeout": 1.0,
    "max_connections_per_client": 10,
}


@pytest.fixture
async def strict(settings: Settings, camera: CameraFactory) -> AsyncIterator[Server]:
    async with AsyncExitStack() as stack:
        yield await start_server(stack, settings.model_copy(update=LIMITS))


async def _open(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_huge_headers_get_431_and_others_are_served(strict: Server) -> None:
    reader, writer = await _open(strict)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for _ in range(64):  # 64 x 1 KB of headers, no end
        writer.write(b"X-Junk: " + b"a" * 1024 + b"\r\n")
        await writer.drain()
    answer = await _closed(reader)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    writer.close()
    assert (await strict.client.get("/healthz")).status_code == 200


async def test_idle_and_dripping_connections_are_closed(strict: Server) -> None:
    idle_reader, idle = await _open(strict)  # sends nothing at all
    drip_reader, drip = await _open(strict)

    async def dribble() -> None:
        for c in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 100:
            drip.write(bytes([c]))
            await asyncio.sleep(0.05)  # each byte well inside the idle timeout

    task = asyncio.create_task(dribble())
    assert (await _closed(idle_reader)).startswith(b"HTTP/1.1 408")
    assert (await _closed(drip_reader)).startswith(b"HTTP/1.1 408")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for w in (idle, drip):
        w.close()


async def test_a_flowing_mjpeg_response_is_never_cut(strict: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    await strict.add_camera("c1", cam)
    await strict.wait_state("c1", "streaming")
    parts = 0
    async with strict.client.stream("GET", "/api/streams/c1/mjpeg") as resp:
        loop = asyncio.get_running_loop()
        until = loop.time() + 3 * LIMITS["request_timeout"]
        async for chunk in resp.aiter_raw():
            parts += chunk.count(b"--camserverframe")
            if loop.time() > until:
                break
    assert parts > 10


async def test_connections_per_client_address_are_capped(strict: Server) -> None:
    conns = [await _open(strict) for _ in range(10)]
    for _, w in conns:  # keep them busy so the idle timer does not close them
        w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    reader, writer = await _open(strict)
    answer = await _closed(reader)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
    writer.close()
    for _, w in conns:
        w.close()

    async def served_again() -> bool:
        r, w = await _open(strict)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(r.read(), 10)
        w.close()
        return answer.startswith(b"HTTP/1.1 200")

    await wait_for(served_again, 10, what="a new connection served once the others left")


async def _connections_of(server: Server, address: str) -> tuple[float, float]:
    """(all counted connections, those of ``address``) from /metrics, read over a fresh
    connection from 127.0.0.2 so that the reading does not count toward ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=server.url, transport=transport) as c:
        text = (await c.get("/metrics", headers={"Connection": "close"})).text
    total = mine = 0.0
    for line in text.splitlines():
        if line.startswith("camserver_http_connections "):
            total = float(line.split()[1])
        elif line.startswith(f'camserver_http_connections_by_address{{address="{address}"}}'):
            mine = float(line.split()[1])
    return total, mine


async def test_websocket_upgrades_give_their_connection_slot_back(server: Server) -> None:
    """H1: uvicorn hands an upgraded socket to its WebSocket protocol and never calls the
    HTTP protocol's connection_lost, so each upgrade kept one of the address's 256 slots:
    after 256 dashboard loads the address was locked out. 320 Socket.IO sessions and 320
    raw upgrades from one address (each over the 256 alone) later, it is served and holds
    no slot."""
    ws_url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    async def sessions(count: int) -> None:
        for i in range(count):
            # Half of them upgrade from long-polling, as browsers do; half go straight in.
            transports = ["polling", "websocket"] if i % 2 else ["websocket"]
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(server.url, transports=transports, wait_timeout=10)
            await sio.disconnect()

    async def upgrades(count: int) -> None:
        for _ in range(count):
            async with websockets.connect(ws_url) as ws:
                assert str(await ws.recv()).startswith("0")  # Engine.IO open

    await asyncio.gather(*(sessions(40) for _ in range(8)), *(upgrades(40) for _ in range(8)))

    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/healthz", headers={"Connection": "close"})).status_code == 200

    async def released() -> bool:
        total, mine = await _connections_of(server, "127.0.0.1")
        return mine == 0 and total <= 1  # (1: the reading's own connection)

    await wait_for(released, 10, what="every slot of 127.0.0.1 given back")


@pytest.mark.parametrize("kib", [70, 150])
async def test_a_huge_head_in_one_write_gets_431(server: Server, kib: int) -> None:
    """L1 (issue 26): the 64 KiB cap counted from the second read, so 70 and 150 KiB of
    headers sent in one write went through."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += b"X-Junk: " + b"a" * (kib * 1024) + b"\r\n\r\n"
    reader, writer = await _open(server)
    writer.write(head)
    answer = await _closed(reader)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    writer.close()
    # A request after another's body in the same write is counted too (pipelining), and
    # a body, however close to its own limit, never counts as head.
    body = b"{" + b" " * 60_000 + b"}"
    post = (
        b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"X-Requested-With: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    reader, writer = await _open(server)
    writer.write(post + head)
    answer = await _closed(reader)
    assert answer.startswith(b"HTTP/1.1 422"), answer[:80]  # the POST itself was read
    assert b"HTTP/1.1 431" in answer, answer[-300:]
    assert answer.count(b"HTTP/1.1 ") == 2, answer
    writer.close()
    assert (await server.client.get("/healthz")).status_code == 200
