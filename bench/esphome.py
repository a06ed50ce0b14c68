"""ESPHome cameras' cost (issue 30): server CPU per frame of ESPHome cameras (native API,
Noise-encrypted and plaintext) beside HTTP-pulled cameras, in one run against one server;
then 16 ESPHome cameras at 10 fps on one node: the rate each gets and the server's CPU.

    .venv/bin/python bench/esphome.py [--seconds 10] [--cameras 8] [--json] [--smoke]

The cameras are the simulator in a separate process (``--replay``: pre-encoded VGA frames,
so the camera side costs little); only the server's CPU is counted, and the frames are
counted by the server (``/api/streams``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    cameras,
    camserver,
    pull_row,
    rows_of_window,
    table,
    versus_first,
    window,
)

KEY = base64.b64encode(bytes(range(32))).decode()


def _esphome(
    url: str,
    proc: Any,
    count: int,
    seconds: float,
    settle: float,
    *,
    encrypted: bool,
    fps: float = 15,
) -> dict[str, Any]:
    # Free ports picked by each simulated device (a range picked here could collide with
    # the cameras' HTTP ports, picked later).
    extra = ["--esphome", "--esphome-port", "0"]
    if encrypted:
        extra += ["--encryption-key", KEY]
    with (
        cameras(count, fps=fps, extra=extra) as http_ports,
        httpx.Client(base_url=url, trust_env=False, timeout=10) as c,
    ):
        names = [f"esphome{i}" for i in range(count)]
        for name, http in zip(names, http_ports, strict=True):
            api = httpx.get(f"http://127.0.0.1:{http}/sim/esphome", timeout=10).json()["port"]
            body: dict[str, Any] = {
                "name": name,
                "source": "esphome",
                "host": "127.0.0.1",
                "port": api,
            }
            if encrypted:
                body["encryption_key"] = KEY
            c.post("/api/streams", json=body).raise_for_status()
        deadline = time.monotonic() + 30
        while any(s["status"]["state"] != "streaming" for s in c.get("/api/streams").json()):
            if time.monotonic() > deadline:
                raise RuntimeError("the ESPHome streams did not start")
            time.sleep(0.2)
        way = f"ESPHome API ({'Noise' if encrypted else 'plaintext'}, {fps:g} fps)"
        return rows_of_window(c, proc, way, names, window(c, proc, settle, seconds, names))


def bench(
    smoke: bool = False, seconds: float | None = None, count: int | None = None
) -> list[dict[str, Any]]:
    seconds = seconds or (1.5 if smoke else 10.0)
    count = count or (2 if smoke else 8)
    settle = 1.0 if smoke else 2.0
    many = 4 if smoke else 16
    with camserver({"CAMSERVER_MAX_STREAMS": "64"}) as (url, proc):
        rows = [
            pull_row(url, proc, count, seconds, settle, "pull (HTTP MJPEG ingest, 15 fps)"),
            _esphome(url, proc, count, seconds, settle, encrypted=True),
            _esphome(url, proc, count, seconds, settle, encrypted=False),
            _esphome(url, proc, many, seconds, settle, encrypted=True, fps=10),
        ]
    return versus_first(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description="ESPHome cameras' cost")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--cameras", type=int)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = bench(args.smoke, args.seconds, args.cameras)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
