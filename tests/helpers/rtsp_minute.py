"""Must show 1 of issue 29 in the background: ffprobe, then ffmpeg over TCP and over UDP at
once reading a minute of a simulated VGA camera at 15 fps through camserver's RTSP, in
processes of their own beside the rest of the suite (a minute is most of what it costs, and
it is spent waiting); tests/test_rtsp.py checks the result last.

    python -m tests.helpers.rtsp_minute OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from camserver.sim.camera import free_port_pair

MINUTE = pytest.StashKey["Background"]()
SECONDS = 60
ROOT = Path(__file__).resolve().parents[2]


class Background:
    """This module run as a process; :meth:`wait` for its result."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = out / "run.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.rtsp_minute", str(out)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")},
            )

    def wait(self, timeout: float) -> dict[str, object]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        result = self.out / "result.json"
        assert result.exists(), self.log.read_text()[-3000:]
        data: dict[str, object] = json.loads(result.read_text())
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    return free_port_pair(span=1)


def main(out: Path) -> None:
    http_port, rtsp_port, sim_port = _free_port(), _free_port(), free_port_pair()
    env = {
        **os.environ,
        "CAMSERVER_RTSP_PORT": str(rtsp_port),
        "CAMSERVER_DISCOVERY_INTERFACES": "lo",
        "CAMSERVER_DISCOVERY_LISTEN_PORT": "0",
        "CAMSERVER_LOG_LEVEL": "warning",
    }
    sim = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "camserver",
                "sim",
                "--http-port",
                str(sim_port),
                "--fps",
                "15",
            ),
            *("--framesize", "VGA", "--discovery-port", "0", "--discovery-listen-port", "0"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "camserver", "serve", "--port", str(http_port)),
            *("--db", str(out / "minute.db")),
        ],
        env=env,
        stdout=(out / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        with httpx.Client(base_url=base, trust_env=False, timeout=5) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    r = c.post(
                        "/api/streams", json={"name": "porch", "host": f"127.0.0.1:{sim_port}"}
                    )
                    if r.status_code == 201:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            while c.get("/api/streams/porch/status").json()["state"] != "streaming":
                assert time.monotonic() < deadline, "the camera did not stream"
                time.sleep(0.2)
        url = f"rtsp://127.0.0.1:{rtsp_port}/porch"
        probe = subprocess.run(
            [
                *("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries"),
                *("stream=codec_name,width,height", "-of", "csv=p=0", url),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        began = time.monotonic()
        reads = {
            transport: subprocess.Popen(
                [
                    *(
                        "ffmpeg",
                        "-nostdin",
                        "-v",
                        "warning",
                        "-rtsp_transport",
                        transport,
                        "-i",
                        url,
                    ),
                    *("-t", str(SECONDS), "-f", "framecrc", "-"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for transport in ("tcp", "udp")
        }
        result: dict[str, object] = {"probe": probe.stdout.decode().strip(), "seconds": SECONDS}
        for transport, proc in reads.items():
            stdout, stderr = proc.communicate(timeout=SECONDS + 60)
            frames = [ln for ln in stdout.splitlines() if ln and not ln.startswith(b"#")]
            result[transport] = {
                "code": proc.returncode,
                "frames": len(frames),
                "stderr": stderr.decode(errors="replace")[-2000:],
            }
        result["wall"] = round(time.monotonic() - began, 1)
        (out / "result.json").write_text(json.dumps(result))
    finally:
        for p in (server, sim):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
