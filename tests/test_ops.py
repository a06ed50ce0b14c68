"""Operations: metrics, JSON logs, `camserver config`, generated docs, the Dockerfile."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CameraFactory, Proc, Server, wait_for, wait_healthy

ROOT = Path(__file__).resolve().parents[1]


async def test_metrics_parse_and_match_the_status(server: Server, camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    async with server.client.stream("GET", "/api/streams/c1/mjpeg") as resp:
        assert resp.status_code == 200
        await wait_for(lambda: _frames(server), 5, what="frames")
        r = await server.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("camserver_stream_state", (("state", "streaming"), ("stream", "c1")))] == 1
    assert samples[("camserver_stream_state", (("state", "stopped"), ("stream", "c1")))] == 0
    assert samples[("camserver_stream_frames_total", (("stream", "c1"),))] > 0
    assert samples[("camserver_stream_bytes_total", (("stream", "c1"),))] > 0
    assert ("camserver_stream_bad_frames_total", (("stream", "c1"),)) in samples
    assert samples[("process_resident_memory_bytes", ())] > 10 * 2**20
    assert ("python_gc_collections_total", (("generation", "2"),)) in samples
    assert ("camserver_housekeeping_last_seconds", ()) in samples
    assert ("camserver_housekeeping_collected_objects_total", ()) in samples
    assert samples[("camserver_stream_upstream_connects_total", (("stream", "c1"),))] == 1
    assert samples[("camserver_stream_fps", (("stream", "c1"),))] > 5
    assert samples[("camserver_stream_viewers", (("kind", "mjpeg"), ("stream", "c1")))] == 1
    assert samples[("camserver_mjpeg_clients", ())] == 1
    assert ("camserver_socketio_clients", ()) in samples
    assert samples[("camserver_mjpeg_frames_total", (("outcome", "sent"),))] > 0
    assert ("camserver_socketio_direct_frames_total", (("outcome", "slow"),)) in samples
    assert 0 <= samples[("camserver_event_loop_lag_seconds", ())] < 1
    assert "camserver_discovery_datagrams" in families


async def _frames(server: Server) -> bool:
    return int((await server.status("c1"))["frames"]) > 3


async def test_json_logs_one_line_per_state_change(
    spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    cam = await camera("c1", fps=15)
    p = spawn("--db", str(tmp_path / "j.db"), "--log-format", "json", "--log-level", "info")
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, trust_env=False) as c:
        await c.post("/api/streams", json={"name": "c1", "host": cam.address})
        await wait_for(lambda: '"state": "streaming"' in p.output(), 10, what="log line")
        await cam.stop()
        # The camera is off: the stream ends, then reconnects are refused.
        await wait_for(lambda: "connection refused" in p.output(), 15, what="log line")
    lines = [json.loads(line) for line in p.output().splitlines() if line.strip()]
    changes = [r for r in lines if r.get("stream") == "c1" and "state" in r]
    states = [r["state"] for r in changes]
    assert states[:2] == ["connecting", "streaming"]
    retries = [r for r in changes if r["state"] == "retrying"]
    assert all(r["level"] == "warning" for r in retries)
    assert "connection refused" in retries[-1]["reason"]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in lines)


def test_config_shows_values_sources_and_hides_secrets() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "camserver", "config", "--port", "9123"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "CAMSERVER_API_TOKEN": "very-secret-token-1",
            "CAMSERVER_MAX_STREAMS": "12",
            "PATH": "/usr/bin:/bin",
        },
    )
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert re.search(r"9123\s+flag --port$", rows["port"])
    assert re.search(r"12\s+env CAMSERVER_MAX_STREAMS$", rows["max_streams"])
    assert re.search(r"\*\*\* \(set\)\s+env CAMSERVER_API_TOKEN$", rows["api_token"])
    assert re.search(r"8888\s+default$", rows["discovery_port"])
    assert "very-secret" not in out.stdout


def test_configuration_docs_are_fresh() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert "`CAMSERVER_API_TOKEN`" in text
    assert "`--log-format`" in text


async def test_api_docs_cover_every_endpoint_and_event(server: Server) -> None:
    schema = (await server.client.get("/openapi.json")).json()
    text = (ROOT / "docs" / "api.md").read_text()
    for path, ops in schema["paths"].items():
        for method in ops:
            assert f"{method.upper()} {path}" in text, (method, path)
    for event in (
        "join_stream",
        "leave_stream",
        "frame",
        "stream_status",
        "camera_discovered",
        "motion",
    ):
        assert f"`{event}`" in text


def test_dockerfile_lints_clean_and_uses_the_readme_install() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    docker = (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "RUN bash scripts/setup.sh" in docker
    assert "bash scripts/demo.sh" in readme  # which runs scripts/setup.sh too
    assert "bash scripts/setup.sh" in (ROOT / "scripts" / "demo.sh").read_text()
    assert "HEALTHCHECK" in docker
    assert "/healthz" in docker
    assert re.search(r"^USER 10001", docker, re.M)
    assert "network_mode: host" in (ROOT / "compose.yaml").read_text()


def test_housekeeping_frees_cycles_that_pin_buffers() -> None:
    """A closed connection's exception, traceback and frames form a cycle that holds its
    buffers; the once-a-minute job must free it (the oldest GC generation rarely runs)."""
    import gc
    import weakref

    from camserver.memory import Housekeeper

    class Conn:
        buffer = bytearray()
        error: OSError | None = None

    def closed_connection() -> weakref.ref[Conn]:
        conn = Conn()
        conn.buffer = bytearray(4 * 2**20)
        try:
            raise OSError("peer went away")
        except OSError as exc:
            conn.error = exc  # exc -> traceback -> this frame -> conn: a cycle
        return weakref.ref(conn)

    gc.disable()
    try:
        ref = closed_connection()
        assert ref() is not None  # only the cyclic GC can free it
        keeper = Housekeeper()
        keeper.run_once()
        assert ref() is None
        assert keeper.collected > 0
        assert (keeper.runs, keeper.last_seconds > 0) == (1, True)
    finally:
        gc.enable()


def test_memory_trim_works_here() -> None:
    from camserver.memory import trim_memory

    # Linux with glibc (this machine, the Docker image): freed heap goes back to the OS.
    # Measured, not taken from the function's word: free many small blocks that glibc
    # keeps in its heap (below the mmap threshold), then trim and compare RSS.
    proc = psutil.Process()
    blocks = [bytearray(64 * 1024) for _ in range(1500)]  # ~94 MiB of heap
    for b in blocks:
        b[0] = 1
    keep = blocks[-1]  # the top of the heap stays in use, so only a trim can release it
    del blocks
    before = proc.memory_info().rss
    assert trim_memory() is True
    after = proc.memory_info().rss
    assert before - after > 32 * 2**20, (before, after)
    assert keep[0] == 1
