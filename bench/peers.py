"""camserver side by side with its peers: the same simulated camera (VGA, ~25 KB frames,
15 fps) relayed to N viewers by each server in turn, in interleaved rounds (A, B, C, A, B,
C, ...), so that a machine that gets busier or quieter affects every server alike.

    .venv/bin/python bench/peers.py [--rounds 3] [--seconds 8] [--json] [--smoke]

MJPEG (50, 200, 500, 2,000 viewers): camserver; the npm MJPEG proxies ``mjpeg-proxy`` 0.3
and ``node-mjpeg-proxy`` 0.3 on the machine's Node.js; Motion (Debian's ``motion``); the
raw asyncio relay (the practical ceiling in Python); a minimal C relay
(``baselines/c_relay.c``, compiled here with the system's gcc: epoll, one ``send`` per viewer
per whole part, a slow viewer skips whole parts), the floor. Socket.IO (200, 1,000
viewers): camserver and a Node ``socket.io`` 4 server relaying the same frames to the same
room. The Node packages are installed by the bench (``npm ci`` in ``bench/baselines/node``)
as baselines only.

Per server and viewer count: fps per viewer (minimum and median over viewers), server CPU
per delivered viewer-frame (µs; the server process and its threads), latency p50/p99
(camera send time embedded in the JPEG → viewer receive time), RSS, and the camera's
upstream connections. Each figure is the median over rounds; the CPU ratio to camserver is
taken per round (same round, same machine state) and shown as median and range, and so is
camserver's to the C relay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fanout import MOTION_CONF
from bench.harness import (
    BENCH,
    PY,
    add_streams,
    cameras,
    camserver,
    free_port,
    npm_ci,
    process,
    run_viewers,
    wait_http,
)

NODE_DIR = BENCH / "baselines" / "node"
CAMSERVER = "camserver"
MJPEG_PROXY = "mjpeg-proxy (Node)"
NODE_MJPEG_PROXY = "node-mjpeg-proxy (Node)"
NODE_SIO = "socket.io (Node)"
MOTION = "Motion"
RAW = "raw asyncio relay"
C_RELAY = "C relay"


def c_relay() -> str:
    """The C relay's binary, compiled with the system's gcc (once per source version)."""
    source = BENCH / "baselines" / "c_relay.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"camserver-c-relay-{digest}"
    if not binary.exists():
        gcc = shutil.which("gcc")
        if gcc is None:
            raise RuntimeError("gcc is not installed (Debian: gcc); scripts/test.sh installs it")
        partial = binary.with_suffix(".tmp")
        subprocess.run([gcc, "-O2", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    return str(binary)


def node_peers() -> str:
    """The path of ``node``, with the baseline packages installed (once)."""
    return npm_ci(NODE_DIR, "socket.io")


@contextmanager
def serving(system: str, kind: str) -> Iterator[tuple[str, psutil.Process, int]]:
    """(viewer URL, server process, camera port) of ``system`` relaying a fresh camera."""
    with cameras(1) as ports:
        cam = f"http://127.0.0.1:{ports[0] + 1}/stream"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if system == CAMSERVER:
            with camserver() as (url, proc):
                add_streams(url, ports)
                yield (f"{url}/api/streams/cam/mjpeg" if kind == "mjpeg" else url), proc, ports[0]
            return
        if system == MOTION:
            exe = shutil.which("motion")
            if exe is None:
                raise RuntimeError("Motion is not installed (Debian: motion)")
            with tempfile.TemporaryDirectory() as tmp:
                conf = Path(tmp) / "motion.conf"
                conf.write_text(MOTION_CONF.format(tmp=tmp, cam_port=ports[0] + 1, port=port))
                with process([exe, "-n", "-c", str(conf)]) as p:
                    wait_http(base + "/", timeout=30)
                    yield base + "/", psutil.Process(p.pid), ports[0]
            return
        if system == RAW:
            args = [PY, str(BENCH / "baselines" / "raw_relay.py"), "--port", str(port)]
            args += ["--camera", cam]
        elif system == C_RELAY:
            args = [c_relay(), str(port), "127.0.0.1", str(ports[0] + 1), "/stream"]
        elif system == NODE_SIO:
            args = [node_peers(), str(NODE_DIR / "socketio_server.js"), "--port", str(port)]
            args += ["--camera", cam, "--name", "cam"]
        else:
            pkg = "mjpeg-proxy" if system == MJPEG_PROXY else "node-mjpeg-proxy"
            args = [node_peers(), str(NODE_DIR / "mjpeg_proxy.js"), "--pkg", pkg]
            args += ["--port", str(port), "--camera", cam]
        with process(args) as p:
            if system == NODE_SIO:
                wait_http(base + "/socket.io/?EIO=4&transport=polling")
                yield base, psutil.Process(p.pid), ports[0]
            elif system in (RAW, C_RELAY):
                _wait_port(port)
                yield base + "/", psutil.Process(p.pid), ports[0]
            else:
                _wait_port(port)
                with _primed(port):
                    yield base + "/", psutil.Process(p.pid), ports[0]


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def _primed(port: int) -> Iterator[None]:
    """One client that reads (and drops) the proxy's stream from before the viewers come
    until after they leave. Both npm proxies answer clients that arrive while they are
    still connecting to the camera with ``boundary=null`` in the Content-Type, and those
    clients never find a frame (a race in both packages): the measured viewers must not
    be caught by it. The primer is one more viewer for the proxy to serve."""
    stop = threading.Event()
    started = threading.Event()

    def read() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            got = 0
            while not stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                got += len(data)
                if got > 100_000:  # a few frames: the proxy is streaming
                    started.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the proxy streamed nothing to its first client")
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def measure(
    system: str, kind: str, n: int, seconds: float, warmup: float, workers: int
) -> dict[str, Any]:
    with serving(system, kind) as (url, proc, cam_port):
        result, meter = run_viewers(kind, url, n, seconds, warmup, workers, 0, proc)
        status = httpx.get(f"http://127.0.0.1:{cam_port}/sim/stats", timeout=5, trust_env=False)
        upstream = status.json().get("max_stream_clients")
    assert meter is not None
    fast = result.get("fast", {})
    frames = fast.get("frames", 0)
    return {
        "system": system,
        "kind": kind,
        "viewers": n,
        "fps_min": fast.get("fps_min"),
        "fps_median": fast.get("fps_median"),
        "cpu_us_per_viewer_frame": round(1e6 * meter.cpu / frames, 1) if frames else None,
        "p50_ms": fast.get("latency_p50_ms"),
        "p99_ms": fast.get("latency_p99_ms"),
        "rss_mb": round(meter.rss_mb, 1),
        "upstream": upstream,
        "errors": fast.get("errors", 0),
    }


def plan(smoke: bool) -> list[tuple[str, int, list[str]]]:
    if smoke:
        return [
            ("mjpeg", 5, [CAMSERVER, MJPEG_PROXY, NODE_MJPEG_PROXY, C_RELAY]),
            ("socketio", 5, [CAMSERVER, NODE_SIO]),
        ]
    mjpeg = [CAMSERVER, C_RELAY, MJPEG_PROXY, NODE_MJPEG_PROXY, RAW, MOTION]
    return [
        ("mjpeg", 50, mjpeg),
        ("mjpeg", 200, mjpeg),
        ("mjpeg", 500, mjpeg),
        ("mjpeg", 2000, mjpeg),
        # (Socket.IO at 1,000 is measured against camserver's own MJPEG at 1,000.)
        ("mjpeg", 1000, [CAMSERVER, C_RELAY]),
        ("socketio", 200, [CAMSERVER, NODE_SIO]),
        ("socketio", 1000, [CAMSERVER, NODE_SIO]),
    ]


def bench(
    rounds: int,
    seconds: float,
    smoke: bool,
    only: set[str] | None = None,
    counts: set[int] | None = None,
) -> list[dict[str, Any]]:
    warmup = 1.5 if smoke else 4.0
    workers = 1 if smoke else 4
    rows = []
    steps = [
        (kind, n, [s for s in systems if only is None or s in only])
        for kind, n, systems in plan(smoke)
        if counts is None or n in counts
    ]
    for r in range(1, rounds + 1):
        for kind, n, systems in steps:
            # Few viewers use little CPU, and the kernel counts it in 10 ms ticks: measure
            # longer so that one tick is under 2 % of the figure.
            window = seconds if smoke or n > 50 else 2.5 * seconds
            for system in systems:
                row = measure(system, kind, n, window, warmup, workers)
                row["round"] = r
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)  # progress
    return rows


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), 2) if got else None


def _ratios(
    rows: list[dict[str, Any]], mine: list[dict[str, Any]], kind: str, n: int, system: str
) -> list[float]:
    """Per round: each row of ``mine``'s CPU per viewer-frame over that of (kind, n,
    system) in the same round."""
    out = []
    for r in mine:
        other = next(
            (
                x
                for x in rows
                if (x["kind"], x["viewers"], x["system"], x["round"])
                == (kind, n, system, r["round"])
            ),
            None,
        )
        if other and other["cpu_us_per_viewer_frame"] and r["cpu_us_per_viewer_frame"]:
            out.append(r["cpu_us_per_viewer_frame"] / other["cpu_us_per_viewer_frame"])
    return out


def _spread(ratios: list[float]) -> str:
    """Median (min-max) of per-round ratios, or "" without any."""
    if not ratios:
        return ""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (kind, viewers, system): medians over rounds, and per-round CPU ratios:
    to camserver; camserver's to the C relay (the floor: issue "fan-out to the limit");
    camserver's Socket.IO to its own MJPEG at the same count."""
    out = []
    keys = list(dict.fromkeys((r["kind"], r["viewers"], r["system"]) for r in rows))
    for kind, n, system in keys:
        mine = [r for r in rows if (r["kind"], r["viewers"], r["system"]) == (kind, n, system)]
        ours = system == CAMSERVER
        cpu = [r["cpu_us_per_viewer_frame"] for r in mine]
        got = [c for c in cpu if c is not None]
        out.append(
            {
                "kind": kind,
                "viewers": n,
                "system": system,
                "rounds": len(mine),
                "fps_min": min((r["fps_min"] or 0) for r in mine),
                "fps_median": _median([r["fps_median"] for r in mine]),
                "cpu_us": _median(cpu),
                "cpu_range": f"{min(got):.1f}-{max(got):.1f}" if got else "",
                "cpu_vs_camserver": ""
                if ours
                else _spread(_ratios(rows, mine, kind, n, CAMSERVER)),
                "vs_c_relay": _spread(_ratios(rows, mine, kind, n, C_RELAY)) if ours else "",
                "vs_own_mjpeg": (
                    _spread(_ratios(rows, mine, "mjpeg", n, CAMSERVER))
                    if ours and kind == "socketio"
                    else ""
                ),
                "p50_ms": _median([r["p50_ms"] for r in mine]),
                "p99_ms": _median([r["p99_ms"] for r in mine]),
                "rss_mb": _median([r["rss_mb"] for r in mine]),
                "upstream": max((r["upstream"] or 0) for r in mine),
                "errors": sum(r["errors"] for r in mine),
            }
        )
    return out


