"""Ingest against misbehaving simulated cameras: each fault ends with the stream streaming
again, and a healthy camera beside it never notices."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest

from camserver.sources.base import FrameSink, SourceTiming
from camserver.sources.supervisor import STOP_AGAIN, FpsMeter, Supervisor, backoff_delay
from camserver.streaming.hub import LocalHub
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.ingest import StateRecorder


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30.0, rng) for a in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0
    assert len({round(backoff_delay(3, 0.5, 30, rng), 6) for _ in range(20)}) > 1  # jitter


def test_fps_meter() -> None:
    m = FpsMeter(window=5.0)
    for i in range(51):
        m.tick(100 + i * 0.1)
    assert m.rate(105.0) == pytest.approx(10.0, rel=0.05)
    assert m.rate(200.0) == 0.0


FAULTS: list[tuple[dict[str, Any], str | None, bool]] = [
    # (fault switches, error expected while it lasts, whether it is cleared to recover)
    ({"drop_every": 8}, r"connection broke mid-stream", True),
    ({"stall_seconds": 3.0}, r"sent nothing for 1\.5 s", False),
    ({"http_500": True}, r"answered HTTP 500", True),
    ({"refuse": True}, r"cannot connect to the camera: connection refused", True),
    ({"endless_part": True}, r"no whole JPEG frame for 3 s", True),
    ({"truncate_every": 3}, None, True),
    ({"garbage_every": 2}, None, True),
]


@pytest.mark.parametrize(
    ("fault", "error", "clear"), FAULTS, ids=[next(iter(f[0])) for f in FAULTS]
)
async def test_fault_recovers_and_other_camera_is_unaffected(
    server: Server, camera: CameraFactory, fault: dict[str, Any], error: str | None, clear: bool
) -> None:
    bad_cam = await camera("bad", fps=20)
    good_cam = await camera("good", fps=20)
    await server.add_camera("bad", bad_cam)
    await server.add_camera("good", good_cam)
    await server.wait_state("bad", "streaming")
    await server.wait_state("good", "streaming")
    good_before = (await server.status("good"))["frames"]
    good_sent_before = good_cam.frames_sent
    bad_before = await server.status("bad")
    sent_before = bad_cam.frames_sent

    rec = await _run_fault(server, bad_cam, fault, error, clear)

    # The stream came back by itself and is streaming frames again.
    await server.wait_state("bad", "streaming", timeout=15)
    frames = (await server.status("bad"))["frames"]
    await wait_for(
        lambda: _frames_above(server, "bad", frames + 5), 10, what="frames after recovery"
    )
    bad = await server.status("bad")
    if error is not None:
        assert "retrying" in rec.states, rec.states
        assert any(re.search(error, e) for e in rec.errors), rec.errors
        assert bad["upstream_connects"] > bad_before["upstream_connects"]
    else:
        # Skipped in-stream, without a reconnect.
        assert rec.states == ["streaming"], rec.states
        assert bad["upstream_connects"] == bad_before["upstream_connects"] == 1
        assert bad_cam.stream_connections == 1
        if "truncate_every" in fault:
            assert bad["bad_frames"] > 0
        else:  # garbage between parts costs no frame at all
            assert bad["bad_frames"] == 0
            await _every_frame_arrives(server, "bad", bad_cam, bad_before["frames"], sent_before)

    # The healthy camera never noticed: one connection, streaming, every frame it sent
    # arrived.
    good = await server.status("good")
    assert good["state"] == "streaming"
    assert good["upstream_connects"] == 1
    assert good["bad_frames"] == 0
    assert good_cam.stream_connections == 1
    await _every_frame_arrives(server, "good", good_cam, good_before, good_sent_before)


async def _every_frame_arrives(
    server: Server, name: str, cam: Any, frames_before: int, sent_before: int
) -> None:
    """The server counts every frame ``cam`` sent since then (the camera is paused first,
    so none is still on its way)."""
    await cam.set_faults(stall_seconds=30.0)  # one-shot stall: the camera stops sending
    await wait_for(
        lambda: _frames_above(server, name, frames_before + cam.frames_sent - sent_before),
        10,
        what=f"{name}: every frame the camera sent",
    )


async def _frames_above(server: Server, name: str, n: int) -> bool:
    return int((await server.status(name))["frames"]) >= n


async def _run_fault(
    server: Server, cam: Any, fault: dict[str, Any], error: str | None, clear: bool
) -> StateRecorder:
    rec = StateRecorder(server, "bad")
    try:
        await cam.set_faults(**fault)
        if error is not None:
            await wait_for(lambda: any(re.search(error, e) for e in rec.errors), 15, what=error)
        else:
            sent = cam.frames_sent
            await wait_for(lambda: cam.frames_sent >= sent + 12, what="12 frames with the fault")
        if clear:
            await cam.set_faults(**{k: type(v)() for k, v in fault.items()})
        await wait_for(lambda: rec.states[-1] == "streaming", 15, what="streaming again")
    finally:
        await rec.stop()
    return rec


async def test_only_one_upstream_connection_per_camera_across_restarts(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    for _ in range(3):
        await server.wait_state("c1", "streaming")
        assert cam.active_streams == 1
        await server.client.post("/api/streams/c1/stop")
        await server.client.post("/api/streams/c1/start")
    await server.wait_state("c1", "streaming")
    await asyncio.sleep(0.3)
    assert cam.active_streams == 1
    # Each stop closed its connection before the next start opened one: the
    # single-client camera never had a second client waiting.
    assert cam.tcp_connections == cam.stream_connections == 4


async def test_a_camera_that_is_gone_for_a_while_comes_back(
    server: Server, camera: CameraFactory
) -> None:
    cam = await camera("c1", fps=20)
    await server.add_camera("c1", cam)
    await server.wait_state("c1", "streaming")
    port = cam.http_port
    await cam.stop()  # powered off
    await server.wait_state("c1", "retrying")
    await asyncio.sleep(2.0)
    # Still retrying (sampled between attempts: each one is "connecting" for a moment).
    st = await server.wait_state("c1", "retrying", timeout=5)
    assert "cannot connect to the camera: connection refused" in st["last_error"]
    cam2 = await camera("c1", http_port=port, fps=20)  # powered on again, same address
    await server.wait_state("c1", "streaming", timeout=10)
    await wait_for(lambda: cam2.frames_sent > 5, what="frames from the rebooted camera")


def _delays(errors: set[str]) -> list[float]:
    return [float(m.group(1)) for e in errors if (m := re.search(r"retrying in ([\d.]+) s", e))]


async def test_backoff_grows_while_failing_and_resets_after_healthy_streaming(
    server: Server, camera: CameraFactory
) -> None:
    # FAST settings: backoff 0.2 s doubling to 1.0 s, healthy after 2 s.
    cam = await camera("c1", fps=20)
    await cam.set_faults(refuse=True)
    await server.add_camera("c1", cam)
    rec = StateRecorder(server, "c1")
    # The delay grows towards the cap (attempt 3 on: 0.5 to 1.0 s).
    await wait_for(lambda: max(_delays(rec.errors), default=0) > 0.5, 15, what="a long delay")
    await rec.stop()
    failing = _delays(rec.errors)
    assert min(failing) <= 0.2  # it started at the bottom
    assert max(failing) <= 1.0  # and never passed the cap

    # Now a camera that streams 2.5 s (longer than healthy_after) between drops: the delay
    # starts from the bottom every time.
    await cam.set_faults(refuse=False, drop_every=50)
    await server.wait_state("c1", "streaming", timeout=10)
    connects = (await server.status("c1"))["upstream_connects"]
    rec = StateRecorder(server, "c1")

    async def two_more_drops() -> bool:
        return bool(int((await server.status("c1"))["upstream_connects"]) >= connects + 2)

    await wait_for(two_more_drops, 20, what="two drops and reconnects")
    await rec.stop()
    after = _delays({e for e in rec.errors if "broke mid-stream" in e})
    assert after, rec.errors
    assert max(after) <= 0.2, after


async def test_stop_ends_a_source_that_lost_its_first_cancel() -> None:
    """A cancel can be lost (Python 3.11's wait_for drops one that lands as its inner call
    ends): the supervisor cancels again until the source has ended, so a stopped stream
    never keeps the camera's one connection (in a cluster: after its lease moved on)."""

    class Deaf:
        def __init__(self) -> None:
            self.running = asyncio.Event()
            self.cancels = 0

        async def run(self, sink: FrameSink) -> None:
            self.running.set()
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    self.cancels += 1
                    if self.cancels == 1:
                        continue  # the lost cancel
                    raise

    source = Deaf()
    sup = Supervisor("cam", source, LocalHub("cam"), SourceTiming())
    sup.start()
    await asyncio.wait_for(source.running.wait(), 5)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(sup.stop(), 5 * STOP_AGAIN)
    assert source.cancels == 2
    assert not sup.running
    assert loop.time() - began < 3 * STOP_AGAIN
