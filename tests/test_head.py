"""HEAD on every GET route (issue 19): uptime monitors and ``wget --spider`` send HEAD."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest

from tests.conftest import CameraFactory, Server


def _concrete(path: str) -> str:
    # A real stream for {name}; ids that do not exist (their GET answers 404, so must HEAD).
    return re.sub(r"\{[^}]+\}", lambda m: "c1" if m[0] == "{name}" else "424242", path)


async def _get_head(client: httpx.AsyncClient, path: str) -> tuple[int, str | None]:
    """GET's status and content type, without reading an endless body."""
    async with client.stream("GET", path) as r:
        return r.status_code, r.headers.get("content-type")


async def test_every_get_route_answers_head_like_get_without_a_body(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=10)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    spec = (await server.client.get("/openapi.json")).json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert [i for i, n in Counter(ids).items() if n > 1] == []  # no duplicate operation ids
    paths = [p for p, ops in spec["paths"].items() if "get" in ops]
    # The dashboard and its files (StaticFiles), beside the API's own routes.
    paths += ["/", "/app.js", "/vendor/socket.io.min.js"]
    assert {"/healthz", "/api/streams/{name}/mjpeg", "/api/stream.mjpeg", "/metrics"} <= set(paths)
    checked = []
    for template in paths:
        path = _concrete(template) + ("?src=c1" if template.startswith("/api/frame.") else "")
        path += "?src=c1" if template == "/api/stream.mjpeg" else ""
        head = await asyncio.wait_for(server.client.head(path), 10)
        get_status, get_type = await asyncio.wait_for(_get_head(server.client, path), 10)
        assert (head.status_code, head.headers.get("content-type")) == (get_status, get_type), path
        assert head.content == b"", path
        checked.append((template, head.status_code))
    statuses = dict(checked)
    # Today's 404/405 for these made monitors report the server down.
    assert statuses["/healthz"] == 200
    assert statuses["/api/streams/{name}/mjpeg"] == 200
    assert statuses["/api/streams/{name}/snapshot"] == 200
    assert statuses["/"] == 200
    # The endless MJPEG answer to a HEAD ends: the same connection serves the next request.
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as one:
        for _ in range(3):
            r = await one.head("/api/streams/c1/mjpeg")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert (await one.get("/healthz")).status_code == 200
    # No viewer is left behind by those HEADs.
    await asyncio.sleep(0.2)
    assert (await server.status("c1"))["viewers"] == 0


async def test_head_over_a_raw_socket_gets_headers_and_nothing_else(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)  # the server closes: nothing hangs
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert re.search(rb"(?i)content-length: 15\r\n", head), head  # {"status":"ok"}
    assert body == b""


@pytest.mark.requires("wget", "curl")
async def test_wget_spider_and_curl_head_see_the_server_up(
    server: Server, camera: CameraFactory
) -> None:
    """What uptime checks run: ``wget --spider`` (a HEAD) and ``curl -I``."""
    cam = await camera("c1", fps=10)
    await server.add_camera("c1", cam)
    for url in (f"{server.url}/healthz", f"{server.url}/api/streams/c1/mjpeg"):
        wget = await asyncio.create_subprocess_exec(
            *("wget", "--spider", "--tries=1", "--timeout=5", "--no-proxy", url),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(wget.communicate(), 15)
        assert wget.returncode == 0, err.decode()
        assert b"200 OK" in err, err.decode()
        curl = await asyncio.create_subprocess_exec(
            *("curl", "-sS", "-I", "--max-time", "5", "--noproxy", "*", url),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(curl.communicate(), 15)
        assert curl.returncode == 0
        assert out.startswith(b"HTTP/1.1 200"), out
