"""A stream's Socket.IO viewers on this node, and each frame written to them.

A viewer on a WebSocket opened directly (:class:`~camserver.live.sockets.DirectWebSocket`)
gets the frame event's two WebSocket frames, encoded once per frame for everyone, with one
write; any other viewer (long-polling, or a session upgraded from it) is left to
python-socketio's emit (:attr:`Room.emitted`). Two paths for the direct ones, as for MJPEG
(``camserver.live.mjpeg``):

- **fast**: no ack window, a duplicate of its socket's descriptor, and nothing waiting in
  its transport when it was last checked, with nothing written to it since (uvicorn's own
  writes, pings and replies, call :meth:`Client.queued` first). The frame loop walks a
  plain list of their descriptors with one ``os.write`` each, as a C relay would: what it
  does per viewer besides the kernel's copy is what camserver costs over one.
- **general**: everyone else, checked one by one: Engine.IO's queue (``MAX_BACKLOG``), the
  ack window, the WebSocket still open, and its transport's unsent bytes
  (:data:`~camserver.live.mjpeg.HIGH_WATER`: a slow viewer skips the frame). A viewer that
  was written to whole, straight to the kernel, joins the fast ones.

What the kernel does not take of a frame goes through the transport, so nothing can
overtake it, and the client leaves the fast path in every room it is in until its transport
has drained (a client of the dashboard watches many streams over one socket).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from camserver.live.counters import counters
from camserver.live.frame_acks import Unacked
from camserver.live.mjpeg import HIGH_WATER
from camserver.live.sockets import DirectWebSocket

__all__ = ["MAX_BACKLOG", "Client", "Member", "Room"]

# A binary event is two Engine.IO packets (placeholder + attachment): 4 queued packets
# means the client is two frames behind.
MAX_BACKLOG = 4


class Client:
    """A Socket.IO client on a direct WebSocket, in any number of rooms."""

    __slots__ = ("fast_in", "ws")

    def __init__(self, ws: DirectWebSocket) -> None:
        self.ws = ws
        self.fast_in: dict[Room, Member] = {}
        """The rooms where it is on the fast path, and its membership there."""
        ws.open()
        ws.on_write = self.queued

    def queued(self) -> None:
        """Something may wait in its transport now (or it closed): every room takes the
        general path for it until it has checked the transport again."""
        while self.fast_in:
            room, member = self.fast_in.popitem()
            room.slow(member)

    def close(self) -> None:
        self.queued()
        self.ws.on_write = None


class Member:
    """A Socket.IO client in one stream's room."""

    __slots__ = ("client", "eio_sid", "sid", "window")

    def __init__(
        self, sid: str, eio_sid: str, client: Client | None, window: Unacked | None
    ) -> None:
        self.sid = sid
        self.eio_sid = eio_sid
        self.client = client
        """None: not on a direct WebSocket (python-socketio's emit serves it)."""
        self.window = window
        """Frames sent and not acknowledged yet, for a viewer that joined with ``"ack": true``."""


