"""The discovery endpoint: listens for announcements all the time, probes on request.

One UDP socket bound to the listen port receives replies and unprompted announcements
from any interface; probes go out from that same socket (so cameras reply to it) to the
directed broadcast address of each selected interface only — never anywhere else.

With a :class:`Board` (cluster mode: ``camserver.cluster.discovery``) the list is shared by
several servers: a camera new here is claimed on the board first, and the listeners hear of
it only when this server's claim listed it (once per cluster, not once per server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from camserver.discovery.codec import (
    NEED_DATA,
    PROBE,
    Announcement,
    DiscoveryCodec,
    Probe,
    Rejected,
)
from camserver.discovery.interfaces import Interface
from camserver.errors import ClusterUnavailable, NameConflict
from camserver.schema import DiscoveredCamera

__all__ = ["Board", "DiscoveryService", "open_udp_socket"]

log = logging.getLogger(__name__)


Listener = Callable[[DiscoveredCamera], None]


class Board(Protocol):
    """A list of discovered cameras shared with other servers."""

    refresh: float
    """Seconds between claims of every camera heard here (keeps their entries fresh)."""

    async def claim(self, cam: DiscoveredCamera) -> bool:
        """List ``cam``; True when this call listed it (new to every server)."""
        ...

    async def listed(self, local: list[DiscoveredCamera]) -> list[DiscoveredCamera]:
        """The shared list merged with ``local``."""
        ...


def flag_conflicts(cams: list[DiscoveredCamera]) -> list[DiscoveredCamera]:
    """``cams`` with ``conflict`` set where two addresses announce one name."""
    names = Counter(c.name for c in cams)
    for c in cams:
        c.conflict = names[c.name] > 1
    return cams


def only_one(cams: list[DiscoveredCamera], name: str) -> DiscoveredCamera | None:
    """The camera announcing ``name``; NameConflict when more than one does."""
    found = [c for c in cams if c.name == name]
    if len(found) > 1:
        where = ", ".join(f"{c.ip}:{c.port}" for c in found)
        raise NameConflict(
            f"more than one camera announces the name {name!r} ({where}): one may be "
            "pretending; add the right one by its address instead"
        )
    return found[0] if found else None


def open_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket that may send broadcasts, bound to ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: DiscoveryService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.service.feed(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.warning("discovery socket error: %s", exc)


class DiscoveryService:
    def __init__(
        self,
        *,
        listen_port: int,
        camera_port: int,
        interfaces: list[Interface],
        bind: str = "0.0.0.0",
        rate: int = 40,
        ttl: float = 900.0,
        per_source: int = 4,
    ) -> None:
        self.ttl = ttl
        """Cameras not heard from for this long are forgotten."""
        self.per_source = per_source
        """At most this many cameras (HTTP ports) per source address."""
        self.listen_port = listen_port
        self.camera_port = camera_port
        self.interfaces = interfaces
        self.bind = bind
        self.codec = DiscoveryCodec(rate=rate)
        self.counts: Counter[str] = Counter()
        # Keyed by where the camera is (source address, HTTP port), not by the name it
        # gives: any host can announce any name, and must not take over another's entry.
        self._cameras: dict[tuple[str, int], DiscoveredCamera] = {}
        self._listeners: list[Listener] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, str]] = set()
        self.board: Board | None = None
        """Shared with other servers (set before :meth:`start`), else this server's own."""
        self._claims: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        sock = open_udp_socket(self.bind, self.listen_port)
        self.listen_port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport
        if self.board is not None:
            self._refresher = asyncio.create_task(self._refresh(self.board), name="discovery-board")
        names = ", ".join(i.name for i in self.interfaces) or "none"
        log.info(
            "discovery listening on UDP %s:%d; probes go to port %d on: %s",
            self.bind,
            self.listen_port,
            self.camera_port,
            names,
        )

    def start_periodic(self, interval: float) -> None:
        async def loop() -> None:
            while True:
                self.probe()
                await asyncio.sleep(interval)

        self._periodic = asyncio.create_task(loop(), name="discovery-periodic")

    async def close(self) -> None:
        for task in [self._periodic, self._refresher, *self._claims]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- probing ------------------------------------------------------------------------

    def probe(self, interfaces: list[Interface] | None = None) -> int:
        """Send one probe per interface to its broadcast address; how many were sent."""
        if self._transport is None:
            raise RuntimeError("discovery is not running")
        sent = 0
        for iface in self.interfaces if interfaces is None else interfaces:
            try:
                self._transport.sendto(PROBE, (iface.broadcast, self.camera_port))
                sent += 1
            except OSError as exc:
                log.warning("cannot probe on %s (%s): %s", iface.name, iface.broadcast, exc)
        self.counts["probes_sent"] += sent
        return sent

    async def scan(
        self, timeout: float = 2.0, interfaces: list[Interface] | None = None
    ) -> list[DiscoveredCamera]:
        """Probe, wait ``timeout`` seconds, return the cameras that answered meanwhile."""
        started = time.time()
        self.probe(interfaces)
        await asyncio.sleep(timeout)
        return [c for c in self.cameras() if c.last_seen >= started]

    def _expire(self) -> None:
        limit = time.time() - self.ttl
        for key in [k for k, c in self._cameras.items() if c.last_seen < limit]:
            del self._cameras[key]
            self.counts["expired"] += 1

    def cameras(self) -> list[DiscoveredCamera]:
        """Every camera this server heard from within ``ttl``, name conflicts flagged."""
        self._expire()
        return flag_conflicts(sorted(self._cameras.values(), key=lambda c: c.first_seen))

    def get(self, name: str) -> DiscoveredCamera | None:
        """The camera this server heard announcing ``name``; NameConflict when more than
        one does."""
        return only_one(self.cameras(), name)

    async def listed(self) -> list[DiscoveredCamera]:
        """Every camera on the list: this server's, and with a board every server's."""
        if self.board is None:
            return self.cameras()
        return flag_conflicts(await self.board.listed(self.cameras()))

    async def lookup(self, name: str) -> DiscoveredCamera | None:
        """:meth:`get` on the whole list (:meth:`listed`)."""
        return only_one(await self.listed(), name)

    # -- receiving ----------------------------------------------------------------------

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        self.codec.receive_datagram(data, source, time.monotonic())
        while (event := self.codec.next_event()) is not NEED_DATA:
            if isinstance(event, Announcement):
                self._announced(event)
            elif isinstance(event, Probe):
                self.counts["probes_received"] += 1  # our own, or another server's
            elif isinstance(event, Rejected):
                self.counts[f"rejected_{event.reason}"] += 1
                log.debug(
                    "discovery: dropped datagram from %s: %s (%s)",
                    event.source[0],
                    event.reason,
                    event.detail,
                )

    def _announced(self, a: Announcement) -> None:
        self.counts["announcements"] += 1
        if a.claimed_ip is not None:
            self.counts["spoofed_claims"] += 1
            key = (a.ip, a.claimed_ip)
            if key not in self._warned and len(self._warned) < 1024:
                self._warned.add(key)
                log.warning(
                    "discovery: %s claims to be %s; trusting the source address %s",
                    a.ip,
                    a.claimed_ip,
                    a.ip,
                )
        now = time.time()
        self.found(
            DiscoveredCamera(
                name=a.name,
                ip=a.ip,
                port=a.port,
                stream_port=a.stream_port,
                first_seen=now,
                last_seen=now,
                legacy=a.legacy,
                mac=a.mac,
                model=a.model,
                fw=a.fw,
                claimed_ip=a.claimed_ip,
            )
        )

    def found(self, new: DiscoveredCamera) -> None:
        """A camera heard from (an announcement, a probe's answer, mDNS): listed, or its
        entry refreshed; the listeners hear of it the first time."""
        cam = self._cameras.get((new.ip, new.port))
        if cam is not None and cam.name == new.name:
            cam.last_seen = new.last_seen
            cam.stream_port, cam.claimed_ip = new.stream_port, new.claimed_ip
            cam.encrypted, cam.camera = new.encrypted, new.camera
            return
        if cam is None:
            self._expire()
            if len(self._cameras) >= 1024:
                self.counts["rejected_too_many_cameras"] += 1
                return
            if sum(ip == new.ip for ip, _ in self._cameras) >= self.per_source:
                self.counts["rejected_too_many_per_source"] += 1
                return
        cam = new
        self._cameras[(cam.ip, cam.port)] = cam  # a renamed camera replaces its old entry
        self.counts["new_cameras"] += 1
        log.info("discovered %s camera %s at %s:%d", cam.kind, cam.name, cam.ip, cam.port)
        if self.board is None:
            self._tell(cam)
        elif len(self._claims) < 256:
            task = asyncio.get_running_loop().create_task(self._claim(self.board, cam))
            self._claims.add(task)
            task.add_done_callback(self._claims.discard)
        # (else: claimed by the next refresh)

    async def _claim(self, board: Board, cam: DiscoveredCamera) -> None:
        try:
            if await board.claim(cam):
                self._tell(cam)
        except ClusterUnavailable as exc:
            log.info("discovery: %s is claimed when the shared list is back (%s)", cam.name, exc)

    async def _refresh(self, board: Board) -> None:
        """Claim every camera heard here again, now and then: their entries stay fresh, and
        one that could not be claimed (the board was away) is told of once it is back."""
        while True:
            await asyncio.sleep(board.refresh)
            for cam in self.cameras():
                try:
                    if await board.claim(cam):
                        self._tell(cam)
                except ClusterUnavailable as exc:
                    log.debug("discovery: the shared list is away: %s", exc)
                    break

    def _tell(self, cam: DiscoveredCamera) -> None:
        for listener in self._listeners:
            try:
                listener(cam)
            except Exception:
                log.exception("discovery listener failed for %s", cam.name)
