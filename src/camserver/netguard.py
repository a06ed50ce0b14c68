"""Keep camera URLs inside ``CAMSERVER_ALLOWED_NETWORKS``, so the API cannot be used to
reach services it should not (SSRF). Host names are resolved and every address checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from camserver.errors import TargetNotAllowed

__all__ = ["NetworkGuard"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkGuard:
    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks

    @property
    def enabled(self) -> bool:
        return bool(self.networks)

    def _allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip in net for net in self.networks)

    async def check(self, url: str) -> None:
        """Raise TargetNotAllowed unless every address ``url``'s host resolves to is allowed."""
        if not self.networks:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, parts.port or 80, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise TargetNotAllowed(
                    f"cannot resolve {host!r} to check it against the allowed networks: {exc}"
                ) from exc
            addresses = sorted({str(info[4][0]) for info in infos})
        outside = [a for a in addresses if not self._allowed(a)]
        if outside:
            allowed = ", ".join(str(n) for n in self.networks)
            raise TargetNotAllowed(
                f"{host} ({', '.join(outside)}) is outside the allowed networks ({allowed})"
            )
