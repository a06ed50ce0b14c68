"""camserver before and after a change, in one run: the same figures from both checkouts,
interleaved (before, after, after, before, ...), so a machine that gets busier or quieter
affects both alike. For a refactoring that must not cost anything (issue 27).

    .venv/bin/python bench/compare.py --before REV [--rounds 2] [--only TEXT] [--json]

Figures: ingest's CPU per frame over 32 VGA cameras with no viewers (``bench/ingest.py``),
MJPEG CPU per viewer-frame at 200 and 500 viewers and Socket.IO at 200
(``bench/peers.py``'s measure), recording's and motion's CPU per frame over 32 VGA cameras
(``bench/recording.py``; also the whole server's CPU per frame with recording or motion
on, which idle workers' wake-ups do not bias), and the cluster relay's CPU per frame on a
serve-only node (``bench/cluster.py``). The ``before`` checkout is a git worktree of REV
run by the same interpreter (``CAMSERVER_BENCH_SRC``); each row is the median over rounds,
with the after/before ratio per round (median and range).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cluster, ingest, peers, recording  # noqa: E402

Figure = Callable[[], "float | dict[str, float | None] | None"]
"""One figure's value, or several figures' taken from the same measurement, by name."""


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A worktree of ``rev``; its ``src`` folder."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(where), rev], cwd=ROOT, check=True
        )
        try:
            yield where / "src"
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False
            )


@contextmanager
def running(src: Path | None) -> Iterator[None]:
    old = os.environ.pop("CAMSERVER_BENCH_SRC", None)
    if src is not None:
        os.environ["CAMSERVER_BENCH_SRC"] = str(src)
    try:
        yield
    finally:
        os.environ.pop("CAMSERVER_BENCH_SRC", None)
        if old is not None:
            os.environ["CAMSERVER_BENCH_SRC"] = old


def figures(seconds: float) -> dict[str, Figure]:
    def viewers(kind: str, n: int) -> Figure:
        def run() -> float | None:
            row = peers.measure(peers.CAMSERVER, kind, n, seconds, 4.0, 4)
            value: float | None = row["cpu_us_per_viewer_frame"]
            return value

        return run

    def recorded(mode: str, what: str, verb: str) -> Figure:
        def run() -> dict[str, float | None]:
            off = recording.measure("off", 32, seconds, 20)
            on = recording.measure(mode, 32, seconds, 20)
            frames = on["frames"]
            return {
                # What recording (or motion) adds: the server's CPU with it on less with it
                # off, per frame. Idle workers that sleep longer lower "off" alone, so
                # this can grow while nothing per frame changed: hence the next figure.
                f"{what}: CPU µs per frame {verb}": (
                    round(1e6 * (on["cpu_s"] - off["cpu_s"]) / frames, 1) if frames else None
                ),
                # The whole server with it on (ingest, 20 viewers, the recording or
                # motion itself), per frame: what a user's machine pays.
                f"{what}, whole server: CPU µs per frame {verb}": (
                    round(1e6 * on["cpu_s"] / frames, 1) if frames else None
                ),
            }

        return run

    def ingested() -> float | None:
        per_hour: float = ingest.measure(32, seconds)["cpu_s_per_camera_hour"]
        return round(1e6 * per_hour / (3600 * 15), 1)  # (the cameras send 15 fps)

    def relayed() -> float | None:
        value: float | None = cluster.relay_cost(seconds, 3.0, 4)["relayed_us_per_frame"]
        return value

    return {
        "ingest 32 VGA cameras, no viewers: CPU µs per frame": ingested,
        "MJPEG 200 viewers: CPU µs per viewer-frame": viewers("mjpeg", 200),
        "MJPEG 500 viewers: CPU µs per viewer-frame": viewers("mjpeg", 500),
        "Socket.IO 200 viewers: CPU µs per viewer-frame": viewers("socketio", 200),
        "recording 32 VGA cameras": recorded("continuous", "recording 32 VGA cameras", "recorded"),
        "motion 32 VGA cameras": recorded("motion", "motion 32 VGA cameras", "analysed"),
        "cluster relay: CPU µs per frame, serve-only node": relayed,
    }


def bench(before: str, rounds: int, seconds: float, only: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    chosen = {k: f for k, f in figures(seconds).items() if only.lower() in k.lower()}
    with checkout(before) as src:
        for r in range(1, rounds + 1):
            for name, figure in chosen.items():
                # Alternate who goes first, so neither always meets a warmer machine.
                order: list[tuple[str, Path | None]] = [("before", src), ("after", None)]
                for side, where in order if r % 2 else order[::-1]:
                    with running(where):
                        value = figure()
                    values = value if isinstance(value, dict) else {name: value}
                    for figure_name, v in values.items():
                        row = {"figure": figure_name, "side": side, "round": r, "value": v}
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r["figure"] for r in rows):
        mine = [r for r in rows if r["figure"] == name]
        value = {
            side: statistics.median(v for r in mine if r["side"] == side and (v := r["value"]))
            for side in ("before", "after")
        }
        ratios: list[float] = []
        for r in {r["round"] for r in mine}:
            pair = {x["side"]: x["value"] for x in mine if x["round"] == r}
            if pair.get("before") and pair.get("after"):
                ratios.append(pair["after"] / pair["before"])
        out.append(
            {
                "figure": name,
                "before": round(value["before"], 1),
                "after": round(value["after"], 1),
                "after/before": _ratio(ratios),
            }
        )
    return out


def _ratio(ratios: list[float]) -> str:
    if not ratios:
        return ""
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the git revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", default="", help="the figures whose name contains this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    lines = summary(bench(args.before, args.rounds, args.seconds, args.only))
    if args.json:
        print(json.dumps(lines, indent=1))
        return
    print(f"before = {args.before}, after = the working tree; {args.rounds} interleaved rounds")
    print("| figure | before | after | after/before (per round: median, range) |")
    print("|---|---|---|---|")
    for line in lines:
        print(f"| {line['figure']} | {line['before']} | {line['after']} | {line['after/before']} |")


if __name__ == "__main__":
    main()
