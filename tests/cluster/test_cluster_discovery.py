"""Discovery once per cluster, on real links: network namespaces this test creates and removes.

A bridge joins three camserver nodes, a Redis and two cameras (10.254.80.0/24, a range that
exists only inside the namespaces); a third camera hangs on a link to the first node only.
Every node probes and hears the cameras on its own; the cluster tells its clients once per
camera, and every node lists every camera, the one only the first node can hear included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import REDIS_CONF
from tests.helpers.netns import bridged, link
from tests.helpers.redis_acl import write_acl

pytestmark = pytest.mark.requires("root", "ip", "redis-server")

NET = "10.254.80"
FAR = "10.254.81"
NODES = ["n1", "n2", "n3"]

# Socket.IO clients on every node, counting camera_discovered for a while.
OBSERVER = """
import asyncio, json, sys, socketio

async def main(urls, seconds):
    events = {u: [] for u in urls}
    clients = []
    for u in urls:
        c = socketio.AsyncClient(reconnection=False)
        c.on("camera_discovered", lambda data, u=u: events[u].append(data))
        await c.connect(u, transports=["websocket"])
        clients.append(c)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for c in clients:
        await c.disconnect()
    print(json.dumps(events), flush=True)

asyncio.run(main(sys.argv[2:], float(sys.argv[1])))
"""

GET = """
import json, sys, httpx
r = httpx.get(sys.argv[1], timeout=10, trust_env=False)
print(json.dumps({"status": r.status_code, "body": r.json()}))
"""


class Lab:
    def __init__(self, prefix: str, logs: Path) -> None:
        self.prefix = prefix
        self.logs = logs
        self.procs: list[subprocess.Popen[str]] = []

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def command(self, host: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *args]

    def start(self, host: str, *args: str, env: dict[str, str] | None = None) -> None:
        with (self.logs / f"{host}-{len(self.procs)}.log").open("w") as log:
            self.procs.append(  # (the child keeps its own copy of the log file)
                subprocess.Popen(
                    self.command(host, *args),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env={**os.environ, **(env or {})},
                )
            )

    def get(self, host: str, url: str) -> dict[str, Any]:
        out = subprocess.run(
            self.command(host, sys.executable, "-c", GET, url),
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            return {"status": 0, "body": out.stderr}
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(f"cd{os.getpid() % 100000}", tmp_path)
    names = [lab.ns(h) for h in ["br", *NODES, "db", "c1", "c2", "far"]]
    try:
        with bridged(names, NET, on_bridge=6):  # n1-n3 .1-.3, db .4, c1 .5, c2 .6
            link(lab.ns("n1"), "eth1", f"{FAR}.1", lab.ns("far"), "eth0", f"{FAR}.2")
            yield lab
    finally:
        for p in lab.procs:
            p.kill()
            p.wait(10)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.beside  # mostly waits: beside the suite (tests/helpers/beside.py)
def test_a_camera_heard_by_three_nodes_is_announced_once_and_listed_on_every_node(
    lab: Lab, tmp_path: Path
) -> None:
    redis = f"{NET}.4"
    logins = write_acl(tmp_path)  # the shipped users: the nodes log in as camserver
    lab.start(
        "db",
        *("redis-server", str(REDIS_CONF), "--port", "6379", "--bind", redis),
        *("--dir", str(tmp_path), "--aclfile", str(logins.path)),
    )
    for i, node in enumerate(NODES, start=1):
        lab.start(
            node,
            *(sys.executable, "-m", "camserver", "serve", "--host", f"{NET}.{i}", "--port", "8000"),
            env={
                "CAMSERVER_REDIS_URL": logins.url(6379, host=redis),
                "CAMSERVER_NODE_ID": node,
                "CAMSERVER_DISCOVERY_INTERFACES": "eth0,eth1" if node == "n1" else "eth0",
                "CAMSERVER_DISCOVERY_INTERVAL": "1",
                "CAMSERVER_ONVIF_DISCOVERY": "false",
                "CAMSERVER_ESPHOME_DISCOVERY": "false",
            },
        )
    urls = [f"http://{NET}.{i}:8000" for i in range(1, 4)]
    for url in urls:

        def healthy(url: str = url) -> bool:
            return bool(lab.get("db", url + "/healthz")["status"] == 200)

        wait_until(healthy, 30, url)

    observer = subprocess.Popen(
        lab.command("db", sys.executable, "-c", OBSERVER, "12", *urls),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(observer)
    assert observer.stdout is not None
    assert observer.stdout.readline().strip() == "ready", observer.stderr

    cameras = {"c1": f"{NET}.5", "c2": f"{NET}.6", "far": f"{FAR}.2"}
    for host, address in cameras.items():
        lab.start(
            host,
            *(sys.executable, "-m", "camserver", "sim", "--host", address, "--http-port", "80"),
            *("--fps", "2", "--framesize", "QVGA", "--name-prefix", f"{host}-"),
            # answers probes, and announces itself at boot (to every node on its link)
            *("--discovery-port", "8888", "--discovery-listen-port", "8888"),
        )

    out, err = observer.communicate(timeout=60)
    events: dict[str, list[dict[str, Any]]] = json.loads(out.splitlines()[-1])
    wanted = {(address, 80) for address in cameras.values()}
    for url in urls:
        # One camera_discovered per camera for the whole cluster, on every node's clients.
        seen = sorted((e["ip"], e["port"]) for e in events[url])
        assert seen == sorted(wanted), (url, events[url], err)

    lists = []
    for url in urls:
        answer = lab.get("db", url + "/api/discovery")
        assert answer["status"] == 200, answer
        lists.append(sorted((c["name"], c["ip"], c["port"]) for c in answer["body"]))
    # One list on every node, with the camera only n1 can hear.
    assert lists[0] == lists[1] == lists[2], lists
    assert {(ip, port) for _, ip, port in lists[0]} == wanted
    assert ("far-1", f"{FAR}.2", 80) in lists[1]
