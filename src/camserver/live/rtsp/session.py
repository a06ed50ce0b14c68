"""One RTSP connection and its session: requests answered, frames written (see
``server.py`` for the whole)."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from camserver.errors import StreamNotFound, TooManyViewers
from camserver.live.counters import counters
from camserver.live.rtsp import rtp_jpeg
from camserver.live.rtsp.auth import Grant
from camserver.live.rtsp.sdp import describe_h264, describe_jpeg, sender_report
from camserver.live.rtsp.wire import (
    END,
    NEED_DATA,
    Interleaved,
    Refused,
    Request,
    RtspReader,
    parse_transport,
    response,
)
from camserver.streaming.hub import HubFrame, LocalHub

if TYPE_CHECKING:
    from camserver.live.rtsp.server import RtspServer

__all__ = ["RtspConnection", "RtspSession", "interleave"]

log = logging.getLogger(__name__)

HIGH_WATER = 512 * 1024
"""Unsent bytes past which a session skips frames (a few VGA frames)."""
SESSION_TIMEOUT = 60.0
HEAD_DEADLINE = 10.0
"""Seconds a client has to finish a request it began (slowloris)."""
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"


@dataclass(slots=True, eq=False)
class RtspSession:
    id: str
    name: str
    hub: LocalHub
    tcp_channels: tuple[int, int] | None = None
    udp: tuple[str, int] | None = None
    udp_rtcp: tuple[str, int] | None = None
    playing: bool = False
    seen: float = 0.0
    packets: int = 0
    octets: int = 0
    viewer: AbstractContextManager[None] | None = None
    unlisten: Callable[[], None] | None = None
    codec: str = "jpeg"
    """``jpeg`` (RFC 2435) or ``h264`` (the ``/h264`` path, RFC 6184)."""
    keyframed: bool = False
    """H.264: a keyframe was sent (before it, nothing is: it could not be decoded)."""


class RtspConnection(asyncio.Protocol):
    def __init__(self, server: RtspServer) -> None:
        self.server = server
        self.reader = RtspReader()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.session: RtspSession | None = None
        self.grant: Grant | None = None
        self.last_request = time.monotonic()
        self._closed = False
        self._pending: asyncio.Future[bytes] | None = None

    # -- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one.)
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        server = self.server
        count = server._per_client.get(self.client, 0)
        if count >= server.max_per_client:
            server.refuse(503)
            self.transport.write(
                response(503, None, reason="Too Many Connections From This Client")
            )
            self.transport.close()
            self._closed = True
            return
        server._per_client[self.client] = count + 1
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def data_received(self, data: bytes) -> None:
        self.reader.receive_data(data)
        self._drain_events()

    def eof_received(self) -> bool:
        self.reader.receive_data(b"")
        self._drain_events()
        return False

    def _drain_events(self) -> None:
        while not self._closed and self._pending is None:
            event = self.reader.next_event()
            if event is NEED_DATA:
                return
            if event is END:
                self.close("client ended")
                return
            if isinstance(event, Interleaved):
                if self.session is not None:
                    self.session.seen = time.monotonic()  # RTCP receiver reports
                continue
            if isinstance(event, Refused):
                self.server.refuse(event.status)
                self._write(response(event.status, event.cseq, reason=None))
                log.info("RTSP %s: refused (%d): %s", self.client, event.status, event.reason)
                self.close(event.reason)
                return
            assert isinstance(event, Request)
            self.last_request = time.monotonic()
            try:
                answer = self._answer(event)
            except Exception:
                log.exception("RTSP %s: %s failed", self.client, event.method)
                answer = response(500, event.cseq)
            if isinstance(answer, bytes):
                self._write(answer)
            else:  # (an answer that waits: later requests wait for it, in order)
                self._pending = asyncio.ensure_future(answer)
                self._pending.add_done_callback(functools.partial(self._answered, req=event))

    def _answered(self, task: asyncio.Future[bytes], *, req: Request) -> None:
        self._pending = None
        try:
            self._write(task.result())
        except Exception:
            log.exception("RTSP %s: %s failed", self.client, req.method)
            self._write(response(500, req.cseq))
        self._drain_events()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)

    def close(self, why: str) -> None:
        if self.transport is not None and not self._closed:
            self.transport.close()
        self._end()

    def _end(self) -> None:
        if self._closed and self not in self.server.connections:
            return
        self._closed = True
        if self in self.server.connections:
            self.server.connections.discard(self)
            left = self.server._per_client.get(self.client, 1) - 1
            if left:
                self.server._per_client[self.client] = left
            else:
                self.server._per_client.pop(self.client, None)
        self._stop_session()

    def tick(self, now: float, report: bool) -> None:
        session = self.session
        if self.reader.buffered and now - self.last_request > HEAD_DEADLINE:
            self.server.refuse(408)
            self.close("a request not finished in time")
            return
        if session is None:
            if now - self.last_request > SESSION_TIMEOUT:
                self.close("idle")
            return
        if now - max(session.seen, self.last_request) > SESSION_TIMEOUT:
            log.info("RTSP %s: session %s timed out", self.client, session.id)
            self.close("session timeout")
            return
        if report and session.playing:
            state = self.server.stream_state(session.name, session.codec)
            rtcp = sender_report(state.ssrc, state.timestamp, session.packets, session.octets)
            if session.tcp_channels is None and session.udp_rtcp is not None:
                self.server.send_udp(rtcp, session.udp_rtcp, rtcp=True)
            elif (
                session.tcp_channels is not None
                and self.transport is not None
                and self.transport.get_write_buffer_size() < HIGH_WATER
            ):
                self._write(interleave(session.tcp_channels[1], [rtcp]))

    # -- requests -----------------------------------------------------------------------

    def _answer(self, req: Request) -> bytes | Coroutine[Any, Any, bytes]:
        cseq = req.cseq
        if self.session is not None and req.headers.get("session", "").split(";")[0] == (
            self.session.id
        ):
            self.session.seen = time.monotonic()
        if req.method == "OPTIONS":
            return response(200, cseq, {"Public": PUBLIC})
        if req.method in ("ANNOUNCE", "RECORD", "REDIRECT"):
            self.server.refuse(405)
            return response(405, cseq, {"Allow": PUBLIC})
        name, track = _stream_of(req.uri)
        grant = self.server.auth.authorize(req) or _as_before(self.grant, req)
        if grant is None:
            self.server.refuse(401)
            return response(401, cseq, self.server.auth.challenge())
        if req.method in ("GET_PARAMETER", "SET_PARAMETER"):
            return response(200, cseq, self._session_header())
        if name is None or not grant.sees(name):
            self.server.refuse(404)
            return response(404, cseq)
        if track is not None and track.split("/")[0] not in ("trackID=0", "h264"):
            self.server.refuse(404)
            return response(404, cseq)
        codec = "h264" if track is not None and track.startswith("h264") else "jpeg"
        if self.session is not None and self.session.codec != codec:
            self.server.refuse(459)
            return response(459, cseq)
        if codec == "h264" and req.method == "DESCRIBE":
            return self._describe_h264(req, name)
        self.grant = grant
        handler = {
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
        }[req.method]
        return handler(req, name, track)

    def _session_header(self) -> dict[str, str]:
        if self.session is None:
            return {}
        return {"Session": f"{self.session.id};timeout={int(SESSION_TIMEOUT)}"}

    def _hub(self, name: str) -> LocalHub | bytes:
        try:
            return self.server.admit(name, self.client)
        except StreamNotFound:
            self.server.refuse(404)
            return b"404"
        except TooManyViewers:
            self.server.refuse(453)
            return b"453"

    async def _describe_h264(self, req: Request, name: str) -> bytes:
        hub = self._hub(name)
        if isinstance(hub, bytes):
            return response(int(hub), req.cseq)
        sets = await self.server.h264_parameter_sets(name, hub, self.client)
        if sets is None:
            self.server.refuse(503)
            return response(503, req.cseq, reason="No Picture From The Camera Yet")
        base = _base(req)
        return _sdp(req, describe_h264(name, base, self._local(), secrets.randbits(31), sets))

    def _describe(self, req: Request, name: str, track: str | None) -> bytes:
        hub = self._hub(name)
        if isinstance(hub, bytes):
            return response(int(hub), req.cseq)
        scan = rtp_jpeg.parse(hub.latest.data) if hub.latest is not None else None
        size = (scan.width, scan.height) if isinstance(scan, rtp_jpeg.JpegScan) else None
        sdp = describe_jpeg(name, _base(req), self._local(), secrets.randbits(31), None, size)
        return _sdp(req, sdp)

    def _local(self) -> str:
        return str(self.transport.get_extra_info("sockname")[0]) if self.transport else "0.0.0.0"

    def _setup(self, req: Request, name: str, track: str | None) -> bytes:
        wanted = parse_transport(req.headers.get("transport", ""))
        if wanted is None:
            self.server.refuse(461)
            return response(461, req.cseq)
        session = self.session
        if session is not None and session.name != name:
            self.server.refuse(459)
            return response(459, req.cseq)
        if session is None:
            hub = self._hub(name)
            if isinstance(hub, bytes):
                return response(int(hub), req.cseq)
            session = self.session = RtspSession(
                secrets.token_hex(8),
                name,
                hub,
                seen=time.monotonic(),
                codec="h264" if track is not None and track.startswith("h264") else "jpeg",
            )
        if session.playing:
            self.server.refuse(455)
            return response(455, req.cseq, self._session_header())
        state = self.server.stream_state(name, session.codec)
        if wanted.tcp:
            session.tcp_channels = wanted.interleaved
            session.udp = session.udp_rtcp = None
            a, b = wanted.interleaved
            transport = f"RTP/AVP/TCP;unicast;interleaved={a}-{b};ssrc={state.ssrc:08X}"
        else:
            assert wanted.client_ports is not None
            session.tcp_channels = None
            session.udp = (self.client, wanted.client_ports[0])
            session.udp_rtcp = (self.client, wanted.client_ports[1])
            p, q = self.server.udp_ports
            c1, c2 = wanted.client_ports
            transport = (
                f"RTP/AVP;unicast;client_port={c1}-{c2};server_port={p}-{q};ssrc={state.ssrc:08X}"
            )
        return response(200, req.cseq, {"Transport": transport, **self._session_header()})

    def _check_session(self, req: Request) -> RtspSession | bytes:
        session = self.session
        given = req.headers.get("session", "").split(";")[0].strip()
        if session is None or (given and given != session.id):
            self.server.refuse(454)
            return response(454, req.cseq)
        return session

    def _play(self, req: Request, name: str, track: str | None) -> bytes:
        session = self._check_session(req)
        if isinstance(session, bytes):
            return session
        if session.tcp_channels is None and session.udp is None:
            self.server.refuse(455)
            return response(455, req.cseq)
        state = self.server.stream_state(name, session.codec)
        base = req.uri.split("?")[0].rstrip("/")
        if not session.playing:
            session.playing = True
            session.viewer = session.hub.viewer("rtsp", self.client)
            session.viewer.__enter__()
            if session.codec == "h264":
                self.server.h264_play(self, session)
            else:
                session.unlisten = session.hub.listen(self._frame)
        info = f"url={base}/trackID=0;seq={state.seq}"
        return response(
            200, req.cseq, {"Range": "npt=0.000-", "RTP-Info": info, **self._session_header()}
        )

    def _pause(self, req: Request, name: str, track: str | None) -> bytes:
        session = self._check_session(req)
        if isinstance(session, bytes):
            return session
        self._stop_playing(session)
        return response(200, req.cseq, self._session_header())

    def _teardown(self, req: Request, name: str, track: str | None) -> bytes:
        session = self._check_session(req)
        if isinstance(session, bytes):
            return session
        out = response(200, req.cseq, self._session_header())
        self._stop_session()
        return out

    def _stop_playing(self, session: RtspSession) -> None:
        if session.codec == "h264" and session.playing:
            self.server.h264_stop(self, session)
        if session.unlisten is not None:
            session.unlisten()
            session.unlisten = None
        if session.viewer is not None:
            session.viewer.__exit__(None, None, None)
            session.viewer = None
        session.playing = False

    def _stop_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self._stop_playing(session)

    # -- frames -------------------------------------------------------------------------

    def _frame(self, frame: HubFrame | None) -> None:
        """A hub listener: one frame to this session (whole, or skipped)."""
        session = self.session
        if frame is None:  # the stream is gone
            self.close("stream deleted")
            return
        if session is None or self.transport is None or self._closed:
            return
        state, packets = self.server.packets(session.name, frame)
        if packets is not None:
            self.send(session, packets, state)

    def send(self, session: RtspSession, packets: list[bytes], state: Any = None) -> bool:
        """One frame's packets to this session, whole, or skipped (slow socket); ``state``:
        the stream's, whose caches of the frame's framings it shares."""
        c = counters.rtsp
        if self.transport is None or self._closed:
            return False
        if session.tcp_channels is not None:
            if self.transport.get_write_buffer_size() > HIGH_WATER:
                c.skipped_slow += 1
                return False
            self.transport.write(self.server.interleaved(state, session.tcp_channels[0], packets))
        elif session.udp is not None and not self.server.send_frame_udp(
            state, packets, session.udp
        ):
            c.skipped_slow += 1
            return False
        c.sent += 1
        session.packets += len(packets)
        session.octets += sum(len(p) - 12 for p in packets)
        return True


def _as_before(grant: Grant | None, req: Request) -> Grant | None:
    """A client that authenticated on this connection stays so for a request without
    credentials (often it gave ?token= in the URL it was given, and the SETUP's control URL
    no longer carries it); wrong credentials are refused."""
    if "authorization" in req.headers or "token=" in req.uri:
        return None
    return grant


def interleave(channel: int, packets: list[bytes]) -> bytes:
    """``$``-framed for RTSP over TCP (RFC 2326 section 10.12)."""
    ch = bytes([channel])
    return b"".join(b"$" + ch + len(p).to_bytes(2, "big") + p for p in packets)


def _base(req: Request) -> str:
    return req.uri.split("?")[0].rstrip("/") + "/"


def _sdp(req: Request, sdp: str) -> bytes:
    headers = {"Content-Base": _base(req), "Content-Type": "application/sdp"}
    return response(200, req.cseq, headers, sdp.encode())


def _stream_of(uri: str) -> tuple[str | None, str | None]:
    """(stream name, the rest of the path) of ``rtsp://host:port/<stream>[/...]``."""
    if uri == "*":
        return None, None
    path = urlsplit(uri).path if "://" in uri else uri.split("?")[0]
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts:
        return None, None
    return parts[0], "/".join(parts[1:]) or None
