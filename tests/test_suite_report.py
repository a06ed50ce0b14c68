"""The suite's own rules: with CAMSERVER_STRICT=1 a test whose needs are missing fails the
run instead of being skipped, and the run says what it checked. Run as a separate pytest
on a throwaway test file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(folder: Path, strict: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAMSERVER_STRICT": "1" if strict else "0"}
    env["COLUMNS"] = "300"  # the short summary keeps the whole reason
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugin under test
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(folder), "-p", "no:cacheprovider"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_need_fails_a_strict_run_and_is_reported(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.suite_report"]\n')
    (tmp_path / "test_needs.py").write_text(
        "import pytest\n\n"
        '@pytest.mark.requires("no-such-program-here")\n'
        "def test_needs_a_program() -> None:\n    pass\n\n"
        "def test_plain() -> None:\n    pass\n"
    )
    loose = _pytest(tmp_path, strict=False)
    assert loose.returncode == 0, loose.stdout
    assert "1 passed, 1 skipped" in loose.stdout
    assert "needs NOT met (their tests did not run): no-such-program-here" in loose.stdout
    strict = _pytest(tmp_path, strict=True)
    assert strict.returncode == 1, strict.stdout
    assert "CAMSERVER_STRICT=1 counts as a failure: needs no-such-program-here" in strict.stdout
    assert "2 tests in 1 files" in strict.stdout
    assert "strict: a skip fails the run" in strict.stdout
