"""The RTSP server (RFC 2326) in camserver's process: every stream at
``rtsp://HOST:PORT/<stream>``, its camera's JPEGs over RTP as they are (RFC 2435).

One asyncio protocol per TCP connection reads requests with :class:`~.wire.RtspReader`
and keeps one session: SETUP over TCP (interleaved ``$`` frames on the same connection) or
UDP (the server's RTP/RTCP port pair, shared by every session), PLAY, TEARDOWN,
GET_PARAMETER / SET_PARAMETER / OPTIONS as keep-alives, a session timeout, RTCP sender
reports every 5 s. A playing session is a viewer of its stream (admitted like every viewer,
counted in the stream's demand, so ``on_demand`` cameras connect for it) and a listener of
its hub: each frame is packetized once per stream and written to every session in one pass;
a session whose socket has more than ``HIGH_WATER`` bytes unsent skips whole frames, so a
slow client never slows another.

Auth: with tokens on, Basic or Digest with any user name and a token as the password (Digest
only for the environment's tokens: a managed token is stored hashed, and Digest needs the
secret itself), or ``?token=`` in the URL; a token scoped to some streams gets 404 for the
others. No I/O-free logic lives here: requests, transports, SDP and packets are in the
sibling modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from camserver.live.counters import counters
from camserver.live.rtsp import rtp_h264, rtp_jpeg
from camserver.live.rtsp.auth import Authorizer, Grants
from camserver.live.rtsp.h264 import AccessUnit, Encoders
from camserver.live.rtsp.session import HIGH_WATER, RtspConnection, RtspSession, interleave
from camserver.streaming.hub import HubFrame, LocalHub

__all__ = ["Grants", "RtspServer"]

log = logging.getLogger(__name__)

REPORT_EVERY = 5.0
UDP_SEGMENT = 103
"""Linux's UDP_SEGMENT socket option (``socket.UDP_SEGMENT`` from Python 3.12)."""
GSO_SEGMENTS = 40
"""Packets per segmentation-offload call (Linux takes up to 64 and 64 KiB)."""
_NO_GSO = {errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EIO}


@functools.cache
def _gso_option(size: int) -> tuple[int, int, bytes]:
    return socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", size)


Admit = Callable[[str, str | None], LocalHub]


@dataclass(slots=True)
class _Stream:
    """Per stream: one packetization per frame, shared by its sessions."""

    ssrc: int
    seq: int
    frame_seq: int = -1
    packets: list[bytes] | None = None
    timestamp: int = 0
    unsupported: str | None = None
    interleaved: dict[int, bytes] = field(default_factory=dict)
    """The frame's packets ``$``-framed for a TCP channel (most sessions use 0: one copy)."""
    gso: tuple[bytes, int] | None = None
    """The frame's packets in one buffer and their size, for UDP segmentation offload."""


