"""WS-Discovery (ONVIF's discovery), answering only: a Probe (SOAP over UDP multicast to
239.255.255.250:3702) for a ``NetworkVideoTransmitter`` or a ``Device`` gets a
ProbeMatches with the device service's address, unicast to whoever asked.

:func:`parse_probe` and :func:`probe_matches` are the protocol, without I/O.
:class:`Responder` listens on the interfaces discovery may use (``CAMSERVER_DISCOVERY_
INTERFACES``), one socket each, joined to the group on that interface only and deaf to the
group's traffic on any other (``IP_MULTICAST_ALL`` off): a probe that arrives elsewhere is
never seen, and nothing is ever sent but answers to probes (no Hello, no Bye).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import uuid
from dataclasses import dataclass
from typing import Final, cast
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

__all__ = ["GROUP", "PORT", "Probe", "Responder", "parse_probe", "probe_matches"]

log = logging.getLogger(__name__)

GROUP: Final = "239.255.255.250"
PORT: Final = 3702
MAX_DATAGRAM: Final = 8192
IP_MULTICAST_ALL: Final = 49
"""Linux: 0 delivers only the groups this socket joined, on the interfaces it joined them."""
_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
_PROBE = f"{_WSD}/Probe"
_TYPES = frozenset({"NetworkVideoTransmitter", "Device"})


@dataclass(frozen=True, slots=True)
class Probe:
    message_id: str
    types: list[str]
    """Local names of the types asked for (none: anything)."""


def parse_probe(data: bytes) -> Probe | None:
    """The probe in ``data``, or None for anything else (not XML, not a Probe)."""
    if len(data) > MAX_DATAGRAM:
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    action = next((e.text for e in root.iter(f"{{{_WSA}}}Action") if e.text), _PROBE)
    probe = next(root.iter(f"{{{_WSD}}}Probe"), None)
    if probe is None or action.strip() != _PROBE:
        return None
    message_id = next((e.text.strip() for e in root.iter(f"{{{_WSA}}}MessageID") if e.text), "")
    types_text = next((e.text for e in root.iter(f"{{{_WSD}}}Types") if e.text), "")
    types = [t.rpartition(":")[2] for t in types_text.split()]
    return Probe(message_id, types)


def wanted(probe: Probe) -> bool:
    return not probe.types or any(t in _TYPES for t in probe.types)


def probe_matches(probe: Probe, endpoint: str, xaddr: str, scopes: list[str]) -> bytes:
    """The ProbeMatches answering ``probe`` (``endpoint``: this device's ``urn:uuid:``)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
        f'xmlns:wsa="{_WSA}" xmlns:d="{_WSD}" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" '
        'xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><env:Header>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:RelatesTo>{escape(probe.message_id)}</wsa:RelatesTo>"
        "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
        f"<wsa:Action>{_WSD}/ProbeMatches</wsa:Action></env:Header><env:Body>"
        "<d:ProbeMatches><d:ProbeMatch><wsa:EndpointReference>"
        f"<wsa:Address>{escape(endpoint)}</wsa:Address></wsa:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        f"<d:Scopes>{escape(' '.join(scopes))}</d:Scopes>"
        f"<d:XAddrs>{escape(xaddr)}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>"
    ).encode()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, address: str, reply: socket.socket) -> None:
        self.responder = responder
        self.address = address
        self.reply = reply
        """Answers leave from the interface's own address (a socket bound to the group
        address cannot send: its source would be a multicast address)."""
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio's classes, but behave as them.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        probe = parse_probe(data)
        if probe is None or not wanted(probe) or self.transport is None:
            return
        self.responder.answered += 1
        xaddr = f"http://{self.address}:{self.responder.http_port}/onvif/device_service"
        answer = probe_matches(probe, self.responder.endpoint, xaddr, self.responder.scopes)
        try:
            self.reply.sendto(answer, addr)
        except OSError as exc:  # (full, unreachable: the prober asks again)
            log.debug("WS-Discovery answer to %s: %s", addr, exc)


class Responder:
    """Answers probes on the given interfaces (name, IPv4 address)."""

    def __init__(self, interfaces: list[tuple[str, str]], http_port: int, node: str) -> None:
        self.interfaces = interfaces
        self.http_port = http_port
        self.endpoint = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, 'camserver.' + node)}"
        self.scopes = [
            "onvif://www.onvif.org/Profile/Streaming",
            "onvif://www.onvif.org/type/video_encoder",
            f"onvif://www.onvif.org/name/camserver-{node}",
        ]
        self.answered = 0
        self._transports: list[asyncio.BaseTransport] = []
        self._replies: list[socket.socket] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, address in self.interfaces:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
                sock.bind((GROUP, PORT))
                membership = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(address))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                with contextlib.suppress(PermissionError):  # (answers leave by this one too)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            reply.setblocking(False)
            with contextlib.suppress(PermissionError):
                reply.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
            reply.bind((address, 0))
            self._replies.append(reply)
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Listener, self, address, reply), sock=sock
            )
            self._transports.append(transport)
            log.info("ONVIF WS-Discovery answers probes on %s (%s)", name, address)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for reply in self._replies:
            reply.close()
        self._transports.clear()
        self._replies.clear()
