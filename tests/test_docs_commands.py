"""Every command in the README's and docs/'s shell blocks, run verbatim against a real
server (issue 26: ``curl -X POST .../porch/stop`` in docs/api.md answered 415 once the
cross-site POST rule came, and nothing noticed).

Only addresses and ids are substituted: the server's URL for ``http://127.0.0.1:8000``,
simulated cameras for the example cameras, and real ids and times for the example ones.
The token examples' ``$TOKEN`` is the server's admin token, and a ``.curlrc`` adds it to
every request, as the docs tell users to do with tokens on. A command that cannot run here
verbatim (it starts a server or a GUI, or has placeholders) is listed in ``NOT_RUN`` with
the reason and the test that covers it instead: a new command must be either.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from camserver.config import Settings
from tests.conftest import CameraFactory, Server, free_port, start_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "docs-admin-token-00001"

NOT_RUN: dict[str, str] = {
    "bash scripts/demo.sh": "starts a server: tests/test_process.py runs the demo",
    "bash scripts/test.sh": "the whole suite: CI runs it",
    "bash scripts/demo.sh --cluster": "starts a cluster: tests/cluster/test_cluster_demo.py",
    "CAMSERVER_TEST_BUSY=2 CAMSERVER_TEST_RUNS=10 bash scripts/test.sh": "the suite, 10 times",
    ".venv/bin/camserver serve": "placeholders ([--demo N]); serve runs in tests/test_process.py",
    ".venv/bin/camserver sim": "placeholders; tests/test_sim.py runs the simulator",
    ".venv/bin/camserver discover": "placeholders (eth0): tests/test_discovery_netns.py",
    ".venv/bin/camserver watch": "placeholders; tests/test_client.py runs camserver watch",
    "camserver watch porch": "runs until Ctrl-C: tests/test_client.py runs it with --seconds",
    "vlc ": "a GUI player",
    "ffplay ": "a GUI player",
    "CAMSERVER_REDIS_URL=": "starts a cluster node: tests/cluster/",
    "docker compose": "no Docker engine here: tests/cluster/test_deploy.py checks the files",
    "CAMSERVER_MQTT_URL=": "starts a server: tests/test_mqtt.py runs the documented setup",
    "curl http://127.0.0.1:8000/api/cluster": "cluster mode only: tests/cluster/test_cluster.py",
}
"""Commands (by how they begin) not run here, and why."""


def commands() -> list[tuple[str, str]]:
    """(file, command) for every command of every shell block, in order."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append((path.name, line))
    return out


def _comment(command: str) -> tuple[str, str]:
    """The command without a trailing ``# comment``, and the comment (outside quotes)."""
    quote = ""
    for i, c in enumerate(command):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and i and command[i - 1] == " ":
            return command[:i].rstrip(), command[i + 1 :].strip()
    return command, ""


def _runs(command: str) -> bool:
    """This test runs ``command`` (else it is in NOT_RUN)."""
    if any(command.startswith(p) for p in NOT_RUN):
        return False
    return command.startswith(
        ("curl ", "ffmpeg ", "ffprobe ", ".venv/bin/camserver config", ".venv/bin/camserver --v")
    )


def test_every_documented_command_is_run_or_says_why_not() -> None:
    found = commands()
    assert len(found) > 40, found
    for name, command in found:
        assert _runs(command) or any(command.startswith(p) for p in NOT_RUN), (
            f"{name}: {command!r} is neither run by this test nor listed in NOT_RUN"
        )