class RtspServer:
    def __init__(
        self, admit: Admit, grants: Grants, host: str, port: int, max_per_client: int = 64
    ) -> None:
        self.admit = admit
        self.max_per_client = max_per_client
        """Open connections one client address may hold (CAMSERVER_MAX_CONNECTIONS_PER_CLIENT,
        as for HTTP)."""
        self.grants = grants
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._udp: tuple[asyncio.DatagramTransport, asyncio.DatagramTransport] | None = None
        self.udp_ports = (0, 0)
        self.connections: set[RtspConnection] = set()
        self._per_client: dict[str, int] = {}
        self._streams: dict[str, _Stream] = {}
        self.auth = Authorizer(grants)
        self._rtp_sock: socket.socket | None = None
        """The RTP socket, written directly (one system call per frame with GSO)."""
        self._gso = True
        self.encoders = Encoders(self._h264_out)
        self._h264: dict[str, set[tuple[RtspConnection, RtspSession]]] = {}
        self._h264_streams: dict[str, _Stream] = {}
        self._task: asyncio.Task[None] | None = None
        self.refused: dict[int, int] = {}
        """RTSP status → answers of it (errors only)."""

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RtspConnection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._udp = await self._udp_pair(loop)
        self._task = loop.create_task(self._sweep(), name="rtsp-sweep")
        log.info(
            "RTSP on rtsp://%s:%d/<stream> (RTP/UDP ports %d-%d)",
            self.host,
            self.port,
            *self.udp_ports,
        )

    async def _udp_pair(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramTransport]:
        """Two UDP sockets on consecutive ports (RTP on the even one, RTCP above it)."""
        for _ in range(50):
            rtp = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
            )
            rtp.bind((self.host, 0))
            port = rtp.getsockname()[1]
            if port % 2:
                rtp.close()
                continue
            rtcp = socket.socket(rtp.family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((self.host, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            rtp.setblocking(False)
            self._rtp_sock = rtp
            a, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=rtp)
            b, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=rtcp)
            self.udp_ports = (port, port + 1)
            return a, b
        raise OSError("no free pair of UDP ports for RTP")

    # -- the H.264 path ------------------------------------------------------------------

    async def h264_parameter_sets(
        self, name: str, hub: LocalHub, client: str
    ) -> list[bytes] | None:
        """The stream's SPS and PPS for a DESCRIBE of ``/h264``: its encoder started (and
        the camera connected, if on demand) until the first keyframe, or None after 8 s."""
        with hub.viewer("rtsp", client):
            encoder = self.encoders.want(name, hub)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(8.0):
                        await encoder.ready.wait()
                return encoder.parameter_sets
            finally:
                self.encoders.release(name)

    def h264_play(self, conn: RtspConnection, session: RtspSession) -> None:
        self.encoders.want(session.name, session.hub).keyframe()
        self._h264.setdefault(session.name, set()).add((conn, session))

    def h264_stop(self, conn: RtspConnection, session: RtspSession) -> None:
        playing = self._h264.get(session.name, set())
        if (conn, session) in playing:
            playing.discard((conn, session))
            self.encoders.release(session.name)

    def _h264_out(self, name: str, unit: AccessUnit) -> None:
        """An access unit from the stream's encoder: packetized once, to every session."""
        state = self.stream_state(name, "h264")
        packets = rtp_h264.packetize(unit.units, state.seq, unit.timestamp, state.ssrc)
        state.seq = (state.seq + len(packets)) & 0xFFFF
        state.timestamp = unit.timestamp
        for conn, session in list(self._h264.get(name, ())):
            if not session.keyframed:
                if not unit.keyframe:
                    continue
                session.keyframed = True
            conn.send(session, packets)

    async def close(self) -> None:
        self.encoders.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close("server shutting down")
        if self._udp is not None:
            for t in self._udp:
                t.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _sweep(self) -> None:
        """Sender reports, session timeouts and half-sent requests, once a second."""
        last_report = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            report = now - last_report >= REPORT_EVERY
            if report:
                last_report = now
            for conn in list(self.connections):
                conn.tick(now, report)
            self.auth.forget_old(now)

    # -- what sessions share ------------------------------------------------------------

    def packets(self, name: str, frame: HubFrame) -> tuple[_Stream, list[bytes] | None]:
        """``frame``'s RTP packets (made once per frame for every session of ``name``)."""
        state = self.stream_state(name)
        if state.frame_seq != frame.seq:
            state.frame_seq = frame.seq
            state.interleaved.clear()
            state.gso = None
            state.timestamp = int(frame.ts * 90000) & 0xFFFFFFFF
            scan = rtp_jpeg.parse(frame.data)
            if isinstance(scan, rtp_jpeg.Unsupported):
                if state.unsupported != scan.reason:
                    log.warning("RTSP %s: a frame RFC 2435 cannot carry: %s", name, scan.reason)
                state.unsupported = scan.reason
                counters.rtsp.skipped_unsupported += 1
                state.packets = None
            else:
                state.packets = rtp_jpeg.packetize(scan, state.seq, state.timestamp, state.ssrc)
                state.seq = (state.seq + len(state.packets)) & 0xFFFF
        return state, state.packets

    def stream_state(self, name: str, codec: str = "jpeg") -> _Stream:
        """The stream's RTP state for ``codec`` (its own SSRC and sequence numbers)."""
        states = self._h264_streams if codec == "h264" else self._streams
        state = states.get(name)
        if state is None:
            state = states[name] = _Stream(secrets.randbits(32), secrets.randbits(16))
        return state

    def interleaved(self, state: _Stream | None, channel: int, packets: list[bytes]) -> bytes:
        """``packets`` framed for TCP ``channel``, made once per frame and channel."""
        if state is None:
            return interleave(channel, packets)
        data = state.interleaved.get(channel)
        if data is None:
            data = state.interleaved[channel] = interleave(channel, packets)
        return data

    def send_frame_udp(
        self, state: _Stream | None, packets: list[bytes], address: tuple[str, int]
    ) -> bool:
        """A frame's packets to a UDP client: with UDP segmentation offload where Linux has
        it (one system call for the frame instead of one per packet), else one by one.
        False when the socket is full (the frame is skipped)."""
        sock = self._rtp_sock
        if sock is None:
            return False
        try:
            if self._gso and len(packets) > 1:
                if state is not None and state.gso is not None:
                    data, size = state.gso
                else:
                    size = len(packets[0])
                    if any(len(p) != size for p in packets[:-1]):
                        return self._send_each(sock, packets, address)
                    data = b"".join(packets)
                    if state is not None:
                        state.gso = (data, size)
                step = size * GSO_SEGMENTS
                for i in range(0, len(data), step):
                    sock.sendmsg([data[i : i + step]], [_gso_option(size)], 0, address)
                return True
            return self._send_each(sock, packets, address)
        except BlockingIOError:
            return False
        except OSError as exc:
            if self._gso and exc.errno in _NO_GSO:
                log.info("RTSP: no UDP segmentation offload here (%s): one packet a call", exc)
                self._gso = False
                return self._send_each(sock, packets, address)
            log.debug("RTSP UDP to %s: %s", address, exc)
            return False

    @staticmethod
    def _send_each(sock: socket.socket, packets: list[bytes], address: tuple[str, int]) -> bool:
        for p in packets:
            sock.sendto(p, address)
        return True

    def send_udp(self, data: bytes, address: tuple[str, int], rtcp: bool = False) -> bool:
        if self._udp is None:
            return False
        transport = self._udp[1 if rtcp else 0]
        if _backlog(transport) > HIGH_WATER:
            return False
        transport.sendto(data, address)
        return True

    def heard_from(self, address: tuple[str, int]) -> None:
        """RTCP (or anything) from a UDP client: its session is alive."""
        for conn in self.connections:
            session = conn.session
            if session is not None and session.udp is not None and address[0] == session.udp[0]:
                session.seen = time.monotonic()

    def refuse(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    # -- auth ---------------------------------------------------------------------------


def _backlog(transport: asyncio.DatagramTransport) -> int:
    """Bytes a UDP transport holds unsent (asyncio's selector transports have it; the
    typing does not say so)."""
    size: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
    return size() if size is not None else 0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: RtspServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.heard_from(addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTSP UDP: %s", exc)
