"""The simulated camera's side of discovery: answer probes, announce at boot."""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Literal

from camserver.discovery.codec import (
    NEED_DATA,
    DiscoveryCodec,
    Probe,
    encode_announcement,
    encode_legacy_announcement,
)
from camserver.discovery.service import open_udp_socket

__all__ = ["AnnounceFormat", "SimResponder"]

log = logging.getLogger(__name__)

AnnounceFormat = Literal["json", "legacy"]


class SimResponder(asyncio.DatagramProtocol):
    """Listens on ``0.0.0.0:port`` (broadcasts only reach a socket bound to the wildcard)."""

    def __init__(self, name: str, host: str, http_port: int, fmt: AnnounceFormat) -> None:
        self.name, self.host, self.http_port, self.fmt = name, host, http_port, fmt
        self.codec = DiscoveryCodec(rate=1000)
        self.probes = 0
        self._transport: asyncio.DatagramTransport | None = None

    def message(self) -> bytes:
        if self.fmt == "legacy":
            return encode_legacy_announcement(self.host, self.http_port)
        mac = zlib.crc32(self.name.encode()).to_bytes(4, "big").hex(":")
        return encode_announcement(
            self.name,
            self.host,
            self.http_port,
            self.http_port + 1,
            mac=f"24:0a:{mac}",
            model="AI-Thinker ESP32-CAM (simulated)",
            fw="camserver-sim",
        )

    async def start(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = open_udp_socket("0.0.0.0", port)
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def announce(self, address: tuple[str, int]) -> None:
        """Send one unprompted announcement (as firmware does at boot)."""
        if self._transport is not None:
            self._transport.sendto(self.message(), address)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.codec.receive_datagram(data, (str(addr[0]), int(addr[1])), 0.0)
        while (event := self.codec.next_event()) is not NEED_DATA:
            if isinstance(event, Probe) and self._transport is not None:
                self.probes += 1
                # Reply to the probe's source address and port.
                self._transport.sendto(self.message(), event.source)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
