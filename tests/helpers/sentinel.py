"""Redis Sentinel for tests: a master and a replica (redis-server with the shipped
redis.conf) and three sentinels (Debian's redis-sentinel with the shipped sentinel.conf,
faster timeouts), all on loopback, each in its own folder; everything stops with the set."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import free_port, wait_for

__all__ = ["MASTER", "SentinelSet", "in_sync"]

ROOT = Path(__file__).resolve().parents[2]
REDIS_CONF = ROOT / "deploy" / "cluster" / "redis.conf"
SENTINEL_CONF = ROOT / "deploy" / "cluster" / "sentinel.conf"
MASTER = "camserver"


class SentinelSet:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.ports = {"a": free_port(), "b": free_port()}
        """The two servers: "a" starts as the master, "b" as its replica."""
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/0/{MASTER}"

    def _spawn(self, name: str, args: list[str]) -> None:
        folder = self.dir / name
        folder.mkdir(exist_ok=True)
        with (folder / "log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=folder
            )

    def start_server(self, name: str) -> None:
        # Its own copy: a server the sentinels reconfigure rewrites its file (CONFIG REWRITE).
        (self.dir / name).mkdir(exist_ok=True)
        conf = self.dir / name / "redis.conf"
        if not conf.exists():
            conf.write_text(REDIS_CONF.read_text())
        args = [
            *("redis-server", str(conf), "--port", str(self.ports[name])),
            *("--dir", str(self.dir / name), "--bind", "127.0.0.1"),
        ]
        if name == "b":
            args += ["--replicaof", "127.0.0.1", str(self.ports["a"])]
        self._spawn(name, args)

    def start(self) -> None:
        self.start_server("a")
        self.start_server("b")
        for i, port in enumerate(self.sentinel_ports):
            conf = SENTINEL_CONF.read_text()
            conf = conf.replace("port 26379", f"port {port}").replace(
                "bind 127.0.0.1 ::1", "bind 127.0.0.1"
            )
            conf = conf.replace("127.0.0.1 6379 2", f"127.0.0.1 {self.ports['a']} 2")
            # Tests fail over in seconds, not a minute.
            conf = conf.replace(
                "down-after-milliseconds camserver 5000", "down-after-milliseconds camserver 1000"
            )
            conf = conf.replace(
                "failover-timeout camserver 60000", "failover-timeout camserver 4000"
            )
            folder = self.dir / f"s{i}"
            folder.mkdir(exist_ok=True)
            (folder / "sentinel.conf").write_text(conf)
            self._spawn(f"s{i}", ["redis-sentinel", str(folder / "sentinel.conf")])

    def client(self, port: int) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    async def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                async with self.client(port) as s:
                    found = await s.sentinel_get_master_addr_by_name(MASTER)
                    if isinstance(found, tuple):
                        return int(found[1])
            except Exception:
                continue
        return None

    async def ready(self) -> None:
        """The master answers, the replica is in sync, every sentinel sees both."""

        async def up() -> bool:
            try:
                async with self.client(self.ports["b"]) as r:
                    info = await r.info("replication")
                if info.get("master_link_status") != "up":
                    return False
                for port in self.sentinel_ports:
                    async with self.client(port) as s:
                        replicas = await s.sentinel_slaves(MASTER)
                        if not replicas:
                            return False
                return True
            except Exception:
                return False

        await wait_for(up, 20, 0.1, what="the master, its replica and three sentinels")

    def kill9(self, name: str) -> float:
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)
        return time.monotonic()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


async def in_sync(sentinels: SentinelSet, replica: str) -> bool:
    """``replica`` replicates the current master with its link up."""
    try:
        async with sentinels.client(sentinels.ports[replica]) as r:
            info = await r.info("replication")
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")
    except Exception:
        return False
