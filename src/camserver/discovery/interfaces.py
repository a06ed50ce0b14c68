"""Which network interfaces to probe, from psutil (Linux, macOS, Windows alike)."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

import psutil

__all__ = ["Interface", "list_interfaces", "select_interfaces"]

# Virtual interfaces the original server skipped too: containers, VMs, VPNs, WSL.
_VIRTUAL = re.compile(
    r"^(docker|veth|br-|virbr|vmnet|vboxnet|vEthernet|wsl|tun|tap|zt|tailscale|utun|"
    r"cni|flannel|cali|weave|podman|lxc|lxd|ifb|dummy)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    address: str
    netmask: str
    broadcast: str
    loopback: bool


def _broadcast(address: str, netmask: str | None, given: str | None) -> str | None:
    if given:
        return given
    if not netmask:
        return None
    try:
        net = ipaddress.IPv4Network(f"{address}/{netmask}", strict=False)
    except ValueError:
        return None
    # A /32 or /31 has no broadcast address of its own.
    return str(net.broadcast_address) if net.prefixlen < 31 else None


def list_interfaces() -> list[Interface]:
    """IPv4 interfaces that are up, each with a broadcast address (computed if need be)."""
    stats = psutil.net_if_stats()
    found: list[Interface] = []
    for name, addrs in psutil.net_if_addrs().items():
        st = stats.get(name)
        if st is None or not st.isup:
            continue
        for a in addrs:
            if a.family != socket.AF_INET:
                continue
            bcast = _broadcast(a.address, a.netmask, a.broadcast)
            if bcast is None:
                continue
            loopback = ipaddress.IPv4Address(a.address).is_loopback
            found.append(Interface(name, a.address, a.netmask or "", bcast, loopback))
    return found


def _auto(iface: Interface) -> bool:
    ip = ipaddress.IPv4Address(iface.address)
    return (
        not iface.loopback
        and ip.is_private
        and not ip.is_link_local
        and not _VIRTUAL.match(iface.name)
    )


def select_interfaces(spec: str, available: list[Interface] | None = None) -> list[Interface]:
    """``spec``: ``auto``, ``none`` (or empty) or comma-separated names (``lo`` allowed).

    Raises ValueError naming any interface that does not exist or cannot broadcast.
    """
    available = list_interfaces() if available is None else available
    spec = spec.strip()
    if spec.lower() in ("", "none", "off"):
        return []
    if spec.lower() == "auto":
        return [i for i in available if _auto(i)]
    wanted = [n.strip() for n in spec.split(",") if n.strip()]
    chosen = [i for i in available if i.name in wanted]
    missing = sorted(set(wanted) - {i.name for i in chosen})
    if missing:
        names = ", ".join(sorted({i.name for i in available})) or "none"
        raise ValueError(
            f"no usable IPv4 interface named {', '.join(missing)} (up, with an IPv4 address "
            f"and a broadcast address); available: {names}"
        )
    return chosen
