"""Shared pieces of the benchmarks: processes for simulated cameras, camserver and viewer
workers, and CPU/RSS sampling of one process. Everything on 127.0.0.1; every process is
stopped when its context ends."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import psutil

from camserver.sim.camera import free_port_pair

T = TypeVar("T")

PY = sys.executable
BENCH = Path(__file__).resolve().parent


CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (the tests and the benches drive it with Playwright)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
"""Headless, and no traffic of its own: this machine reaches nothing but loopback."""


def npm_ci(folder: Path, package: str) -> str:
    """The path of ``node``, with ``folder``'s locked packages installed unless
    ``package`` already is (Node.js clients and peers of the tests and benches)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("Node.js is needed: node and npm (Debian: nodejs npm)")
    if not (folder / "node_modules" / package).is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            check=True,
            timeout=300,
        )
    return node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(rows: list[dict[str, Any]]) -> str:
    """``rows`` (dicts with the same keys) as a Markdown table."""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def slope(values: Sequence[float], step: float) -> float:
    """Least-squares slope of ``values`` sampled every ``step`` seconds (per second)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) * step / 2
    mean_y = sum(values) / n
    cov = sum((i * step - mean_x) * (v - mean_y) for i, v in enumerate(values))
    var = sum((i * step - mean_x) ** 2 for i in range(n))
    return cov / var


@contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, stderr: IO[bytes] | int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
    )
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Exited(RuntimeError):
    """The process that was to answer exited first."""


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers; only the status line and headers are read (it may be endless).
    Raises :class:`Exited` at once if ``proc``, which is to answer, exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Exited(f"exited ({proc.returncode}) before {url} answered")
        try:
            with httpx.stream("GET", url, timeout=1, trust_env=False) as resp:
                if resp.status_code < 500:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def cameras(
    count: int, fps: float = 15, framesize: str = "VGA", extra: Sequence[str] = ()
) -> Iterator[list[int]]:
    """``count`` simulated cameras in one separate process (``extra``: more ``camserver
    sim`` flags); yields their HTTP ports."""

    def make() -> tuple[list[str], str, list[int]]:
        base = free_port_pair(span=2 * count)
        ports = [base + 2 * i for i in range(count)]
        return (
            _sim_args(base, count, fps, framesize, extra),
            f"http://127.0.0.1:{ports[-1]}/status",
            ports,
        )

    with listening(make) as (ports, _):
        yield ports


def _sim_args(base: int, count: int, fps: float, framesize: str, extra: Sequence[str]) -> list[str]:
    return [
        PY,
        "-m",
        "camserver",
        "sim",
        "--count",
        str(count),
        "--http-port",
        str(base),
        "--fps",
        str(fps),
        "--framesize",
        framesize,
        "--replay",
        "30",
        "--embed-time",
        "--discovery-port",
        "0",
        "--discovery-listen-port",
        "0",
        *extra,
    ]


@contextmanager
def listening(
    make: Callable[[], tuple[list[str], str, T]],
    env: dict[str, str] | None = None,
    attempts: int = 5,
) -> Iterator[tuple[T, subprocess.Popen[bytes]]]:
    """A process that listens on ports chosen free by ``make`` (which returns its arguments,
    a URL that answers once it is up, and what to yield), started again on other ports if
    it exits first because one was taken: on a busy machine (the test suite beside a bench)
    another process can take a port between its choice and the bind."""
    for attempt in range(1, attempts + 1):
        args, url, value = make()
        with tempfile.TemporaryFile() as log, process(args, env, stderr=log) as p:
            try:
                wait_http(url, proc=p)
            except Exited as exc:
                log.seek(0)
                said = log.read()[-3000:].decode(errors="replace")
                if attempt < attempts and "in use" in said.lower():
                    continue
                raise RuntimeError(f"{' '.join(args[:5])}: {exc}\n{said}") from None
            yield value, p
            return
    raise AssertionError("unreachable")


@contextmanager
def camserver(
    extra_env: dict[str, str] | None = None, python: str = PY
) -> Iterator[tuple[str, psutil.Process]]:
    """camserver on a free port, run by ``python`` (an interpreter with camserver installed;
    ``$CAMSERVER_BENCH_SRC``: another checkout's ``src`` to run instead, as
    ``bench/compare.py`` does for the code before a change)."""
    other_src = os.environ.get("CAMSERVER_BENCH_SRC")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "CAMSERVER_DISCOVERY_INTERFACES": "lo",
            "CAMSERVER_DISCOVERY_LISTEN_PORT": "0",
            "CAMSERVER_LOG_LEVEL": "warning",
            "CAMSERVER_MAX_VIEWERS": "5000",
            # Every load-generating viewer connects from 127.0.0.1.
            "CAMSERVER_MAX_CONNECTIONS_PER_CLIENT": "100000",
            "CAMSERVER_MAX_VIEWERS_PER_CLIENT": "5000",
            **(extra_env or {}),
        }
        if other_src:
            env["PYTHONPATH"] = other_src

        def make() -> tuple[list[str], str, int]:
            port = free_port()
            args = [python, "-m", "camserver", "serve", "--port", str(port), "--db", db]
            return args, f"http://127.0.0.1:{port}/healthz", port

        db = f"{tmp}/b.db"
        with listening(make, env) as (port, p):
            yield f"http://127.0.0.1:{port}", psutil.Process(p.pid)


def add_streams(url: str, ports: list[int]) -> list[str]:
    names = []
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as c:
        for i, port in enumerate(ports):
            name = f"cam{i}" if len(ports) > 1 else "cam"
            c.post(
                "/api/streams", json={"name": name, "host": f"127.0.0.1:{port}"}
            ).raise_for_status()
            names.append(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [s["status"]["state"] for s in c.get("/api/streams").json()]
            if all(s == "streaming" for s in states):
                return names
            time.sleep(0.2)
    raise RuntimeError("streams did not start")


class Meter:
    """CPU seconds and RSS of a process between start() and stop()."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.t0 = 0.0
        self.cpu0 = 0.0
        self.cpu = 0.0
        self.wall = 0.0
        self.rss_mb = 0.0

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def start(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), self._cpu()

    def stop(self) -> None:
        self.wall = time.monotonic() - self.t0
        self.cpu = self._cpu() - self.cpu0
        self.rss_mb = self.proc.memory_info().rss / 2**20

    @property
    def percent(self) -> float:
        return 100 * self.cpu / self.wall if self.wall else 0.0