COLUMNS = [
    ("kind", "kind"),
    ("viewers", "viewers"),
    ("system", "server"),
    ("fps_min", "fps min"),
    ("fps_median", "fps median"),
    ("cpu_us", "CPU µs/viewer-frame"),
    ("cpu_range", "range"),
    ("cpu_vs_camserver", "CPU vs camserver"),
    ("vs_c_relay", "camserver / C relay"),
    ("vs_own_mjpeg", "Socket.IO / own MJPEG"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("rss_mb", "RSS MB"),
    ("upstream", "upstream"),
    ("errors", "errors"),
]


def table(lines: list[dict[str, Any]]) -> str:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(str(x.get(k, "")) for k, _ in COLUMNS) + " |" for x in lines]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--smoke", action="store_true", help="5 viewers, one round, quickly")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--systems", help="comma-separated servers to run (e.g. 'camserver,C relay'); all if unset"
    )
    ap.add_argument("--viewers", help="comma-separated viewer counts (e.g. 500,2000); all if unset")
    args = ap.parse_args()
    rounds = 1 if args.smoke else args.rounds
    seconds = 1.5 if args.smoke else args.seconds
    only = set(args.systems.split(",")) if args.systems else None
    counts = {int(n) for n in args.viewers.split(",")} if args.viewers else None
    rows = bench(rounds, seconds, args.smoke, only, counts)
    lines = summary(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": lines}, indent=2))
    else:
        print(table(lines))


if __name__ == "__main__":
    main()
