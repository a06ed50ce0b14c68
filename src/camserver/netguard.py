"""Where camserver may connect to reach a camera (SSRF), and connecting only there.

- With ``CAMSERVER_ALLOWED_NETWORKS`` set, every address a camera URL's host resolves to
  must be inside one of those networks.
- Without it, any address will do except link-local ones (169.254.0.0/16 and fe80::/10,
  where clouds serve instance metadata and credentials), multicast and unspecified
  addresses; list a network explicitly to reach those.
- :meth:`NetworkGuard.pin` resolves the host once, checks the addresses, and gives the URL
  with the checked address in place of the name (the Host header and TLS server name keep
  the name). Connecting to the name again would resolve it again, and a name that answers
  an allowed address first and another one next (DNS rebinding) would get through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from camserver.errors import TargetNotAllowed, UpstreamConnectError

__all__ = ["NetworkGuard", "Target"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """A request to make: the URL with the checked address, and what keeps the name."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def _parse(address: str) -> Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return ip


class NetworkGuard:
    def __init__(self, networks: list[Network]) -> None:
        self.networks = networks
        self.local_names: Callable[[str], list[str] | None] | None = None
        """``.local`` names announced over mDNS (camserver.discovery.mdns), answered
        before the system resolver (which may not speak mDNS)."""

    @property
    def enabled(self) -> bool:
        """An allow-list is set (without one, the default refusals still apply)."""
        return bool(self.networks)

    def allowed(self, address: str) -> bool:
        ip = _parse(address)
        if self.networks:
            return any(ip in net for net in self.networks)
        return not (ip.is_link_local or ip.is_multicast or ip.is_unspecified)

    async def resolve(self, url: str) -> list[str]:
        """The addresses ``url``'s host stands for: TargetNotAllowed unless all are allowed,
        UpstreamConnectError if the name does not resolve."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        announced = None
        if self.local_names is not None and host.lower().endswith(".local"):
            announced = self.local_names(host)
        try:
            addresses = announced or [str(_parse(host))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, parts.port or 80, type=socket.SOCK_STREAM
                )
            except (OSError, UnicodeError) as exc:
                raise UpstreamConnectError(f"cannot resolve {host!r}: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        outside = [a for a in addresses if not self.allowed(a)]
        if outside:
            where = (
                f"outside the allowed networks ({', '.join(str(n) for n in self.networks)})"
                if self.networks
                else "a link-local, multicast or unspecified address (allow its network in "
                "CAMSERVER_ALLOWED_NETWORKS to reach it)"
            )
            raise TargetNotAllowed(f"{host} ({', '.join(sorted(outside))}) is {where}")
        if not addresses:
            raise TargetNotAllowed(f"{host!r} resolves to no address")
        return addresses

    async def check(self, url: str) -> None:
        """Raise TargetNotAllowed unless every address ``url``'s host resolves to is allowed
        (when a stream is saved). A name that does not resolve now is refused only under an
        allow-list: a camera that is off or a flaky mDNS name may resolve later, and every
        connection is checked again (:meth:`pin`)."""
        try:
            await self.resolve(url)
        except UpstreamConnectError as exc:
            if self.networks:
                raise TargetNotAllowed(
                    f"{exc}: it cannot be checked against the allowed networks"
                ) from exc

    async def pin(self, url: str) -> Target:
        """``url`` with its host replaced by the first checked address (see the module)."""
        address = (await self.resolve(url))[0]
        parsed = httpx.URL(url)
        if parsed.host == address:
            return Target(url)
        # Only names get here (an address literal is its own pin).
        host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        pinned = parsed.copy_with(host=address)
        return Target(str(pinned), {"Host": host_header}, extensions)
