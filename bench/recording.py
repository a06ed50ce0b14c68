"""What keeping every camera costs: 32 simulated VGA cameras at 15 fps with nothing
else, with continuous recording, and with motion detection (5 fps analysed), in
interleaved rounds (A, B, C, A, B, C); 20 live MJPEG viewers of one camera meanwhile.

    .venv/bin/python bench/recording.py [--rounds 2] [--seconds 10] [--json] [--smoke]

Prints per mode: server CPU (% of one core), the CPU per frame handled (the extra CPU
over mode ``off`` of the same round divided by the frames recorded, or analysed), frames
handled and dropped (or skipped), and the viewers' fps and latency p50/p99. Goals: recording
32 VGA cameras costs < 5 % of a core (issue 16), the viewers' p99 moves < 10 %; motion
analysis near the ~380 µs per VGA frame measured alone (docs/facts.md#motion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import add_streams, cameras, camserver, run_viewers

MODES = ("off", "continuous", "motion")
PATCH: dict[str, dict[str, Any]] = {
    "off": {},
    "continuous": {"recording": {"mode": "continuous"}},
    "motion": {"motion": {"enabled": True}},
}
HANDLED = {
    "continuous": "camserver_recording_frames_total",
    "motion": 'camserver_motion_frames_total{outcome="analysed"}',
}
DROPPED = {
    "continuous": 'camserver_recording_dropped_frames_total{reason="queue_full"}',
    "motion": 'camserver_motion_frames_total{outcome="skipped"}',
}


def _metric(text: str, name: str | None) -> float:
    if name is None:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or ("{" not in name and line.startswith(name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def measure(mode: str, count: int, seconds: float, viewers: int) -> dict[str, Any]:
    with cameras(count) as ports, camserver() as (url, proc):
        names = add_streams(url, ports)
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as c:
            for name in names:
                if PATCH[mode]:
                    c.patch(f"/api/streams/{name}", json=PATCH[mode]).raise_for_status()
            before = c.get("/metrics").text
            result, meter = run_viewers(
                "mjpeg", f"{url}/api/streams/{names[0]}/mjpeg", viewers, seconds, 3.0, 2, 0, proc
            )
            after = c.get("/metrics").text
    assert meter is not None
    fast = result.get("fast", {})
    counter = HANDLED.get(mode)
    handled = _metric(after, counter) - _metric(before, counter)
    dropped = _metric(after, DROPPED.get(mode)) - _metric(before, DROPPED.get(mode))
    return {
        "mode": mode,
        "cameras": count,
        "server_cpu_pct": round(meter.percent, 1),
        "cpu_s": meter.cpu,
        "frames": int(handled),
        "dropped_frames": int(dropped),
        "viewer_fps_min": fast.get("fps_min"),
        "p50_ms": fast.get("latency_p50_ms"),
        "p99_ms": fast.get("latency_p99_ms"),
    }


def bench(rounds: int, seconds: float, smoke: bool) -> list[dict[str, Any]]:
    count, viewers = (4, 5) if smoke else (32, 20)
    rows = []
    for r in range(1, rounds + 1):
        for mode in MODES:
            row = measure(mode, count, seconds, viewers)
            row["round"] = r
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # progress
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        line: dict[str, Any] = {
            "mode": mode,
            "cameras": mine[0]["cameras"],
            "server_cpu_pct": round(statistics.median(r["server_cpu_pct"] for r in mine), 2),
            "frames": sum(r["frames"] for r in mine),
            "dropped_frames": max(r["dropped_frames"] for r in mine),
            "viewer_fps_min": min(r["viewer_fps_min"] or 0 for r in mine),
            "p50_ms": round(statistics.median(r["p50_ms"] or 0 for r in mine), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] or 0 for r in mine), 2),
        }
        if mode != "off":
            # Per round: (CPU in this mode - CPU in mode off) / frames recorded or analysed.
            costs = []
            for r in mine:
                base = next(b for b in rows if b["mode"] == "off" and b["round"] == r["round"])
                if r["frames"]:
                    costs.append(1e6 * (r["cpu_s"] - base["cpu_s"]) / r["frames"])
            line["us_per_frame"] = round(statistics.median(costs), 1) if costs else None
            off = out[0]
            line["cpu_pct_added"] = round(line["server_cpu_pct"] - off["server_cpu_pct"], 1)
            line["p99_change"] = (
                f"{100 * (line['p99_ms'] / off['p99_ms'] - 1):+.0f} %" if off["p99_ms"] else ""
            )
        out.append(line)
    return out


def table(lines: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for line in lines for k in line))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(x.get(c, "")) for c in cols) + " |" for x in lines]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = bench(1 if args.smoke else args.rounds, 2.0 if args.smoke else args.seconds, args.smoke)
    lines = summary(rows)
    print(json.dumps({"rows": rows, "summary": lines}, indent=2) if args.json else table(lines))


if __name__ == "__main__":
    main()
