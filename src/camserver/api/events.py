"""Socket.IO: live frames by room, stream status and discovery events.

Client → server: ``join_stream`` / ``leave_stream`` with ``{"name": ...}``, acknowledged
with ``{"ok": true, "status": {...}}`` or ``{"ok": false, "error": "..."}`` (a refused join
adds ``"status"``: the HTTP status the same refusal gets, 404 or 503). A join with
``"ack": true`` asks for flow control: the client sends ``frame_ack`` ``{name: seq, ...}``
with the newest frame it showed of each stream, and gets no frames of a stream while one sent
to it went unacknowledged too long (``camserver.api.frame_acks``).

Server → client: ``frame`` ``{"name", "seq", "ts", "token", "data": <binary JPEG>}`` (``token``:
the cluster's fencing token of the node that pulled the frame, 0 on one node) to the room
``stream:<name>``; ``stream_status`` ``{"name", "status"}`` to every client on each state
change (so a dashboard sees tiles it is not watching too); ``stream_changed``
``{"name", "change": "created" | "updated" | "deleted"}`` when a stream's configuration
changes (on any node of a cluster); ``camera_discovered``.

One broadcaster task per watched stream reads the hub and sends each frame to the room's
members on this node only: in cluster mode every node feeds its own hub from Redis.

- A viewer on a WebSocket opened directly (the dashboard, python-socketio clients with
  ``transports=["websocket"]``) gets the frame's two WebSocket frames, encoded once per
  frame for everyone (``camserver.api.sio_wire``), written straight to its socket
  (``camserver.connections.DirectWebSocket``): one write per viewer per frame instead of
  python-socketio's emit, Engine.IO's queue and writer task, and two ASGI sends. A viewer
  whose socket still holds more than ``HIGH_WATER`` unsent bytes skips the frame.
- Any other viewer (long-polling, or a session upgraded from it) gets an emit
  (``ignore_queue``: not through the cluster's Redis manager).

python-socketio queues packets per client without bound, so a client whose queue is backed
up is skipped for that frame: a slow viewer gets fewer, newer frames and never builds up
latency or memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import socketio

from camserver.access import TokenChecker, bearer_token, query_token
from camserver.api.errors import status_for
from camserver.api.frame_acks import Unacked
from camserver.api.security import (
    TokenlessSessions,
)
from camserver.api.sio_adapter import EngineIOSockets
from camserver.api.sio_wire import event_frames
from camserver.connections import DIRECT_WS, DirectWebSocket
from camserver.errors import StreamNotFound, TooManyViewers
from camserver.motion.events import MotionEvent
from camserver.motion.service import MotionState
from camserver.schema import StreamStatus
from camserver.streaming.fanout import HIGH_WATER, FanoutCounters
from camserver.streaming.hub import HubFrame
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import Grant

__all__ = ["Realtime", "room_for"]

log = logging.getLogger(__name__)

NAMESPACE = "/"
# A binary event is two Engine.IO packets (placeholder + attachment): 4 queued packets
# means the client is two frames behind.
MAX_BACKLOG = 4


def room_for(name: str) -> str:
    return f"stream:{name}"


def status_room(name: str) -> str:
    """Clients told about ``name``'s state changes (those scoped to it)."""
    return f"status:{name}"


EVERYTHING = "status:*"
"""Clients that see every stream: all status and discovery events."""


