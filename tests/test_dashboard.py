"""The dashboard in real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Request, Route, expect

from camserver.config import Settings
from tests.conftest import CHROMIUM, CameraFactory, Server, start_server, wait_for
from tests.helpers.dashboard import Console, open_page, tile_frame_seq

pytestmark = pytest.mark.requires(CHROMIUM)


async def test_add_camera_and_watch_it_live(
    server: Server, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    cam = await camera("c1", fps=15)
    page, console = await open_page(browser, server)
    await expect(page.locator("#empty")).to_be_visible()
    await page.get_by_label("Name").fill("porch")
    await page.get_by_label("Camera address or MJPEG URL").fill(cam.address)
    await page.get_by_role("button", name="Add", exact=True).click()

    tile = page.locator('.tile[data-name="porch"]')
    await expect(tile.locator(".badge")).to_have_text("streaming", timeout=10_000)
    img = tile.locator("img.picture")
    await expect(img).to_have_attribute("src", re.compile(r"^blob:"))
    await wait_for(lambda: _decoded(img), 10, what="a decoded picture")
    first = await img.screenshot()
    seq1 = await tile_frame_seq(page, "porch")
    await page.wait_for_timeout(700)
    second = await img.screenshot()
    assert await tile_frame_seq(page, "porch") > seq1
    assert first != second, "the picture did not change"
    assert await img.get_attribute("alt") == "Live picture from camera porch"
    await expect(tile.locator(".stats")).to_contain_text("fps")
    await page.screenshot(path=str(output_dir / "grid.png"), full_page=True)
    assert (output_dir / "grid.png").stat().st_size > 10_000
    # Object URLs are revoked as frames replace each other: one live URL per tile.
    assert await page.evaluate("document.querySelectorAll('img[src^=\"blob:\"]').length") == 1
    assert console.problems == []


async def _decoded(img: Any) -> bool:
    width: int = await img.evaluate("el => el.naturalWidth")
    return width > 0


async def test_validation_errors_are_shown_next_to_the_fields(
    server: Server, browser: Browser
) -> None:
    page, console = await open_page(browser, server)
    await page.get_by_label("Name").fill("Bad Name")
    await page.get_by_label("Camera address or MJPEG URL").fill("ftp://x/y")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator("#err-name")).to_contain_text("pattern")
    await expect(page.locator("#err-source")).to_contain_text("http://")
    await expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Name").fill("ok")
    await page.get_by_label("Camera address or MJPEG URL").fill("192.0.2.1:99999")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator("#err-source")).to_contain_text("port")
    await expect(page.locator("#err-name")).to_have_text("")
    # A 422 answer logs a failed request in the console; nothing else may.
    assert [p for p in console.problems if "422" not in p] == []


async def test_stop_start_remove_and_snapshot(
    server: Server, camera: CameraFactory, browser: Browser, tmp_path: Path
) -> None:
    cam = await camera("c1", fps=15)
    await server.add_camera("yard", cam)
    page, console = await open_page(browser, server)
    tile = page.locator('.tile[data-name="yard"]')
    badge = tile.locator(".badge")
    await expect(badge).to_have_text("streaming", timeout=10_000)

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Snapshot yard").click()
    download = await info.value
    path = tmp_path / "snap.jpg"
    await download.save_as(path)
    assert path.read_bytes()[:2] == b"\xff\xd8"

    await page.get_by_role("button", name="Stop yard").click()
    await expect(badge).to_have_text("stopped")
    assert (await server.status("yard"))["state"] == "stopped"
    await page.get_by_role("button", name="Start yard").click()
    await expect(badge).to_have_text("streaming", timeout=10_000)

    await page.get_by_role("button", name="Full screen yard").click()
    await expect(tile).to_have_class(re.compile(r"\bfull\b"))
    await page.keyboard.press("Escape")
    await expect(tile).not_to_have_class(re.compile(r"\bfull\b"))

    page.once("dialog", lambda d: d.dismiss())  # "Cancel" keeps the camera
    await page.get_by_role("button", name="Remove yard").click()
    await expect(tile).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Remove yard").click()
    await expect(tile).to_have_count(0)
    assert (await server.client.get("/api/streams/yard")).status_code == 404
    assert console.problems == []


async def test_discovered_camera_added_by_click(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    page, console = await open_page(browser, server)
    listen = server.discovery.listen_port
    await camera("garden", announce_to=("127.255.255.255", listen), fps=15)
    item = page.locator('#found li[data-name="garden"]')
    await expect(item).to_be_visible(timeout=15_000)  # pushed live by camera_discovered
    await page.get_by_role("button", name="Add discovered camera garden").click()
    tile = page.locator('.tile[data-name="garden"]')
    await expect(tile.locator(".badge")).to_have_text("streaming", timeout=10_000)
    await expect(item.get_by_role("button")).to_have_text("Added")

    # Scan finds a camera that never announces itself.
    await camera("shy", discovery_port=server.settings.discovery_port)
    await page.get_by_role("button", name="Scan").click()
    await expect(page.locator('#found li[data-name="shy"]')).to_be_visible(timeout=5_000)
    await expect(page.locator("#scan-state")).to_contain_text("answered")
    assert console.problems == []


async def test_an_answer_that_comes_late_does_not_undo_a_newer_one(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    # The page asks for the discovered cameras at load, on connect and on each
    # camera_discovered; on a busy server the first answer can come last. Here it is held
    # back (fetched before the camera announced itself) until a newer one shows the camera.
    page = await browser.new_page()
    console = Console(page)
    fetched, release = asyncio.Event(), asyncio.Event()
    held: list[Request] = []

    async def hold_the_first(route: Route) -> None:
        if fetched.is_set():
            await route.continue_()
            return
        held.append(route.request)
        response = await route.fetch()  # no camera yet
        fetched.set()
        await release.wait()
        await route.fulfill(response=response)

    await page.route("**/api/discovery", hold_the_first)
    await page.goto(server.url + "/")
    await asyncio.wait_for(fetched.wait(), 10)
    listen = server.discovery.listen_port
    await camera("garden", announce_to=("127.255.255.255", listen), fps=15)
    item = page.locator('#found li[data-name="garden"]')
    await expect(item).to_be_visible(timeout=15_000)
    # (The held answer, not a newer request's that may finish at the same moment.)
    async with page.expect_response(lambda r: r.request == held[0]) as stale:
        release.set()
    assert await (await stale.value).json() == []
    await page.evaluate("() => new Promise((done) => setTimeout(done, 300))")
    await expect(item).to_be_visible(timeout=1_000)
    assert console.problems == []


async def test_phone_width_has_no_horizontal_scroll_and_offscreen_tiles_do_not_watch(
    server: Server, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    for i in range(3):
        await server.add_camera(f"cam{i}", await camera(f"cam{i}", fps=10))
    page, console = await open_page(browser, server, width=390, height=700)
    for i in range(3):
        await expect(page.locator(f'.tile[data-name="cam{i}"] .badge')).to_have_text(
            "streaming", timeout=10_000
        )
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    await page.screenshot(path=str(output_dir / "phone.png"), full_page=True)

    # One column: the first tile is visible and watched, the last is below the fold.
    await wait_for(lambda: _viewers(server, "cam0", 1), 5, what="cam0 watched")
    assert (await server.status("cam2"))["viewers"] == 0
    await page.locator('.tile[data-name="cam2"]').scroll_into_view_if_needed()
    await wait_for(lambda: _viewers(server, "cam2", 1), 5, what="cam2 watched after scroll")
    await wait_for(lambda: _viewers(server, "cam0", 0), 5, what="cam0 left when scrolled away")
    assert console.problems == []


async def _viewers(server: Server, name: str, n: int) -> bool:
    return bool((await server.status(name))["viewers"] == n)


async def test_keyboard_and_labels(server: Server, browser: Browser) -> None:
    page, _ = await open_page(browser, server)
    await page.keyboard.press("Tab")
    for _ in range(6):
        focused = await page.evaluate("document.activeElement && document.activeElement.id")
        if focused == "add-name":
            break
        await page.keyboard.press("Tab")
    assert focused == "add-name"
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input, button')].filter(el =>
            !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.textContent.trim()).length"""
    )
    assert unlabelled == 0


