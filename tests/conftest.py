"""Shared fixtures: simulated cameras and a real camserver on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright
from pydantic import SecretStr

from bench import harness
from camserver.app import CamServerApp, create_app, uvicorn_options
from camserver.config import Settings
from camserver.discovery.service import DiscoveryService
from camserver.runtime import Runtime
from camserver.sim.camera import SimCamera
from tests.helpers import beside
from tests.helpers.auth import ADMIN, VIEW

CHROMIUM = harness.CHROMIUM
ARGS = harness.CHROMIUM_ARGS

pytest_plugins = ["tests.suite_report"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "background_smoke: checked last, started at once")
    config.addinivalue_line("markers", "background_rtsp: checked last, started at once")
    config.addinivalue_line("markers", "beside: mostly waits; runs in a process of its own")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they will
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``background_smoke`` run last; their benchmark run starts now, beside
    the other tests (see tests/test_bench_smoke.py). Likewise ``background_rtsp``: a minute
    of RTSP reading (tests/helpers/rtsp_minute.py). Tests marked ``beside`` run in a pytest
    process of their own, started now (tests/helpers/beside.py)."""
    beside.dispatch(config, items)
    minute = [i for i in items if i.get_closest_marker("background_rtsp")]
    if minute:
        items[:] = [i for i in items if i not in minute] + minute
        from tests.helpers.rtsp_minute import MINUTE, Background
        from tests.suite_report import missing

        if not missing("ffmpeg", "ffprobe"):
            reading = Background(Path(tempfile.mkdtemp(prefix="camserver-rtsp-minute-")))
            config.stash[MINUTE] = reading
            config.add_cleanup(reading.stop)
    smoke = [i for i in items if i.get_closest_marker("background_smoke")]
    if not smoke:
        return
    items[:] = [i for i in items if i not in smoke] + smoke
    from tests.helpers.bench_smoke import SMOKE, BenchSmoke
    from tests.suite_report import missing

    if missing("motion", "redis-server"):
        return  # the test is skipped (or fails, strict) for its missing need
    out = Path(tempfile.mkdtemp(prefix="camserver-bench-smoke-"))
    runner = BenchSmoke(out)
    config.stash[SMOKE] = runner
    config.add_cleanup(runner.stop)


