"""Long tests that mostly wait, run beside the rest of the suite.

A test marked ``@pytest.mark.beside`` (a minute of recording, a minute of motion analysis,
a camera that sleeps between pictures) spends its time waiting, not computing. When a run
holds other tests too, the marked ones run in a second pytest process started at
collection, so their waiting overlaps the rest; in the main run each one's place is taken
by an item that waits for the child's verdict and fails with the child's report. Coverage
follows the child (``patch = ["subprocess"]``), and a skip there is a skip here (a failure
under ``CAMSERVER_STRICT=1``). Run alone, a marked test runs in place as any other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

__all__ = ["dispatch"]

CHILD = "CAMSERVER_BESIDE_CHILD"
ROOT = Path(__file__).resolve().parents[2]
RUN = pytest.StashKey["Beside"]()


class Beside:
    """The child pytest process and its verdicts, by node id."""

    def __init__(self, nodeids: list[str]) -> None:
        self.out = Path(tempfile.mkdtemp(prefix="camserver-beside-"))
        self.log = self.out / "run.log"
        self.junit = self.out / "junit.xml"
        self._verdicts: dict[str, tuple[str, str]] | None = None
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:cov"),
                    *("-o", "addopts=-ra", "--basetemp", str(self.out / "tmp")),
                    *("--junitxml", str(self.junit), *nodeids),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, CHILD: "1"},
            )

    def verdict(self, nodeid: str, timeout: float) -> tuple[str, str]:
        """``(outcome, text)`` of one test: passed, failed, skipped or missing."""
        if self._verdicts is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop()
            self._verdicts = self._read()
        found = self._verdicts.get(nodeid)
        if found is None:
            return "missing", self.log.read_text(errors="replace")[-4000:]
        return found

    def _read(self) -> dict[str, tuple[str, str]]:
        if not self.junit.exists():
            return {}
        verdicts: dict[str, tuple[str, str]] = {}
        for case in ET.parse(self.junit).iter("testcase"):
            module = case.get("classname", "").replace(".", "/")
            nodeid = f"{module}.py::{case.get('name', '')}"
            outcome, text = "passed", ""
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome, text = "failed", (child.text or child.get("message") or "")
                    break
                if child.tag == "skipped":
                    outcome, text = "skipped", child.get("message") or ""
            verdicts[nodeid] = (outcome, text)
        return verdicts

    def stop(self) -> None:
        # SIGINT: pytest tears its fixtures down (a SIGKILL left their servers running).
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class BesideFailure(Exception):
    pass


class BesideItem(pytest.Item):
    """Stands for a test that ran in the child process."""

    def runtest(self) -> None:
        outcome, text = self.config.stash[RUN].verdict(self.nodeid, timeout=900)
        if outcome == "skipped":
            pytest.skip(text)
        if outcome != "passed":
            raise BesideFailure(f"{outcome} beside the suite:\n{text}")

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: str | None = None,
    ) -> str:
        if isinstance(excinfo.value, BesideFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


def dispatch(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the marked tests in a child process and put stand-ins, last, in their place."""
    marked = [i for i in items if i.get_closest_marker("beside")]
    if not marked or len(marked) == len(items) or os.environ.get(CHILD):
        return
    run = Beside([i.nodeid for i in marked])
    config.stash[RUN] = run
    config.add_cleanup(run.stop)
    stand_ins: list[pytest.Item] = []
    for item in marked:
        assert item.parent is not None
        stand_in = BesideItem.from_parent(item.parent, name=item.name)
        stand_in.add_marker(pytest.mark.timeout(960))
        stand_ins.append(stand_in)
    items[:] = [i for i in items if i not in marked] + stand_ins
