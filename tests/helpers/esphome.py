"""ESPHome cameras for tests: the simulator's device side in a real process or in this
one, and the keys they use."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Server
from tests.helpers.push import sim_process

KEY = base64.b64encode(hashlib.sha256(b"camserver test key 1").digest()).decode()
OTHER_KEY = base64.b64encode(hashlib.sha256(b"camserver test key 2").digest()).decode()


@dataclass
class EsphomeProcess:
    """``camserver sim --esphome`` as a real process."""

    http: str
    """Its HTTP base URL (``/sim/stats``, ``/sim/faults``, ``/sim/esphome``)."""
    api_port: int

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as c:
            data: dict[str, Any] = (await c.get(self.http + "/sim/stats")).json()
            return data

    async def sent(self) -> set[str]:
        """SHA-256 of the images the device sent whole, lately."""
        async with httpx.AsyncClient(trust_env=False) as c:
            return set((await c.get(self.http + "/sim/esphome")).json()["sent"])


@asynccontextmanager
async def esphome_process(*args: str) -> AsyncIterator[EsphomeProcess]:
    """``camserver sim --esphome`` as a real process (its API on a port it picks)."""
    extra = ("--discovery-port", "0", "--discovery-listen-port", "0")
    async with sim_process(*extra, "--esphome", "--esphome-port", "0", *args) as url:
        async with httpx.AsyncClient(trust_env=False) as c:
            port = int((await c.get(url + "/sim/esphome")).json()["port"])
        yield EsphomeProcess(url, port)


async def add_esphome(
    server: Server, name: str, port: int, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "source": "esphome", "host": "127.0.0.1", "port": port}
    if key is not None:
        body["encryption_key"] = key
    r = await server.client.post("/api/streams", json={**body, **extra})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
