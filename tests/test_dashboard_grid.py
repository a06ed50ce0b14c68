"""The dashboard's grid in real headless Chromium: columns, hidden cameras, order by drag
and by keys (all remembered across a reload), and the live motion indicator."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import CHROMIUM, CameraFactory, Server
from tests.test_dashboard import open_page

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
