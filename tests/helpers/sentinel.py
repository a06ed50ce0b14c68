"""Redis Sentinel for tests: a master and a replica (redis-server with the shipped
redis.conf and users.acl) and three sentinels (Debian's redis-sentinel with the shipped
sentinel.conf, faster timeouts), all started by the shipped ``start-redis.sh`` with fresh
passwords, on loopback, each in its own folder; everything stops with the set."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.conftest import free_port, wait_for
from tests.helpers.redis_acl import Logins, denied, write_acl

__all__ = ["MASTER", "SentinelSet", "in_sync"]

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "deploy" / "cluster" / "start-redis.sh"
MASTER = "camserver"


class SentinelSet:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.ports = {"a": free_port(), "b": free_port()}
        """The two servers: "a" starts as the master, "b" as its replica."""
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        workdir.mkdir(exist_ok=True)
        self.logins: Logins = write_acl(workdir)

    @property
    def url(self) -> str:
        """The nodes' login, through the sentinels."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        password = self.logins.passwords["camserver"]
        return f"redis+sentinel://camserver:{password}@{hosts}/0/{MASTER}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        folder = self.dir / name
        folder.mkdir(exist_ok=True)
        with (folder / "log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env
            )

    def _env(self, folder: str, **extra: str) -> dict[str, str]:
        """start-redis.sh's environment: the passwords, and the folder for its copies."""
        p = self.logins.passwords
        return {
            "PATH": os.environ["PATH"],
            "RUN_DIR": str(self.dir / folder),
            "CAMSERVER_REDIS_PASSWORD": p["camserver"],
            "REDIS_REPLICA_PASSWORD": p["replica"],
            "REDIS_SENTINEL_PASSWORD": p["sentinel"],
            "REDIS_ADMIN_PASSWORD": p["admin"],
            **extra,
        }

    def start_server(self, name: str) -> None:
        # The shipped start script, as compose.yaml runs it: its own copy of redis.conf in
        # the server's folder (the sentinels rewrite it when they reconfigure the server).
        args = [
            *("sh", str(START), "server", "--port", str(self.ports[name])),
            *("--dir", str(self.dir / name), "--bind", "127.0.0.1"),
        ]
        if name == "b":
            args += ["--replicaof", "127.0.0.1", str(self.ports["a"])]
        self._spawn(name, args, self._env(name))

    def start(self) -> None:
        self.start_server("a")
        self.start_server("b")
        for i, port in enumerate(self.sentinel_ports):
            env = self._env(f"s{i}", REDIS_MASTER_PORT=str(self.ports["a"]))
            args = [
                *("sh", str(START), "sentinel", "--port", str(port), "--bind", "127.0.0.1"),
                # Tests fail over in seconds, not a minute.
                *("--sentinel", "down-after-milliseconds", MASTER, "1000"),
                *("--sentinel", "failover-timeout", MASTER, "4000"),
            ]
            self._spawn(f"s{i}", args, env)

    def client(self, port: int) -> aioredis.Redis:
        """A sentinel's client, or a server's as the admin user."""
        if port in self.sentinel_ports:
            return aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        password = self.logins.passwords["admin"]
        return aioredis.Redis(
            host="127.0.0.1", port=port, username="admin", password=password, socket_timeout=2
        )

    def denied(self) -> list[dict[str, Any]]:
        """Commands the servers that are up refused the nodes (their ACL logs)."""
        return [
            entry
            for name, port in self.ports.items()
            if name in self.procs and self.procs[name].poll() is None
            for entry in denied(port, self.logins)
        ]

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