@pytest.fixture(params=["open", "tokens"])
async def documented(
    request: pytest.FixtureRequest, settings: Settings, camera: CameraFactory
) -> AsyncIterator[tuple[Server, dict[str, Any]]]:
    """A server (open, or with tokens) and the docs' cameras simulated."""
    port = settings.discovery_port
    porch = await camera("porch", fps=10, scene={}, discovery_port=port)
    garage = await camera("garage", fps=10)
    driveway = await camera("driveway", fps=5)
    update: dict[str, Any] = {"recording_segment_seconds": 3.0, "rtsp_port": free_port()}
    if request.param == "tokens":
        update["api_token"] = SecretStr(ADMIN)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update=update))
        server.client.headers["Authorization"] = f"Bearer {ADMIN}"
        r = await server.client.post(
            "/api/streams", json={"name": "driveway", "host": driveway.address}
        )
        assert r.status_code == 201, r.text
        yield server, {"porch": porch, "garage": garage}


async def _ensure_porch(server: Server, porch_address: str) -> None:
    r = await server.client.get("/api/streams/porch")
    if r.status_code == 404:
        body = {
            "name": "porch",
            "host": porch_address,
            "recording": {"mode": "continuous", "timelapse_interval": 1},
            "motion": {"enabled": True, "cooldown": 0.5, "min_frames": 1},
        }
        assert (await server.client.post("/api/streams", json=body)).status_code == 201
    await server.client.post("/api/streams/porch/start")


async def _example_ids(server: Server, porch: Any) -> dict[str, str]:
    """Real ids and times for the docs' example ones (a closed recording, an event)."""
    await server.wait_state("porch", "streaming")
    await asyncio.sleep(2)  # the detector learns the empty scene, then something crosses it
    porch.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})

    async def ready() -> bool:
        rows = (await server.client.get("/api/streams/porch/recordings")).json()
        events = (await server.client.get("/api/events", params={"stream": "porch"})).json()
        return any(r["closed"] and r["kind"] == "continuous" for r in rows) and any(
            e["end"] is not None and e["snapshot_url"] for e in events
        )

    try:
        await wait_for(ready, 40, what="a closed recording and a motion event")
    except AssertionError:
        rows = (await server.client.get("/api/streams/porch/recordings")).json()
        events = (await server.client.get("/api/events", params={"stream": "porch"})).json()
        status = (await server.client.get("/api/streams/porch")).json()
        raise AssertionError(f"{rows} {events} {status}") from None
    rows = (await server.client.get("/api/streams/porch/recordings")).json()
    seg = next(r for r in rows if r["closed"] and r["kind"] == "continuous")
    event = next(
        e
        for e in (await server.client.get("/api/events", params={"stream": "porch"})).json()
        if e["end"] is not None and e["snapshot_url"]
    )
    mid = (seg["start"] + seg["end"]) / 2
    return {
        "/api/recordings/12": f"/api/recordings/{seg['id']}",
        "/api/events/41": f"/api/events/{event['id']}",
        "start=1795593600&end=1795593660": f"start={seg['start']}&end={seg['end']}",
        "start=1795593600&speed=4": f"start={seg['start']}&speed=4",
        "start=2026-11-25T08:00:00Z&end=1795600000": f"start={seg['start'] - 1}",
        "t=2026-11-25T08:15:00Z": f"t={mid}",
        "day=2026-11-25": f"day={time.strftime('%Y-%m-%d', time.gmtime(seg['start']))}",
    }


