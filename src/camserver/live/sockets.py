"""The one module that touches uvicorn's internals (and websockets' protocol state).

uvicorn has no public way to hand an endless response its socket, to count a socket
until it closes whichever protocol owns it, or to cap a request head before it is
parsed; camserver extends its httptools and sans-I/O WebSocket protocols here:

- :func:`limited_protocol`: the HTTP protocol with ``camserver.connections``'
  :class:`~camserver.connections.ConnectionLimits` (431 for huge heads, 408 for idle or
  slow requests, 503 beyond a client's connections; see that module);
- :class:`DirectWrite` (``scope["extensions"]["camserver.direct"]``): an endless response
  writes its own body to the socket (``camserver.live.mjpeg`` serves every MJPEG viewer
  of a frame in one pass);
- :class:`DirectWebSocket` (``scope["extensions"]["camserver.ws"]``): whole WebSocket
  frames encoded once for many clients (``camserver.live.socketio``);
- :func:`counted_ws_protocol`: whichever WebSocket protocol, it releases its socket's
  count when the socket closes.

What it relies on (``HttpToolsProtocol`` and its ``cycle``, ``transport``, ``loop``,
``client``, ``scope`` and parser callbacks; ``RequestResponseCycle.response_started``,
``disconnected``, ``chunked_encoding``, ``keep_alive``, ``flow.write_paused``;
``WebSocketsSansIOProtocol.conn.state``, ``conn.extensions``, ``close_sent``,
``handle_connect``) is listed in :data:`RELIED_ON` and checked by :func:`verify`, which
the server runs at start and ``tests/test_uvicorn_internals.py`` runs against the
installed uvicorn, so an upgrade that moves any of it fails loudly. ``pyproject.toml``
pins uvicorn to the minor version tested.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from camserver.connections import ConnectionLimits, duplicate

__all__ = [
    "DIRECT",
    "DIRECT_WS",
    "RELIED_ON",
    "DirectWebSocket",
    "DirectWebSocketsProtocol",
    "DirectWrite",
    "UvicornInternalsChanged",
    "counted_ws_protocol",
    "limited_protocol",
    "verify",
]

RELIED_ON: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # class: (methods it must have, attributes its instances set: ``self.<name>``)
    HttpToolsProtocol: (
        (
            "connection_made",
            "connection_lost",
            "data_received",
            "on_url",
            "on_header",
            "on_message_begin",
            "on_headers_complete",
            "on_message_complete",
            "handle_websocket_upgrade",
            "send_400_response",
        ),
        ("cycle", "transport", "loop", "client", "scope"),
    ),
    RequestResponseCycle: (
        (),
        ("response_started", "disconnected", "chunked_encoding", "keep_alive", "flow", "scope"),
    ),
    FlowControl: ((), ("write_paused",)),
    WebSocketsSansIOProtocol: (
        ("connection_made", "connection_lost", "handle_connect"),
        ("conn", "close_sent", "transport", "scope"),
    ),
    # (``camserver serve``'s Server overrides main_loop and handle_exit: camserver.cli)
    uvicorn.Server: (("main_loop", "on_tick", "handle_exit"), ("should_exit",)),
}
"""What camserver uses of uvicorn's protocol classes (see the module docstring)."""


class UvicornInternalsChanged(RuntimeError):
    """The installed uvicorn no longer has what this module relies on."""


_verified = False


def verify(relied_on: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = RELIED_ON) -> None:
    """Raise :class:`UvicornInternalsChanged` naming whatever of :data:`RELIED_ON` the
    installed uvicorn lacks (methods on the class; attributes its code sets on ``self``).
    The installed uvicorn is checked once per process (reading its source takes ~50 ms)."""
    global _verified
    if relied_on is RELIED_ON and _verified:
        return
    missing = []
    for cls, (methods, attributes) in relied_on.items():
        missing += [f"{cls.__name__}.{m}()" for m in methods if not callable(getattr(cls, m, None))]
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            source = ""
        missing += [
            f"{cls.__name__}.{a}"
            for a in attributes
            if not re.search(rf"self\.{a}\s*(?::[^=\n]+)?=(?!=)", source)
        ]
    if missing:
        raise UvicornInternalsChanged(
            "uvicorn's protocols no longer have what camserver.live.sockets relies on: "
            + ", ".join(missing)
            + " (pin uvicorn to the tested minor version, or update that module)"
        )
    if relied_on is RELIED_ON:
        _verified = True


LINGER = 2.0
"""Seconds a refused connection is still read (and what comes thrown away) before it
closes, so that the client reads the answer."""

