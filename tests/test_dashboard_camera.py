"""The dashboard's camera page (#/streams/<name>) in real headless Chromium, driven as a
person would (click, keys, select) with the effect checked on the simulated camera and
through the API."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from camserver.config import Settings
from camserver.sim.frames import read_send_time
from tests.conftest import CHROMIUM, CameraFactory, Server, start_server, wait_for
from tests.helpers.dashboard import open_page

pytestmark = pytest.mark.requires(CHROMIUM)


async def test_camera_page_shows_live_stats_and_changes_the_camera(
    server: Server, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    cam = await camera("porch", fps=10)
    await server.add_camera("porch", cam)
    await server.wait_state("porch", "streaming")
    page, console = await open_page(browser, server)
    await page.get_by_role("link", name="Open camera porch").click()
    await expect(page).to_have_url(re.compile(r"#/streams/porch$"))
    await expect(page.locator("#cam-title")).to_have_text("porch")
    await expect(page.locator("#home")).to_be_hidden()
    # Live: the big picture follows the camera; the stats follow the stream.
    await expect(page.locator("#camera-page")).to_have_attribute("data-seq", re.compile(r"\d+"))
    first = int(await page.locator("#camera-page").get_attribute("data-seq") or 0)

    async def live() -> bool:
        return await _seq(page) > first + 5

    await wait_for(live, 10, what="live frames on the camera page")
    await expect(page.locator('dd[data-key="State"]')).to_have_text("streaming")
    await expect(page.locator('dd[data-key="Camera connections"]')).to_have_text("1")
    await expect(page.locator('dd[data-key="Viewers"]')).not_to_have_text("0")
    # The page watches; nothing records or detects motion: that is all that needs it.
    await expect(page.locator('dd[data-key="Needed by"]')).to_have_text(
        re.compile(r"^\d+ viewers?$")
    )

    # Camera settings as controls, read from the camera, applied at once.
    quality = page.get_by_label("JPEG quality (lower is finer)")
    await expect(quality).to_have_value(str(cam.settings["quality"]))
    await quality.focus()
    await page.keyboard.press("Home")  # the slider to its finest
    await wait_for(lambda: cam.settings["quality"] == 4, 5, what="quality 4 on the camera")
    await expect(page.locator("#settings-state")).to_have_text(
        "JPEG quality (lower is finer): set to 4."
    )
    await page.keyboard.press("ArrowRight")
    await wait_for(lambda: cam.settings["quality"] == 5, 5, what="quality 5 on the camera")
    await page.get_by_label("Resolution").select_option("6")
    await wait_for(lambda: cam.settings["framesize"] == 6, 5, what="QVGA on the camera")
    await page.get_by_label("Flip").check()
    await wait_for(lambda: cam.settings["vflip"] == 1, 5, what="flipped")
    brightness = page.get_by_label("Brightness")
    await brightness.focus()
    await page.keyboard.press("End")
    await wait_for(lambda: cam.settings["brightness"] == 2, 5, what="brightness 2")
    await page.screenshot(path=str(output_dir / "camera-page-desktop.png"))

    # The stream's own settings: on-demand, and a login (the password is write-only).
    edit = page.locator("#edit-form")
    await edit.get_by_label("Connect only while watched").check()
    await edit.get_by_label("Camera login").fill("admin")
    await edit.get_by_label("Camera password").fill("s3cret")
    await edit.get_by_role("button", name="Save").click()
    await expect(page.locator("#err-edit-form")).to_have_text("Saved.")
    r = await server.client.get("/api/streams/porch")
    body = r.json()
    assert body["on_demand"] is True
    assert body["username"] == "admin"
    assert body["has_password"] is True
    assert "s3cret" not in r.text
    await expect(edit.get_by_label("Camera password")).to_have_value("")
    # A bad address: the error next to the field, nothing changed.
    await edit.get_by_label("Address or MJPEG URL").fill("http://")
    await edit.get_by_role("button", name="Save").click()
    await expect(page.locator("#err-edit-source")).not_to_be_empty()

    # Back to the grid.
    await page.get_by_role("link", name="← All cameras").click()
    await expect(page.locator("#home")).to_be_visible()
    await expect(page.locator(".tile")).to_have_count(1)
    # The 422 answer logs a failed request in the console (Chromium's own line); nothing
    # else may.
    assert [p for p in console.problems if "status of 422" not in p] == []


async def test_a_camera_added_by_url_says_why_it_has_no_settings(
    server: Server, camera: CameraFactory, browser: Browser
) -> None:
    cam = await camera("yard", fps=5)
    r = await server.client.post(
        "/api/streams",
        json={"name": "yard", "stream_url": f"http://127.0.0.1:{cam.stream_port}/stream"},
    )
    assert r.status_code == 201, r.text
    page, console = await open_page(browser, server)
    await page.goto(server.url + "/#/streams/yard")
    await expect(page.locator("#settings-why")).to_contain_text("added by URL")
    await expect(page.locator("#cam-settings select, #cam-settings input")).to_have_count(0)
    await page.goto(server.url + "/#/streams/ghost")
    await expect(page.locator("#settings-why")).to_have_text('There is no camera named "ghost".')
    # Chromium logs the 409 and 404 answers as failed requests; nothing else may be logged.
    assert [p for p in console.problems if not re.search("status of (409|404)", p)] == []


async def _seq(page: Page) -> int:
    return int(await page.locator("#camera-page").get_attribute("data-seq") or 0)


async def test_motion_zones_and_recording_are_set_on_the_camera_page(
    server: Server, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    cam = await camera("porch", fps=10, scene={})
    await server.add_camera("porch", cam)
    page, console = await open_page(browser, server)
    await page.goto(server.url + "/#/streams/porch")
    motion = page.locator("#motion-form")
    await motion.get_by_label("Detect motion").check()
    await expect(page.locator("#motion-state")).to_have_text("Motion detection saved.")
    await motion.get_by_label("Sensitivity threshold (lower is more sensitive)").focus()
    await page.keyboard.press("End")
    await motion.get_by_label("Minimum changed area (%)").fill("2.5")
    await motion.get_by_label("Minimum changed area (%)").press("Tab")
    await expect(page.locator("#motion-state")).to_have_text("Motion detection saved.")

    async def stream() -> dict[str, Any]:
        body: dict[str, Any] = (await server.client.get("/api/streams/porch")).json()
        return body

    async def motion_is(**want: Any) -> bool:
        got = (await stream())["motion"]
        return all(got[k] == v for k, v in want.items())

    await wait_for(lambda: motion_is(enabled=True, threshold=100, min_area=2.5), 5, what="motion")

    # A zone drawn over the live picture: four clicks, then Finish. The camera sends HD
    # (16:9) into the 4:3 view: the zones cover the picture, not the bars around it.
    r = await server.client.put("/api/streams/porch/settings", json={"framesize": 13})
    assert r.json()["ok"], r.text
    await page.wait_for_function(
        "() => document.getElementById('cam-picture').naturalWidth === 1280"
    )
    await page.get_by_role("button", name="Draw a zone").click()
    overlay = page.locator("#zones")  # over the live picture
    view = await page.locator(".cam-view").bounding_box()
    box = await overlay.bounding_box()
    assert box is not None
    assert view is not None
    assert abs(box["width"] - view["width"]) < 2
    assert abs(box["height"] - view["width"] * 720 / 1280) < 2
    corners = [(0.1, 0.2), (0.6, 0.2), (0.6, 0.7), (0.1, 0.7)]
    for x, y in corners:
        await overlay.click(position={"x": x * box["width"], "y": y * box["height"]})
    await page.get_by_role("button", name="Finish the zone").click()
    await expect(page.locator("#motion-state")).to_have_text("Zones saved.")
    (zone,) = (await stream())["motion"]["zones"]
    assert zone["kind"] == "exclude"
    for (x, y), (zx, zy) in zip(corners, zone["points"], strict=True):
        assert abs(x - zx) < 0.01
        assert abs(y - zy) < 0.01
    await expect(page.locator("#zones polygon.zone.exclude")).to_have_count(1)
    await page.screenshot(path=str(output_dir / "camera-page-zones.png"))
    await page.get_by_role("button", name="Remove zone 1").click()
    await wait_for(lambda: motion_is(zones=[]), 5, what="the zone removed")
    await expect(page.locator("#zones polygon")).to_have_count(0)
    # Too few corners: said so, nothing stored.
    await page.get_by_role("button", name="Draw a zone").click()
    await overlay.click(position={"x": 10, "y": 10})
    await page.get_by_role("button", name="Finish the zone").click()
    await expect(page.locator("#motion-state")).to_have_text("A zone needs at least 3 corners.")

    # Recording: mode and retention.
    rec = page.locator("#rec-form")
    await rec.get_by_label("Mode").select_option("events")
    await rec.get_by_label("Keep at most (GB)").fill("1.5")
    await rec.get_by_label("Keep at most (GB)").press("Tab")
    await rec.get_by_label("Keep at most (hours)").fill("48")
    await rec.get_by_label("Keep at most (hours)").press("Tab")

    async def recording_is() -> bool:
        r = (await stream())["recording"]
        return bool(
            r["mode"] == "events" and r["max_bytes"] == 1_500_000_000 and r["max_age_hours"] == 48
        )

    await wait_for(recording_is, 5, what="the recording settings")
    await rec.get_by_label("Keep at most (hours)").fill("")
    await rec.get_by_label("Keep at most (hours)").press("Tab")
    await wait_for(
        lambda: _is(stream, lambda s: s["recording"]["max_age_hours"] is None), 5, what="cleared"
    )
    assert console.problems == []


async def _is(get: Any, check: Any) -> bool:
    return bool(check(await get()))


async def test_recordings_timeline_scrubs_plays_and_lists_events(
    settings: Settings, camera: CameraFactory, browser: Browser, output_dir: Path
) -> None:
    settings = settings.model_copy(update={"recording_segment_seconds": 2.0})
    cam = await camera("porch", fps=10, embed_time=True, scene={})
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings)
        await server.add_camera(
            "porch",
            cam,
            recording={"mode": "continuous"},
            motion={"enabled": True, "cooldown": 1.0},
        )
        await asyncio.sleep(2)
        cam.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})
        await asyncio.sleep(5)
        page, console = await open_page(browser, server)
        await page.goto(server.url + "/#/streams/porch")
        timeline = page.locator("#timeline")
        await expect(timeline).to_have_attribute("data-segments", re.compile(r"[1-9]"))
        await expect(page.locator("#event-list li")).to_have_count(1)
        await expect(page.locator("#event-list img")).to_have_js_property("complete", True)
        # The last minute, then a hover: the recorded frame at that time.
        await page.get_by_label("Show").select_option("60")
        await expect(timeline).to_have_attribute("data-span", "60")
        start = float(await timeline.get_attribute("data-start") or 0)
        box = await timeline.bounding_box()
        assert box is not None
        x = box["width"] * 0.9  # 54 s into the last minute: 6 s before the last frame
        want = start + 60 * 0.9
        async with page.expect_response(re.compile(r"frame\.jpeg\?t=")) as shown:
            await timeline.hover(position={"x": x, "y": box["height"] / 2})
        resp = await shown.value
        assert resp.status == 200, await resp.text()
        asked = float(resp.url.split("t=")[1].split("&")[0])
        assert abs(asked - want) < 60 / box["width"] + 0.01
        received = float((await resp.all_headers())["x-timestamp"])
        assert asked - 0.2 <= received <= asked + 1e-6  # the frame at t or just before
        sent = read_send_time(await resp.body())
        assert sent is not None
        assert sent <= received + 0.001
        # A click plays from there (MJPEG replay at the chosen speed) in the page.
        await page.get_by_label("Speed").select_option("2")
        async with page.expect_request(re.compile(r"replay\.mjpeg\?start=")) as playing:
            await timeline.click(position={"x": x, "y": box["height"] / 2})
        url = (await playing.value).url
        assert "speed=2" in url
        assert abs(float(url.split("start=")[1].split("&")[0]) - asked) < 1.0
        await expect(page.locator("#preview")).to_have_js_property("complete", True)
        await page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
        await expect(page.locator("#play-state")).to_contain_text("Playing from")
        await page.screenshot(path=str(output_dir / "camera-page-recordings.png"), full_page=True)
        # Export: the clip around the click, as MP4 from the server.
        async with page.expect_response(re.compile(r"clip\.mp4")) as clip:
            await page.get_by_role("button", name="Export MP4").click()
        made = await clip.value
        assert made.status == 200, await made.text()
        assert made.headers["content-type"] == "video/mp4"
        await expect(page.locator("#clip-state")).to_contain_text("Clip ready", timeout=30_000)
        assert console.problems == []
