"""Redis with a password (issue 31, Must show 4, first and last part): a node with a wrong
or missing password stops at start with a message naming the setting; with the right one it
runs, and the password is in no log line or API answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import HEADERS, REDIS_CONF
from tests.conftest import Proc, free_port, wait_for, wait_healthy

pytestmark = pytest.mark.requires("redis-server")

PASSWORD = "Right-Horse-Battery-7731"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(REDIS_CONF.read_text())
    proc = subprocess.Popen(
        [
            *("redis-server", str(conf), "--port", str(port), "--dir", str(tmp_path)),
            *("--bind", "127.0.0.1", "--requirepass", PASSWORD),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    yield port
    proc.kill()
    proc.wait(10)


async def test_a_wrong_password_stops_the_node_and_the_right_one_shows_nowhere(
    locked_redis: int, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    port = locked_redis
    await asyncio.sleep(0.3)
    for url, words in (
        (f"redis://:Wrong-Pass-0001@127.0.0.1:{port}/0", "refused the login"),
        (f"redis://127.0.0.1:{port}/0", "wants a password"),
        # users.acl's placeholder, left as shipped: refused before Redis is even asked
        (f"redis://camserver:CHANGE-ME-camserver@127.0.0.1:{port}/0", "still a placeholder"),
    ):
        p = spawn(env={"CAMSERVER_REDIS_URL": url, "CAMSERVER_NODE_ID": "n1"})
        code = await asyncio.to_thread(p.proc.wait, 30)
        out = p.output()
        assert code == 2, out
        assert words in out, out
        assert "CAMSERVER_REDIS_URL" in out, out
        assert "Wrong-Pass-0001" not in out
        assert "Traceback" not in out
    # The right password: the node runs, and the password shows nowhere.
    p = spawn(
        env={
            "CAMSERVER_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
            "CAMSERVER_NODE_ID": "n1",
            "CAMSERVER_LOG_LEVEL": "debug",
        }
    )
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, trust_env=False, headers=HEADERS) as c:
        r = await c.post("/api/streams", json={"name": "cam", "host": "127.0.0.1:9"})
        assert r.status_code == 201, r.text
        answers = [
            (await c.get(path)).text
            for path in ("/api/cluster", "/healthz", "/api/streams", "/metrics", "/api/rtsp")
        ]
    config = subprocess.run(
        [sys.executable, "-m", "camserver", "config"],
        env={"CAMSERVER_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert config.returncode == 0, config.stderr
    assert "***" in config.stdout
    await wait_for(lambda: "cluster mode: node n1" in p.output(), 10, what="the start log")
    for text in (*answers, config.stdout, config.stderr, p.output()):
        assert PASSWORD not in text
