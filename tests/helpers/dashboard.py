"""The dashboard in Chromium (Playwright): open a page with its console collected, read a
tile's frame.
"""

from __future__ import annotations

from playwright.async_api import Browser, ConsoleMessage, Page, expect

from tests.conftest import Server


class Console:
    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))

    def _message(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"{msg.type}: {msg.text}")


async def open_page(
    browser: Browser, server: Server, width: int = 1280, height: int = 900
) -> tuple[Page, Console]:
    page = await browser.new_page(viewport={"width": width, "height": height})
    console = Console(page)
    await page.goto(server.url + "/")
    await expect(page.locator("#banner")).to_be_hidden()
    return page, console


async def tile_frame_seq(page: Page, name: str) -> int:
    seq = await page.locator(f'.tile[data-name="{name}"]').get_attribute("data-seq")
    return int(seq or 0)
