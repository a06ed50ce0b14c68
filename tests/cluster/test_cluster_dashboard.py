"""The dashboard in Chromium through haproxy (deploy/cluster/haproxy.cfg) in front of three
cluster nodes: live tiles, and the page carries on when its node goes away."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.cluster.conftest import Cluster, ClusterFactory
from tests.conftest import CHROMIUM, free_port, wait_for
from tests.helpers.dashboard import Console, tile_frame_seq

pytestmark = pytest.mark.requires("redis-server", "haproxy", CHROMIUM)

HAPROXY_CFG = Path(__file__).parents[2] / "deploy" / "cluster" / "haproxy.cfg"


def start_haproxy(bind: str, nodes: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CS_BIND": bind}
    env.update({f"CS_NODE{i + 1}": addr for i, addr in enumerate(nodes)})
    with log.open("wb") as fh:
        return subprocess.Popen(
            ["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=fh, stderr=subprocess.STDOUT
        )


@pytest.fixture
async def lb(make_cluster: ClusterFactory, tmp_path: Path) -> AsyncIterator[tuple[Cluster, str]]:
    c: Cluster = await make_cluster()
    await c.add_streams()
    bind = f"127.0.0.1:{free_port()}"
    proc = start_haproxy(bind, [p.url.removeprefix("http://") for p in c.nodes], tmp_path / "lb")
    url = f"http://{bind}"
    try:
        async with httpx.AsyncClient(trust_env=False) as client:

            async def up() -> bool:
                try:
                    return (await client.get(url + "/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, 15, 0.1, what="haproxy")
        yield c, url
    finally:
        proc.terminate()
        proc.wait(10)


async def socketio_clients(c: Cluster, i: int) -> int:
    text = (await c.http.get(c.url(i) + "/metrics")).text
    found = re.search(r"^camserver_socketio_clients (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_dashboard_through_haproxy_shows_live_tiles_and_survives_its_node(
    lb: tuple[Cluster, str], browser: Browser
) -> None:
    c, url = lb
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)
    await page.goto(url + "/")
    await expect(page.locator("#banner")).to_be_hidden()
    for name in ("cam0", "cam1", "cam2"):
        tile = page.locator(f'.tile[data-name="{name}"]')
        await expect(tile.locator(".badge")).to_have_text("streaming", timeout=15_000)

    async def all_moving(after: dict[str, int]) -> bool:
        return all([await tile_frame_seq(page, name) > after.get(name, 0) for name in after])

    seqs = {n: await tile_frame_seq(page, n) for n in ("cam0", "cam1", "cam2")}
    await wait_for(lambda: all_moving(seqs), 15, what="every tile updating")
    # The cluster's nodes and their health; each tile says which node pulls its camera.
    panel = page.locator("#cluster")
    await expect(panel).to_be_visible(timeout=10_000)
    await expect(panel.locator("tbody tr")).to_have_count(3)
    await expect(page.locator("#cluster-redis")).to_contain_text("reachable")
    holders = await c.holders()
    for name, node in holders.items():
        await expect(page.locator(f'.tile[data-name="{name}"] .stats')).to_contain_text(
            f"node {node}"
        )
        await expect(panel.locator(f'tr[data-node="{node}"]')).to_contain_text(name)
    # Which node serves the page's one Socket.IO connection? Stop it (SIGTERM).
    counts = [await socketio_clients(c, i) for i in range(3)]
    assert sorted(counts) == [0, 0, 1], counts
    home = counts.index(1)
    c.nodes[home].proc.terminate()
    await asyncio.to_thread(c.nodes[home].proc.wait, 15)
    # The page reconnects through haproxy to another node, joins its tiles again, and
    # every camera (the stopped node's too, handed over) keeps coming.
    seqs = {n: await tile_frame_seq(page, n) for n in ("cam0", "cam1", "cam2")}
    await wait_for(lambda: all_moving(seqs), 30, 0.2, what="tiles updating after the node left")
    others = [i for i in range(3) if i != home]
    assert sum([await socketio_clients(c, i) for i in others]) == 1
    assert c.max_clients() == [1, 1, 1]
    # Reconnecting logs a failed WebSocket in the console; nothing else may go wrong.
    assert [p for p in console.problems if "WebSocket" not in p and "socket.io" not in p] == []