# Fast failure detection so fault tests finish in seconds, not minutes.
FAST = {
    "connect_timeout": 2.0,
    "read_timeout": 1.5,
    "frame_timeout": 3.0,
    "backoff_initial": 0.2,
    "backoff_max": 1.0,
    "healthy_after": 2.0,
    # Network safety: discovery never leaves loopback in tests.
    "discovery_interfaces": "lo",
    "discovery_listen_port": 0,
    # Many servers start at once (the cluster's nodes, spawned processes): RTSP only where
    # a test asks for it, on a free port.
    "rtsp_port": 0,
    "onvif_discovery": False,
    "esphome_discovery": False,
}


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Server:
    url: str
    client: httpx.AsyncClient
    settings: Settings
    app: CamServerApp
    sims: list[SimCamera] = field(default_factory=list)

    @property
    def state(self) -> Runtime:
        """The running server's runtime (manager, discovery, realtime, ...)."""
        assert self.app.runtime is not None, "the server is not running"
        return self.app.runtime

    @property
    def discovery(self) -> DiscoveryService:
        assert self.state.discovery is not None, self.state.discovery_off
        return self.state.discovery

    async def add_camera(self, name: str, cam: SimCamera, **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/streams", json={"name": name, "host": cam.address, **extra}
        )
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def status(self, name: str) -> dict[str, Any]:
        resp = await self.client.get(f"/api/streams/{name}/status")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def wait_state(self, name: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal last
            last = await self.status(name)
            return bool(last["state"] == state)

        try:
            await wait_for(check, timeout, what=f"{name} to be {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status {last}") from None
        return last


async def start_server(
    stack: AsyncExitStack, settings: Settings, port: int = 0, **uvicorn_overrides: Any
) -> Server:
    """A real uvicorn serving camserver on a loopback port (free unless given), in this
    event loop; ``uvicorn_overrides`` replace options of ``uvicorn_options``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    app = create_app(settings)
    options = uvicorn_options(app) | uvicorn_overrides
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def shutdown() -> None:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        finally:
            sock.close()

    stack.push_async_callback(shutdown)
    await wait_for(lambda: server.started or task.done(), 10, what="uvicorn to start")
    if task.done():
        task.result()
    url = f"http://127.0.0.1:{port}"
    client = await stack.enter_async_context(
        # X-Requested-With: as the dashboard sends (a POST without a body needs it).
        httpx.AsyncClient(
            base_url=url,
            timeout=10,
            trust_env=False,
            headers={"X-Requested-With": "camserver-tests"},
        )
    )
    return Server(url, client, settings, app)


CameraFactory = Callable[..., Awaitable[SimCamera]]


@pytest.fixture
async def camera() -> AsyncIterator[CameraFactory]:
    """``await camera(name, **kwargs)`` starts a simulated camera, stopped at teardown."""
    async with AsyncExitStack() as stack:

        async def make(name: str = "cam", **kwargs: Any) -> SimCamera:
            kwargs.setdefault("framesize", 6)  # QVGA: light on CPU, still real JPEGs
            kwargs.setdefault("capture_delay", 0.02)
            return await stack.enter_async_context(SimCamera(name, **kwargs))

        yield make


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Cameras in a test answer probes on a port of the test's own.
    return Settings(
        db=tmp_path / "camserver.db",
        discovery_port=free_udp_port(),
        **FAST,  # type: ignore[arg-type]
    )


@pytest.fixture
async def locked(settings: Settings, camera: CameraFactory) -> AsyncIterator[Server]:
    """A server that wants tokens (``tests.helpers.auth``: ADMIN, VIEW)."""
    tokens = {"api_token": SecretStr(ADMIN), "view_token": SecretStr(VIEW)}
    async with AsyncExitStack() as stack:
        yield await start_server(stack, settings.model_copy(update=tokens))


@pytest.fixture
async def server(settings: Settings, camera: CameraFactory) -> AsyncIterator[Server]:
    # Depends on ``camera`` so that cameras stop after the server, not under it.
    async with AsyncExitStack() as stack:
        yield await start_server(stack, settings)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("CAMSERVER_TEST_OUTPUT", "test-output"))
    path = root / str(request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    url: str
    log: Path
    respawn: Callable[[], None] | None = None
    """Start again on another free port (the one picked was taken meanwhile)."""

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Run ``camserver serve`` as a real process (by the test's Python unless ``python=``
    names another, in ``cwd=`` if given); stopped at teardown."""
    procs: list[Proc] = []

    def start(
        args: tuple[str, ...],
        port: int,
        env: dict[str, str] | None,
        log: Path,
        python: str,
        cwd: Path | None,
    ) -> Proc:
        with log.open("w") as fh:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [python, "-m", "camserver", "serve", "--port", str(port), *args],
                cwd=cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **os.environ,
                    **{f"CAMSERVER_{k.upper()}": str(v) for k, v in FAST.items()},
                    **(env or {}),
                },
            )
        return Proc(proc, f"http://127.0.0.1:{port}", log)

    def run(
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> Proc:
        log = tmp_path / f"serve-{len(procs)}.log"
        p = start(args, port or free_port(), env, log, python, cwd)
        if port is None:  # a free port can be taken before the server binds it

            def respawn() -> None:
                fresh = start(args, free_port(), env, log, python, cwd)
                p.proc, p.url = fresh.proc, fresh.url

            p.respawn = respawn
        procs.append(p)
        return p

    yield run
    # SIGTERM first: a clean exit writes the process's coverage data (SIGKILL loses it).
    for p in procs:
        if p.proc.poll() is None:
            p.proc.terminate()
    for p in procs:
        try:
            p.proc.wait(5)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(10)


async def wait_healthy(p: Proc, timeout: float = 20.0) -> None:
    async with httpx.AsyncClient(trust_env=False) as c:

        async def ok() -> bool:
            if p.proc.poll() is not None:
                if p.respawn is not None and "address already in use" in p.output():
                    p.respawn()
                    return False
                raise AssertionError(f"server exited {p.proc.returncode}: {p.output()}")
            try:
                return (await c.get(p.url + "/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ok, timeout, 0.1, what="/healthz")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()
