"""A short run of every benchmark, so none of them rots (the full run is bench/run_all.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# motion: baseline (b) of the fan-out bench.
@pytest.mark.requires("motion")
def test_benchmarks_smoke_run(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert {r["chunk"] for r in results["parser"]} == {"1 KB", "4 KB", "64 KB"}
    assert all(r["parser_mb_s"] > 10 for r in results["parser"])
    assert [r["cameras"] for r in results["ingest"]] == [2]
    systems = {r["system"] for r in results["fanout"]}
    expected = {
        "camserver",
        "raw asyncio relay",
        "Flask-SocketIO baseline (a)",
        "Motion baseline (b)",
    }
    assert systems == expected
    for r in results["fanout"]:
        assert r["errors"] == 0, r
        # Every viewer got frames (how many per second is the full run's business).
        assert r["fps_per_viewer"] > 0, r
    assert "| system |" in (tmp_path / "smoke.md").read_text()
    ratios = "\n".join(results["ratios"])
    for what in ("vs (a)", "ceiling", "vs the raw relay"):
        assert what in ratios, ratios
    assert all("oracle_ratio" in r for r in results["parser"])
