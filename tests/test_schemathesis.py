"""schemathesis against the app's own OpenAPI schema: no input makes it answer 500.

The server and schemathesis run inside a network namespace of this test's own with only
loopback up: generated stream URLs and host names then cannot reach (or even resolve
towards) anything outside it. Skipped where the test is not root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# Root and iproute2 isolate the fuzzed server in a network namespace.
pytestmark = pytest.mark.requires("root", "ip")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cs-st-{os.getpid()}"
    # The fuzzer sends random host names, which the server resolves: inside the namespace
    # a DNS server on 127.0.0.1 that is not there answers at once ("ip netns exec" mounts
    # /etc/netns/<name>/resolv.conf over /etc/resolv.conf), instead of the host's server
    # timing out, unreachable, for every name.
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)
        shutil.rmtree(etc, ignore_errors=True)


@pytest.mark.beside  # its own processes: beside the suite (tests/helpers/beside.py)
def test_no_input_makes_a_server_error(netns: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CAMSERVER_DISCOVERY_INTERFACES": "lo",
        "CAMSERVER_CONNECT_TIMEOUT": "1",
        "CAMSERVER_SNAPSHOT_TIMEOUT": "1",
    }
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "camserver",
            "serve",
            "--port",
            "8000",
            "--db",
            str(tmp_path / "st.db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        time.sleep(0.5)
        st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        assert st is not None
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                st,
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                "http://127.0.0.1:8000/openapi.json",
                "--wait-for-schema",
                "30",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "30",
                "--seed",
                "1",
                "--request-timeout",
                "10",
                # One worker: with several threads, CPython 3.11's ast.parse (used by
                # hypothesis inside schemathesis) can fail with "AST constructor recursion
                # depth mismatch", a runtime error of the tool, not a finding about the server.
                "--workers",
                "1",
                # Endless MJPEG responses and the scan's deliberate wait are tested directly.
                "--exclude-path-regex",
                r"mjpeg|/scan$",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
        assert "passed" in out.stdout.lower()
    finally:
        server.terminate()
        server.wait(10)
