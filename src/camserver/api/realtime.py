"""Socket.IO, the control side: who may connect, rooms, and the events that are not frames.

Client → server: ``join_stream`` / ``leave_stream`` with ``{"name": ...}``, acknowledged
with ``{"ok": true, "status": {...}}`` or ``{"ok": false, "error": "..."}`` (a refused join
adds ``"status"``: the HTTP status the same refusal gets, 404 or 503). A join with
``"ack": true`` asks for flow control: the client sends ``frame_ack`` ``{name: seq, ...}``
with the newest frame it showed of each stream, and gets no frames of a stream while one sent
to it went unacknowledged too long (``camserver.live.frame_acks``).

Server → client: ``frame`` to the room ``stream:<name>`` (sent by
``camserver.live.socketio``, which documents it); ``stream_status`` ``{"name", "status"}``
to every client on each state change (so a dashboard sees tiles it is not watching too);
``stream_changed`` ``{"name", "change": "created" | "updated" | "deleted"}`` when a
stream's configuration changes (on any node of a cluster); ``motion``;
``camera_discovered``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from camserver.access import TokenChecker, bearer_token, query_token
from camserver.api.errors import status_for
from camserver.api.security import TokenlessSessions
from camserver.errors import StreamNotFound, TooManyViewers
from camserver.live.engineio import asgi_scope
from camserver.live.socketio import NAMESPACE, FrameDelivery, room_for
from camserver.motion.events import MotionEvent
from camserver.motion.service import MotionState
from camserver.schema import StreamStatus
from camserver.streaming.hub import FrameHub
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import Grant

__all__ = ["Realtime", "room_for"]

log = logging.getLogger(__name__)


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
            # events to every node; frames never go through it (ignore_queue=True in
            # camserver.live.socketio). WebSocket only: a polling session lives on one
            # node, and a load balancer without sticky sessions would scatter its requests.
            cluster = {"client_manager": client_manager, "transports": ["websocket"]}
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            **cluster,
            # None: same origin only (the dashboard); otherwise the configured origins.
            cors_allowed_origins=("*" if cors_origins == ["*"] else cors_origins) or None,
            max_http_buffer_size=64 * 1024,
        )
        self.delivery = FrameDelivery(self.sio, self._hub)
        """Frames to the rooms (``camserver.live.socketio``)."""
        self.sockets = self.delivery.sockets
        self._checker = checker or TokenChecker(None, None)
        self.tokenless = tokenless or TokenlessSessions()
        """Sessions opened without a token in the handshake (``EngineIOGate``)."""
        self.tokenless.expire = self._drop_session
        self._manager: StreamRegistry | None = None
        self._address: dict[str, str] = {}
        self._watching: dict[str, set[str]] = {}
        """sid → the streams whose rooms it joined (counted in their demand)."""
        """Socket.IO sid → client address (viewers per client are capped)."""
        self._grants: dict[str, Grant] = {}
        """Socket.IO sid → what its token allows."""
        self._held: dict[str, int | None] = {}
        """Socket.IO sid → its key in ``checker.held``."""
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
        await self.delivery.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def manager(self) -> StreamRegistry:
        if self._manager is None:
            raise RuntimeError("Realtime used before attach()")
        return self._manager

    def _hub(self, name: str) -> FrameHub:
        return self.manager.hub(name)

    # -- helpers ------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count(self, sid: str, name: str, joined: bool) -> None:
        """``sid`` joined (or left) ``name``'s room: its viewer count and the client's, by one
        (a join costs the same however many joined before: no walk over the room)."""
        names = self._watching.setdefault(sid, set())
        if joined == (name in names):
            return  # a join again, or a leave without a join
        if joined:
            names.add(name)
        else:
            names.discard(name)
        if name in self.manager:
            client = self._address.get(sid, "")
            self.manager.hub(name).demand.count_viewer("socketio", client, 1 if joined else -1)

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
        client = asgi_scope(environ).get("client") or ("",)
        self._address[sid] = str(client[0])
        self.delivery.connected(sid, environ)
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
        self.delivery.disconnected(sid)
        for name in list(self._watching.get(sid, ())):
            self._count(sid, name, joined=False)
        self._watching.pop(sid, None)
        self._address.pop(sid, None)
        self._grants.pop(sid, None)
        self._checker.held.release(self._held.pop(sid, None))

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
        self._count(sid, name, joined=True)
        await self.delivery.joined(sid, name, hub, ack=data.get("ack") is True)
        return {"ok": True, "status": self.manager.status(name).model_dump(mode="json")}

    async def _leave(self, sid: str, data: Any = None) -> dict[str, Any]:
        name = self._name_of(data)
        if name is None:
            return {"ok": False, "error": 'expected {"name": "<stream name>"}'}
        await self.sio.leave_room(sid, room_for(name), namespace=NAMESPACE)
        self.delivery.left(sid, name)
        try:
            self._count(sid, name, joined=False)
            return {"ok": True, "status": self.manager.status(name).model_dump(mode="json")}
        except StreamNotFound as exc:
            return {"ok": False, "error": str(exc)}

    async def _frame_ack(self, sid: str, data: Any = None) -> None:
        """``{name: seq, ...}``: the newest frame of each stream the client showed."""
        if not isinstance(data, dict):
            log.debug("socket.io client %s: frame_ack expects {name: seq}, got %r", sid, data)
            return
        for name, seq in data.items():  # JSON: the names are strings
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.delivery.ack(sid, name, seq)
