"""Network namespaces for tests that need real links (discovery, ONVIF discovery): what
they create is theirs alone and removed after them; nothing leaves the namespaces."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bridged", "ip", "join_bridge", "link", "tx_packets"]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def join_bridge(bridge_ns: str, index: int, ns: str, address: str) -> None:
    """Link namespace ``ns`` (as its ``eth0``, with ``address``/24) to the bridge ``br0``
    of ``bridge_ns`` by a veth pair (``v<index>`` on the bridge's side)."""
    ip(
        "-n",
        bridge_ns,
        "link",
        "add",
        f"v{index}",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    )
    ip("-n", bridge_ns, "link", "set", f"v{index}", "master", "br0", "up")
    ip("-n", ns, "addr", "add", f"{address}/24", "brd", "+", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")


def link(ns_a: str, dev_a: str, addr_a: str, ns_b: str, dev_b: str, addr_b: str) -> None:
    """A veth pair straight from ``ns_a`` (``dev_a``, ``addr_a``/24) to ``ns_b``."""
    ip("-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
    for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
        ip("-n", ns, "addr", "add", f"{addr}/24", "brd", "+", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "link", "set", "lo", "up")


def tx_packets(ns: str, dev: str) -> int:
    """Packets ``dev`` of namespace ``ns`` has sent (to show that nothing left by a link)."""
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", dev],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


@contextmanager
def bridged(names: list[str], subnet: str, on_bridge: int) -> Iterator[None]:
    """Namespaces ``names`` (IPv6 off), a bridge ``br0`` in the first, and the next
    ``on_bridge`` joined to it as ``subnet``.1, .2, ...; all removed afterwards."""
    try:
        for n in names:
            ip("netns", "add", n)
            subprocess.run(
                ["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                check=True,
                timeout=10,
            )
        ip("-n", names[0], "link", "add", "br0", "type", "bridge")
        ip("-n", names[0], "link", "set", "br0", "up")
        for i, ns in enumerate(names[1 : 1 + on_bridge], start=1):
            join_bridge(names[0], i, ns, f"{subnet}.{i}")
        yield
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=10)