def run_viewers(
    kind: str,
    url: str,
    count: int,
    seconds: float,
    warmup: float,
    workers: int,
    slow: int = 0,
    proc: psutil.Process | None = None,
) -> tuple[dict[str, Any], Meter | None]:
    """``count`` viewers over ``workers`` processes; the server process metered meanwhile."""
    per = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    slow_per = [slow // workers + (1 if i < slow % workers else 0) for i in range(workers)]
    tmp = Path(tempfile.mkdtemp(prefix="camserver-bench-"))
    outs = [tmp / f"worker{i}.json" for i in range(workers)]
    args = [
        [
            PY,
            str(BENCH / "viewers.py"),
            "--kind",
            kind,
            "--url",
            url,
            "--count",
            str(n),
            "--slow",
            str(s),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--out",
            str(o),
        ]
        for n, s, o in zip(per, slow_per, outs, strict=True)
        if n
    ]
    procs = [
        subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in args
    ]
    meter = Meter(proc) if proc is not None else None
    time.sleep(warmup)
    if meter:
        meter.start()
    time.sleep(seconds)
    if meter:
        meter.stop()
    for p in procs:
        p.wait(timeout=120)
    results = [json.loads(o.read_text()) for o in outs if o.exists()]
    return merge(results), meter


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in ("fast", "slow"):
        parts = [r[group] for r in results if r[group]["viewers"]]
        if not parts:
            continue
        lat = sorted(x for p in parts for x in p["latency_samples"])
        viewers = sum(p["viewers"] for p in parts)
        out[group] = {
            "viewers": viewers,
            "fps_mean": round(sum(p["fps_mean"] * p["viewers"] for p in parts) / viewers, 2),
            "fps_min": min(p["fps_min"] for p in parts),
            "fps_median": statistics.median(f for p in parts for f in p["fps_all"]),
            "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "latency_p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 1)
            if lat
            else None,
            "frames": sum(p["frames"] for p in parts),
            "errors": sum(p["errors"] for p in parts),
        }
    return out


def stream_frames(c: httpx.Client) -> dict[str, int]:
    return {s["name"]: s["status"]["frames"] for s in c.get("/api/streams").json()}


def window(
    c: httpx.Client, proc: Any, settle: float, seconds: float, names: Sequence[str] = ()
) -> tuple[dict[str, int], dict[str, int], Meter]:
    """Once every one of ``names`` has had a frame (a load process still starting on a busy
    machine is not measured as a slow camera), and ``settle`` s after: the streams' frame
    counts before and after ``seconds`` s of the server's CPU metered."""
    deadline = time.monotonic() + 60
    while any(stream_frames(c).get(n, 0) == 0 for n in names):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no frames from some of {list(names)} in 60 s")
        time.sleep(0.1)
    time.sleep(settle)
    before = stream_frames(c)
    meter = Meter(proc)
    meter.start()
    time.sleep(seconds)
    meter.stop()
    return before, stream_frames(c), meter


def rate_row(
    way: str, count: int, meter: Meter, frames: int, per_camera: list[float]
) -> dict[str, Any]:
    return {
        "way": way,
        "cameras": count,
        "frames": frames,
        "us_cpu_per_frame": round(1e6 * meter.cpu / frames, 1) if frames else None,
        "fps_per_camera_median": round(statistics.median(per_camera), 2),
        "fps_per_camera_min": round(min(per_camera), 2),
        "server_cpu_pct_of_one_core": round(meter.percent, 1),
        "rss_mb": round(meter.rss_mb, 1),
    }


def rows_of_window(
    c: httpx.Client,
    proc: Any,
    way: str,
    names: list[str],
    window_: tuple[dict[str, int], dict[str, int], Meter],
) -> dict[str, Any]:
    """The row of ``names``' frames in a :func:`window`; the streams are deleted."""
    before, after, meter = window_
    for name in names:
        c.delete(f"/api/streams/{name}")
    per_camera = [(after[n] - before[n]) / meter.wall for n in names]
    frames = sum(after[n] - before[n] for n in names)
    return rate_row(way, len(names), meter, frames, per_camera)


def pull_row(
    url: str, proc: Any, count: int, seconds: float, settle: float, way: str
) -> dict[str, Any]:
    """``count`` simulated cameras pulled over HTTP (VGA, 15 fps): their row."""
    with cameras(count) as ports, httpx.Client(base_url=url, trust_env=False, timeout=10) as c:
        names = add_streams(url, ports)
        return rows_of_window(c, proc, way, names, window(c, proc, settle, seconds, names))


def versus_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's CPU per frame against the first's (``cpu_per_frame_vs_pull``)."""
    base = rows[0]["us_cpu_per_frame"]
    for r in rows:
        r["cpu_per_frame_vs_pull"] = (
            round(r["us_cpu_per_frame"] / base, 2) if base and r["us_cpu_per_frame"] else None
        )
    return rows
