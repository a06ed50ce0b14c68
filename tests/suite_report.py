"""What the suite needs from the machine, and what it says it checked.

- ``@pytest.mark.requires("chromium", "root", ...)`` names what a test needs beyond Python:
  a program on ``PATH`` (or an absolute path), or ``root`` (network namespaces). A test whose
  need is not met is skipped, with the missing things as the reason.
- With ``CAMSERVER_STRICT=1`` (set by ``scripts/test.sh``, the README's test command) a skip
  is a failure: a green run there means every test ran.
- The run ends with a summary: tests by outcome, each file's count, and which of the needs
  were met on this machine, so a reader of the log knows what was checked.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Generator

import pytest

__all__ = ["STRICT", "missing"]

STRICT = os.environ.get("CAMSERVER_STRICT", "") not in ("", "0")

_outcomes: Counter[str] = Counter()
_files: Counter[str] = Counter()
_needs: set[str] = set()


def missing(*needs: str) -> list[str]:
    """The needs in ``needs`` this machine does not meet."""
    out = []
    for need in needs:
        if need == "root":
            if os.geteuid() != 0:
                out.append("root")
        elif shutil.which(need) is None:
            out.append(need)
    return out


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*needs): programs (or 'root') the test needs beyond Python"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        _needs.update(mark.args)
        lacking = missing(*mark.args)
        if lacking:
            pytest.skip(f"needs {', '.join(lacking)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped, which CAMSERVER_STRICT=1 counts as a failure: {reason}"
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.outcome] += 1
        _files[item.nodeid.split("::", 1)[0]] += 1
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tr = terminalreporter
    tr.section("what this run checked")
    ran = sum(_outcomes.values())
    by_outcome = ", ".join(f"{n} {k}" for k, n in sorted(_outcomes.items()))
    tr.write_line(f"{ran} tests in {len(_files)} files: {by_outcome or 'none'}")
    for path, n in sorted(_files.items()):
        tr.write_line(f"  {n:4d}  {path}")
    if _needs:
        lacking = set(missing(*_needs))
        met = ", ".join(sorted(_needs - lacking)) or "none"
        tr.write_line(f"needs met: {met}")
        if lacking:
            tr.write_line(f"needs NOT met (their tests did not run): {', '.join(sorted(lacking))}")
    tr.write_line(
        "strict: a skip fails the run"
        if STRICT
        else "not strict: skips are allowed "
        "(CAMSERVER_STRICT=1, as scripts/test.sh sets, makes them failures)"
    )
