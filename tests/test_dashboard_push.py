"""A push camera in the dashboard, in real headless Chromium (issue 28, Must show 5): added
from the page (its key shown once), its settings changed from its page reach the camera
(the simulator's framesize changes), and a new key from its page disconnects the old."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import CHROMIUM, CameraFactory, Server, wait_for
from tests.helpers.dashboard import open_page

pytestmark = pytest.mark.requires(CHROMIUM)


async def test_a_push_camera_is_added_and_set_from_the_dashboard(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    page, console = await open_page(browser, server)
    await page.get_by_label("Name").fill("garage")
    await page.get_by_label("The camera pushes to camserver").check()
    await page.get_by_role("button", name="Add").click()
    created = page.locator("#push-created")
    await expect(created).to_be_visible()
    key = await created.locator('dd[data-key="Key"]').text_content()
    ws_url = await created.locator('dd[data-key="WebSocket"]').text_content()
    assert key
    assert ws_url == f"{server.url.replace('http', 'ws')}/api/streams/garage/push"
    cam = await camera("garage-cam", fps=10)
    cam.push_to(ws_url, key)
    assert cam.pusher is not None
    await server.wait_state("garage", "streaming", 10)

    await page.goto(f"{server.url}/#/streams/garage")
    await expect(page.locator("#cam-title")).to_have_text("garage")
    await expect(page.locator("#push-panel")).to_be_visible()
    await expect(page.locator("#edit-panel")).to_be_hidden()
    await expect(page.locator('#cam-stats dd[data-key="Pushed from"]')).to_have_text(
        re.compile(r"127\.0\.0\.1:\d+")
    )
    await expect(page.locator('#cam-stats dd[data-key="Telemetry"]')).to_contain_text("rssi -67")
    # The camera's settings, as it reported them, changed from the page: they reach it.
    select = page.get_by_label("Resolution")
    await expect(select).to_have_value(str(cam.settings["framesize"]))
    await select.select_option("8")
    await wait_for(lambda: cam.settings["framesize"] == 8, 5, what="CIF on the camera")
    await expect(page.locator("#settings-state")).to_have_text(re.compile("set to CIF"))
    await page.get_by_label("JPEG quality (lower is finer)").fill("20")
    await wait_for(lambda: cam.settings["quality"] == 20, 5, what="quality 20 on the camera")

    # A new key from the page: shown once; the camera with the old one is disconnected.
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="New push key").click()
    new = page.locator('#push-new dd[data-key="New key (shown only now)"]')
    await expect(new).to_have_text(re.compile(r"\S{20,}"))
    assert await new.text_content() != key
    await wait_for(lambda: cam.pusher.stats.push_closes >= 1, 5, what="the old key's end")
    await wait_for(lambda: cam.pusher.stats.push_refused >= 1, 10, what="the old key refused")
    await server.wait_state("garage", "waiting", 10)
    assert console.problems == []
