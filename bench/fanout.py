"""Fan-out: one camera (VGA, ~25 KB frames, 15 fps) to N viewers in other processes.

    .venv/bin/python bench/fanout.py [--seconds 10] [--json] [--smoke]

For Socket.IO (10, 50, 200 viewers; and 200 that offer permessage-deflate as browsers do)
and MJPEG (10, 100, 500 viewers): delivered fps per viewer, latency p50/p99 (camera send →
viewer receive, from the time the simulator embeds in each JPEG), server CPU and RSS. Again
with 10 % of the viewers reading slowly: the others' figures must not change. Baselines in
the same run: (a) Flask-SocketIO, (b) Motion, (c) a raw asyncio relay (read bytes, write
them to every socket) serving the same MJPEG viewers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    BENCH,
    PY,
    add_streams,
    cameras,
    camserver,
    free_port,
    process,
    run_viewers,
    wait_http,
)

FRAME_KB = 25


def scenario(
    kind: str, n: int, slow: int, seconds: float, warmup: float, workers: int
) -> dict[str, Any]:
    with cameras(1) as ports, camserver() as (url, proc):
        add_streams(url, ports)
        target = f"{url}/api/streams/cam/mjpeg" if kind == "mjpeg" else url
        result, meter = run_viewers(kind, target, n, seconds, warmup, workers, slow, proc)
    assert meter is not None
    return row("camserver", kind, n, slow, result, meter.percent, meter.cpu, meter.rss_mb)


@contextmanager
def _baseline(script: str) -> Iterator[tuple[str, psutil.Process]]:
    """A baseline server from ``bench/baselines/`` reading a fresh simulated camera."""
    port = free_port()
    args = [PY, str(BENCH / "baselines" / script), "--port", str(port)]
    with (
        cameras(1) as ports,
        process([*args, "--camera", f"http://127.0.0.1:{ports[0] + 1}/stream"]) as p,
    ):
        yield f"http://127.0.0.1:{port}", psutil.Process(p.pid)


def relay(n: int, seconds: float, warmup: float, workers: int) -> dict[str, Any]:
    """Baseline (c): a raw asyncio relay, the practical ceiling."""
    with _baseline("raw_relay.py") as (url, proc):
        time.sleep(1.0)  # it connects to the camera on its own schedule
        result, meter = run_viewers("mjpeg", url + "/", n, seconds, warmup, workers, 0, proc)
    assert meter is not None
    return row("raw asyncio relay", "mjpeg", n, 0, result, meter.percent, meter.cpu, meter.rss_mb)


def flask_baseline(n: int, seconds: float, warmup: float, workers: int) -> dict[str, Any]:
    """Baseline (a): Flask-SocketIO, thread per camera, base64 frames to the room."""
    with _baseline("flask_socketio_server.py") as (url, proc):
        wait_http(url + "/socket.io/?EIO=4&transport=polling")
        result, meter = run_viewers("socketio", url, n, seconds, warmup, workers, 0, proc)
    assert meter is not None
    return row(
        "Flask-SocketIO baseline (a)",
        "socketio",
        n,
        0,
        result,
        meter.percent,
        meter.cpu,
        meter.rss_mb,
    )


MOTION_CONF = """daemon off
setup_mode off
log_level 3
target_dir {tmp}
netcam_url http://127.0.0.1:{cam_port}/stream
width 640
height 480
framerate 15
movie_output off
picture_output off
emulate_motion off
threshold 100000000
stream_port {port}
stream_localhost on
stream_maxrate 15
stream_quality 70
stream_motion off
webcontrol_port 0
"""


def motion_baseline(n: int, seconds: float, warmup: float, workers: int) -> dict[str, Any] | None:
    """Baseline (b): Motion (Debian's ``motion``) relaying the same camera as MJPEG."""
    exe = shutil.which("motion")
    if exe is None:
        return None
    port = free_port()
    with cameras(1) as ports, tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "motion.conf"
        conf.write_text(MOTION_CONF.format(tmp=tmp, cam_port=ports[0] + 1, port=port))
        with process([exe, "-n", "-c", str(conf)]) as p:
            wait_http(f"http://127.0.0.1:{port}/", timeout=30)
            proc = psutil.Process(p.pid)
            result, meter = run_viewers(
                "mjpeg", f"http://127.0.0.1:{port}/", n, seconds, warmup, workers, 0, proc
            )
    assert meter is not None
    return row("Motion baseline (b)", "mjpeg", n, 0, result, meter.percent, meter.cpu, meter.rss_mb)


def row(
    system: str,
    kind: str,
    n: int,
    slow: int,
    r: dict[str, Any],
    cpu_pct: float,
    cpu_s: float,
    rss: float,
) -> dict[str, Any]:
    fast = r.get("fast", {})
    delivered_mb = (fast.get("frames", 0) + r.get("slow", {}).get("frames", 0)) * FRAME_KB / 1024
    return {
        "system": system,
        "kind": kind,
        "viewers": n,
        "slow_viewers": slow,
        "fps_per_viewer": fast.get("fps_mean"),
        "fps_min": fast.get("fps_min"),
        "p50_ms": fast.get("latency_p50_ms"),
        "p99_ms": fast.get("latency_p99_ms"),
        "server_cpu_pct": round(cpu_pct, 1),
        "cpu_ms_per_mb": round(1000 * cpu_s / delivered_mb, 2) if delivered_mb else None,
        "rss_mb": round(rss, 1),
        "errors": fast.get("errors", 0) + r.get("slow", {}).get("errors", 0),
        "slow_fps": r.get("slow", {}).get("fps_mean"),
    }


def bench(seconds: float, smoke: bool) -> list[dict[str, Any]]:
    warmup = 1.0 if smoke else 4.0
    workers = 1 if smoke else 4
    if smoke:
        plan = [("socketio", 5, 0), ("socketio-browser", 5, 0), ("mjpeg", 10, 0)]
        relays = [10]
        flasks = [5]
        motions = [5]
    else:
        plan = [("socketio", n, 0) for n in (10, 50, 200)]
        plan += [("mjpeg", n, 0) for n in (10, 100, 500)]
        plan += [("socketio", 200, 20), ("mjpeg", 500, 50), ("socketio-browser", 200, 0)]
        relays = [100, 500]
        flasks = [10, 50, 100]
        motions = [10, 100]
    rows = [scenario(k, n, s, seconds, warmup, workers) for k, n, s in plan]
    rows += [relay(n, seconds, warmup, workers) for n in relays]
    rows += [flask_baseline(n, seconds, warmup, workers) for n in flasks]
    rows += [r for n in motions if (r := motion_baseline(n, seconds, warmup, workers))]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        "system",
        "kind",
        "viewers",
        "slow_viewers",
        "fps_per_viewer",
        "p50_ms",
        "p99_ms",
        "server_cpu_pct",
        "cpu_ms_per_mb",
        "rss_mb",
        "slow_fps",
        "errors",
    ]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _pick(
    rows: list[dict[str, Any]], system: str, kind: str, viewers: int | None = None
) -> dict[str, Any] | None:
    """The row of ``system`` with ``viewers`` (default: the most) and no slow ones."""
    found = [
        r
        for r in rows
        if r["system"] == system
        and r["kind"] == kind
        and not r["slow_viewers"]
        and r["cpu_ms_per_mb"] is not None
        and viewers in (None, r["viewers"])
    ]
    return max(found, key=lambda r: r["viewers"]) if found else None


