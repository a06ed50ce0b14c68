"""What goes wrong with ESPHome cameras (issue 30, Must show 2 and 4): each fault is said
in ``last_error`` while the stream retries, each stream comes back by itself once its
device is mended, and the healthy cameras beside them never notice; an ``on_demand``
camera asks for no image while nobody watches."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import AsyncExitStack
from typing import Any

from camserver.config import Settings
from camserver.sim.camera import SimCamera
from camserver.sim.esphome import SimEsphome
from tests.conftest import CameraFactory, Server, start_server, wait_for
from tests.helpers.esphome import KEY, OTHER_KEY, add_esphome
from tests.helpers.socketio import Viewer

FPS = 10

# Stream → (what its device does wrong, the words its last_error says).
FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "wrongkey": ({}, "refused the encryption key"),
    "nocam": ({"no_camera": True}, "no camera entity"),
    "refused": ({"refuse": True}, "refused the connection"),
    "drop": ({"drop_every": 8}, "broke mid-stream"),
    "garbage": ({"garbage_every": 8}, "not ESPHome's API"),
}


async def _last_error_says(server: Server, name: str, words: str) -> bool:
    status = await server.status(name)
    return words in (status["last_error"] or "")


async def test_each_fault_is_said_and_mends_itself_and_others_never_notice(
    settings: Settings, camera: CameraFactory
) -> None:
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        # The healthy ones: an ESPHome camera and an HTTP camera, watched throughout.
        good = await camera("good", fps=FPS, framesize=5)
        good_api = await good.serve_esphome(0, key=KEY)
        await add_esphome(server, "good", good_api.port, KEY)
        http = await camera("http", fps=FPS, framesize=5)
        await server.add_camera("http", http)
        for name in ("good", "http"):
            await server.wait_state(name, "streaming", 15)
        began = time.monotonic()
        counts = {n: (await server.status(n))["frames"] for n in ("good", "http")}
        # The faulty ones.
        devices: dict[str, tuple[SimCamera, SimEsphome]] = {}
        for name, (faults, _) in FAULTS.items():
            cam = await camera(name, fps=FPS, framesize=5)
            await cam.set_faults(**faults)
            devices[name] = (cam, await cam.serve_esphome(0, key=KEY))
            # (A refusing device has no port open yet: the one it will open.)
            port = devices[name][1].port or _free_port()
            devices[name][1].port = port
            await add_esphome(server, name, port, OTHER_KEY if name == "wrongkey" else KEY)
        silent = socket.socket()  # accepts, never answers: the device hung at boot
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_port = silent.getsockname()[1]
        await add_esphome(server, "silent", silent_port, KEY)
        await add_esphome(server, "stall", (await _stalling(camera)).port, KEY)
        await add_esphome(server, "nowhere", 6053, KEY, host="nowhere.invalid")
        locked = await camera("locked", fps=FPS, framesize=5)  # old firmware's API password
        locked_api = await locked.serve_esphome(0, password="right")
        await add_esphome(server, "locked", locked_api.port, password="wrong")
        expected = {name: words for name, (_, words) in FAULTS.items()}
        expected |= {
            "silent": "did not accept a connection within",
            "nowhere": "cannot resolve",
            "stall": "no whole JPEG frame for 3 s",
            "locked": "refused the API password",
        }
        for name, words in expected.items():
            await wait_for(
                lambda n=name, w=words: _last_error_says(server, n, w),
                20,
                what=f"{name}'s last_error to say {words!r}",
            )
        for name in ("wrongkey", "nocam", "refused", "silent", "nowhere", "locked"):
            assert (await server.status(name))["state"] in ("retrying", "connecting"), name
            assert (await server.status(name))["frames"] == 0, name
        # Mended: each device is right again, and its stream comes back by itself.
        devices["wrongkey"][1].set_key(OTHER_KEY)
        for name in ("nocam", "refused", "drop", "garbage"):
            await devices[name][0].set_faults(
                no_camera=False, refuse=False, drop_every=0, garbage_every=0
            )
        locked_api.password = "wrong"
        silent.close()
        late = await camera("silent", fps=FPS, framesize=5)
        await late.serve_esphome(silent_port, key=KEY)
        mended = ("wrongkey", "nocam", "refused", "drop", "garbage", "silent", "stall", "locked")
        for name in mended:
            await server.wait_state(name, "streaming", 20)
            frames = (await server.status(name))["frames"]
            await wait_for(
                lambda n=name, f=frames: _more_frames(server, n, f),
                10,
                what=f"{name}'s frames",
            )
        # The healthy ones never noticed: one connection each, every frame at their rate.
        took = time.monotonic() - began
        for name in ("good", "http"):
            status = await server.status(name)
            assert status["upstream_connects"] == 1, (name, status)
            assert status["last_error"] is None, (name, status)
            got = status["frames"] - counts[name]
            assert got >= FPS * took * 0.9, (name, got, took)
        assert good_api.max_clients == 1


async def _more_frames(server: Server, name: str, than: int) -> bool:
    return int((await server.status(name))["frames"]) > than + 5


async def _stalling(camera: CameraFactory) -> SimEsphome:
    """A device that streams, then stops sending anything for 6 s (once)."""
    cam = await camera("stall", fps=FPS, framesize=5)
    api = await cam.serve_esphome(0, key=KEY)

    async def stall_soon() -> None:
        await wait_for(lambda: api.images_sent >= 5, 20, what="the stall camera's images")
        await cam.set_faults(stall_seconds=6)

    task = asyncio.create_task(stall_soon())
    _KEEP.add(task)
    task.add_done_callback(_KEEP.discard)
    return api


_KEEP: set[asyncio.Task[None]] = set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_on_demand_esphome_camera_asks_for_nothing_while_nobody_watches(
    settings: Settings, camera: CameraFactory
) -> None:
    """Must show 4: no image requested while nobody watches (counted at the device)."""
    settings = settings.model_copy(update={"on_demand_grace": 1.0})
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        cam = await camera("door", fps=FPS, framesize=5)
        api = await cam.serve_esphome(0)
        await add_esphome(server, "door", api.port, on_demand=True)
        await asyncio.sleep(3)
        assert (api.stream_requests, api.single_requests, api.connections) == (0, 0, 0)
        viewer = Viewer()
        await viewer.sio.connect(server.url, transports=["websocket"])
        stack.push_async_callback(viewer.sio.disconnect)
        assert (await viewer.join("door"))["ok"]
        await wait_for(lambda: len(viewer.frames) >= FPS, 15, what="a second of frames")
        assert api.stream_requests >= 1
        await viewer.sio.disconnect()
        # After the grace, the connection is closed and nothing more is asked for.
        await wait_for(lambda: api.clients == 0, 10, what="the connection closed")
        asked, sent = api.stream_requests, api.images_sent
        await asyncio.sleep(3)
        assert (api.stream_requests, api.images_sent, api.clients) == (asked, sent, 0)
        assert (await server.status("door"))["state"] in ("idle", "stopped")
