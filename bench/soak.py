"""Soak: 16 simulated cameras with random faults and 100 churning viewers against a real
camserver process, for a bounded time (default 10 minutes). Not part of the test suite.

    .venv/bin/python bench/soak.py --minutes 10

Prints frames delivered, client errors by kind, upstream reconnects, and the server's RSS
after warm-up (a fifth of the run, at most 5 minutes), each minute and at the end, with a
least-squares trend (plus JSON with --json). Stops by itself; all traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import free_port, slope
from camserver.sim.camera import SimCamera

FAULTS: list[dict[str, Any]] = [
    {"drop_every": 30},
    {"truncate_every": 4},
    {"garbage_every": 3},
    {"stall_seconds": 7.0},
    {"http_500": True},
    {"refuse": True},
    {"endless_part": True},
]
CLEAR = {
    "drop_every": 0,
    "truncate_every": 0,
    "garbage_every": 0,
    "stall_seconds": 0.0,
    "http_500": False,
    "refuse": False,
    "endless_part": False,
}


class Counters:
    def __init__(self) -> None:
        self.mjpeg_frames = 0
        self.sio_frames = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.sessions = 0

    def error(self, what: str) -> None:
        self.errors[what[:120]] += 1


async def mjpeg_viewer(
    client: httpx.AsyncClient, names: list[str], stop: asyncio.Event, c: Counters, seed: int
) -> None:
    rng = random.Random(seed)
    marker = b"--camserverframe"
    while not stop.is_set():
        name = rng.choice(names)
        until = time.monotonic() + rng.uniform(2, 20)
        c.sessions += 1
        try:
            async with client.stream("GET", f"/api/streams/{name}/mjpeg") as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    c.error(f"mjpeg HTTP {resp.status_code}: {resp.text[:80]}")
                    await asyncio.sleep(1)
                    continue
                tail = b""
                async for chunk in resp.aiter_raw():
                    data = tail + chunk
                    c.mjpeg_frames += data.count(marker)
                    tail = data[-(len(marker) - 1) :]
                    if time.monotonic() > until or stop.is_set():
                        break
        except httpx.HTTPError as exc:
            c.error(f"mjpeg {type(exc).__name__}: {exc}")
            await asyncio.sleep(1)


async def sio_viewer(
    url: str, names: list[str], stop: asyncio.Event, c: Counters, seed: int
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        sio = socketio.AsyncClient(reconnection=False)

        def on_frame(data: Any) -> None:
            c.sio_frames += 1

        sio.on("frame", on_frame)
        c.sessions += 1
        try:
            await sio.connect(url, transports=["websocket"])
            ack = await sio.call("join_stream", {"name": rng.choice(names)}, timeout=10)
            if not ack.get("ok"):
                c.error(f"join refused: {ack.get('error')}")
            await asyncio.wait_for(stop.wait(), rng.uniform(2, 20))
        except TimeoutError:
            pass
        except (socketio.exceptions.SocketIOError, OSError) as exc:
            c.error(f"socketio {type(exc).__name__}: {exc}")
            await asyncio.sleep(1)
        finally:
            if sio.connected:
                await sio.disconnect()


async def fault_injector(cams: list[SimCamera], stop: asyncio.Event, seed: int) -> int:
    rng = random.Random(seed)
    injected = 0
    while not stop.is_set():
        cam = rng.choice(cams)
        fault = rng.choice(FAULTS)
        await cam.set_faults(**fault)
        injected += 1
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(3, 15))
        await cam.set_faults(**{k: CLEAR[k] for k in fault})
        if rng.random() < 0.3:  # sometimes a camera "reboots": gone, then back
            port = cam.http_port
            await cam.stop()
            await asyncio.sleep(rng.uniform(2, 10))
            cam.http_port = port
            await cam.start()
    return injected


async def soak(
    minutes: float, cameras: int, viewers: int, memray: Path | None = None
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="camserver-soak-")
    env = {
        **os.environ,
        "CAMSERVER_DISCOVERY_INTERFACES": "lo",
        "CAMSERVER_DISCOVERY_LISTEN_PORT": "0",
        "CAMSERVER_BACKOFF_MAX": "5",
        "CAMSERVER_LOG_LEVEL": "warning",
    }
    # --memray: every allocation (Python and native) recorded, for `memray flamegraph --leaks`.
    trace = ["-m", "memray", "run", "--native", "--force", "-o", str(memray)] if memray else []
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop is busy
        [
            sys.executable,
            *trace,
            "-m",
            "camserver",
            "serve",
            "--port",
            str(port),
            "--db",
            str(Path(tmp) / "soak.db"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = psutil.Process(server.pid)
    c = Counters()
    stop = asyncio.Event()
    # Errors inside client libraries' own tasks (never awaited by us) count too.
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, ctx: c.error(f"client task: {ctx.get('exception')!r}")
    )
    try:
        async with AsyncExitStack() as stack:
            cams = [
                await stack.enter_async_context(
                    SimCamera(f"soak{i}", fps=10, framesize=6, replay=20, capture_delay=0.02)
                )
                for i in range(cameras)
            ]
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, limits=limits, trust_env=False)
            )
            for _ in range(100):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            names = [cam.name for cam in cams]
            for cam in cams:
                r = await client.post("/api/streams", json={"name": cam.name, "host": cam.address})
                r.raise_for_status()
            n_sio = viewers * 3 // 10
            tasks = [
                asyncio.create_task(mjpeg_viewer(client, names, stop, c, i))
                for i in range(viewers - n_sio)
            ]
            tasks += [
                asyncio.create_task(sio_viewer(url, names, stop, c, 1000 + i)) for i in range(n_sio)
            ]
            injector = asyncio.create_task(fault_injector(cams, stop, 42))
            warmup = min(300.0, minutes * 60 / 5)  # buffers and caches fill up first
            await asyncio.sleep(warmup)
            rss_start = proc.memory_info().rss
            cpu_start = proc.cpu_times()
            samples = [rss_start]
            end = time.monotonic() + minutes * 60 - warmup
            while time.monotonic() < end:
                await asyncio.sleep(min(10.0, max(0.0, end - time.monotonic())))
                samples.append(proc.memory_info().rss)
            cpu_end = proc.cpu_times()
            stop.set()
            injected = await injector
            await asyncio.gather(*tasks, return_exceptions=True)
            statuses = (await client.get("/api/streams")).json()
    finally:
        server.terminate()
        server.wait(10)
    reconnects = sum(s["status"]["upstream_connects"] for s in statuses) - len(statuses)
    measured = minutes * 60 - warmup
    return {
        "minutes": minutes,
        "cameras": cameras,
        "viewers": viewers,
        "viewer_sessions": c.sessions,
        "frames_delivered_mjpeg": c.mjpeg_frames,
        "frames_delivered_socketio": c.sio_frames,
        "client_errors": sum(c.errors.values()),
        "client_error_kinds": dict(c.errors.most_common()),
        "faults_injected": injected,
        "upstream_reconnects": reconnects,
        "bad_frames": sum(s["status"]["bad_frames"] for s in statuses),
        "rss_after_warmup_mib": round(rss_start / 2**20, 1),
        "rss_end_mib": round(samples[-1] / 2**20, 1),
        "rss_max_mib": round(max(samples) / 2**20, 1),
        # One sample a minute after warm-up: the trend, not just two points.
        "rss_per_minute_mib": [round(s / 2**20, 1) for s in samples[::6]],
        # Least-squares trend over every 10-second sample after warm-up.
        "rss_trend_mib_per_hour": round(slope(samples, 10.0) * 3600 / 2**20, 1),
        "server_cpu_percent": round(
            100
            * ((cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system))
            / measured,
            1,
        ),
        "server_exit_code": server.returncode,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="the server's event loop (CAMSERVER_EVENT_LOOP)",
    )
    ap.add_argument(
        "--memray",
        type=Path,
        metavar="FILE",
        help="run the server under memray (pip install memray), writing its capture here",
    )
    args = ap.parse_args()
    os.environ["CAMSERVER_EVENT_LOOP"] = args.loop
    if args.memray:
        os.environ["PYTHONMALLOC"] = "malloc"  # so memray sees each Python object too
    result = asyncio.run(soak(args.minutes, args.cameras, args.viewers, args.memray))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
        growth = result["rss_end_mib"] - result["rss_after_warmup_mib"]
        print(f"{'rss_growth_mib':28} {growth:+.1f}")


if __name__ == "__main__":
    main()
