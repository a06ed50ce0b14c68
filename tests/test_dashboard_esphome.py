"""ESPHome cameras in the dashboard, in real headless Chromium (issue 30): added from the
form with its key, its device and entities on its page, its key changed there (a wrong one
is said, the right one streams again); a discovered encrypted device added with its key
from the list."""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import Browser, expect

from camserver.schema import DiscoveredCamera
from tests.conftest import CHROMIUM, CameraFactory, Server, wait_for
from tests.helpers.dashboard import open_page
from tests.helpers.esphome import KEY, OTHER_KEY

pytestmark = pytest.mark.requires(CHROMIUM)


async def test_an_esphome_camera_is_added_shown_and_rekeyed_from_the_dashboard(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("hall-cam", fps=10, framesize=5)
    api = await cam.serve_esphome(0, key=KEY)
    page, console = await open_page(browser, server)
    await page.get_by_label("Name").fill("hall")
    await page.get_by_label("Camera address or MJPEG URL").fill(f"127.0.0.1:{api.port}")
    await expect(page.get_by_label("Encryption key")).to_be_hidden()
    await page.get_by_label("ESPHome camera (native API)").check()
    await page.get_by_label("Encryption key").fill(KEY)
    await page.get_by_role("button", name="Add").click()

    async def added() -> bool:
        return (await server.client.get("/api/streams/hall")).status_code == 200

    await wait_for(added, 10, what="the stream added from the form")
    await server.wait_state("hall", "streaming", 15)
    stream = (await server.client.get("/api/streams/hall")).json()
    assert (stream["source"], stream["port"], stream["has_encryption_key"]) == (
        "esphome",
        api.port,
        True,
    )

    await page.goto(f"{server.url}/#/streams/hall")
    await expect(page.locator("#cam-title")).to_have_text("hall")
    await expect(page.locator("#esphome-panel")).to_be_visible()
    await expect(page.locator("#edit-panel")).to_be_hidden()
    stats = page.locator("#cam-stats")
    await expect(stats.locator('dd[data-key="Device"]')).to_have_text(
        "hall-cam · esp32cam · Espressif"
    )
    await expect(stats.locator('dd[data-key="API"]')).to_have_text(
        f"127.0.0.1:{api.port} (Noise-encrypted)"
    )
    await expect(stats.locator('dd[data-key="Flash (light)"]')).to_have_text("off")
    await expect(stats.locator('dd[data-key="Status LED (switch)"]')).to_have_text("on")
    await expect(page.locator("#settings-why")).to_contain_text("in its YAML")
    # A wrong key from the page: said; the right one: streaming again.
    await page.get_by_label("New key (base64)").fill(OTHER_KEY)
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#err-esphome")).to_have_text("Saved.")
    await expect(stats.locator('dd[data-key="Last error"]')).to_contain_text(
        "refused the encryption key", timeout=15000
    )
    await page.get_by_label("New key (base64)").fill(KEY)
    await page.get_by_role("button", name="Save").click()
    await server.wait_state("hall", "streaming", 15)
    assert KEY not in await page.content()
    assert console.problems == []


async def test_a_discovered_encrypted_esphome_device_is_added_with_its_key(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("porch-cam", fps=10, framesize=5)
    api = await cam.serve_esphome(0, key=KEY)
    now = time.time()
    # As the mDNS browser lists an encrypted device (tests/test_esphome_mdns.py finds one
    # over real mDNS in network namespaces).
    server.discovery.found(
        DiscoveredCamera(
            name="Porch Cam",
            ip="127.0.0.1",
            port=api.port,
            stream_port=api.port,
            first_seen=now,
            last_seen=now,
            legacy=False,
            kind="esphome",
            encrypted=True,
            model="esp32cam",
        )
    )
    page, console = await open_page(browser, server)
    row = page.locator('#found li[data-name="Porch Cam"]')
    await expect(row).to_contain_text(re.compile(r"ESPHome \(encrypted\)"))
    await row.get_by_label("Encryption key of Porch Cam").fill(KEY)
    await row.get_by_role("button", name="Add discovered camera Porch Cam").click()

    async def added() -> bool:
        return (await server.client.get("/api/streams/porch-cam")).status_code == 200

    await wait_for(added, 10, what="the discovered camera added")
    await server.wait_state("porch-cam", "streaming", 15)
    await expect(row.get_by_role("button")).to_have_text("Added")
    assert console.problems == []
