"""Network namespaces for tests that need real links (discovery, ONVIF discovery): what
they create is theirs alone and removed after them; nothing leaves the namespaces."""

from __future__ import annotations

import subprocess

__all__ = ["ip", "join_bridge"]


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
