"""Limits on HTTP connections that no token check can give, because they act before a
request exists: what they are and their counts. ``camserver.live.sockets``
(``limited_protocol``, ``counted_ws_protocol``) enforces them in uvicorn's protocols.

Found by a red-team pass against uvicorn's defaults: a 135 MB request header was read
whole (other clients' ``/healthz`` took 3-10 s meanwhile), and 20,400 idle half-open
connections exhausted the file descriptors. So:

- request headers larger than ``max_header_bytes`` get 431 and the connection is closed;
- a connection that sends nothing for ``idle_timeout`` after it opens, or takes longer
  than ``request_timeout`` to send one whole request (a slowloris dripping bytes), is
  closed; a response that is flowing (MJPEG) or an upgraded WebSocket is never cut;
- one client address holds at most ``max_per_client`` connections; more are closed at
  once (503). A connection is counted by its socket, from the moment it opens until the
  socket closes, whichever protocol owns it then: uvicorn hands an upgraded socket to a
  WebSocket protocol and never tells the HTTP protocol that it closed, so the WebSocket
  protocol releases it (``counted_ws_protocol``). Counting in the HTTP protocol alone
  kept one slot per WebSocket upgrade forever: 256 dashboard loads locked an address out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket

from camserver.keycount import KeyCounts

__all__ = [
    "UNSENT_LIMIT",
    "ConnectionLimits",
    "duplicate",
    "limit_unsent",
    "raise_open_files_limit",
]

log = logging.getLogger(__name__)


class ConnectionLimits:
    def __init__(
        self,
        *,
        max_header_bytes: int = 64 * 1024,
        idle_timeout: float = 10.0,
        request_timeout: float = 15.0,
        max_per_client: int = 256,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_per_client = max_per_client
        self.per_client = KeyCounts()
        """Open sockets by client address."""
        self._held: dict[asyncio.BaseTransport, str] = {}

    def admit(self, transport: asyncio.BaseTransport, address: str) -> bool:
        """Count ``transport`` against ``address``; False (and not counted) when that
        address already holds ``max_per_client`` sockets."""
        if self.per_client.get(address, 0) >= self.max_per_client:
            return False
        self.per_client.add(address)
        self._held[transport] = address
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """``transport`` closed (any number of calls count once)."""
        address = self._held.pop(transport, None)
        if address is not None:
            self.per_client.remove(address)

    @property
    def open(self) -> int:
        """Sockets counted now."""
        return len(self._held)


OPEN_FILES_CEILING = 1 << 20


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open descriptors to the hard one (as Go's runtime does):
    every viewer holds a socket, and a direct MJPEG viewer two descriptors (its own
    duplicate: ``camserver.live.mjpeg``), so the usual soft limit of 1,024 capped a server
    at ~500 MJPEG viewers. Returns (before, after); logs what it did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays %d (could not raise it: %s)", soft, exc)
            return soft, soft
        log.info("open files limit raised from %d to %d", soft, target)
        return soft, target
    return soft, soft


UNSENT_LIMIT = 64 * 1024
"""Bytes a live viewer's socket may hold not yet sent (``TCP_NOTSENT_LOWAT``); past that
the kernel takes nothing more and the viewer skips frames. Without it Linux queues up to
``tcp_wmem``'s 4 MB per socket: a viewer that reads slowly fell up to 158 VGA frames
(10 s at 15 fps) behind before it skipped one, and each of 2,000 viewers joining at once
cost the server that many copies until its buffers filled."""


def limit_unsent(sock: socket.socket) -> None:
    """Cap what the kernel holds unsent for ``sock`` at :data:`UNSENT_LIMIT` (TCP only;
    where the option does not exist, as on macOS before 10.15 or under TLS layers, the
    kernel's own limit stays)."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_LIMIT)


def duplicate(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A duplicate of ``transport``'s socket, for writes straight to the kernel (with
    :func:`limit_unsent`), or None: under TLS, with no socket, or out of descriptors (the
    transport still works). A duplicate, not the transport's own descriptor: its number
    can never name another connection after the transport closed its own."""
    fileno = getattr(transport.get_extra_info("socket"), "fileno", None)
    if transport.get_extra_info("ssl_object") is not None or not callable(fileno):
        return None
    try:
        sock = socket.socket(fileno=os.dup(fileno()))
    except OSError as exc:
        log.debug("no duplicate of the socket (%s): through the transport", exc)
        return None
    limit_unsent(sock)
    return sock
