"""Network namespaces for tests that need real links (discovery, ONVIF discovery): what
they create is theirs alone and removed after them; nothing leaves the namespaces."""

from __future__ import annotations

import subprocess

__all__ = ["ip", "join_bridge", "link"]


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
