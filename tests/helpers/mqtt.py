"""A real mosquitto broker for tests, and a client that answers as Home Assistant does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt

from tests.conftest import free_port, wait_for


class Mosquitto:
    """mosquitto on a loopback port, with a user and no anonymous access."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        passwords = workdir / "mosquitto.passwd"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(passwords), "ha", "secret pw"], check=True
        )
        passwords.chmod(0o600)
        self.conf = workdir / "mosquitto.conf"
        # Started as root, mosquitto becomes user "mosquitto", who may not read pytest's
        # private temporary folders: stay who we are (a broker on loopback, for a test).
        me = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{me}listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            "persistence false\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://ha:secret%20pw@127.0.0.1:{self.port}"

    async def start(self) -> None:
        with (self.dir / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )

        def up() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return True
            return False

        await wait_for(up, 10, 0.05, what="mosquitto")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class HomeAssistant:
    """What Home Assistant's MQTT integration would receive."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.client = aiomqtt.Client(
            "127.0.0.1", self.broker.port, username="ha", password="secret pw"
        )
        await self.client.__aenter__()
        await self.client.subscribe("homeassistant/#", qos=1)
        await self.client.subscribe("camserver/#", qos=1)
        self._task = asyncio.create_task(self._read(self.client))

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                self.messages.append((m.topic.value, payload, bool(m.retain), time.time()))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p, _, _ in self.messages if t == topic]
        return found[-1] if found else None

    def configs(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(p) for t, p, _, _ in self.messages if t.endswith("/config") and p}
