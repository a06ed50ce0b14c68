"""The heavy parts load only when a stream uses them: a real server streaming one camera,
with no recording and no motion, has none of PyAV's, numpy's, simplejpeg's or Pillow's
shared libraries mapped (its ``/proc/<pid>/maps``); turning recording and then motion on
for the camera loads them (so the check can tell)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import CameraFactory, Proc, wait_for, wait_healthy

HEADERS = {"X-Requested-With": "camserver-tests"}

LIBRARIES = {
    "PyAV": "libavcodec",
    "numpy": "_multiarray_umath",
    "simplejpeg": "simplejpeg",
    "Pillow": "PIL/_imaging",
}
"""What each part maps when it loads (a path fragment of one of its shared libraries)."""


def loaded(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {part for part, marker in LIBRARIES.items() if marker in maps}


def test_importing_the_server_loads_no_heavy_part() -> None:
    code = (
        "import sys, camserver.app, camserver.runtime, camserver.cli, camserver.sources; "
        "print(sorted({'av', 'numpy', 'simplejpeg', 'PIL', 'aioesphomeapi'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


async def test_recording_and_motion_load_their_parts_only_when_a_stream_uses_them(
    spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    cam = await camera("cam")
    p = spawn(
        "--db",
        str(tmp_path / "lazy.db"),
        env={
            "CAMSERVER_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "CAMSERVER_DISCOVERY_INTERFACES": "none",
        },
    )
    await wait_healthy(p)
    async with httpx.AsyncClient(base_url=p.url, headers=HEADERS, trust_env=False) as c:
        r = await c.post("/api/streams", json={"name": "cam", "host": cam.address})
        assert r.status_code == 201, r.text

        async def frames(least: int) -> bool:
            status = (await c.get("/api/streams/cam/status")).json()
            return bool(status["frames"] >= least)

        await wait_for(lambda: frames(10), 20, what="frames")
        assert loaded(p.proc.pid) == set()

        r = await c.patch("/api/streams/cam", json={"recording": {"mode": "continuous"}})
        assert r.status_code == 200, r.text
        await wait_for(lambda: "PyAV" in loaded(p.proc.pid), 20, what="PyAV for the recording")
        assert loaded(p.proc.pid) == {"PyAV"}

        r = await c.patch("/api/streams/cam", json={"motion": {"enabled": True}})
        assert r.status_code == 200, r.text
        await wait_for(
            lambda: loaded(p.proc.pid) >= {"numpy", "simplejpeg"}, 20, what="motion's parts"
        )
