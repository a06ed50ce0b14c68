"""Push cameras' cost (issue 28): server CPU per pushed frame over a WebSocket and over
one POST per picture, beside a pulled camera's ingest per frame, in one run against one
server; then 32 cameras pushing VGA at 15 fps: the frame rate each gets through and the
server's CPU.

    .venv/bin/python bench/push.py [--seconds 10] [--cameras 8] [--json] [--smoke]

The pushing cameras are a separate load process (``--pusher``, replaying pre-encoded VGA
frames as the simulator's ``--replay`` does); only the server's CPU is counted, and the
frames are counted by the server (``/api/streams``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PY, camserver, pull_row, rows_of_window, table, versus_first, window

FPS = 15.0


# -- the load process ------------------------------------------------------------------------


async def _push_ws(url: str, key: str, frames: list[bytes], seconds: float) -> int:
    import websockets

    sent = 0
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
    ) as ws:
        reader = asyncio.create_task(_drain(ws))
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            await ws.send(frames[sent % len(frames)])
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / FPS - time.monotonic()))
        reader.cancel()
    return sent


async def _drain(ws: Any) -> None:
    async for _ in ws:  # pause/set messages: not acted on by the load
        pass


async def _push_post(url: str, key: str, frames: list[bytes], seconds: float) -> int:
    sent = 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            r = await c.post(url, content=frames[sent % len(frames)], headers=headers)
            r.raise_for_status()
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / FPS - time.monotonic()))
    return sent


async def _pusher(targets: list[dict[str, str]], mode: str, seconds: float) -> list[int]:
    from camserver.sim.camera import SimCamera

    sim = SimCamera("load", framesize=10, replay=30)
    frames = [sim.render() for _ in range(30)]
    push = _push_ws if mode == "ws" else _push_post
    url_key = "ws_url" if mode == "ws" else "frame_url"
    return list(
        await asyncio.gather(*(push(t[url_key], t["key"], frames, seconds) for t in targets))
    )


# -- the benchmark -----------------------------------------------------------------------------


def _measure_push(
    url: str, proc: Any, mode: str, count: int, seconds: float, settle: float
) -> dict[str, Any]:
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as c:
        targets = []
        for i in range(count):
            r = c.post("/api/streams", json={"name": f"{mode}{i}", "source": "push"})
            r.raise_for_status()
            targets.append(r.json()["push"])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(targets, f)
        load = subprocess.Popen(
            [
                PY,
                __file__,
                "--pusher",
                mode,
                "--targets",
                f.name,
                "--seconds",
                str(settle + seconds + 1.5),
            ],
            stdout=subprocess.DEVNULL,
        )
        names = [f"{mode}{i}" for i in range(count)]
        try:
            measured = window(c, proc, settle, seconds, names)
        finally:
            load.wait(timeout=60)
            Path(f.name).unlink()
        way = f"push ({'WebSocket' if mode == 'ws' else 'POST per picture'})"
        return rows_of_window(c, proc, way, names, measured)


def bench(
    smoke: bool = False, seconds: float | None = None, count: int | None = None
) -> list[dict[str, Any]]:
    seconds = seconds or (1.5 if smoke else 10.0)
    count = count or (2 if smoke else 8)
    settle = 1.0 if smoke else 2.0
    many = 4 if smoke else 32
    with camserver({"CAMSERVER_MAX_STREAMS": "64"}) as (url, proc):
        rows = [
            pull_row(url, proc, count, seconds, settle, "pull (HTTP MJPEG ingest)"),
            _measure_push(url, proc, "ws", count, seconds, settle),
            _measure_push(url, proc, "post", count, seconds, settle),
            _measure_push(url, proc, "ws", many, seconds, settle),
        ]
    return versus_first(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description="push cameras' cost")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--cameras", type=int)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pusher", choices=["ws", "post"], help=argparse.SUPPRESS)
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pusher:
        targets = json.loads(Path(args.targets).read_text())
        asyncio.run(_pusher(targets, args.pusher, args.seconds))
        return
    rows = bench(args.smoke, args.seconds, args.cameras)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