async def _run(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.beside  # commands that mostly wait: beside the suite (tests/helpers/beside.py)
@pytest.mark.requires("curl", "ffmpeg", "ffprobe")
async def test_every_documented_command_runs_verbatim(
    documented: tuple[Server, dict[str, Any]], tmp_path: Path
) -> None:
    server, cams = documented
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    # The HTTP status printed after each answer, so that this test can read it; with
    # tokens on, the admin token on every request, as the docs tell users to add it.
    tokens = server.settings.api_token is not None
    (home / ".curlrc").write_text(
        (f'header = "Authorization: Bearer {ADMIN}"\n' if tokens else "")
        + 'write-out = "\\nHTTP %{http_code}\\n"\nsilent\nshow-error\n'
    )
    venv = ROOT / ".venv" / "bin"
    env = {
        **os.environ,
        "HOME": str(home),
        "CURL_HOME": str(home),
        "TOKEN": ADMIN,
        "PATH": f"{venv}:{os.environ['PATH']}",
    }
    await _ensure_porch(server, cams["porch"].address)
    ids = await _example_ids(server, cams["porch"])
    token_id = ""
    ran = 0
    for name, line in commands():
        command, comment = _comment(line)
        if not _runs(command) or ("/api/tokens" in command and not tokens):
            continue  # (managed tokens need CAMSERVER_API_TOKEN, as the docs say)
        created = re.search(r'/api/streams -H .* -d \'\{"name": "(\w+)"', command)
        if created:  # the example makes it: as on a server that does not have it yet
            await server.client.delete(f"/api/streams/{created.group(1)}")
        elif "porch" in command and "/api/discovery/" not in command:
            await _ensure_porch(server, cams["porch"].address)
        if "/recordings/event" in command:  # "Recording mode `events`:" as the docs say
            body = {"recording": {"mode": "events"}}
            assert (await server.client.patch("/api/streams/porch", json=body)).is_success
        if "/api/discovery/esp32-cam-1a2b/add" in command:
            await server.client.delete("/api/streams/porch")
            scan = await server.client.post("/api/discovery/scan", params={"timeout": 1})
            (found,) = [c["name"] for c in scan.json() if c["ip"] == "127.0.0.1"]
            command = command.replace("esp32-cam-1a2b", found)
        if tokens and not command.startswith("curl "):  # players take it in the URL
            command = re.sub(
                r"(?:http://127\.0\.0\.1:8000|rtsp://127\.0\.0\.1:8554)(\S*)",
                lambda m: m.group(0) + ("&" if "?" in m.group(1) else "?") + f"token={ADMIN}",
                command,
            )
        command = command.replace("http://127.0.0.1:8000", server.url)
        command = command.replace(
            "rtsp://127.0.0.1:8554", f"rtsp://127.0.0.1:{server.settings.rtsp_port}"
        )
        command = command.replace('"192.168.1.50"', f'"{cams["porch"].address}"')
        host, http_port = cams["garage"].address.split(":")
        command = command.replace(
            "http://10.0.0.7:8080/video", f"http://{host}:{int(http_port) + 1}/stream"
        )
        command = command.replace(".venv/bin/camserver", str(venv / "camserver"))
        for example, real in ids.items():
            command = command.replace(example, real)
        if "/api/tokens/3f9c..." in command:
            command = command.replace("3f9c...", token_id)
        code, out = await _run(command, work, env)
        ran += 1
        where = f"{name}: {line}\n{command}\n{out[-600:]}"
        assert code == 0, where
        if command.startswith("curl ") and " | " not in command:  # (a pipe: grep's exit code)
            status = int(re.findall(r"HTTP (\d{3})", out)[-1])
            wanted = re.match(r"(\d{3})\b", comment)  # "# 204" beside a command
            if wanted:
                assert status == int(wanted.group(1)), where
            else:
                assert 200 <= status < 300, where
            if "/api/tokens" in command and "-d " in command:
                token_id = re.search(r'"id":"([0-9a-f]+)"', out).group(1)  # type: ignore[union-attr]
            if '"source": "push"' in command or "/push/key" in command:
                # docs/push.md: the key shown once is $KEY in the commands that follow.
                env["KEY"] = re.search(r'"key":"([^"]+)"', out).group(1)  # type: ignore[union-attr]
    assert ran >= (41 if tokens else 38), ran
    # What the commands wrote is what they say: images, a Matroska file, MP4s.
    assert (work / "porch.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (work / "porch-01.jpg").read_bytes()[:2] == b"\xff\xd8"  # ffmpeg's frames
    assert (work / "porch-rtsp.jpg").read_bytes()[:2] == b"\xff\xd8"  # docs/rtsp.md
    assert (work / "porch.mkv").read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert (work / "clip.mp4").read_bytes()[4:8] == b"ftyp"
