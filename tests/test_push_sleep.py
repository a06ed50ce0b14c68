"""Must show 2 (issue 28): a deep-sleep camera (the simulator, a real process) posting
every 5 s with ``expect_every: 5``: its pictures are listed, recorded and analysed for
motion; stopped, it is ``overdue`` after 10 s and the webhook, Home Assistant's MQTT
availability, Socket.IO, the metrics and the log say so; posting again, it is back, and
it applies the answers' ``next_in`` and ``set``."""

from __future__ import annotations

import itertools
import logging
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from camserver.config import Settings
from tests.conftest import free_port, start_server, wait_for
from tests.helpers.mqtt import HomeAssistant, Mosquitto
from tests.helpers.push import create_push, sim_process, sim_stats
from tests.helpers.socketio import Viewer
from tests.helpers.webhooks import Receiver

EVERY = 5.0


@pytest.mark.beside  # a minute of waiting: beside the suite (tests/helpers/beside.py)
async def test_a_deep_sleep_camera_is_recorded_analysed_and_overdue_when_it_stops(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="camserver.sources.supervisor")
    async with AsyncExitStack() as stack:
        broker = Mosquitto(tmp_path)
        await broker.start()
        stack.callback(broker.kill)
        ha = HomeAssistant(broker)
        await ha.connect()
        stack.push_async_callback(ha.close)
        hook = Receiver()
        await hook.start(stack)
        port = free_port()
        server = await start_server(
            stack,
            settings.model_copy(
                update={
                    "mqtt_url": SecretStr(broker.url),
                    "webhook_urls": SecretStr(hook.url),
                    "public_url": f"http://127.0.0.1:{port}",
                    "recording_segment_seconds": 2.0,
                }
            ),
            port=port,
        )
        push = (
            await create_push(
                server,
                "shed",
                expect_every=EVERY,
                recording={"mode": "continuous"},
                motion={"enabled": True},
            )
        )["push"]
        viewer = Viewer()
        await viewer.sio.connect(server.url, transports=["websocket"])
        stack.push_async_callback(viewer.sio.disconnect)
        assert (await viewer.join("shed"))["ok"]
        availability = "camserver/shed/availability"
        await wait_for(lambda: ha.last(availability) == b"online", 10, what="online")
        args = ("--push", push["frame_url"], "--key", push["key"], "--push-mode", "frame")
        analysed = server.state.motion.worker.counters.analysed
        async with sim_process(*args, "--every", "1") as sim:
            await wait_for(lambda: len(viewer.frames) >= 1, 15, what="the first picture")
            # While it sleeps, a change of settings waits for its next post.
            r = await server.client.put("/api/streams/shed/settings", json={"framesize": 8})
            assert r.status_code == 200
            assert r.json()["ok"] is True
            await wait_for(lambda: len(viewer.frames) >= 3, 2 * EVERY + 5, what="3 pictures")
            stats = await sim_stats(sim)
            async with httpx.AsyncClient(trust_env=False) as c:
                camera_status = (await c.get(sim + "/status")).json()
        stopped = time.time()
        # next_in: the simulator slept what the answers said (5 s), not its --every 1.
        assert 4000 <= stats["push_next_in_ms"] <= 5000, stats
        gaps = [b["received"] - a["received"] for a, b in itertools.pairwise(viewer.frames)]
        assert all(EVERY - 0.5 < g < EVERY + 1.5 for g in gaps), gaps
        # set: the framesize changed in the dashboard reached the camera at its next post.
        assert camera_status["framesize"] == 8
        assert stats["push_sets"] >= 1
        status = await server.status("shed")
        assert status["state"] == "streaming"
        assert status["pusher"] is not None
        # Recorded and analysed.
        await wait_for(
            lambda: server.state.motion.worker.counters.analysed >= analysed + 3,
            5,
            what="motion analysis",
        )
        rows = (await server.client.get("/api/streams/shed/recordings")).json()
        assert sum(r["frames"] for r in rows) >= 3, rows
        # Stopped: overdue 2 intervals after its last picture, and everyone is told.
        last = viewer.frames[-1]["received"]
        await server.wait_state("shed", "overdue", 2 * EVERY + 5)
        became = time.time()
        assert 2 * EVERY - 0.5 <= became - last <= 2 * EVERY + 2, became - last
        assert became - stopped <= 2 * EVERY + 2
        await wait_for(lambda: ha.last(availability) == b"offline", 5, what="MQTT offline")
        await wait_for(lambda: len(hook.posts) >= 1, 5, what="the webhook")
        assert hook.posts[0]["event"] == "stream_overdue"
        assert hook.posts[0]["stream"] == "shed"
        assert "expected every 5 s" in hook.posts[0]["reason"]
        await wait_for(
            lambda: any(s["status"]["state"] == "overdue" for s in viewer.statuses),
            5,
            what="stream_status overdue",
        )
        metrics = (await server.client.get("/metrics")).text
        assert 'camserver_stream_state{state="overdue",stream="shed"} 1.0' in metrics
        assert any("shed: overdue" in r.getMessage() for r in caplog.records)
        # It posts again: streaming, and back online.
        async with sim_process(*args, "--every", "1"):
            await server.wait_state("shed", "streaming", 15)
            await wait_for(lambda: ha.last(availability) == b"online", 5, what="MQTT online")
            await wait_for(lambda: len(hook.posts) >= 2, 5, what="the second webhook")
            assert hook.posts[1]["event"] == "stream_back"
