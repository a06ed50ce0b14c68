"""Run every benchmark and write a Markdown table and JSON.

    .venv/bin/python bench/run_all.py              # full run (~35 minutes)
    .venv/bin/python bench/run_all.py --smoke      # ~2 minutes: what CI runs so none rots

Results go to bench/results/<UTC date>.{md,json} and the Markdown is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    cluster,
    esphome,
    fanout,
    ingest,
    memory,
    parser,
    peers,
    push,
    recording,
    rtsp,
    scale,
)
from bench.harness import table as harness_table


def md_table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description="all benchmarks")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {
        "date": when,
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "smoke": args.smoke,
        "parser": parser.bench(0.3 if args.smoke else 2.0),
        "ingest": [
            ingest.measure(n, 1.5 if args.smoke else 20.0, 1.0 if args.smoke else 2.0)
            for n in ([2] if args.smoke else [1, 8, 32])
        ],
        "push": push.bench(args.smoke),
        "esphome": esphome.bench(args.smoke),
        "rtsp": rtsp.bench(args.smoke),
        "fanout": fanout.bench(1.5 if args.smoke else 10.0, args.smoke),
        "cluster": cluster.bench(args.smoke),
        "scale": scale.bench(args.smoke),
        "memory": memory.bench(None, 1 if args.smoke else 2),
        "recording": recording.summary(
            recording.bench(1 if args.smoke else 2, 2.0 if args.smoke else 10.0, args.smoke)
        ),
        "peers": peers.summary(
            peers.bench(1 if args.smoke else 3, 1.5 if args.smoke else 8.0, args.smoke)
        ),
    }
    results["ratios"] = fanout.ratios(results["fanout"]) + cluster.ratios(results["cluster"])
    text = "\n\n".join(
        [
            f"Run {when} on {results['machine']}" + (" (smoke run)" if args.smoke else ""),
            "Parser (MB/s; ratio = parser / bytearray copy of the same chunks; oracle_ratio ="
            " the same for a parser that knows every frame's offsets)\n\n"
            + md_table(results["parser"]),
            "Ingest (no viewers)\n\n" + md_table(results["ingest"]),
            "RTSP out beside MJPEG (one VGA camera at 15 fps; vs_mjpeg = CPU per viewer-frame "
            "against the MJPEG viewers of this run)\n\n" + harness_table(results["rtsp"]),
            "Push cameras beside pulled ones (VGA at 15 fps, no viewers; cpu_per_frame_vs_pull"
            " = against the pulled cameras of this run)\n\n" + harness_table(results["push"]),
            "ESPHome cameras beside pulled ones (VGA, no viewers; cpu_per_frame_vs_pull = "
            "against the pulled cameras of this run)\n\n" + harness_table(results["esphome"]),
            "Fan-out (one VGA camera, 15 fps)\n\n" + fanout.table(results["fanout"]),
            "Cluster mode (redis-server on loopback, VGA cameras at 15 fps)\n\n"
            + cluster.table(results["cluster"]),
            "The cluster at scale (5 nodes, 300 VGA cameras at 2 fps, a viewer per camera on a "
            "node that does not pull it; bench/scale.py)\n\n" + scale.table_of(results["scale"]),
            "Idle memory (camserver serve: one camera; --demo 3; what it is made of; "
            "bench/memory.py)\n\n" + memory.table(results["memory"]),
            "Recording and motion detection (VGA cameras at 15 fps: nothing else, continuous "
            "recording, motion detection at 5 fps)\n\n" + recording.table(results["recording"]),
            "Side by side with the peers (one VGA camera, 15 fps; medians of interleaved "
            "rounds)\n\n" + peers.table(results["peers"]),
            "Ratios (each against a baseline of this run)\n\n"
            + "\n".join(f"- {line}" for line in results["ratios"]),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if args.smoke else dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (args.out / f"{stem}.md").write_text(text + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    print(text)


if __name__ == "__main__":
    main()
