"""``camserver serve`` as a real process: demo cameras, kill -9 and restart, bad databases."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from camserver import __version__
from tests.conftest import CameraFactory, Proc, wait_for, wait_healthy


async def _streams(url: str) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(trust_env=False) as c:
        return {s["name"]: s for s in (await c.get(url + "/api/streams")).json()}


async def _state_is(url: str, name: str, state: str) -> bool:
    s = (await _streams(url)).get(name)
    return s is not None and s["status"]["state"] == state  # type: ignore[index]


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "camserver", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"camserver {__version__}"


async def test_demo_cameras_stream_with_no_hardware(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    p = spawn("--db", str(tmp_path / "demo.db"), "--demo", "2")
    await wait_healthy(p)
    for name in ("demo-1", "demo-2", "demo-push", "demo-esphome"):
        await wait_for(lambda n=name: _state_is(p.url, n, "streaming"), 15, what=name)
    async with httpx.AsyncClient(trust_env=False) as c:
        r = await c.get(p.url + "/api/streams/demo-1/snapshot")
        assert r.status_code == 200
        assert r.content[:2] == b"\xff\xd8"
        # demo-push pushes over a WebSocket, with telemetry (a camera behind NAT).
        pushed = (await c.get(p.url + "/api/streams/demo-push")).json()
        assert pushed["source"] == "push"
        assert pushed["status"]["pusher"].startswith("127.0.0.1:")
        # demo-esphome: an ESPHome camera over its native API (Noise), its device shown.
        esphome = (await c.get(p.url + "/api/streams/demo-esphome")).json()
        assert (esphome["source"], esphome["has_encryption_key"]) == ("esphome", True)
        assert esphome["status"]["device"]["name"] == "demo-esphome"
        assert esphome["status"]["device"]["encrypted"] is True
        # The demo records too (bounded), so recordings can be tried without hardware.
        assert (await c.get(p.url + "/api/streams/demo-1")).json()["recording"]["mode"] == (
            "continuous"
        )

        async def recorded() -> bool:
            r = await c.get(p.url + "/api/streams/demo-1/recordings")
            return any(s["kind"] == "continuous" and s["frames"] for s in r.json())

        await wait_for(recorded, 15, what="demo-1 recorded")
        # Nobody watches: the recorder and the motion detector are demand, not viewers (the
        # dashboard showed demo-1 with "3 viewers" for one open page).
        st = (await c.get(p.url + "/api/streams/demo-1/status")).json()
        assert st["viewers"] == 0, st
        assert st["demand"] == {"viewers": 0, "recording": True, "motion": True, "remote": 0}

        # ... and shows motion events: an object crosses demo-1's scene every 15 s.
        async def moved() -> bool:
            r = await c.get(p.url + "/api/events")
            return [e["stream"] for e in r.json()] == ["demo-1"]

        await wait_for(moved, 20, what="a motion event of demo-1")
    # What the README suggests next: watch a demo camera through the Python client.
    watch = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "camserver", "watch", "demo-1", "--url", p.url),
        *("--seconds", "2.5"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(watch.communicate(), 20)
    assert watch.returncode == 0
    assert re.search(rb"^demo-1: +[1-9][\d.]* fps  latency \d+ ms", out, re.M), out
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0
    assert "Traceback" not in p.output()


async def test_kill_9_keeps_streams_and_restarts_started_ones(
    spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    cams = [await camera(f"c{i}", fps=10) for i in range(3)]
    p = spawn("--db", str(db))
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, trust_env=False) as c:
        for i, cam in enumerate(cams):
            r = await c.post("/api/streams", json={"name": f"c{i}", "host": cam.address})
            assert r.status_code == 201
        r = await c.post("/api/streams/c1/stop", headers={"X-Requested-With": "test"})
        assert r.status_code == 200
        r = await c.delete("/api/streams/c2")
        assert r.status_code == 204
        await wait_for(lambda: _state_is(p.url, "c0", "streaming"), 10, what="c0")
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait(10)

    p2 = spawn("--db", str(db))
    await wait_healthy(p2)
    streams = await _streams(p2.url)
    assert set(streams) == {"c0", "c1"}
    assert streams["c0"]["enabled"] is True
    assert streams["c1"]["enabled"] is False
    await wait_for(lambda: _state_is(p2.url, "c0", "streaming"), 10, what="c0 restarted")
    assert (await _streams(p2.url))["c1"]["status"]["state"] == "stopped"  # type: ignore[index]


def _corrupt(tmp_path: Path) -> Path:
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    return db


def _under_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return blocker / "sub" / "x.db"


@pytest.mark.parametrize(
    ("make_db", "message"),
    [
        (_corrupt, "cannot use the database file"),
        (_under_a_file, "cannot create the database folder"),
    ],
    ids=["corrupt", "unwritable"],
)
def test_unusable_database_gives_a_clear_error(
    tmp_path: Path, make_db: Callable[[Path], Path], message: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "camserver", "serve", "--db", str(make_db(tmp_path)), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_database_is_wal_with_one_row_per_stream(tmp_path: Path) -> None:
    import asyncio

    from camserver.schema import StreamConfig
    from camserver.store import SQLiteStore

    async def go() -> None:
        store = await SQLiteStore.open(tmp_path / "s.db")
        await store.add(StreamConfig(name="a", stream_url="http://x/"))
        await store.close()

    asyncio.run(go())
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT name FROM streams").fetchall() == [("a",)]
    conn.close()


async def test_settings_come_from_the_environment(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    db = tmp_path / "from-env.db"
    p = spawn(env={"CAMSERVER_DB": str(db)})
    await wait_healthy(p)
    assert db.exists()


async def test_what_the_server_writes_is_readable_by_its_owner_only(
    spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    """L3 (issue 26): recordings, event snapshots and clips were 0644 in 0755 folders
    while the database was 0600."""
    cam = await camera("c1", fps=10)
    recordings = tmp_path / "recordings"
    recordings.mkdir(mode=0o755)  # as an older release left it
    os.chmod(recordings, 0o755)
    p = spawn("--db", str(tmp_path / "m.db"), env={"CAMSERVER_RECORDINGS_DIR": str(recordings)})
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, trust_env=False, timeout=60) as c:
        body = {"name": "c1", "host": cam.address, "recording": {"mode": "continuous"}}
        assert (await c.post("/api/streams", json=body)).status_code == 201

        async def recorded() -> bool:
            rows = (await c.get("/api/streams/c1/recordings")).json()
            return bool(rows) and rows[0]["frames"] >= 20

        await wait_for(recorded, 20, what="two seconds recorded")
        now = time.time()
        r = await c.get("/api/streams/c1/clip.mp4", params={"start": now - 3, "end": now - 1})
        assert r.status_code == 200, r.text
    made = [path for path in recordings.rglob("*")]
    assert any(path.suffix == ".mkv" for path in made), made
    assert any(path.suffix == ".mp4" for path in made), made  # the clip cache
    assert stat.S_IMODE(recordings.stat().st_mode) == 0o700
    for path in [*made, tmp_path / "m.db"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


async def test_serve_raises_its_open_files_limit(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # The usual soft limit (1,024) capped a server at ~500 direct MJPEG viewers (each holds
    # its socket and a duplicate); the hard limit is what the administrator allows.
    wrapper = tmp_path / "python-with-a-low-limit"
    wrapper.write_text(f'#!/bin/sh\nulimit -Sn 256\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o700)
    p = spawn("--db", str(tmp_path / "l.db"), python=str(wrapper))
    await wait_healthy(p)
    limits = await asyncio.to_thread(Path(f"/proc/{p.proc.pid}/limits").read_text)
    found = re.search(r"Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)", limits)
    assert found is not None, limits
    soft, hard = found.groups()
    assert soft == hard or int(soft) == 1 << 20, limits
    assert int(soft) > 256
    assert f"open files limit raised from 256 to {soft}" in p.output()
    # Its main loop wakes once a second, but a signal ends it at once.
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(p.proc.wait, 10) == 0
    assert time.monotonic() - t0 < 0.9, "the signal waited for the main loop's next wake-up"
