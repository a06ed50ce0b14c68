"""The one place camserver reads python-engineio's private state and undocumented
environ keys.

python-socketio has no public way to ask how many packets wait for a client, and camserver
needs that to skip a slow viewer for a frame instead of queueing without bound. The
state lives on ``AsyncServer.eio.sockets`` (Engine.IO session id → socket) and each
socket's ``queue`` (an ``asyncio.Queue`` of outgoing packets), as of python-engineio 4.x;
:meth:`EngineIOSockets.release` also puts a packet there.
The ASGI scope of a connection (its client address, camserver's scope extensions) is
under the environ's ``asgi.scope`` key, which python-engineio's ASGI driver sets and does
not document (:func:`asgi_scope`). :meth:`EngineIOSockets.verify` checks those shapes and
fails loudly when an upgrade changes them; ``tests/test_socketio.py`` calls it against a
live server with a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import engineio.packet
import socketio

__all__ = ["EngineIOInternalsChanged", "EngineIOSockets", "asgi_scope"]


def asgi_scope(environ: dict[str, Any]) -> dict[str, Any]:
    """The ASGI scope of the connection behind a Socket.IO ``connect`` handler's
    ``environ`` (python-engineio's ASGI environ says REMOTE_ADDR 127.0.0.1 whoever
    connects: the real address is the scope's ``client``)."""
    scope = environ.get("asgi.scope")
    if not isinstance(scope, dict):
        raise EngineIOInternalsChanged(
            "python-engineio's environ has no 'asgi.scope' any more: "
            "camserver.live.engineio needs updating for this version"
        )
    return scope


class EngineIOInternalsChanged(RuntimeError):
    """python-engineio no longer has the private state this adapter reads."""


class EngineIOSockets:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def _sockets(self) -> dict[str, Any]:
        eio = getattr(self._sio, "eio", None)
        sockets = getattr(eio, "sockets", None)
        if not isinstance(sockets, dict):
            raise EngineIOInternalsChanged(
                "python-engineio's AsyncServer has no 'sockets' dict any more: "
                "camserver.live.engineio needs updating for this version"
            )
        return sockets

    def verify(self) -> None:
        """Raise EngineIOInternalsChanged unless every connected socket has a queue that
        this adapter can read and add to."""
        for sock in self._sockets().values():
            queue = getattr(sock, "queue", None)
            if not all(callable(getattr(queue, m, None)) for m in ("qsize", "put_nowait")):
                raise EngineIOInternalsChanged(
                    "python-engineio's socket has no 'queue' with qsize() and put_nowait(): "
                    "camserver.live.engineio needs updating for this version"
                )

    def count(self) -> int:
        """Connected Engine.IO clients."""
        return len(self._sockets())

    def queue_size(self, eio_sid: str) -> int:
        """Packets waiting to be sent to ``eio_sid`` (0 when it is gone)."""
        return self.queue_sizer()(eio_sid)

    def queue_sizer(self) -> Callable[[str], int]:
        """:meth:`queue_size` for many clients in a row (once per viewer per frame): the
        sessions are looked up once."""
        sockets = self._sockets()

        def size(eio_sid: str) -> int:
            sock = sockets.get(eio_sid)
            return 0 if sock is None else int(sock.queue.qsize())

        return size

    def queue_sizes(self) -> dict[str, int]:
        """Packets waiting, for every connected client."""
        return {sid: int(sock.queue.qsize()) for sid, sock in self._sockets().items()}

    def release(self, eio_sid: str) -> None:
        """End the long-poll GET that a closing session's client may still be waiting on.

        Quirk (python-engineio 4.x): on a polling client's CLOSE packet the server closes
        the session without answering that client's pending GET, which then waits for
        packets that never come until a timeout: python-engineio's own client waits for
        it, so its ``disconnect()`` took 30 s, and the server held the request 45 s. A
        NOOP packet answers the poll as any packet would (engine.io's own "nothing").
        """
        sock = self._sockets().get(eio_sid)
        if sock is not None:
            sock.queue.put_nowait(engineio.packet.Packet(engineio.packet.NOOP))
