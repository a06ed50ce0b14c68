"""A Python client for camserver: its REST API and live frames.

::

    from camserver.client import Client

    with Client("http://127.0.0.1:8000", token="...") as client:
        print([s["name"] for s in client.streams()])
        for frame in client.frames("porch", fps=5):
            image = frame.to_numpy(bgr=True)  # for OpenCV
            ...

:class:`AsyncClient` has the same methods for asyncio (``async for frame in
client.frames("porch")``). Errors are :mod:`camserver.client.errors` types with the
server's message; see docs/client.md. The client needs httpx and python-socketio only
(Pillow and numpy for ``Frame.to_pil`` and ``Frame.to_numpy``); it does not import the server.
"""

from __future__ import annotations

from camserver.client.aio import AsyncClient
from camserver.client.errors import (
    APIError,
    ClientError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from camserver.client.frame import Frame
from camserver.client.sync import Client

__all__ = [
    "APIError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "Frame",
    "Invalid",
    "NotFound",
    "ServerUnreachable",
    "Unauthorized",
]
