"""Socket.IO viewers for tests: a python-socketio viewer that records its frames, and a raw
WebSocket viewer that controls its own receive buffer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import socketio
import websockets


class Viewer:
    """A python-socketio client recording the frames it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.frames: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.sio.on("frame", self._frame)
        self.sio.on("stream_status", self._status)
        self.sio.on("stream_changed", self._change)

    async def _frame(self, data: dict[str, Any]) -> None:
        data["received"] = time.time()
        self.frames.append(data)

    async def _status(self, data: dict[str, Any]) -> None:
        self.statuses.append(data)

    async def _change(self, data: dict[str, Any]) -> None:
        self.changes.append(data)

    async def join(self, name: str) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call("join_stream", {"name": name}, timeout=5)
        return ack


async def raw_viewer(url: str, join: dict[str, Any], rcvbuf: int) -> websockets.ClientConnection:
    """A Socket.IO client on a bare WebSocket (receive buffer ``rcvbuf`` bytes, websockets
    reading one message ahead) that has sent ``join_stream`` with ``join``."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    host, port = url.removeprefix("http://").split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await websockets.connect(ws_url, sock=sock, max_queue=1, max_size=None)
    assert str(await ws.recv()).startswith("0")  # Engine.IO open
    await ws.send("40")
    assert str(await ws.recv()).startswith("40")  # Socket.IO connect
    await ws.send("421" + json.dumps(["join_stream", join]))
    return ws
