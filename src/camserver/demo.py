"""``camserver serve --demo N``: simulated cameras in the server's process, each with a
stream that reads it, so a fresh install shows live video, motion and recording without
hardware. CLI wiring: the only server-side module (with ``camserver.cli``) that imports the
simulator."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from camserver.schema import MotionSettings, RecordingSettings, StreamConfig
from camserver.sim.camera import SimCamera

__all__ = ["demo_cameras", "start_demo"]

log = logging.getLogger(__name__)


def demo_cameras(count: int) -> Callable[[AsyncExitStack], Awaitable[list[StreamConfig]]]:
    """What the runtime calls at start (``Runtime.running(cameras=...)``)."""

    async def start(stack: AsyncExitStack) -> list[StreamConfig]:
        return await start_demo(stack, count)

    return start


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
