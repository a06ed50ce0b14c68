"""The client's answers are typed: mypy (strict) checks docs/client.md's Python examples
and a use of every model-returning method, as a user's editor and CI would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USES = """
from camserver.client import AsyncClient, Client
from camserver.schema import StreamState


def names(client: Client) -> list[str]:
    return [s.name for s in client.streams()]


def first_state(client: Client) -> StreamState:
    return client.streams()[0].status.state


async def everything(client: AsyncClient) -> list[object]:
    stream = await client.stream("porch")
    found = await client.scan()
    seg = (await client.recordings("porch"))[0]
    event = (await client.events(stream="porch"))[0]
    window = await client.mark_event("porch")
    changed = await client.set_camera_settings("porch", quality=10)
    health = await client.health()
    return [
        stream.status.fps + stream.motion.cooldown,
        found[0].stream_port + (found[0].stream or "").count("x"),
        seg.file_url.upper(),
        (event.end or 0.0) + event.peak_area,
        window.end - window.start,
        changed.results["quality"].ok,
        health.status.upper(),
        (await client.cluster()).nodes[0].cameras,
        (await client.status("porch")).frames + 1,
    ]
"""


def test_the_documented_examples_and_every_answer_type_check(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "client.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) >= 3, "docs/client.md lost its examples"
    files = []
    for i, code in enumerate([*blocks, USES]):
        path = tmp_path / f"example_{i}.py"
        path.write_text(code)
        files.append(str(path))
    # A mistake that a typed client catches and a dict-returning one would not.
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from camserver.client import Client\n\n\n"
        "def f(client: Client) -> int:\n    return client.status('x').nope\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--ignore-missing-imports",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            *files,
            str(wrong),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    report = done.stdout + done.stderr
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert errors, report
    assert all(line.startswith("wrong.py:") for line in errors), report
    assert any('"StreamStatus" has no attribute "nope"' in line for line in errors), report
