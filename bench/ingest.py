"""Ingest cost: server CPU per camera-hour and RSS for 1, 8 and 32 simulated cameras at
VGA 15 fps, no viewers. The cameras replay pre-encoded frames in a separate process; only
the server's CPU is counted.

    .venv/bin/python bench/ingest.py [--seconds 20] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Meter, add_streams, cameras, camserver


def measure(count: int, seconds: float, settle: float = 2.0) -> dict[str, Any]:
    with cameras(count) as ports, camserver() as (url, proc):
        add_streams(url, ports)
        time.sleep(settle)
        meter = Meter(proc)
        meter.start()
        time.sleep(seconds)
        meter.stop()
    camera_hours = count * meter.wall / 3600
    return {
        "cameras": count,
        "server_cpu_pct_of_one_core": round(meter.percent, 1),
        "cpu_s_per_camera_hour": round(meter.cpu / camera_hours, 1),
        "rss_mb": round(meter.rss_mb, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="ingest cost per camera")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    counts = [1, 4] if args.smoke else [1, 8, 32]
    rows = [measure(n, args.seconds) for n in counts]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
