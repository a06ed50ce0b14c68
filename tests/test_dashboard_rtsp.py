"""The camera page's RTSP URL in real headless Chromium (issue 29): shown, copied, and
what it names plays in ffprobe."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack

import pytest
from playwright.async_api import Browser, expect

from camserver.config import Settings
from tests.conftest import CHROMIUM, CameraFactory, free_port, start_server
from tests.helpers.dashboard import open_page

pytestmark = pytest.mark.requires(CHROMIUM, "ffprobe")


async def test_the_camera_page_gives_its_rtsp_url(
    settings: Settings, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("porch", fps=10, framesize=10)
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"rtsp_port": free_port()}))
        await server.add_camera("porch", cam)
        await server.wait_state("porch", "streaming")
        page, console = await open_page(browser, server)
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await page.goto(f"{server.url}/#/streams/porch")
        url = page.get_by_label("RTSP URL")
        want = f"rtsp://127.0.0.1:{server.settings.rtsp_port}/porch"
        await expect(url).to_have_value(want)
        await page.get_by_role("button", name="Copy").click()
        await expect(page.locator("#rtsp-copied")).to_have_text(re.compile("Copied|Selected"))
        proc = await asyncio.create_subprocess_exec(
            *("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height"),
            *("-of", "csv=p=0", await url.input_value()),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert out.decode().strip() == "mjpeg,640,480"
        assert console.problems == []
