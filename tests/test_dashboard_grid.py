"""The dashboard's grid in real headless Chromium: columns, hidden cameras, order by drag
and by keys (all remembered across a reload), and the live motion indicator."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import CHROMIUM, CameraFactory, Server
from tests.helpers.dashboard import open_page

pytestmark = pytest.mark.requires(CHROMIUM)


async def columns(page: Page) -> int:
    tracks: str = await page.locator("#grid").evaluate(
        "g => getComputedStyle(g).gridTemplateColumns"
    )
    return len(tracks.split())


async def names(page: Page) -> list[str]:
    found: list[str] = await page.locator(".tile:not([hidden])").evaluate_all(
        "ts => ts.map(t => t.dataset.name)"
    )
    return found


async def test_columns_hiding_and_order_are_chosen_and_remembered(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    for i in range(3):
        await server.add_camera(f"c{i}", await camera(f"c{i}", fps=5))
    page, console = await open_page(browser, server, width=1400)
    await expect(page.locator(".tile")).to_have_count(3)
    assert await names(page) == ["c0", "c1", "c2"]

    await page.get_by_label("Columns").select_option("2")
    assert await columns(page) == 2
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.keyboard.press("3")
    assert await columns(page) == 3
    await page.keyboard.press("1")
    assert await columns(page) == 1
    await page.keyboard.press("4")

    # Reorder: c2's tile dropped on c0's; then c0 moved right with Alt+→.
    await page.locator('.tile[data-name="c2"] .name').drag_to(
        page.locator('.tile[data-name="c0"] .name')
    )
    assert await names(page) == ["c2", "c0", "c1"]
    await page.get_by_role("link", name="Open camera c0").focus()
    await page.keyboard.press("Alt+ArrowRight")
    assert await names(page) == ["c2", "c1", "c0"]

    # Hide one; the others stay.
    await page.get_by_role("button", name="Hide c1").click()
    assert await names(page) == ["c2", "c0"]
    await expect(page.get_by_role("button", name="Show 1 hidden camera")).to_be_visible()

    # All of it is remembered by this browser.
    await page.reload()
    await expect(page.locator(".tile")).to_have_count(3)
    await expect(page.get_by_label("Columns")).to_have_value("4")
    assert await columns(page) == 4
    assert await names(page) == ["c2", "c0"]
    await page.get_by_role("button", name="Show 1 hidden camera").click()
    assert await names(page) == ["c2", "c1", "c0"]
    await expect(page.locator("#show-hidden")).to_be_hidden()
    assert console.problems == []


async def test_a_tile_shows_motion_while_an_event_goes_on(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("porch", fps=10, scene={})
    await server.add_camera("porch", cam, motion={"enabled": True, "cooldown": 1.0})
    page, console = await open_page(browser, server)
    indicator = page.locator('.tile[data-name="porch"] .motion')
    await expect(indicator).to_be_hidden()
    cam.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})
    await expect(indicator).to_be_visible(timeout=5000)
    await expect(indicator).to_have_text("Motion")
    await expect(indicator).to_be_hidden(timeout=10000)
    r = await server.client.get("/api/events")
    assert len(r.json()) == 1
    assert console.problems == []


async def test_an_unreachable_camera_says_why_and_when_it_tries_again(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("gate", fps=5)
    await cam.set_faults(refuse=True)  # the camera's stream port refuses connections
    await server.add_camera("gate", cam)
    page, console = await open_page(browser, server)
    why = page.locator('.tile[data-name="gate"] .why')
    await expect(why).to_be_visible(timeout=10_000)
    await expect(why).to_contain_text("next attempt in")
    await expect(why).to_contain_text("refused")
    await page.goto(server.url + "/#/streams/gate")
    await expect(page.locator('dd[data-key="Next attempt"]')).to_have_text(re.compile(r"\d"))
    await expect(page.locator('dd[data-key="Last error"]')).to_contain_text("(at ")
    await cam.set_faults(refuse=False)
    await expect(page.locator('dd[data-key="State"]')).to_have_text("streaming", timeout=40_000)
    await page.goto(server.url + "/#/")
    await expect(why).to_be_hidden()
    assert [p for p in console.problems if "status of 502" not in p] == []


async def test_sixteen_cameras_hold_their_rate_in_every_tile_and_the_page_stays_light(
    server: Server, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    for i in range(16):
        cam = await camera(f"cam{i:02d}", fps=15, replay=10)
        await server.add_camera(f"cam{i:02d}", cam)
    # Tall enough for all 16 at 4 columns: off-screen tiles do not watch, by design.
    page, console = await open_page(browser, server, width=1920, height=2400)
    await page.get_by_label("Columns").select_option("4")
    await expect(page.locator(".tile")).to_have_count(16)
    for i in range(16):
        await server.wait_state(f"cam{i:02d}", "streaming")
    await page.wait_for_timeout(2000)  # every tile joined and warm
    # Every tile joined with flow control (frame_ack): the page never falls seconds behind.
    realtime = server.state.realtime
    assert [realtime.delivery.acking(f"cam{i:02d}") for i in range(16)] == [1] * 16

    async def seqs() -> dict[str, int]:
        got: dict[str, int] = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.tile')]"
            ".map(t => [t.dataset.name, Number(t.dataset.seq || 0)]))"
        )
        return got

    def hub_seqs() -> dict[str, int]:
        out = {}
        for name in before:
            frame = server.state.manager.hub(name).latest
            out[name] = frame.seq if frame is not None else 0
        return out

    before = await seqs()
    hubs_before = hub_seqs()
    await page.wait_for_timeout(4000)
    after = await seqs()
    hubs_after = hub_seqs()
    # Every tile shows most of the frames its camera sent meanwhile. (A tile whose browser
    # is slow skips frames by design (frame_ack): a CI run with the background bench beside
    # saw one tile at 0.79 and the rest 0.87-1.0; a stuck tile shows none.)
    shown = {n: (after[n] - before[n]) / max(1, hubs_after[n] - hubs_before[n]) for n in after}
    assert min(shown.values()) >= 0.6, shown
    assert statistics.median(shown.values()) >= 0.8, shown
    assert min(hubs_after[n] - hubs_before[n] for n in after) >= 4 * 12, hubs_after
    # No backlog: each tile shows a frame close to the hub's newest.
    for name, seq in after.items():
        latest = server.state.manager.hub(name).latest
        assert latest is not None
        assert latest.seq - seq <= 15, (name, latest.seq, seq)
    await page.screenshot(path=str(output_dir / "grid-16-desktop.png"))
    phone = await browser.new_page(viewport={"width": 390, "height": 844})
    await phone.goto(server.url + "/")
    await expect(phone.locator(".tile")).to_have_count(16)
    await phone.wait_for_timeout(1500)
    await phone.screenshot(path=str(output_dir / "grid-16-phone.png"))
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await phone.close()

    # The page's own weight (HTML, JS, CSS; not the vendored Socket.IO client).
    html = (await server.client.get("/")).text
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert "app.js" in assets
    total = len(html.encode())
    for asset in assets:
        if asset.startswith("vendor/"):
            continue
        r = await server.client.get("/" + asset)
        assert r.status_code == 200, asset
        total += len(r.content)
    assert total < 100_000, total
    assert console.problems == []
