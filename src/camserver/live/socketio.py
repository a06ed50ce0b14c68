"""Socket.IO frame delivery: each new frame of a stream to the members of its room.

The control side (``camserver.api.realtime``: login, rooms, events) decides who is in a
room; this module sends them frames. One broadcaster task per watched stream reads the
hub and sends each frame to the room's members on this node only (in cluster mode every
node feeds its own hub from Redis). The event is ``frame`` ``{"name", "seq", "ts",
"token", "data": <binary JPEG>}``.

- A viewer on a WebSocket opened directly (the dashboard, python-socketio clients with
  ``transports=["websocket"]``) gets the frame's two WebSocket frames, encoded once per
  frame for everyone (``camserver.live.sio_wire``), written straight to its socket
  (``camserver.live.sockets.DirectWebSocket``): one write per viewer per frame instead of
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
from camserver.live.counters import counters
from camserver.live.engineio import EngineIOSockets, asgi_scope
from camserver.live.frame_acks import Unacked
from camserver.live.mjpeg import HIGH_WATER
from camserver.live.sio_wire import event_frames
from camserver.live.sockets import DIRECT_WS, DirectWebSocket
from camserver.streaming.hub import FrameHub, HubFrame

__all__ = ["MAX_BACKLOG", "NAMESPACE", "FrameDelivery", "room_for"]

log = logging.getLogger(__name__)

NAMESPACE = "/"
# A binary event is two Engine.IO packets (placeholder + attachment): 4 queued packets
# means the client is two frames behind.
MAX_BACKLOG = 4


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
        self._direct: dict[str, DirectWebSocket] = {}
        """Socket.IO sid → its WebSocket's socket, when frames may be written to it."""
        self._acking: dict[str, dict[str, Unacked]] = {}
        """Stream name → Socket.IO sid → frames sent to it and not acknowledged yet, for
        viewers that joined with ``"ack": true``."""

    async def close(self) -> None:
        tasks = list(self._broadcasters.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._broadcasters.clear()

    def members(self, name: str) -> list[tuple[str, str]]:
        """(sid, Engine.IO sid) of the room's members."""
        return list(self.sio.manager.get_participants(NAMESPACE, room_for(name)))

    # -- sessions --------------------------------------------------------------------------

    def connected(self, sid: str, environ: dict[str, Any]) -> None:
        """A client connected: note its WebSocket's socket, if frames may go to it."""
        direct = asgi_scope(environ).get("extensions", {}).get(DIRECT_WS)
        if isinstance(direct, DirectWebSocket):
            self._direct[sid] = direct

    def disconnected(self, sid: str) -> None:
        self._direct.pop(sid, None)
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.sockets.release(eio_sid)

    async def joined(self, sid: str, name: str, hub: FrameHub, ack: bool) -> None:
        """``sid`` is in the room of ``name`` now: frames from now on, and the latest at once."""
        if ack:  # a join again starts afresh
            self._acking.setdefault(name, {})[sid] = Unacked()
        else:
            self.forget_window(sid, name)
        task = self._broadcasters.get(name)
        if task is None or task.done():
            self._broadcasters[name] = asyncio.create_task(
                self._broadcast(name), name=f"sio-broadcast:{name}"
            )
        frame = hub.latest
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        # A picture at once, not on the next frame, the way the next frames will go (so
        # they cannot overtake it) and within the same bounds: joining again and again
        # without reading grew memory without end (+98 MB in 24 s) while this first frame
        # was written with no check.
        if (
            frame is not None
            and eio_sid is not None
            and sid not in self._first_emits  # (one at a time: see below)
            and not self._write_direct(name, frame, [(sid, eio_sid)])
        ):
            # python-socketio runs each join in a task of its own, and an emit queues its
            # packets only after awaits: joins in flight together would each pass the
            # backlog check first. One first-frame emit per client at a time.
            self._first_emits.add(sid)
            try:
                await self.sio.emit("frame", payload(name, frame), to=sid, ignore_queue=True)
            finally:
                self._first_emits.discard(sid)

    def forget_window(self, sid: str, name: str) -> None:
        """``sid``'s ack window for ``name`` ends: it left the room (a window lives only
        while its room membership does), or joined again without asking for acks."""
        windows = self._acking.get(name)
        if windows is not None:
            windows.pop(sid, None)
            if not windows:
                del self._acking[name]

    def ack(self, sid: str, name: str, seq: int) -> None:
        """``sid`` showed frame ``seq`` of ``name``."""
        window = self._acking.get(name, {}).get(sid)
        if window is not None:
            window.ack(seq, time.monotonic())

    # -- frames ----------------------------------------------------------------------------

    def _write_direct(
        self, name: str, frame: HubFrame, members: list[tuple[str, str]]
    ) -> list[str]:
        """Write ``frame`` to every member on a direct WebSocket; returns the members an
        emit must skip (written to, slow, or backlogged), or all of them."""
        queued = self.sockets.queue_sizer()
        direct = self._direct
        acking = self._acking.get(name)
        out = counters.socketio
        now = time.monotonic() if acking else 0.0
        skip: list[str] = []
        wire: bytes | None = None
        for sid, eio_sid in members:
            if queued(eio_sid) >= MAX_BACKLOG:
                skip.append(sid)
                continue
            window = acking.get(sid) if acking else None
            if window is not None and window.blocked(now):
                skip.append(sid)
                out.skipped_unacked += 1
                continue
            ws = direct.get(sid)
            transport = None if ws is None else ws.transport()
            if transport is None:
                if window is not None:
                    window.sent(frame.seq, now)
                continue  # polling or upgraded: emit
            skip.append(sid)
            if transport.get_write_buffer_size() > HIGH_WATER:
                out.skipped_slow += 1
                continue
            if wire is None:
                wire = self._wire(name, frame)
            transport.write(wire)
            out.sent += 1
            if window is not None:
                window.sent(frame.seq, now)
        return skip

    def _wire(self, name: str, frame: HubFrame) -> bytes:
        """The frame event's WebSocket frames, encoded once per frame for every viewer."""
        return self._hub_of(name).encoded(
            "socketio", frame, lambda f: event_frames("frame", payload(name, f))
        )

    async def _broadcast(self, name: str) -> None:
        """Emit each new frame of ``name`` to its room while the room has members."""
        try:
            hub = self._hub_of(name)
        except StreamNotFound:
            return
        last = hub.latest.seq if hub.latest else 0
        room = room_for(name)
        while True:
            frame = await hub.next_frame(last, timeout=2.0)
            members = self.members(name)
            if not members or hub.closed:
                break
            if frame is None:
                continue
            last = frame.seq
            skip = self._write_direct(name, frame, members)
            if len(skip) == len(members):
                continue
            try:
                await self.sio.emit(
                    "frame",
                    payload(name, frame),
                    room=room,
                    skip_sid=skip or None,
                    namespace=NAMESPACE,
                    # Frames go to this node's viewers only; other nodes relay their own.
                    ignore_queue=True,
                )
            except Exception:  # one bad client must not end the room's frames
                log.exception("stream %s: emitting a frame failed", name)
        if self._broadcasters.get(name) is asyncio.current_task():
            del self._broadcasters[name]
