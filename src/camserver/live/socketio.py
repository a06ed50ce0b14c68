"""Socket.IO frame delivery: each new frame of a stream to the members of its room.

The control side (``camserver.api.realtime``: login, rooms, events) decides who is in a
room and tells this module (:meth:`FrameDelivery.joined`, ``left``, ``disconnected``); this
module sends them frames. One broadcaster task per watched stream reads the hub and sends
each frame to the room's members on this node only (in cluster mode every node feeds its
own hub from Redis). The event is ``frame`` ``{"name", "seq", "ts", "token", "data":
<binary JPEG>}``.

- A viewer on a WebSocket opened directly (the dashboard, python-socketio clients with
  ``transports=["websocket"]``) gets the frame's two WebSocket frames, encoded once per
  frame for everyone (``camserver.live.sio_wire``), written straight to its socket
  (``camserver.live.sio_fanout``): one write per viewer per frame instead of
  python-socketio's emit, Engine.IO's queue and writer task, and two ASGI sends. A viewer
  whose socket still holds more than ``HIGH_WATER`` unsent bytes skips the frame.
- Any other viewer (long-polling, or a session upgraded from it) gets an emit
  (``ignore_queue``: not through the cluster's Redis manager).

python-socketio queues packets per client without bound, so a client whose queue is backed
up is skipped for that frame: a slow viewer gets fewer, newer frames and never builds up
latency or memory. A viewer that joined with ``"ack": true`` gets no frames while one sent
to it went unacknowledged too long (``camserver.live.frame_acks``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import socketio

from camserver.errors import StreamNotFound
from camserver.live.engineio import EngineIOSockets, asgi_scope
from camserver.live.frame_acks import Unacked
from camserver.live.sio_fanout import MAX_BACKLOG, Client, Member, Room
from camserver.live.sio_wire import event_frames
from camserver.live.sockets import DIRECT_WS, DirectWebSocket
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["MAX_BACKLOG", "NAMESPACE", "FrameDelivery", "room_for"]

log = logging.getLogger(__name__)

NAMESPACE = "/"


def room_for(name: str) -> str:
    return f"stream:{name}"


def payload(name: str, frame: HubFrame) -> dict[str, Any]:
    return {
        "name": name,
        "seq": frame.seq,
        "ts": frame.ts,
        "token": frame.token,
        "data": frame.data,
    }


class FrameDelivery:
    """Frames to the rooms of ``sio`` (``hub_of(name)``: the stream's hub, or raises)."""

    def __init__(self, sio: socketio.AsyncServer, hub_of: Callable[[str], FrameHub]) -> None:
        self.sio = sio
        self.sockets = EngineIOSockets(sio)
        self._hub_of = hub_of
        self._broadcasters: dict[str, asyncio.Task[None]] = {}
        self._first_emits: set[str] = set()
        """Socket.IO sids whose join's first frame is being emitted."""
        self._clients: dict[str, Client] = {}
        """Socket.IO sid → its direct WebSocket, when frames may be written to it."""
        self._rooms: dict[str, Room] = {}
        """Stream name → its viewers on this node."""
        self._joined: dict[str, set[str]] = {}
        """Socket.IO sid → the streams whose rooms it is in."""

    async def close(self) -> None:
        tasks = list(self._broadcasters.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._broadcasters.clear()

    def viewers(self, name: str) -> int:
        """Members of the room of ``name`` on this node."""
        room = self._rooms.get(name)
        return 0 if room is None else len(room.members)

    def members(self, name: str) -> list[str]:
        """Socket.IO sids of the room of ``name`` on this node."""
        room = self._rooms.get(name)
        return [] if room is None else list(room.members)

    def fast(self, name: str) -> int:
        """Members of the room of ``name`` on the fast path now."""
        room = self._rooms.get(name)
        return 0 if room is None else room.fast

    def acking(self, name: str) -> int:
        """Members of the room of ``name`` that joined with ``"ack": true``."""
        room = self._rooms.get(name)
        return 0 if room is None else sum(m.window is not None for m in room.members.values())

    def direct(self) -> list[DirectWebSocket]:
        """The direct WebSockets of the connected clients."""
        return [client.ws for client in self._clients.values()]

    # -- sessions --------------------------------------------------------------------------

    def connected(self, sid: str, environ: dict[str, Any]) -> None:
        """A client connected: note its WebSocket's socket, if frames may go to it."""
        direct = asgi_scope(environ).get("extensions", {}).get(DIRECT_WS)
        if isinstance(direct, DirectWebSocket):
            self._clients[sid] = Client(direct)

    def disconnected(self, sid: str) -> None:
        for name in self._joined.pop(sid, ()):
            self._remove(sid, name)
        client = self._clients.pop(sid, None)
        if client is not None:
            client.close()
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.sockets.release(eio_sid)

    async def joined(self, sid: str, name: str, hub: FrameHub, ack: bool) -> None:
        """``sid`` is in the room of ``name`` now: frames from now on, and the latest at once
        (a join again starts afresh)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return  # gone meanwhile
        member = Member(sid, eio_sid, self._clients.get(sid), Unacked() if ack else None)
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room()
        room.add(member)
        self._joined.setdefault(sid, set()).add(name)
        task = self._broadcasters.get(name)
        if task is None or task.done():
            self._broadcasters[name] = asyncio.create_task(
                self._broadcast(name), name=f"sio-broadcast:{name}"
            )
        frame = hub.latest
        # A picture at once, not on the next frame, the way the next frames will go (so
        # they cannot overtake it) and within the same bounds: joining again and again
        # without reading grew memory without end (+98 MB in 24 s) while this first frame
        # was written with no check.
        if (
            frame is not None
            and sid not in self._first_emits  # (one at a time: see below)
            and not room.first(
                member, self._wire(name, frame), frame.seq, self.sockets.queue_sizer()
            )
        ):
            # python-socketio runs each join in a task of its own, and an emit queues its
            # packets only after awaits: joins in flight together would each pass the
            # backlog check first. One first-frame emit per client at a time.
            self._first_emits.add(sid)
            try:
                await self.sio.emit("frame", payload(name, frame), to=sid, ignore_queue=True)
            finally:
                self._first_emits.discard(sid)

    def left(self, sid: str, name: str) -> None:
        """``sid`` left the room of ``name`` (its ack window there ends with it)."""
        names = self._joined.get(sid)
        if names is not None:
            names.discard(name)
        self._remove(sid, name)

    def _remove(self, sid: str, name: str) -> None:
        room = self._rooms.get(name)
        if room is not None:
            room.remove(sid)
            if not room.members:
                del self._rooms[name]

    def ack(self, sid: str, name: str, seq: int) -> None:
        """``sid`` showed frame ``seq`` of ``name``."""
        room = self._rooms.get(name)
        member = None if room is None else room.members.get(sid)
        if member is not None and member.window is not None:
            member.window.ack(seq, time.monotonic())

    # -- frames ----------------------------------------------------------------------------

    def _wire(self, name: str, frame: HubFrame) -> bytes:
        """The frame event's WebSocket frames, encoded once per frame for every viewer."""
        return self._hub_of(name).encoded(
            "socketio", frame, lambda f: event_frames("frame", payload(name, f))
        )

    async def _broadcast(self, name: str) -> None:
        """Send each new frame of ``name`` to its room while the room has members."""
        try:
            hub = self._hub_of(name)
        except StreamNotFound:
            return
        last = hub.latest.seq if hub.latest else 0
        while True:
            frame = await hub.next_frame(last, timeout=2.0)
            room = self._rooms.get(name)
            if room is None or hub.closed:
                break
            if frame is None:
                continue
            last = frame.seq
            emit = room.deliver(self._wire(name, frame), frame.seq, self.sockets.queue_sizer())
            if not emit:
                continue
            try:
                await self.sio.emit(
                    "frame",
                    payload(name, frame),
                    to=emit,
                    namespace=NAMESPACE,
                    # Frames go to this node's viewers only; other nodes relay their own.
                    ignore_queue=True,
                )
            except Exception:  # one bad client must not end the room's frames
                log.exception("stream %s: emitting a frame failed", name)
        if self._broadcasters.get(name) is asyncio.current_task():
            del self._broadcasters[name]