DIRECT = "camserver.direct"
"""The ASGI scope extension under which a :class:`DirectWrite` is offered."""


class DirectWrite:
    """The socket of one request, for a response that writes its own body.

    Call :meth:`take` *before* sending ``http.response.start``: uvicorn then writes the
    headers with ``Connection: close`` and no chunked framing (the body ends when the
    connection closes, as HTTP/1.0 and 1.1 both allow; chunked framing is not allowed for
    an HTTP/1.0 client at all), and everything written to the transport goes out as is.
    When the body is over, call :meth:`release` and then send the final empty
    ``http.response.body`` through ASGI as usual (uvicorn closes the connection).
    """

    __slots__ = ("_cycle", "_protocol", "on_abort")

    def __init__(self, protocol: HttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self.on_abort: Callable[[], None] | None = None
        """Set by a response that writes through its own duplicate of the socket: it must
        cut that too (a duplicate keeps the connection open after the transport closes)."""

    def take(self) -> asyncio.WriteTransport | None:
        """The transport, or None if the response has started or the client left."""
        cycle = self._cycle
        if cycle.response_started or cycle.disconnected or self._protocol.cycle is not cycle:
            return None
        cycle.chunked_encoding = False
        cycle.keep_alive = False
        return self._protocol.transport

    def abort(self) -> None:
        """Cut the connection now, whoever writes to it (the response's right to flow
        ended: its token was revoked)."""
        if self.on_abort is not None:
            self.on_abort()
        self._protocol.transport.abort()

    def release(self) -> None:
        """The body is over. A client that stopped reading is dropped at once: uvicorn
        would otherwise wait for it to drain before completing the response."""
        if self._cycle.flow.write_paused and not self._cycle.disconnected:
            self._protocol.transport.abort()


DIRECT_WS = "camserver.ws"
"""The ASGI scope extension under which a :class:`DirectWebSocket` is offered."""


class DirectWebSocket:
    """The socket under one open WebSocket, for whole frames encoded once for many
    clients. Each write must be one or more complete WebSocket frames (unmasked, no
    extension: camserver accepts no permessage-deflate), so it never splits a frame that
    uvicorn writes for the same connection.

    :meth:`open` gives a duplicate of the socket's descriptor, ``fd``, to write frames
    straight to the kernel (``os.write``) while the transport holds nothing unsent. uvicorn
    writes to the same connection (pings, event replies, the close frame): ``on_write`` is
    called before each of its writes and when the connection closes, so a writer can stop
    until it has checked the transport again (nothing may overtake what waits there). The
    duplicate is closed when the connection closes (after ``on_write``: a writer must no
    longer name its number, which the kernel soon reuses); it would keep it open."""

    __slots__ = ("_protocol", "_raw", "_sock", "fd", "on_write")

    def __init__(self, protocol: WebSocketsSansIOProtocol, raw: asyncio.Transport) -> None:
        self._protocol = protocol
        self._raw = raw
        self._sock: socket.socket | None = None
        self.fd = -1
        self.on_write: Callable[[], None] | None = None

    def transport(self) -> asyncio.WriteTransport | None:
        """The transport while the WebSocket is open with no extension, else None."""
        p = self._protocol
        if p.close_sent or p.conn.state is not State.OPEN or p.conn.extensions:
            return None
        transport = self._raw
        return None if transport.is_closing() else transport

    def open(self) -> int:
        """A duplicate of the socket's descriptor (once), or -1: under TLS, with no socket,
        out of descriptors, or closed (frames then go through the transport)."""
        if self._sock is not None or self.transport() is None:
            return self.fd
        self._sock = duplicate(self._raw)
        self.fd = -1 if self._sock is None else self._sock.fileno()
        return self.fd

    def _writing(self) -> None:
        if self.on_write is not None:
            self.on_write()

    def _closed(self) -> None:
        self._writing()
        self.on_write = None
        self.fd = -1
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class _SharedTransport(asyncio.Transport):
    """uvicorn's side of a WebSocket's transport that camserver also writes to
    (:class:`DirectWebSocket`): each write and close tells it first."""

    __slots__ = ("_inner", "_ws")

    def __init__(self, inner: asyncio.Transport, ws: DirectWebSocket) -> None:
        super().__init__()
        self._inner = inner
        self._ws = ws

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._ws._writing()
        self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._ws._writing()
        self._inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self._ws._writing()
        self._inner.write_eof()

    def close(self) -> None:
        self._ws._closed()
        self._inner.close()

    def abort(self) -> None:
        self._ws._closed()
        self._inner.abort()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)


class DirectWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol (websockets' sans-I/O one), offering
    :class:`DirectWebSocket` to the application."""

    _direct: DirectWebSocket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport instances, but have its methods.)
        raw = cast(asyncio.Transport, transport)
        self._direct = DirectWebSocket(self, raw)
        super().connection_made(_SharedTransport(raw, self._direct))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._direct is not None:
            self._direct._closed()
        super().connection_lost(exc)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # (set only when the handshake goes on)
        if scope is not None and self._direct is not None:  # (None: never connected)
            extensions: dict[str, object] = scope.setdefault("extensions", {})
            extensions[DIRECT_WS] = self._direct


def counted_ws_protocol(
    limits: ConnectionLimits, base: type[asyncio.Protocol]
) -> type[asyncio.Protocol]:
    """``base`` (a uvicorn WebSocket protocol class) that releases its socket's count in
    ``limits`` when the socket closes (pass it as ``uvicorn.Config(ws=…)``)."""

    def connection_made(self: asyncio.Protocol, transport: asyncio.BaseTransport) -> None:
        self._camserver_socket = transport  # type: ignore[attr-defined]
        base.connection_made(self, transport)

    def connection_lost(self: asyncio.Protocol, exc: Exception | None) -> None:
        try:
            base.connection_lost(self, exc)
        finally:
            limits.release(self._camserver_socket)  # type: ignore[attr-defined]

    namespace = {"connection_made": connection_made, "connection_lost": connection_lost}
    return type(f"Counted{base.__name__}", (base,), namespace)


def _answer(transport: asyncio.BaseTransport, status: bytes, message: bytes) -> None:
    """Write a plain-text answer that ends the connection (before any response began)."""
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message)
        )


def _close_with(transport: asyncio.BaseTransport, status: bytes, message: bytes) -> None:
    _answer(transport, status, message)
    transport.close()


def limited_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` (pass it as ``uvicorn.Config(http=…)``)."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        """Bytes of the request head (line and headers) being received."""
        _parsed = 0
        """Bytes of the head's parts the parser reported."""
        _in_body = False
        _refused = False

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            _close_with(self.transport, b"408 Request Timeout", b"request too slow")

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None and not limits.admit(transport, self.client[0]):
                _close_with(transport, b"503 Service Unavailable", b"too many connections")
                return
            self._arm(limits.idle_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            limits.release(self.transport)
            super().connection_lost(exc)

        def _refuse_if(self, too_big: bool) -> bool:
            """Answer 431 once when ``too_big``; True once refused."""
            if too_big and not self._refused:
                self._refused = True
                self._disarm()
                transport = self.transport
                _answer(
                    transport, b"431 Request Header Fields Too Large", b"request headers too large"
                )
                # A lingering close: the client is likely still sending its head, and
                # closing at once would answer that with a reset, which makes its kernel
                # drop the 431 unread. What it sends meanwhile is thrown away.
                if transport.can_write_eof():
                    transport.write_eof()
                self.loop.call_later(LINGER, transport.close)
            return self._refused

        def data_received(self, data: bytes) -> None:
            # Counted as it arrives, before the parser sees it: httptools holds a header
            # until it is whole (a 135 MB one was read whole), so its callbacks come too
            # late for one huge header. Counted from the first byte of the head (from the
            # second read, 70 and 150 KiB heads in one write went through).
            if self._refused:
                return
            if not self._in_body:
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._refuse_if(self._head_bytes > limits.max_header_bytes):
                    return
            super().data_received(data)

        # The parts of a head as the parser reports them: exact, and they also count a
        # request that follows another's body in the same read (pipelining).
        # Raising in a callback stops the parser (uvicorn's 400 is then withheld).
        def on_url(self, url: bytes) -> None:
            self._parsed += len(url)
            if self._refuse_if(self._parsed > limits.max_header_bytes):
                raise ValueError("request head too large")
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._parsed += len(name) + len(value) + 4
            if self._refuse_if(self._parsed > limits.max_header_bytes):
                raise ValueError("request head too large")
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # (431 is answered already)
                super().send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(limits.request_timeout)

        def on_headers_complete(self) -> None:
            self._in_body = True
            super().on_headers_complete()
            cycle = self.cycle
            # (An upgrade request makes no cycle: self.cycle is then an earlier request's.)
            if cycle is not None and cycle.scope is self.scope:
                extensions: dict[str, object] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
                extensions[DIRECT] = DirectWrite(self, cycle)

        def on_message_complete(self) -> None:
            self._disarm()  # the whole request is in; the response may flow for hours
            self._in_body = False
            self._head_bytes = self._parsed = 0
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

    return LimitedHttpToolsProtocol
