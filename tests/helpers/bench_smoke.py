"""The benchmarks' smoke run, started in the background at the beginning of the session and
checked by tests/test_bench_smoke.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = pytest.StashKey["BenchSmoke"]()


class BenchSmoke:
    """``bench/run_all.py --smoke`` in the background: most of its ~40 s is measurement
    windows spent waiting, so it runs beside the other tests and is checked last."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = out / "run.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--out", str(out)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
                # Not under coverage: tracing would weigh on the servers the benchmarks
                # measure, and every line they run is covered by the tests proper.
                env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")},
            )

    def wait(self, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return subprocess.CompletedProcess(
            self.proc.args, self.proc.returncode, "", self.log.read_text()
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
