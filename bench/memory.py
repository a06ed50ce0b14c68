"""Idle memory: what ``camserver serve`` holds, and what it is made of.

1. **One camera** (a simulated VGA camera at 15 fps, no recording, no motion, no viewer):
   the server's RSS and USS after it streamed for a while.
2. **``--demo 3``** (three in-process simulated cameras, recording and motion on).
3. **What it is made of**: a fresh interpreter imports the server's parts group by group
   (Python, pydantic, FastAPI/uvicorn, httpx, python-socketio, camserver's own modules,
   then what loads only when a stream uses it: PyAV, numpy/simplejpeg/Pillow, aioesphomeapi)
   and prints its RSS after each.

With ``--before REV`` each figure is measured for that revision too (a git worktree run by
the same interpreter, as ``bench/compare.py`` does), interleaved with this checkout's.

    .venv/bin/python bench/memory.py [--before REV] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import checkout, running  # noqa: E402
from bench.harness import PY, add_streams, cameras, camserver, free_port, wait_http  # noqa: E402

SETTLE = 8.0
"""Seconds of streaming before the server's memory is read."""

GROUPS: list[tuple[str, str]] = [
    ("Python and the standard library it uses", "import asyncio, json, ssl, sqlite3, logging"),
    ("pydantic, pydantic-settings", "import pydantic, pydantic_settings"),
    (
        "FastAPI, Starlette, uvicorn (+uvloop, websockets)",
        "import fastapi, uvicorn, uvloop, websockets",
    ),
    ("httpx", "import httpx"),
    ("python-socketio (it imports redis-py for its Redis manager)", "import socketio"),
    (
        "camserver's own modules (the app, the runtime, the CLI)",
        "import camserver.app, camserver.runtime, camserver.cli",
    ),
    ("PyAV (recording, playback, H.264): on the first recording", "import av"),
    (
        "numpy, simplejpeg, Pillow (motion): on the first motion-detecting camera",
        "import numpy, simplejpeg, PIL.Image",
    ),
    ("aioesphomeapi (ESPHome cameras): on the first ESPHome camera", "import aioesphomeapi.client"),
]

_BREAKDOWN = """
import json, resource, sys
steps = json.loads(sys.argv[1])
out = []
for label, code in steps:
    exec(code)
    loaded = [m for m in ("av", "numpy", "simplejpeg", "PIL", "aioesphomeapi", "redis")
              if m in sys.modules]
    with open("/proc/self/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
    out.append({"group": label, "rss_mb": round(rss, 1), "loaded": loaded})
print(json.dumps(out))
"""


def _memory(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"rss_mb": round(info.rss / 2**20, 1), "uss_mb": round(info.uss / 2**20, 1)}


def one_camera() -> dict[str, float]:
    """The server with one streaming camera, nothing else."""
    with cameras(1) as ports, camserver() as (url, proc):
        add_streams(url, ports)
        time.sleep(SETTLE)
        return _memory(proc)


def demo(count: int = 3) -> dict[str, float]:
    """``camserver serve --demo N``: cameras in-process, recording and motion on."""
    port = free_port()
    env = {**os.environ, "CAMSERVER_LOG_LEVEL": "warning", "CAMSERVER_DISCOVERY_INTERFACES": "lo"}
    if os.environ.get("CAMSERVER_BENCH_SRC"):
        env["PYTHONPATH"] = os.environ["CAMSERVER_BENCH_SRC"]
    with tempfile.TemporaryDirectory() as tmp:
        args = [PY, "-m", "camserver", "serve", "--port", str(port), "--db", f"{tmp}/d.db"]
        env["CAMSERVER_RECORDINGS_DIR"] = f"{tmp}/rec"
        p = subprocess.Popen(
            [*args, "--demo", str(count)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            time.sleep(SETTLE + 4)
            return _memory(psutil.Process(p.pid))
        finally:
            p.terminate()
            p.wait(20)


def breakdown() -> list[dict[str, Any]]:
    env = dict(os.environ)
    if os.environ.get("CAMSERVER_BENCH_SRC"):
        env["PYTHONPATH"] = os.environ["CAMSERVER_BENCH_SRC"]
    out = subprocess.run(
        [PY, "-c", _BREAKDOWN, json.dumps(GROUPS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    previous = 0.0
    for r in rows:
        r["adds_mb"] = round(r["rss_mb"] - previous, 1)
        previous = r["rss_mb"]
    return rows


def bench(before: str | None, rounds: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with _maybe(before) as before_src:
        sides = [("after", None)] + ([("before", before_src)] if before_src else [])
        for r in range(rounds):
            for side, src in sides if r % 2 == 0 else list(reversed(sides)):
                with running(src):
                    mine = runs.setdefault(side, {"one_camera": [], "demo_3": []})
                    mine["one_camera"].append(one_camera())
                    mine["demo_3"].append(demo())
        result: dict[str, Any] = {
            side: {
                what: {k: round(statistics.median(m[k] for m in values), 1) for k in values[0]}
                for what, values in figures.items()
            }
            for side, figures in runs.items()
        }
        result["breakdown"] = breakdown()
        if before_src:
            with running(before_src):
                result["breakdown_before"] = breakdown()
    return result


class _maybe:
    """``checkout(rev)`` when a revision is given, else nothing."""

    def __init__(self, rev: str | None) -> None:
        self.rev = rev
        self._cm: Any = None

    def __enter__(self) -> Path | None:
        if self.rev is None:
            return None
        self._cm = checkout(self.rev)
        src: Path = self._cm.__enter__()
        return src

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def table(res: dict[str, Any]) -> str:
    lines = ["| server | before RSS / USS MB | after RSS / USS MB |", "|---|---|---|"]
    for what, label in (
        ("one_camera", "one camera, no recording, no motion"),
        ("demo_3", "--demo 3 (recording, motion)"),
    ):
        after = res["after"][what]
        before = res.get("before", {}).get(what)
        cell = f"{before['rss_mb']} / {before['uss_mb']}" if before else ""
        lines.append(f"| {label} | {cell} | {after['rss_mb']} / {after['uss_mb']} |")
    lines += [
        "",
        "| what is imported (in this order) | RSS after, MB | adds, MB |",
        "|---|---|---|",
    ]
    for r in res["breakdown"]:
        lines.append(f"| {r['group']} | {r['rss_mb']} | {r['adds_mb']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="a git revision to measure beside this checkout")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = bench(args.before, args.rounds)
    print(json.dumps(res, indent=2) if args.json else table(res))


if __name__ == "__main__":
    main()