class Room:
    """The viewers of one stream on this node. Use it from the event loop only."""

    __slots__ = ("_fast", "_fds", "_order", "_other", "emitted", "members")

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        """Socket.IO sid → membership."""
        self.emitted: dict[str, Member] = {}
        """The members with no direct WebSocket."""
        # Dicts as ordered sets (a member leaves in O(1)).
        self._fast: dict[Member, None] = {}
        self._other: dict[Member, None] = {}
        """Every member not on the fast path."""
        # What the hot loop walks: the fast members' descriptors, a plain list of ints,
        # made again at the first frame after the fast group changed.
        self._fds: list[int] | None = None
        self._order: list[Member] = []

    @property
    def fast(self) -> int:
        """Members on the fast path."""
        return len(self._fast)

    def add(self, member: Member) -> None:
        """``member`` joined (again: it replaces the earlier membership)."""
        self.remove(member.sid)
        self.members[member.sid] = member
        self._other[member] = None
        if member.client is None:
            self.emitted[member.sid] = member

    def remove(self, sid: str) -> Member | None:
        member = self.members.pop(sid, None)
        if member is not None:
            self.emitted.pop(sid, None)
            if member.client is not None:
                member.client.fast_in.pop(self, None)
            if member in self._fast:
                del self._fast[member]
                self._fds = None
            self._other.pop(member, None)
        return member

    def slow(self, member: Member) -> None:
        """``member`` takes the general path from the next frame."""
        if member in self._fast:
            del self._fast[member]
            self._other[member] = None
            self._fds = None

    def deliver(self, wire: bytes, seq: int, backlog: Callable[[str], int]) -> list[str]:
        """Write a frame's ``wire`` (its WebSocket frames) to every direct member; returns
        the members to emit it to (no direct WebSocket, not backlogged or blocked)."""
        fds = self._fds
        if fds is None:
            self._order = list(self._fast)
            fds = self._fds = [m.client.ws.fd for m in self._order if m.client is not None]
        size = len(wire)
        write = os.write
        behind: list[tuple[int, int]] = []
        i = -1
        # The hot loop, once per fast viewer per frame.
        for fd in fds:
            i += 1
            try:
                n = write(fd, wire)
            except OSError:  # full (BlockingIOError), or the client left
                n = 0
            if n != size:
                behind.append((i, n))
        sent = len(fds) - len(behind)
        # (Taken before the ones behind join them: they have this frame already.)
        others = list(self._other)
        for i, n in behind:
            client = self._order[i].client
            assert client is not None
            if _rest(client, wire, n):
                sent += 1
        emit = self._general(others, wire, seq, backlog) if others else []
        counters.socketio.sent += sent
        return emit

    def first(self, member: Member, wire: bytes, seq: int, backlog: Callable[[str], int]) -> bool:
        """A joining member's first frame, the way the next ones will go (so that they
        cannot overtake it); False if it must be emitted."""
        return not self._general([member], wire, seq, backlog)

    def _general(
        self, members: list[Member], wire: bytes, seq: int, backlog: Callable[[str], int]
    ) -> list[str]:
        """The general path for ``members``; returns those to emit to."""
        out = counters.socketio
        now = time.monotonic()
        emit: list[str] = []
        ahead: list[Member] = []
        for member in members:
            if backlog(member.eio_sid) >= MAX_BACKLOG:
                continue
            window = member.window
            if window is not None and window.blocked(now):
                out.skipped_unacked += 1
                continue
            client = member.client
            if client is None:
                emit.append(member.sid)
                if window is not None:
                    window.sent(seq, now)
                continue
            transport = client.ws.transport()
            if transport is None:
                continue  # closing: it gets nothing more
            unsent = transport.get_write_buffer_size()
            if unsent > HIGH_WATER:
                out.skipped_slow += 1
                continue
            fd = client.ws.fd
            if unsent or fd < 0:
                transport.write(wire)
                client.queued()
            else:
                try:
                    n = os.write(fd, wire)
                except OSError:
                    n = 0
                if n == len(wire):
                    if window is None:
                        ahead.append(member)
                elif not _rest(client, wire, n):
                    continue
            out.sent += 1
            if window is not None:
                window.sent(seq, now)
        for member in ahead:
            if member.client is not None and member in self._other:
                del self._other[member]
                self._fast[member] = None
                member.client.fast_in[self] = member
                self._fds = None  # (the hot loop's list is made again)
        return emit


def _rest(client: Client, wire: bytes, n: int) -> bool:
    """The kernel took ``n`` bytes of ``wire``: the rest through the transport, and the
    client off the fast path everywhere. False if its transport is closing."""
    client.queued()
    transport = client.ws.transport()
    if transport is None:
        return False
    transport.write(memoryview(wire)[n:])
    return True
