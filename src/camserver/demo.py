"""``camserver serve --demo N``: simulated cameras in the server's process, each with a
stream that reads it, so a fresh install shows live video, motion and recording without
hardware; ``demo-push``, a camera that pushes its pictures to the server over a
WebSocket (docs/push.md) with telemetry, as a camera behind NAT would; and
``demo-esphome``, an ESPHome camera on loopback, Noise-encrypted, read over its native API
(docs/esphome.md). CLI wiring: the only server-side module (with ``camserver.cli``) that
imports the simulator."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from camserver.schema import MotionSettings, RecordingSettings, StreamConfig
from camserver.sim.camera import SimCamera
from camserver.tokens import hash_token, new_token

__all__ = ["demo_cameras", "start_demo", "start_esphome", "start_pusher"]

log = logging.getLogger(__name__)


def demo_cameras(
    count: int, server_url: str | None = None
) -> Callable[[AsyncExitStack], Awaitable[list[StreamConfig]]]:
    """What the runtime calls at start (``Runtime.running(cameras=...)``); with
    ``server_url`` (where the server listens), a pushing camera too."""

    async def start(stack: AsyncExitStack) -> list[StreamConfig]:
        configs = await start_demo(stack, count)
        if server_url is not None:
            configs.append(await start_pusher(stack, server_url))
        configs.append(await start_esphome(stack))
        return configs

    return start


async def start_pusher(stack: AsyncExitStack, server_url: str) -> StreamConfig:
    """``demo-push``: a simulated camera that pushes to the server at ``server_url`` over a
    WebSocket (it connects once the server listens, and again after any restart: a new
    key is made at every start)."""
    key = new_token()
    cam = await stack.enter_async_context(SimCamera("demo-push", fps=10, framesize=8))
    ws = server_url.replace("http", "ws", 1).rstrip("/") + "/api/streams/demo-push/push"
    cam.push_to(ws, key)
    log.info("demo camera demo-push pushes to %s", ws)
    return StreamConfig(
        name="demo-push", source="push", stream_url="", push_key_hash=hash_token(key)
    )


async def start_esphome(stack: AsyncExitStack) -> StreamConfig:
    """``demo-esphome``: a simulated ESPHome camera (native API on a free loopback port,
    Noise with a key made at every start; its flash light and switch show in its status)."""
    key = base64.b64encode(os.urandom(32)).decode()
    cam = await stack.enter_async_context(SimCamera("demo-esphome", fps=10, framesize=8))
    api = await cam.serve_esphome(0, key=key)
    log.info("demo camera demo-esphome: ESPHome API on 127.0.0.1:%d (Noise)", api.port)
    return StreamConfig(
        name="demo-esphome",
        source="esphome",
        host="127.0.0.1",
        port=api.port,
        stream_url="",
        encryption_key=key,
    )


async def start_demo(stack: AsyncExitStack, count: int) -> list[StreamConfig]:
    """Start ``count`` simulated cameras in-process; their stream configurations."""
    configs = []
    for i in range(1, count + 1):
        # demo-1 watches a still scene that an object crosses every 15 s, with motion
        # detection on; the others show the moving test pattern.
        scene = {"moving_object": True, "object_period": 15.0} if i == 1 else None
        cam = await stack.enter_async_context(SimCamera(f"demo-{i}", scene=scene))
        cfg = StreamConfig.for_host(f"demo-{i}", cam.address)
        # The demo shows recording too, within bounds: a day, 200 MB per camera.
        cfg.recording = RecordingSettings(
            mode="continuous", timelapse_interval=10, max_age_hours=24, max_bytes=200_000_000
        )
        cfg.motion = MotionSettings(enabled=scene is not None)
        configs.append(cfg)
        log.info("demo camera demo-%d on http://%s", i, cam.address)
    return configs
