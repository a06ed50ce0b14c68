"""A real cluster on loopback: redis-server (with the shipped configuration), simulated
ESP32-CAMs and camserver nodes as separate processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis

from camserver.sim.camera import SimCamera
from tests.conftest import Proc, free_port, wait_for, wait_healthy
from tests.helpers.redis_acl import denied, write_acl
from tests.helpers.socketio import Viewer

REDIS_CONF = Path(__file__).parents[2] / "deploy" / "cluster" / "redis.conf"
HEADERS = {"X-Requested-With": "camserver-tests"}


class RedisServer:
    """redis-server with the shipped redis.conf and users (``deploy/cluster/users.acl``):
    the nodes log in as its ``camserver`` user, so every cluster test runs under the
    smallest command set the shipped configuration allows; the tests' own client is the
    ``admin`` user."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.logins = write_acl(workdir)

    @property
    def url(self) -> str:
        """The nodes' login."""
        return self.logins.url(self.port)

    def start(self) -> None:
        with (self.dir / "redis.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [
                    *("redis-server", str(REDIS_CONF), "--port", str(self.port)),
                    *("--dir", str(self.dir), "--bind", "127.0.0.1"),
                    *("--aclfile", str(self.logins.path)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def up() -> bool:
            try:
                async with self.client() as r:
                    return bool(await r.ping())
            except Exception:
                return False

        await wait_for(up, 10, 0.05, what="redis-server")

    def client(self) -> aioredis.Redis:
        """The tests' own client (the admin user)."""
        return aioredis.Redis.from_url(self.logins.url(self.port, "admin"))

    def denied(self) -> list[dict[str, Any]]:
        """Commands Redis refused the nodes since it last started (none while it is down)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return denied(self.port, self.logins)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Cluster:
    redis: RedisServer
    nodes: list[Proc]
    cams: list[SimCamera]
    http: httpx.AsyncClient
    start_node: Callable[[str], Proc]
    stack: AsyncExitStack
    viewers: list[Viewer] = field(default_factory=list)

    def url(self, i: int) -> str:
        return self.nodes[i].url

    async def add_streams(self, on: int = 0, **extra: Any) -> None:
        for i, cam in enumerate(self.cams):
            r = await self.http.post(
                self.url(on) + "/api/streams",
                json={"name": f"cam{i}", "host": cam.address, **extra},
            )
            assert r.status_code == 201, r.text

    async def streams(self, i: int) -> dict[str, dict[str, Any]]:
        r = await self.http.get(self.url(i) + "/api/streams")
        assert r.status_code == 200, r.text
        return {s["name"]: s for s in r.json()}

    async def holders(self) -> dict[str, str]:
        """Camera → node id, from Redis' leases."""
        async with self.redis.client() as r:
            out = {}
            for i in range(len(self.cams)):
                value = await r.get(f"cs:lease:cam{i}")
                if value:
                    out[f"cam{i}"] = text(value).rpartition("|")[0]
            return out

    async def all_held(self) -> bool:
        return len(await self.holders()) == len(self.cams)

    def node_index(self, node_id: str) -> int:
        return int(node_id.removeprefix("n")) - 1

    async def viewer(self, i: int, *names: str) -> Viewer:
        v = Viewer()
        await v.sio.connect(self.url(i), transports=["websocket"], wait_timeout=5)
        self.stack.push_async_callback(v.sio.disconnect)
        for name in names:
            ack = await v.join(name)
            assert ack["ok"], ack
        self.viewers.append(v)
        return v

    def max_clients(self) -> list[int]:
        return [cam.max_stream_clients for cam in self.cams]

    def pause(self, i: int) -> None:
        self.nodes[i].proc.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.nodes[i].proc.send_signal(signal.SIGCONT)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def frames_of(v: Viewer, name: str, since: int = 0) -> list[dict[str, Any]]:
    return [f for f in v.frames[since:] if f["name"] == name]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    try:
        refused = server.denied()
    finally:
        server.stop()
    assert not refused, f"users.acl denied the nodes: {refused}"


T = TypeVar("T")


async def local_or_redis(
    request: pytest.FixtureRequest, local: Callable[[], T], cluster: Callable[[str], T]
) -> T:
    """For a fixture with ``params=["sqlite", "redis"]``: the single-node store, or the
    cluster's on a real redis-server (one contract, two implementations)."""
    if request.param == "sqlite":
        return local()
    server: RedisServer = request.getfixturevalue("redis_server")
    await server.ready()
    return cluster(server.url)


ClusterFactory = Callable[..., Any]


@pytest.fixture
async def make_cluster(
    redis_server: RedisServer, spawn: Callable[..., Proc], tmp_path: Path
) -> AsyncIterator[ClusterFactory]:
    async with AsyncExitStack() as stack:

        async def make(
            nodes: int = 3,
            cams: int = 3,
            redis_urls: dict[str, str] | None = None,
            per_node: dict[str, dict[str, str]] | None = None,
            **env: str,
        ) -> Cluster:
            await redis_server.ready()
            sims = [
                await stack.enter_async_context(SimCamera(f"cam{i}", fps=10, framesize=5))
                for i in range(cams)
            ]

            def start_node(node_id: str) -> Proc:
                return spawn(
                    env={
                        "CAMSERVER_REDIS_URL": (redis_urls or {}).get(node_id, redis_server.url),
                        "CAMSERVER_NODE_ID": node_id,
                        "CAMSERVER_DB": str(tmp_path / f"{node_id}.db"),
                        "CAMSERVER_ON_DEMAND_GRACE": "2",
                        **{f"CAMSERVER_{k.upper()}": v for k, v in env.items()},
                        **(per_node or {}).get(node_id, {}),
                    }
                )

            procs = [start_node(f"n{i + 1}") for i in range(nodes)]
            await asyncio.gather(*(wait_healthy(p) for p in procs))
            http = await stack.enter_async_context(
                httpx.AsyncClient(trust_env=False, headers=HEADERS, timeout=10)
            )
            return Cluster(redis_server, procs, sims, http, start_node, stack)

        yield make


def sigcont_all(procs: list[Proc]) -> None:
    """Never leave a stopped process behind (teardown kills it, but it must run first)."""
    for p in procs:
        if p.proc.poll() is None:
            os.kill(p.proc.pid, signal.SIGCONT)


class TcpRelay:
    """A loopback TCP relay to Redis that a test can cut, like a network partition between
    one node and Redis (the node keeps its cameras and viewers)."""

    def __init__(self, target: RedisServer) -> None:
        self.target = target.port
        self.logins = target.logins
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.logins.url(self.port)  # the nodes' login, through the relay

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Stop accepting, and drop every open connection at once."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
