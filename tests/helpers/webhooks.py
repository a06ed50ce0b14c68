"""A webhook receiver for tests (motion events, push cameras' overdue events)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from tests.conftest import free_port

__all__ = ["Receiver"]


class Receiver:
    """A webhook receiver on a loopback port: records POSTs, or hangs, or fails."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.posts: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append({**body, "received": time.time()})
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "fail":
            return web.Response(status=500, text="broken on purpose")
        return web.Response(status=204)

    async def start(self, stack: AsyncExitStack) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        stack.push_async_callback(runner.cleanup)
