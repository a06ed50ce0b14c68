"""camserver's fan-out under Python 3.11, 3.12 and 3.13, side by side: the same server
code run by each interpreter in interleaved rounds; cameras and viewers always run on the
bench's own Python, so only the server changes.

    .venv/bin/python bench/pythons.py [--rounds 3] [--seconds 8] [--json]

Interpreters are found as ``python3.X`` on PATH or under pyenv (``~/.pyenv/versions``);
each gets a venv under ``bench/.pythons/`` with camserver installed (once). Scenarios: 500
MJPEG viewers and 200 Socket.IO viewers of one VGA camera at 15 fps. Figures as in
``bench/peers.py`` (CPU per delivered viewer-frame, latency, RSS), medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import BENCH, add_streams, cameras, camserver, run_viewers

ROOT = BENCH.parent
VERSIONS = ("3.11", "3.12", "3.13")


def interpreter(version: str) -> str | None:
    """A venv's python for ``version`` with camserver installed, or None if not found."""
    venv = BENCH / ".pythons" / version
    py = venv / "bin" / "python"
    if py.exists():
        return str(py)
    found = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    candidates = [str(found[-1])] if found else []
    candidates += [c for c in [shutil.which(f"python{version}")] if c]
    # (A pyenv shim is on PATH even when that version is not selected: try it.)
    base = next((c for c in candidates if _runs(c)), None)
    if base is None:
        return None
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    # Editable: each interpreter runs the code of this checkout, as it is now.
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-e", str(ROOT)], check=True, timeout=900)
    return str(py)


def _runs(python: str) -> bool:
    return subprocess.run([python, "-V"], capture_output=True, check=False).returncode == 0


def version_of(py: str) -> str:
    out = subprocess.run(
        [py, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def measure(py: str, kind: str, n: int, seconds: float) -> dict[str, Any]:
    with cameras(1) as ports, camserver(python=py) as (url, proc):
        add_streams(url, ports)
        target = f"{url}/api/streams/cam/mjpeg" if kind == "mjpeg" else url
        result, meter = run_viewers(kind, target, n, seconds, 4.0, 4, 0, proc)
    assert meter is not None
    fast = result.get("fast", {})
    frames = fast.get("frames", 0)
    return {
        "kind": kind,
        "viewers": n,
        "fps_min": fast.get("fps_min"),
        "cpu_us_per_viewer_frame": round(1e6 * meter.cpu / frames, 1) if frames else None,
        "p50_ms": fast.get("latency_p50_ms"),
        "p99_ms": fast.get("latency_p99_ms"),
        "rss_mb": round(meter.rss_mb, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pythons = {v: py for v in VERSIONS if (py := interpreter(v)) is not None}
    names = {v: version_of(py) for v, py in pythons.items()}
    rows = []
    for r in range(1, args.rounds + 1):
        for kind, n in (("mjpeg", 500), ("socketio", 200)):
            for v, py in pythons.items():
                row = {"python": names[v], "round": r, **measure(py, kind, n, args.seconds)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)  # progress
    lines = []
    for kind, n in (("mjpeg", 500), ("socketio", 200)):
        for v in pythons:
            mine = [x for x in rows if x["python"] == names[v] and x["kind"] == kind]
            cpu = [x["cpu_us_per_viewer_frame"] for x in mine if x["cpu_us_per_viewer_frame"]]
            lines.append(
                {
                    "kind": kind,
                    "viewers": n,
                    "python": names[v],
                    "fps_min": min(x["fps_min"] or 0 for x in mine),
                    "cpu_us": round(statistics.median(cpu), 1) if cpu else None,
                    "cpu_range": f"{min(cpu):.1f}-{max(cpu):.1f}" if cpu else "",
                    "p50_ms": statistics.median(x["p50_ms"] or 0 for x in mine),
                    "p99_ms": statistics.median(x["p99_ms"] or 0 for x in mine),
                    "rss_mb": statistics.median(x["rss_mb"] for x in mine),
                }
            )
    if args.json:
        print(json.dumps({"rows": rows, "summary": lines}, indent=2))
        return
    cols = list(lines[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for line in lines:
        print("| " + " | ".join(str(line[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
