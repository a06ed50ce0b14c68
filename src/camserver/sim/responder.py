"""The simulated camera's side of discovery: answer probes, announce at boot.

Written from the camera's side, as the Arduino sketch in ``docs/discovery.md`` does it,
and sharing no code with the server's codec, so a mistake in either shows up in the tests
instead of being repeated on both sides: a datagram whose text is exactly
``DISCOVER_CAMERAS`` gets one announcement back to its sender; anything else is ignored.
Like the firmware, it does not rate-limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import zlib
from typing import Literal

__all__ = ["AnnounceFormat", "SimResponder"]

log = logging.getLogger(__name__)

AnnounceFormat = Literal["json", "legacy"]

_PROBE = b"DISCOVER_CAMERAS"


class SimResponder(asyncio.DatagramProtocol):
    """Listens on ``0.0.0.0:port`` (broadcasts only reach a socket bound to the wildcard)."""

    def __init__(self, name: str, host: str, http_port: int, fmt: AnnounceFormat) -> None:
        self.name, self.host, self.http_port, self.fmt = name, host, http_port, fmt
        self._transport: asyncio.DatagramTransport | None = None

    def message(self) -> bytes:
        if self.fmt == "legacy":
            return f"ESP32_CAMERA:{self.host}:{self.http_port}".encode()
        mac = zlib.crc32(self.name.encode()).to_bytes(4, "big").hex(":")
        body = {
            "camera": self.name,
            "ip": self.host,
            "port": self.http_port,
            "stream_port": self.http_port + 1,  # CameraWebServer's stream server
            "mac": f"24:0a:{mac}",
            "model": "AI-Thinker ESP32-CAM (simulated)",
            "fw": "camserver-sim",
        }
        return json.dumps(body).encode()

    async def start(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def announce(self, address: tuple[str, int]) -> None:
        """Send one unprompted announcement (as firmware does at boot)."""
        if self._transport is not None:
            self._transport.sendto(self.message(), address)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if data.strip() == _PROBE and self._transport is not None:
            # Reply to the probe's source address and port.
            self._transport.sendto(self.message(), (str(addr[0]), int(addr[1])))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
