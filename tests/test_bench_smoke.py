"""A short run of every benchmark, so none of them rots (the full run is bench/run_all.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.bench_smoke import SMOKE

ROOT = Path(__file__).resolve().parents[1]


# motion: baseline (b) of the fan-out bench; redis-server: the cluster bench.
@pytest.mark.requires("motion", "redis-server", "node", "npm")
@pytest.mark.background_smoke
def test_benchmarks_smoke_run(request: pytest.FixtureRequest) -> None:
    smoke = request.config.stash.get(SMOKE, None)
    assert smoke is not None, "conftest starts the smoke run when this test is collected"
    out = smoke.wait(timeout=420)
    tmp_path = smoke.out
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert {r["chunk"] for r in results["parser"]} == {"1 KB", "4 KB", "64 KB"}
    assert all(r["parser_mb_s"] > 10 for r in results["parser"])
    assert [r["cameras"] for r in results["ingest"]] == [2]
    # Push cameras: every way in carried frames at the camera's rate beside pulled ones.
    ways = [(r["way"], r["cameras"]) for r in results["push"]]
    assert ways == [
        ("pull (HTTP MJPEG ingest)", 2),
        ("push (WebSocket)", 2),
        ("push (POST per picture)", 2),
        ("push (WebSocket)", 4),
    ]
    # (A background run beside the suite on 2 cores: a rate, not the camera's 15 fps, which
    # bench/push.py measures on its own; one CI run saw a push camera under 5 fps. The window
    # opens once every camera has sent a frame: a pusher still starting was a slow camera.)
    slow = [r for r in results["push"] if not (r["frames"] > 0 and r["fps_per_camera_min"] > 2)]
    assert not slow, slow
    # ESPHome cameras (Noise and plaintext) carried frames at their rate beside pulled ones.
    ways = [(r["way"], r["cameras"]) for r in results["esphome"]]
    assert ways == [
        ("pull (HTTP MJPEG ingest, 15 fps)", 2),
        ("ESPHome API (Noise, 15 fps)", 2),
        ("ESPHome API (plaintext, 15 fps)", 2),
        ("ESPHome API (Noise, 10 fps)", 4),
    ]
    slow = [r for r in results["esphome"] if not (r["frames"] > 0 and r["fps_per_camera_min"] > 5)]
    assert not slow, slow
    # RTSP out: MJPEG, RTSP over TCP and UDP, and the H.264 encoder all delivered frames.
    outputs = [r["output"] for r in results["rtsp"]]
    assert outputs == [
        "MJPEG",
        "RTSP TCP",
        "RTSP UDP",
        "RTSP H.264 (1 client: the encoder)",
        "floor: TCP send (bench/floor.py)",
        "floor: UDP GSO sendmsg (bench/floor.py)",
    ]
    assert all(r["errors"] == 0 and r["fps_min"] > 5 for r in results["rtsp"]), results["rtsp"]
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
    # Side by side with the Node.js peers: each server relayed the camera over one
    # upstream connection and its viewers got frames.
    peers = {(r["kind"], r["system"]): r for r in results["peers"]}
    assert set(peers) == {
        ("mjpeg", "camserver"),
        ("mjpeg", "mjpeg-proxy (Node)"),
        ("mjpeg", "node-mjpeg-proxy (Node)"),
        ("mjpeg", "C relay"),
        ("socketio", "camserver"),
        ("socketio", "socket.io (Node)"),
    }
    for r in peers.values():
        assert r["errors"] == 0, r
        assert r["upstream"] == 1, r
        assert r["fps_median"] > 0, r
    assert "CPU vs camserver" in (tmp_path / "smoke.md").read_text()
    # Recording: every camera's frames written, none dropped, viewers at full rate; motion:
    # frames analysed.
    off, on, motion = results["recording"]
    assert (off["mode"], on["mode"], motion["mode"]) == ("off", "continuous", "motion")
    assert off["frames"] == 0
    assert on["frames"] > 0
    assert on["dropped_frames"] == 0
    assert on["viewer_fps_min"] > 0
    assert motion["frames"] > 0
    assert motion["us_per_frame"] is not None
    ratios = "\n".join(results["ratios"])
    for what in ("vs (a)", "ceiling", "vs the raw relay", "cluster relay", "cluster scale-out"):
        assert what in ratios, ratios
    cluster = results["cluster"]
    assert cluster["relay"]["relayed_fps_min"] > 0, cluster
    assert cluster["relay"]["ratio"] > 0, cluster
    assert cluster["scale_out"]["fps_min"] > 0, cluster
    assert cluster["scale_out"]["ratio_2_nodes"] > 0, cluster
    assert len(cluster["takeover"]["takeover_s"]) == 2
    assert all(0 < t < 15 for t in cluster["takeover"]["takeover_s"]), cluster
    assert all("oracle_ratio" in r for r in results["parser"])
    # The cluster at scale (smoke: 2 nodes, 10 cameras at 2 fps): every camera reached its
    # viewer on the node that does not pull it, and the killed node's cameras came back.
    at_scale = results["scale"]
    assert sum(at_scale["cameras_per_node"].values()) == 10, at_scale
    assert at_scale["viewers"] == 10, at_scale
    assert at_scale["viewer_fps_min"] > 1.5, at_scale
    assert at_scale["takeover"]["recovered"] == at_scale["takeover"]["watched"] > 0, at_scale
    assert "per 1 Gbit/s link" in (tmp_path / "smoke.md").read_text()
    # Idle memory: both servers measured; the heavy parts are listed as loaded later.
    mem = results["memory"]
    assert mem["after"]["one_camera"]["rss_mb"] > 0, mem
    assert mem["after"]["demo_3"]["rss_mb"] > mem["after"]["one_camera"]["rss_mb"], mem
    assert [r["group"].split(" ")[0] for r in mem["breakdown"]][-3:] == [
        "PyAV",
        "numpy,",
        "aioesphomeapi",
    ]