def _ratio(a: float, b: float) -> str:
    # A short (smoke) run on a busy machine can count no CPU time at all for a light server.
    return f"{a / b:.2f}x" if b else "not measurable (no CPU time counted in this run)"


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The target ratios, each against a baseline measured in the same run.

    At full frame rate every viewer receives the same MB/s, so "viewers served at equal
    CPU" is the inverse ratio of CPU per delivered MB.
    """
    out = []
    sio = _pick(rows, "camserver", "socketio")
    mj = _pick(rows, "camserver", "mjpeg")
    flask = _pick(rows, "Flask-SocketIO baseline (a)", "socketio")
    raw = _pick(rows, "raw asyncio relay", "mjpeg")
    if sio and flask:
        out.append(
            f"Socket.IO viewers at equal CPU vs (a): "
            f"{_ratio(flask['cpu_ms_per_mb'], sio['cpu_ms_per_mb'])}"
            f" ({sio['viewers']} viewers {sio['cpu_ms_per_mb']} ms/MB;"
            f" (a) {flask['viewers']} viewers {flask['cpu_ms_per_mb']} ms/MB)"
        )
    if raw and flask:
        out.append(
            "ceiling: the raw relay's viewers at equal CPU vs (a): "
            f"{_ratio(flask['cpu_ms_per_mb'], raw['cpu_ms_per_mb'])}"
            f" ({raw['viewers']} viewers {raw['cpu_ms_per_mb']} ms/MB)"
        )
    if mj and raw:
        mj = _pick(rows, "camserver", "mjpeg", raw["viewers"]) or mj
        out.append(
            f"MJPEG CPU per MB vs the raw relay: "
            f"{_ratio(mj['cpu_ms_per_mb'], raw['cpu_ms_per_mb'])}"
            f" ({mj['viewers']} vs {raw['viewers']} viewers)"
        )
    for motion in (r for r in rows if r["system"] == "Motion baseline (b)"):
        ours = _pick(rows, "camserver", "mjpeg", motion["viewers"])
        if ours and ours["server_cpu_pct"]:
            out.append(
                f"Motion CPU / camserver CPU at {motion['viewers']} MJPEG viewers: "
                f"{motion['server_cpu_pct'] / ours['server_cpu_pct']:.1f}x"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true", help="a few small scenarios, quickly")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = bench(args.seconds, args.smoke)
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios(rows)}, indent=2))
    else:
        print(table(rows) + "\n\n" + "\n".join(f"- {line}" for line in ratios(rows)))


if __name__ == "__main__":
    main()