class Realtime:
    def __init__(
        self,
        checker: TokenChecker | None = None,
        cors_origins: list[str] | None = None,
        client_manager: Any = None,
        tokenless: TokenlessSessions | None = None,
    ) -> None:
        cluster: dict[str, Any] = {}
        if client_manager is not None:
            # Cluster mode: python-socketio's Redis manager carries status and discovery
            # events to every node; frames never go through it (ignore_queue=True below).
            # WebSocket only: a polling session lives on one node, and a load balancer
            # without sticky sessions would scatter its requests.
            cluster = {"client_manager": client_manager, "transports": ["websocket"]}
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            **cluster,
            # None: same origin only (the dashboard); otherwise the configured origins.
            cors_allowed_origins=("*" if cors_origins == ["*"] else cors_origins) or None,
            max_http_buffer_size=64 * 1024,
        )
        self.sockets = EngineIOSockets(self.sio)
        self._checker = checker or TokenChecker(None, None)
        self.tokenless = tokenless or TokenlessSessions()
        """Sessions opened without a token in the handshake (``EngineIOGate``)."""
        self.tokenless.expire = self._drop_session
        self._manager: StreamRegistry | None = None
        self._broadcasters: dict[str, asyncio.Task[None]] = {}
        self._address: dict[str, str] = {}
        """Socket.IO sid → client address (viewers per client are capped)."""
        self._grants: dict[str, Grant] = {}
        """Socket.IO sid → what its token allows."""
        self._held: dict[str, int | None] = {}
        """Socket.IO sid → its key in ``checker.held``."""
        self._first_emits: set[str] = set()
        """Socket.IO sids whose join's first frame is being emitted."""
        self._direct: dict[str, DirectWebSocket] = {}
        """Socket.IO sid → its WebSocket's socket, when frames may be written to it."""
        self._acking: dict[str, dict[str, Unacked]] = {}
        """Stream name → Socket.IO sid → frames sent to it and not acknowledged yet, for
        viewers that joined with ``"ack": true``."""
        self.counters = FanoutCounters()
        """Frames per viewer written directly (sent) or skipped (slow socket, unacked)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("join_stream", self._join)
        self.sio.on("leave_stream", self._leave)
        self.sio.on("frame_ack", self._frame_ack)

    def attach(self, manager: StreamRegistry) -> None:
        self._manager = manager
        manager.add_listener(self._on_status)
        manager.add_change_listener(self._on_change)

    async def close(self) -> None:
        tasks = [*self._broadcasters.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._broadcasters.clear()

    @property
    def manager(self) -> StreamRegistry:
        if self._manager is None:
            raise RuntimeError("Realtime used before attach()")
        return self._manager

    # -- helpers ------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _members(self, name: str) -> list[tuple[str, str]]:
        return list(self.sio.manager.get_participants(NAMESPACE, room_for(name)))

    def _count(self, name: str, leaving: str | None = None) -> None:
        if name in self.manager:
            members = [sid for sid, _ in self._members(name) if sid != leaving]
            clients = Counter(self._address.get(sid, "") for sid in members)
            self.manager.hub(name).demand.set_viewers("socketio", len(members), dict(clients))

    def _write_direct(
        self, name: str, frame: HubFrame, members: list[tuple[str, str]]
    ) -> list[str]:
        """Write ``frame`` to every member on a direct WebSocket; returns the members an
        emit must skip (written to, slow, or backlogged), or all of them."""
        queued = self.sockets.queue_size
        direct = self._direct
        acking = self._acking.get(name)
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
                self.counters.skipped_unacked += 1
                continue
            ws = direct.get(sid)
            transport = None if ws is None else ws.transport()
            if transport is None:
                if window is not None:
                    window.sent(frame.seq, now)
                continue  # polling or upgraded: emit
            skip.append(sid)
            if transport.get_write_buffer_size() > HIGH_WATER:
                self.counters.skipped_slow += 1
                continue
            if wire is None:
                wire = self._wire(name, frame)
            transport.write(wire)
            self.counters.sent += 1
            if window is not None:
                window.sent(frame.seq, now)
        return skip

    def _wire(self, name: str, frame: HubFrame) -> bytes:
        """The frame event's WebSocket frames, encoded once per frame for every viewer."""
        return self.manager.hub(name).encoded(
            "socketio", frame, lambda f: event_frames("frame", self._payload(name, f))
        )

    async def emit_all(self, event: str, data: Any) -> None:
        """To every client that sees every stream (not to scoped tokens)."""
        await self.sio.emit(event, data, to=EVERYTHING, namespace=NAMESPACE)

    def _on_status(self, name: str, status: StreamStatus) -> None:
        if name in self.manager:
            status = self.manager.status(name)  # as the placement shows it (cluster-wide)
        payload = {"name": name, "status": status.model_dump(mode="json")}
        rooms = [EVERYTHING, status_room(name)]
        self.spawn(self.sio.emit("stream_status", payload, to=rooms, namespace=NAMESPACE))

    def motion(self, event: MotionEvent, state: MotionState) -> None:
        """A motion event started or ended: ``motion`` to every client that sees the
        stream (once, from the node that detected it; the Redis manager carries it)."""
        payload = {"name": event.stream, "state": state, "event": event.public()}
        rooms = [EVERYTHING, status_room(event.stream)]
        self.spawn(self.sio.emit("motion", payload, to=rooms, namespace=NAMESPACE))

    def _on_change(self, name: str, what: str) -> None:
        # Emitted once, by the node where the change was made; in cluster mode the Redis
        # manager carries it to every node's clients.
        payload = {"name": name, "change": what}
        rooms = [EVERYTHING, status_room(name)]
        self.spawn(self.sio.emit("stream_changed", payload, to=rooms, namespace=NAMESPACE))

    # -- handlers -----------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # The CONNECT packet's auth.token, else the handshake's (?token= or header).
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            token = query_token(environ.get("QUERY_STRING", "")) or bearer_token(
                environ.get("HTTP_AUTHORIZATION", "")
            )
        grant = self._checker.grant(token)
        if grant is None:
            # (Its session, if it came without a token, ends at its deadline.)
            raise socketio.exceptions.ConnectionRefusedError(
                "a valid token is required: this one is not valid"
                if token
                else 'a valid token is required: connect with auth {"token": ...}'
            )
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.tokenless.connected(eio_sid)
        self._grants[sid] = grant
        # Revoked or expired, the token ends the session (on every node).
        self._held[sid] = self._checker.held.hold(grant, lambda: self._end_session(sid))
        # Status and discovery events go to rooms: a scoped token hears only its streams.
        if grant.streams is None:
            await self.sio.enter_room(sid, EVERYTHING, namespace=NAMESPACE)
        else:
            for name in grant.streams:
                await self.sio.enter_room(sid, status_room(name), namespace=NAMESPACE)
        # python-engineio's ASGI environ says REMOTE_ADDR 127.0.0.1 whoever connects: the
        # real address is in the ASGI scope.
        scope = environ.get("asgi.scope", {})
        client = scope.get("client") or ("",)
        self._address[sid] = str(client[0])
        direct = scope.get("extensions", {}).get(DIRECT_WS)
        if isinstance(direct, DirectWebSocket):
            self._direct[sid] = direct
        log.debug("socket.io client %s connected", sid)

    def _end_session(self, sid: str) -> None:
        log.info("socket.io client %s: its token was revoked or expired; disconnected", sid)
        self.spawn(self.sio.disconnect(sid, namespace=NAMESPACE))

    def _drop_session(self, eio_sid: str) -> None:
        """End an Engine.IO session that did not connect with a valid token in time."""
        log.info("socket.io session %s: no valid token in time; closed", eio_sid)
        self.spawn(self.sio.eio.disconnect(eio_sid))

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        # python-socketio removes the client from its rooms after this handler returns.
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.sockets.release(eio_sid)
        self._address.pop(sid, None)
        self._grants.pop(sid, None)
        self._checker.held.release(self._held.pop(sid, None))
        self._direct.pop(sid, None)
        prefix = room_for("")
        for room in self.sio.rooms(sid, namespace=NAMESPACE):
            if room.startswith(prefix):
                name = room.removeprefix(prefix)
                self._count(name, leaving=sid)
                self._forget_acks(sid, name)  # a window lives only while its room does

    @staticmethod
    def _name_of(data: Any) -> str | None:
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return str(data["name"])
        return None

    async def _join(self, sid: str, data: Any = None) -> dict[str, Any]:
        name = self._name_of(data)
        if name is None:
            return {"ok": False, "error": 'expected {"name": "<stream name>"}'}
        grant = self._grants.get(sid)
        try:
            if grant is None or not grant.sees(name) or not self._checker.valid(grant):
                raise StreamNotFound(name)  # as if it did not exist: names do not leak
            hub = self.manager.admission.admit(name, self._address.get(sid))
        except (StreamNotFound, TooManyViewers) as exc:
            return {"ok": False, "error": str(exc), "status": status_for(exc)}
        await self.sio.enter_room(sid, room_for(name), namespace=NAMESPACE)
        self._count(name)
        if data.get("ack") is True:  # a join again starts afresh
            self._acking.setdefault(name, {})[sid] = Unacked()
        else:
            self._forget_acks(sid, name)
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
                payload = self._payload(name, frame)
                await self.sio.emit("frame", payload, to=sid, ignore_queue=True)
            finally:
                self._first_emits.discard(sid)
        return {"ok": True, "status": self.manager.status(name).model_dump(mode="json")}

    async def _leave(self, sid: str, data: Any = None) -> dict[str, Any]:
        name = self._name_of(data)
        if name is None:
            return {"ok": False, "error": 'expected {"name": "<stream name>"}'}
        await self.sio.leave_room(sid, room_for(name), namespace=NAMESPACE)
        self._forget_acks(sid, name)
        try:
            self._count(name)
            return {"ok": True, "status": self.manager.status(name).model_dump(mode="json")}
        except StreamNotFound as exc:
            return {"ok": False, "error": str(exc)}

    def _forget_acks(self, sid: str, name: str) -> None:
        windows = self._acking.get(name)
        if windows is not None:
            windows.pop(sid, None)
            if not windows:
                del self._acking[name]

    async def _frame_ack(self, sid: str, data: Any = None) -> None:
        """``{name: seq, ...}``: the newest frame of each stream the client showed."""
        if not isinstance(data, dict):
            log.debug("socket.io client %s: frame_ack expects {name: seq}, got %r", sid, data)
            return
        for name, seq in data.items():  # JSON: the names are strings
            window = self._acking.get(name, {}).get(sid)
            if window is not None and isinstance(seq, int) and not isinstance(seq, bool):
                window.ack(seq, time.monotonic())

    @staticmethod
    def _payload(name: str, frame: Any) -> dict[str, Any]:
        return {
            "name": name,
            "seq": frame.seq,
            "ts": frame.ts,
            "token": frame.token,
            "data": frame.data,
        }

    async def _broadcast(self, name: str) -> None:
        """Emit each new frame of ``name`` to its room while the room has members."""
        try:
            hub = self.manager.hub(name)
        except StreamNotFound:
            return
        last = hub.latest.seq if hub.latest else 0
        room = room_for(name)
        while True:
            frame = await hub.next_frame(last, timeout=2.0)
            members = self._members(name)
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
                    self._payload(name, frame),
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
