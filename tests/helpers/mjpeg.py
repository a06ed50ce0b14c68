"""MJPEG viewers for tests: many readers of a real server's stream, a reader that stops
reading, a camera streaming through a server.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from camserver.codecs.mjpeg import NEED_DATA, Frame, MJPEGParser
from camserver.sim.camera import SimCamera
from tests.conftest import CameraFactory, Server


@dataclass
class MjpegViewer:
    frames: list[tuple[float, Frame]] = field(default_factory=list)
    content_type: str = ""
    task: asyncio.Task[None] | None = None


async def _read(client: httpx.AsyncClient, url: str, viewer: MjpegViewer) -> None:
    async with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        viewer.content_type = resp.headers["content-type"]
        parser = MJPEGParser.from_content_type(viewer.content_type)
        async for chunk in resp.aiter_raw():
            parser.receive_data(chunk)
            while (e := parser.next_event()) is not NEED_DATA:
                if isinstance(e, Frame):
                    viewer.frames.append((time.time(), e))


@asynccontextmanager
async def mjpeg_viewers(url: str, n: int, timeout: float = 30) -> AsyncIterator[list[MjpegViewer]]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        viewers = [MjpegViewer() for _ in range(n)]
        for v in viewers:
            v.task = asyncio.create_task(_read(client, url, v))
        try:
            yield viewers
        finally:
            for v in viewers:
                assert v.task is not None
                v.task.cancel()
            await asyncio.gather(*(v.task for v in viewers if v.task), return_exceptions=True)


async def streaming_camera(
    server: Server, camera: CameraFactory, name: str = "x", **kw: Any
) -> SimCamera:
    cam = await camera(name, **kw)
    await server.add_camera(name, cam)
    await server.wait_state(name, "streaming")
    return cam


async def slow_reader(url: str) -> socket.socket:
    """Requests the MJPEG stream, then never reads (tiny receive buffer)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    path = "/" + url.split("/", 3)[3]
    await asyncio.get_running_loop().sock_sendall(
        sock, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    return sock
