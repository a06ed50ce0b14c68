"""Stop working for a client that has gone.

A snapshot or settings call may wait seconds on a camera. If the client hangs up
meanwhile, the camera request is cancelled at once (closing its connection): an ESP32
serves one client at a time, and a snapshot URL that is really an endless stream would
otherwise keep downloading for nobody until its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from camserver.errors import ClientGone

__all__ = ["unless_client_leaves"]

T = TypeVar("T")


async def _gone(request: Request) -> None:
    # Only for requests whose body is already read (GET, or a body FastAPI parsed): from
    # here on the server's receive() answers only http.disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """``await work``, cancelled with ClientGone when the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_gone(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientGone("the client went away; the camera request was cancelled")
    finally:
        for t in (task, watcher):
            t.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
