"""Discovery across real hosts: network namespaces this test creates and removes.

A bridge in its own namespace joins three "hosts" (server, camera 1, camera 2) by veth
pairs, in 10.254.77.0/24, a range that exists only inside them. Broadcast probes from the
server's namespace reach both cameras; nothing leaves the namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import ip, join_bridge

NET = "10.254.77"

# Root and iproute2 build the network namespaces.
pytestmark = pytest.mark.requires("root", "ip")


@dataclass
class Lab:
    prefix: str
    hosts: dict[str, str] = field(default_factory=dict)  # namespace -> address
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def run(self, host: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(host), sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, host: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), sys.executable, *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, **(env or {})},
            )
        )


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab(prefix=f"cs{os.getpid() % 100000}")
    names = ["br", "srv", "cam1", "cam2"]
    try:
        for n in names:
            ip("netns", "add", lab.ns(n))
        br = lab.ns("br")
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "link", "set", "br0", "up")
        for i, host in enumerate(["srv", "cam1", "cam2"], start=1):
            join_bridge(br, i, lab.ns(host), f"{NET}.{i}")
            lab.hosts[host] = f"{NET}.{i}"
        yield lab
    finally:
        for p in lab.procs:
            p.kill()
            p.wait(10)
        for n in names:
            subprocess.run(["ip", "netns", "del", lab.ns(n)], capture_output=True, timeout=10)


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


CLIENT = """
import json, sys, httpx
method, url = sys.argv[1], sys.argv[2]
r = httpx.request(
    method, url, timeout=10, trust_env=False, headers={"X-Requested-With": "camserver-tests"}
)
print(json.dumps({"status": r.status_code, "body": r.json() if r.content else None}))
"""


def http(lab: Lab, method: str, url: str) -> dict[str, Any]:
    out = lab.run("srv", "-c", CLIENT, method, url)
    if out.returncode != 0:
        return {"status": 0, "body": out.stderr}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_broadcast_probe_finds_cameras_on_other_hosts(lab: Lab, tmp_path: Path) -> None:
    sim = [
        "-m",
        "camserver",
        "sim",
        "--http-port",
        "80",
        "--fps",
        "10",
        "--framesize",
        "QVGA",
        "--discovery-port",
        "8888",
        "--discovery-listen-port",
        "0",
    ]
    lab.start("cam1", *sim, "--host", lab.hosts["cam1"], "--name-prefix", "north-")
    lab.start("cam2", *sim, "--host", lab.hosts["cam2"], "--announce-format", "legacy")

    def both_found() -> bool:
        out = lab.run(
            "srv",
            "-m",
            "camserver",
            "discover",
            "--interface",
            "eth0",
            "--port",
            "8888",
            "--timeout",
            "1",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        return {r["ip"] for r in rows} == {lab.hosts["cam1"], lab.hosts["cam2"]}

    wait_until(both_found)

    # A full server in the server's namespace: scan, add one camera, watch it stream.
    lab.start(
        "srv",
        "-m",
        "camserver",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--db",
        str(tmp_path / "netns.db"),
        env={"CAMSERVER_DISCOVERY_INTERFACES": "eth0"},
    )
    base = "http://127.0.0.1:8000"
    wait_until(lambda: http(lab, "GET", base + "/healthz")["status"] == 200)
    scan = http(lab, "POST", base + "/api/discovery/scan?timeout=1")
    assert scan["status"] == 200
    names = {c["name"] for c in scan["body"]}
    assert names == {"north-1", f"esp32-{lab.hosts['cam2'].replace('.', '-')}"}
    assert http(lab, "POST", base + "/api/discovery/north-1/add")["status"] == 201

    def streaming() -> bool:
        st = http(lab, "GET", base + "/api/streams/north-1/status")
        return bool(st["status"] == 200 and st["body"]["state"] == "streaming")

    wait_until(streaming)

    # A camera that boots later announces itself to the server, unprompted.
    lab.start(
        "cam2",
        "-m",
        "camserver",
        "sim",
        "--http-port",
        "8080",
        "--fps",
        "5",
        "--framesize",
        "QVGA",
        "--host",
        lab.hosts["cam2"],
        "--name-prefix",
        "late-",
        "--discovery-port",
        "0",
        "--discovery-listen-port",
        "8888",
    )

    def late_seen() -> bool:
        body = http(lab, "GET", base + "/api/discovery")["body"]
        return any(c["name"] == "late-1" for c in body)

    wait_until(late_seen)
