"""scripts/cluster-demo.sh does what its comment says: stop a node (kill <pid>) and its
cameras move to the others while the demo goes on; start it again with the line it
prints; Ctrl-C stops everything. (It used to end the whole demo when any one process
exited: the page went blank.)"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.requires("redis-server", "haproxy", "curl")
ROOT = Path(__file__).resolve().parents[2]


def _free_base() -> int:
    """A port P with P..P+3, P+100..P+105, P+390 and P+555..P+557 free on loopback."""
    for base in range(21000, 30000, 37):
        ports = [base + i for i in (0, 1, 2, 3, 100, 101, 102, 103, 104, 105, 390, 555, 556, 557)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports for the demo")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.beside  # mostly waits: beside the suite (tests/helpers/beside.py)
async def test_the_cluster_demo_survives_a_stopped_node_until_ctrl_c() -> None:
    base = _free_base()
    demo = subprocess.Popen(
        ["bash", "scripts/cluster-demo.sh"],
        cwd=ROOT,
        env={**os.environ, "CAMSERVER_DEMO_PORT": str(base)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C goes to the script's process group
    )
    assert demo.stdout is not None
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 240  # the script sets up .venv first
        while not any("camserver cluster: open" in line for line in printed):
            line = demo.stdout.readline()
            assert line, "the demo ended before it started:\n" + "".join(printed)
            printed.append(line)
            assert time.monotonic() < deadline, "".join(printed)
        for _ in range(2):  # the lines that say how to stop and restart
            printed.append(demo.stdout.readline())
        text = "".join(printed)
        pids = {int(n): int(p) for n, p in re.findall(r"node n(\d): .*\(pid (\d+),", text)}
        assert sorted(pids) == [1, 2, 3], text
        assert "kill <its pid>" in text
        start_line = re.search(r"bash (\S+)/start-n<i>\.sh", text)
        assert start_line is not None, text
        url = f"http://127.0.0.1:{base}"
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as c:

            async def all_streaming() -> bool:
                try:
                    states = [
                        (await c.get(f"/api/streams/demo-{i}/status")).json().get("state")
                        for i in (1, 2, 3)
                    ]
                except (httpx.HTTPError, ValueError):
                    return False
                return states == ["streaming"] * 3

            await wait_for(all_streaming, 60, what="the demo's three cameras")
            holder = (await c.get("/api/streams/demo-1/status")).json()["node"]
            victim = int(holder.removeprefix("n"))
            os.kill(pids[victim], signal.SIGTERM)  # what the comment suggests: kill <pid>
            await wait_for(lambda: not _alive(pids[victim]), 15, what="the node stopped")

            async def moved() -> bool:
                status = (await c.get("/api/streams/demo-1/status")).json()
                return bool(status["state"] == "streaming" and status["node"] != holder)

            await wait_for(moved, 30, what="demo-1 pulled by another node")
            snapshot = await c.get("/api/streams/demo-1/snapshot")
            assert snapshot.status_code == 200
            assert snapshot.content[:2] == b"\xff\xd8"
            assert demo.poll() is None, "the demo ended with one node"
            # Started again with the printed line, the node serves again.
            again = subprocess.run(
                ["bash", f"{start_line.group(1)}/start-n{victim}.sh"],
                check=True,
                timeout=10,
                capture_output=True,
                text=True,
            )
            restarted = int(again.stdout.split("pid")[1])
            node = f"http://127.0.0.1:{base + victim}"
            async with httpx.AsyncClient(trust_env=False, timeout=2) as n:

                async def healthy() -> bool:
                    try:
                        return (await n.get(f"{node}/healthz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await wait_for(healthy, 30, what="the restarted node")
        # Ctrl-C ends everything, the restarted node included.
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) != 0
        pid_file = Path(start_line.group(1)) / "pids"
        assert not pid_file.exists()  # its folder is cleaned up
        every = [*pids.values(), restarted]  # the restarted node too
        await wait_for(lambda: not any(_alive(p) for p in every), 15, what="every node stopped")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        demo.stdout.close()
