"""uvicorn's and python-engineio's internals that camserver relies on, each used in exactly
one module (``camserver.live.sockets``, ``camserver.live.engineio``): checked against the
installed versions, so an upgrade that moves them fails here, loudly, and not in
production as a silent fallback."""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import socketio

from camserver.live.counters import counters
from camserver.live.engineio import EngineIOInternalsChanged, asgi_scope
from camserver.live.sockets import RELIED_ON, UvicornInternalsChanged, verify
from tests.conftest import CameraFactory, Server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "camserver"


def test_the_installed_uvicorn_has_everything_relied_on() -> None:
    verify()


def test_a_uvicorn_without_one_of_them_is_refused_by_name() -> None:
    class Moved:  # what an upgrade that renamed an attribute and dropped a method looks like
        def __init__(self) -> None:
            self.started = False

    relied = {**RELIED_ON, Moved: (("handle_connect",), ("response_started",))}
    with pytest.raises(
        UvicornInternalsChanged, match=r"Moved\.handle_connect\(\), Moved\.response_started"
    ):
        verify(relied)


def test_engineio_environ_without_the_asgi_scope_is_refused() -> None:
    with pytest.raises(EngineIOInternalsChanged, match=r"asgi\.scope"):
        asgi_scope({"REMOTE_ADDR": "127.0.0.1"})


def test_uvicorn_and_engineio_internals_are_used_in_one_module_each() -> None:
    """Nothing else imports uvicorn's protocol modules, nor reads engine.io's private state
    or undocumented environ keys."""
    uvicorn_protocols = re.compile(r"^\s*(from|import) uvicorn\.protocols", re.M)
    engineio_private = re.compile(r"\.eio\.sockets|asgi\.scope|\bengineio\.packet\b")
    users: dict[str, list[str]] = {"uvicorn": [], "engineio": []}
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        name = str(path.relative_to(SRC))
        if uvicorn_protocols.search(text):
            users["uvicorn"].append(name)
        code = "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith(("#", '"', "``"))
        )
        if engineio_private.search(code) and "def " in code:
            users["engineio"].append(name)
    assert users["uvicorn"] == ["live/sockets.py"]
    assert sorted(users["engineio"]) in (
        ["live/engineio.py"],
        ["live/engineio.py", "live/sio_wire.py"],
    )


def test_the_pins_match_what_is_tested() -> None:
    import uvicorn

    pyproject = (ROOT / "pyproject.toml").read_text()
    major, minor, *_ = uvicorn.__version__.split(".")
    assert f'"uvicorn[standard]>={major}.{minor},<{major}.{int(minor) + 1}"' in pyproject
    engineio = version("python-engineio")
    assert engineio.startswith("4."), engineio
    assert '"python-engineio>=4.12,<5"' in pyproject


async def test_a_real_server_takes_both_direct_paths(server: Server, camera: CameraFactory) -> None:
    """What verify() cannot see: uvicorn really calls camserver's protocols and hands the
    sockets over (an MJPEG viewer and a Socket.IO WebSocket viewer are written to
    directly), and engine.io's environ carries the client's real address."""
    cam = await camera("c1", fps=15)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    mjpeg_sent, ws_sent = counters.mjpeg.sent, counters.socketio.sent
    async with server.client.stream("GET", "/api/streams/c1/mjpeg") as resp:
        assert resp.status_code == 200
        await wait_for(lambda: counters.mjpeg.sent >= mjpeg_sent + 5, 10, what="direct MJPEG")
    sio = socketio.AsyncClient()
    got = asyncio.Event()
    sio.on("frame", lambda data: got.set())
    await sio.connect(server.url, transports=["websocket"])
    try:
        assert (await sio.call("join_stream", {"name": "c1"}))["ok"]
        await asyncio.wait_for(got.wait(), 10)
        await wait_for(lambda: counters.socketio.sent >= ws_sent + 5, 10, what="direct WebSocket")
        realtime = server.state.realtime
        assert set(realtime._address.values()) == {"127.0.0.1"}
        server.state.realtime.sockets.verify()
    finally:
        await sio.disconnect()
