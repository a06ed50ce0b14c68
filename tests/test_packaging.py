"""The package as users get it: a wheel built here, installed in a fresh venv, run outside
the checkout (issue 19: the wheel lacked the dashboard)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Proc, wait_for, wait_healthy

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.beside  # pip in a fresh venv: beside the suite (tests/helpers/beside.py)
async def test_a_built_wheel_installs_in_a_fresh_venv_and_serves_the_dashboard(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    # What a wheel is built from (a copy: building writes build/ and *.egg-info).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "web"):
        shutil.copytree(
            ROOT / name,
            source / name,
            symlinks=True,  # src/camserver/web is a link to web/, as in the repository
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    dist = tmp_path / "dist"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", dist, source, cwd=tmp_path
    )
    # project.license as an SPDX expression: no deprecation warning from the build.
    assert "deprecat" not in built.lower(), [
        line for line in built.splitlines() if "deprecat" in line.lower()
    ]
    (wheel,) = dist.glob("camserver-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    installed = _run(venv / "bin/python", "-m", "pip", "install", wheel, cwd=tmp_path)
    assert "deprecat" not in installed.lower(), installed

    # --version is the package's metadata, and the metadata is pyproject.toml's.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = _run(venv / "bin/camserver", "--version", cwd=tmp_path).strip()
    meta = _run(
        venv / "bin/python",
        "-c",
        "import importlib.metadata as m; d = m.metadata('camserver'); "
        "print(d['Version'], d['License-Expression'])",
        cwd=tmp_path,
    ).split()
    assert version == f"camserver {project['version']}"
    assert meta == [project["version"], "MIT"]

    # Run from outside the checkout: everything comes from the installed package.
    p = spawn(
        "--db",
        str(tmp_path / "wheel.db"),
        "--demo",
        "1",
        "--discovery-interfaces",
        "none",
        python=str(venv / "bin/python"),
        cwd=tmp_path,
    )
    await wait_healthy(p, 40)
    async with httpx.AsyncClient(base_url=p.url, timeout=10, trust_env=False) as c:
        index = await c.get("/")
        assert index.status_code == 200
        assert index.text == (ROOT / "web/index.html").read_text()
        for path in ("/app.js", "/camera.js", "/style.css", "/vendor/socket.io.min.js"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert r.content == (ROOT / "web" / path.lstrip("/")).read_bytes(), path
        assert (await c.get("/docs")).status_code == 200  # Swagger UI from the package
        assert (await c.get("/vendor/swagger-ui-bundle.js")).status_code == 200

        async def streaming() -> bool:
            r = await c.get("/api/streams")
            return any(s["status"]["state"] == "streaming" for s in r.json())

        await wait_for(streaming, 30, what="the demo camera streaming from the wheel")
        snap = await c.get(
            f"/api/streams/{(await c.get('/api/streams')).json()[0]['name']}/snapshot"
        )
        assert snap.content[:2] == b"\xff\xd8"
    where = _run(
        venv / "bin/python", "-c", "import camserver.app as a; print(a.WEB_DIR)", cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(venv), where