async def test_banner_while_disconnected_and_recovery_after_restart(
    settings: Settings, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("c1", fps=15)
    stack = AsyncExitStack()
    server = await start_server(stack, settings)
    port = int(server.url.rsplit(":", 1)[1])
    await server.add_camera("porch", cam)
    page, _ = await open_page(browser, server)
    tile = page.locator('.tile[data-name="porch"]')
    await expect(tile.locator(".badge")).to_have_text("streaming", timeout=10_000)

    await stack.aclose()  # the server goes away
    await expect(page.locator("#banner")).to_be_visible(timeout=10_000)

    async with AsyncExitStack() as stack2:
        await start_server(stack2, settings, port=port)  # and comes back
        await expect(page.locator("#banner")).to_be_hidden(timeout=15_000)
        await expect(tile.locator(".badge")).to_have_text("streaming", timeout=10_000)
        seq = await tile_frame_seq(page, "porch")
        await page.wait_for_timeout(500)
        assert await tile_frame_seq(page, "porch") > seq  # frames flow again
        await page.close()


async def test_mjpeg_in_a_plain_img_tag(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("c1", fps=15)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    page, console = await open_page(browser, server)
    await page.set_content(f'<img id="v" alt="live" src="{server.url}/api/streams/c1/mjpeg">')
    img = page.locator("#v")
    await wait_for(lambda: _decoded(img), 10, what="the browser to decode the MJPEG")
    first = await img.screenshot()
    await page.wait_for_timeout(700)
    assert await img.screenshot() != first  # the <img> keeps updating
    assert (await server.status("c1"))["viewers"] == 1
    await page.close()
    await wait_for(lambda: _viewers(server, "c1", 0), 5, what="browser viewer cleaned up")
    assert console.problems == []


async def test_token_prompt_sign_in_and_sign_out(
    settings: Settings, camera: CameraFactory, browser: Browser
) -> None:
    from pydantic import SecretStr

    cam = await camera("c1", fps=15)
    async with AsyncExitStack() as stack:
        server = await start_server(
            stack, settings.model_copy(update={"api_token": SecretStr("s3cret-token-0123")})
        )
        server.client.headers["Authorization"] = "Bearer s3cret-token-0123"
        await server.add_camera("porch", cam)
        page = await browser.new_page()
        await page.goto(server.url + "/")
        dialog = page.locator("#login")
        await expect(dialog).to_be_visible()
        await page.get_by_label("Access token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#err-login")).to_contain_text("refused")
        await page.get_by_label("Access token").fill("s3cret-token-0123")
        await page.get_by_role("button", name="Sign in").click()
        await expect(dialog).to_be_hidden()
        badge = page.locator('.tile[data-name="porch"] .badge')
        await expect(badge).to_have_text("streaming", timeout=10_000)
        await wait_for(lambda: _viewers(server, "porch", 1), 5, what="socket.io viewer")
        # The token is kept: a reload goes straight to the cameras.
        await page.reload()
        await expect(badge).to_have_text("streaming", timeout=10_000)
        await expect(dialog).to_be_hidden()
        await page.get_by_role("button", name="Sign out").click()
        await expect(dialog).to_be_visible()
        assert await page.evaluate("localStorage.getItem('camserver.token')") is None


async def test_api_docs_run_from_the_package_under_the_csp(
    server: Server, browser: Browser
) -> None:
    page = await browser.new_page()
    console = Console(page)
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(server.url) else outside.append(r.url),
    )
    await page.goto(server.url + "/docs")
    await expect(page.get_by_text("/api/streams/{name}/mjpeg").first).to_be_visible(timeout=15_000)
    assert outside == []  # no CDN: everything from camserver itself
    assert console.problems == []  # no Content-Security-Policy violation either
