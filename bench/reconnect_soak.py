"""Reconnect soak (issue 26): a real ``camserver serve --demo 3`` while Chromium reloads
the dashboard every 2 s and 5 Socket.IO clients reconnect every second, all from one
address, for a bounded time (default 10 minutes). Not part of the test suite.

    .venv/bin/python bench/reconnect_soak.py --minutes 10 [--token]

Before the fix each WebSocket upgrade kept one of the address's 256 connection slots: this
load locked 127.0.0.1 out within minutes. Prints the server's RSS each minute after a
minute of warm-up (spread and least-squares trend), page loads, Socket.IO sessions and
errors, and the address's open connections as /metrics counts them at the end (read from
127.0.0.2, so the reading does not count itself); JSON with --json. Exits 1 when RSS
spread exceeds 30 MB, the count is not back to 0 or the address was refused. Stops by
itself; all traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import socketio
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    process,
    slope,
    wait_http,
)

TOKEN = "soak-admin-token-0001"


async def _connections(url: str) -> float | None:
    """127.0.0.1's open connections as /metrics counts them (read from 127.0.0.2)."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    headers = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=10) as c:
        text = (await c.get(f"{url}/metrics", headers=headers)).text
    for line in text.splitlines():
        if line.startswith('camserver_http_connections_by_address{address="127.0.0.1"}'):
            return float(line.split()[1])
    return 0.0 if "camserver_http_connections " in text else None


async def run(minutes: float, token: bool) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = tempfile.TemporaryDirectory(prefix="camserver-reconnect-soak-")
    # The default per-address limits: they are what the soak is about.
    env = {
        "CAMSERVER_DB": f"{tmp.name}/soak.db",
        "CAMSERVER_DISCOVERY_INTERFACES": "lo",
        "CAMSERVER_DISCOVERY_LISTEN_PORT": "0",
        **({"CAMSERVER_API_TOKEN": TOKEN} if token else {}),
    }
    args = [sys.executable, "-m", "camserver", "serve", "--port", str(port), "--demo", "3"]
    stop = asyncio.Event()
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    with tmp, process(args, env) as proc:
        wait_http(f"{url}/healthz")  # (blocking, once, before any load)
        rss = psutil.Process(proc.pid)

        async def pages() -> None:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = await browser.new_page()
                if token:  # as if signed in once: the dashboard keeps it in localStorage
                    await page.add_init_script(
                        f"localStorage.setItem('camserver.token', '{TOKEN}')"
                    )
                while not stop.is_set():
                    try:
                        await page.goto(f"{url}/", timeout=10_000)
                        await page.wait_for_selector("img, canvas", timeout=10_000)
                        counts["page loads"] += 1
                    except Exception as exc:  # a refused address shows here
                        errors[f"page: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                    await asyncio.sleep(2)
                await browser.close()

        async def reconnecting(i: int) -> None:
            while not stop.is_set():
                sio = socketio.AsyncClient(reconnection=False)
                try:
                    auth = {"token": TOKEN} if token else None
                    await sio.connect(url, transports=["websocket"], auth=auth, wait_timeout=5)
                    ack = await sio.call("join_stream", {"name": f"demo-{i % 3 + 1}"})
                    counts["socket.io sessions"] += 1
                    if not ack.get("ok"):
                        errors[f"join: {ack}"] += 1
                except Exception as exc:
                    errors[f"socket.io: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                finally:
                    await sio.disconnect()
                await asyncio.sleep(1)

        tasks = [asyncio.create_task(pages())]
        tasks += [asyncio.create_task(reconnecting(i)) for i in range(5)]
        start = time.monotonic()
        samples: list[float] = []
        """RSS in MB every 10 s after a minute of warm-up."""
        minute_rss: list[float] = []
        while (elapsed := time.monotonic() - start) < minutes * 60:
            await asyncio.sleep(10)
            if elapsed >= 60:
                mb = rss.memory_info().rss / 2**20
                samples.append(mb)
                if not minute_rss or elapsed >= 60 * (len(minute_rss) + 1):
                    minute_rss.append(round(mb, 1))
                    print(f"{elapsed / 60:5.1f} min  RSS {mb:6.1f} MB  {dict(counts)}", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(1)  # the last connections close
        left = await _connections(url)
        return {
            "minutes": minutes,
            "token": token,
            "rss_mb_each_minute": minute_rss,
            "rss_spread_mb": round(max(samples) - min(samples), 1) if samples else None,
            "rss_trend_mb_per_hour": round(slope(samples, 10.0) * 3600, 1),
            **dict(counts),
            "errors": dict(errors),
            "connections_of_127_0_0_1_at_end": left,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--token", action="store_true", help="with CAMSERVER_API_TOKEN set")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(run(args.minutes, args.token))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    ok = (
        (result["rss_spread_mb"] or 0) <= 30
        and result["connections_of_127_0_0_1_at_end"] == 0
        and not any("page" in e or "429" in e or "503" in e for e in result["errors"])
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
