"""RTSP out against a real server (issue 29): ffmpeg and ffprobe over TCP and UDP, the
camera's JPEG bytes carried unchanged, auth, hostile input, and the same viewer rules as
every output."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from camserver.config import Settings
from camserver.live.rtsp import rtp_jpeg
from camserver.live.rtsp import session as rtsp_session
from tests.conftest import CameraFactory, Server, free_port, start_server, wait_for
from tests.helpers.auth import ADMIN, VIEW, auth
from tests.helpers.rtsp import RtspClient, basic, digest_header
from tests.helpers.rtsp_minute import MINUTE, SECONDS


@contextlib.asynccontextmanager
async def rtsp_server(settings: Settings, **update: Any) -> AsyncIterator[Server]:
    async with AsyncExitStack() as stack:
        yield await start_server(
            stack, settings.model_copy(update={"rtsp_port": free_port(), **update})
        )


def rtsp_url(server: Server, path: str) -> str:
    return f"rtsp://127.0.0.1:{server.settings.rtsp_port}/{path}"


async def run(*args: str, timeout: float) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


@pytest.mark.requires("ffmpeg", "ffprobe")
@pytest.mark.background_rtsp
def test_ffmpeg_reads_a_minute_over_tcp_and_udp_at_the_cameras_rate(
    request: pytest.FixtureRequest,
) -> None:
    """Must show 1: ffprobe sees VGA MJPEG; ffmpeg reads 60 s over TCP and over UDP (at
    once), every frame decoded, no decoder warning. It ran beside the suite
    (tests/helpers/rtsp_minute.py: its own server, camera and ffmpeg processes)."""
    reading = request.config.stash.get(MINUTE, None)
    assert reading is not None, "conftest starts the reading when this test is collected"
    result = reading.wait(timeout=240)
    print(f"\nRTSP minute: {result}")
    assert result["probe"] == "mjpeg,640,480"
    for transport in ("tcp", "udp"):
        got = result[transport]
        assert isinstance(got, dict)
        assert got["code"] == 0, got
        assert got["stderr"] == "", got  # no decoder warning at all
        assert got["frames"] >= 15 * SECONDS * 0.95, result


async def test_rtp_carries_the_cameras_jpeg_bytes_unchanged(
    settings: Settings, camera: CameraFactory
) -> None:
    """Must show 1: the scan data after reassembly equals the camera's, frame for frame
    (the hub's frames, which are the camera's bytes)."""
    pattern = await camera("pattern", fps=15, framesize=10)  # 4:2:0, RFC 2435 type 1
    scene = await camera("scene", fps=15, framesize=10, scene={})  # 4:2:2, type 0
    async with rtsp_server(settings) as server:
        for name, cam in (("pattern", pattern), ("scene", scene)):
            await server.add_camera(name, cam)
            await server.wait_state(name, "streaming")
            sent: dict[int, bytes] = {}
            hub = server.state.manager.hub(name)

            def keep(frame: Any, sent: dict[int, bytes] = sent) -> None:
                if frame is not None:
                    sent[int(frame.ts * 90000) & 0xFFFFFFFF] = frame.data

            stop = hub.listen(keep)
            client = await RtspClient("127.0.0.1", server.settings.rtsp_port).connect()
            try:
                assert await client.play_tcp(name) == 200
                await client.read_for(2.0)
            finally:
                stop()
                await client.close()
            whole = [f for f in client.frames[:-1]]
            assert len(whole) >= 20
            for frame in whole:
                original = sent[frame.timestamp]
                scan = rtp_jpeg.parse(original)
                assert isinstance(scan, rtp_jpeg.JpegScan)
                assert frame.scan == bytes(scan.scan)
                assert frame.type == (1 if name == "pattern" else 0)


async def test_auth_table(settings: Settings, camera: CameraFactory) -> None:
    """Must show 5: no token, wrong token, Basic and Digest with a token as the password
    (any user name), ?token=, a scoped token on its stream and on another."""
    cams = [await camera(f"c{i}", fps=10) for i in range(2)]
    tokens = {"api_token": SecretStr(ADMIN), "view_token": SecretStr(VIEW)}
    async with rtsp_server(settings, **tokens) as server:
        for i, cam in enumerate(cams):
            r = await server.client.post(
                "/api/streams", json={"name": f"c{i}", "host": cam.address}, headers=auth(ADMIN)
            )
            assert r.status_code == 201
        r = await server.client.post(
            "/api/tokens",
            json={"name": "nvr", "role": "view", "streams": ["c0"]},
            headers=auth(ADMIN),
        )
        assert r.status_code == 201, r.text
        scoped = r.json()["token"]
        port = server.settings.rtsp_port

        async def describe(path: str, headers: dict[str, str] | None = None) -> int:
            client = await RtspClient("127.0.0.1", port).connect()
            try:
                status, _, _ = await client.request("DESCRIBE", f"{client.url}/{path}", headers)
                if status == 401:
                    assert any(c.startswith("Digest ") for c in client.challenges)
                    assert 'Basic realm="camserver"' in client.challenges
                return status
            finally:
                await client.close()

        assert await describe("c0") == 401
        assert await describe("c0", basic("wrong")) == 401
        assert await describe("c0", {"Authorization": "Bearer " + ADMIN}) == 401
        assert await describe("c0", basic(ADMIN)) == 200
        assert await describe("c0", basic(VIEW, user="anyone")) == 200
        assert await describe(f"c0?token={VIEW}") == 200
        assert await describe("c0", basic(scoped)) == 200
        assert await describe("c1", basic(scoped)) == 404  # another stream: not there for it
        assert await describe("nosuch", basic(ADMIN)) == 404
        # Digest: answer the server's challenge with a token as the password.
        client = await RtspClient("127.0.0.1", port).connect()
        try:
            url = f"{client.url}/c1"
            assert (await client.request("DESCRIBE", url))[0] == 401
            challenge = next(c for c in client.challenges if c.startswith("Digest"))
            good = digest_header(challenge, "DESCRIBE", url, ADMIN, user="blue-iris")
            assert (await client.request("DESCRIBE", url, good))[0] == 200
            bad = digest_header(challenge, "DESCRIBE", url, "nope")
            assert (await client.request("DESCRIBE", url, bad))[0] == 401
            # A managed token is stored hashed: Digest cannot check it (Basic can).
            managed = digest_header(challenge, "DESCRIBE", url, scoped)
            assert (await client.request("DESCRIBE", url, managed))[0] == 401
            # A whole session with Basic, frames included.
            assert await client.play_tcp("c1", basic(ADMIN)) == 200
            await client.read_for(1.0)
            assert len(client.frames) >= 5
        finally:
            await client.close()
    # Open mode: no token needed (another server, its own database).
    async with rtsp_server(settings, db=settings.db.with_name("open.db")) as server:
        await server.add_camera("c0", cams[0])
        client = await RtspClient("127.0.0.1", server.settings.rtsp_port).connect()
        try:
            assert (await client.request("DESCRIBE", f"{client.url}/c0"))[0] == 200
        finally:
            await client.close()


async def test_hostile_input_gets_status_codes_and_costs_others_nothing(
    settings: Settings, camera: CameraFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Must show 7: garbage, 1 MB request lines, 10,000 SETUPs, interleaved data from the
    client, a slowloris: clear codes, bounded memory, a playing client unaffected."""
    monkeypatch.setattr(rtsp_session, "HEAD_DEADLINE", 1.5)
    cam = await camera("porch", fps=15)
    async with rtsp_server(settings) as server:
        await server.add_camera("porch", cam)
        await server.wait_state("porch", "streaming")
        port = server.settings.rtsp_port
        watcher = await RtspClient("127.0.0.1", port).connect()
        assert await watcher.play_tcp("porch") == 200
        watching = time.monotonic()
        reading = asyncio.create_task(watcher.read_for(120))
        rss = psutil.Process().memory_info().rss

        async def raw(data: bytes, read: bool = True) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            try:
                w.write(data)
                await w.drain()
                if not read:
                    return b""
                return await asyncio.wait_for(r.read(4096), 10)
            except ConnectionError:
                return b""
            finally:
                w.close()

        assert (await raw(b"\x00\x01garbage\r\n\r\n")).startswith(b"RTSP/1.0 400 ")
        assert (await raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"RTSP/1.0 505 ")
        huge = b"DESCRIBE rtsp://127.0.0.1/" + b"a" * (1024 * 1024) + b" RTSP/1.0\r\n\r\n"
        answers = await asyncio.gather(*(raw(huge) for _ in range(20)))
        assert all(a.startswith(b"RTSP/1.0 414 ") for a in answers), answers[0][:80]
        # 10,000 SETUPs on one connection: each answered, one session.
        client = await RtspClient("127.0.0.1", port).connect()
        url = f"{client.url}/porch/trackID=0"
        transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        statuses = set()
        for _ in range(10_000):
            statuses.add((await client.request("SETUP", url, transport))[0])
        assert statuses == {200}
        assert len([c for c in server.state.rtsp.connections if c.session]) == 2  # type: ignore[union-attr]
        # Interleaved data from the client (RTCP receiver reports, or junk) is read past.
        assert client.writer is not None
        client.writer.write(b"$\x01\x00\x08" + b"\x81\xc9\x00\x01junk")
        assert (await client.request("OPTIONS", url))[0] == 200
        await client.close()
        # A slowloris: a request begun and never finished is cut.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"OPTIONS rtsp://127.0.0.1/porch RTSP/1.0\r\nCSeq: 1\r\n")
        began = time.monotonic()
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed by the server
        assert time.monotonic() - began < 5
        w.close()
        # Methods it does not serve, and states: clear codes.
        client = await RtspClient("127.0.0.1", port).connect()
        assert (await client.request("RECORD", url))[0] == 405
        assert (await client.request("PLAY", f"{client.url}/porch"))[0] == 454
        bad = {"Transport": "RTP/AVP;multicast"}
        assert (await client.request("SETUP", url, bad))[0] == 461
        await client.close()
        await asyncio.sleep(1.0)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        watched = time.monotonic() - watching
        grown = (psutil.Process().memory_info().rss - rss) / 1e6
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(watcher.frames)]
    await watcher.close()
    print(
        f"\nwatcher got {len(watcher.frames)} frames in {watched:.1f} s meanwhile; "
        f"RSS +{grown:.1f} MB"
    )
    assert len(watcher.frames) >= 15 * watched * 0.85
    assert max(gaps) < 90000  # never a second without a frame
    assert grown < 50


async def test_an_rtsp_client_is_a_viewer_and_a_slow_one_slows_nobody(
    settings: Settings, camera: CameraFactory
) -> None:
    cam = await camera("attic", fps=15)
    async with rtsp_server(settings) as server:
        await server.add_camera("attic", cam, on_demand=True)
        await server.wait_state("attic", "idle")
        port = server.settings.rtsp_port
        slow = await RtspClient("127.0.0.1", port).connect()
        assert await slow.play_tcp("attic") == 200  # and then never reads again
        fast = await RtspClient("127.0.0.1", port).connect()
        assert await fast.play_tcp("attic") == 200
        await server.wait_state("attic", "streaming", 10)  # on demand: connected for them
        status = await server.status("attic")
        assert status["viewers"] == 2
        await fast.read_for(4.0)
        assert len(fast.frames) >= 15 * 4 * 0.85
        metrics = (await server.client.get("/metrics")).text
        assert re.search(r'camserver_stream_viewers\{kind="rtsp",stream="attic"\} 2', metrics)
        await fast.close()
        await slow.close()
        await wait_for(
            lambda: server.state.manager.hub("attic").viewers == 0, 5, what="viewers gone"
        )


async def test_the_h264_path_has_one_encoder_per_camera_while_watched(
    settings: Settings, camera: CameraFactory
) -> None:
    """Must show 2 and 3: ffprobe reads h264 at the camera's size; one encoder whatever
    the client count, gone after the grace once the last client left (counted)."""
    cam = await camera("porch", fps=15, framesize=10)
    async with rtsp_server(settings) as server:
        await server.add_camera("porch", cam)
        await server.wait_state("porch", "streaming")
        rtsp = server.state.rtsp
        assert rtsp is not None
        rtsp.encoders.grace = 2.0
        url = rtsp_url(server, "porch/h264")
        code, out, err = await run(
            *("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries"),
            *("stream=codec_name,width,height", "-of", "csv=p=0", url),
            timeout=30,
        )
        assert code == 0, err
        assert out.decode().strip() == "h264,640,480"

        async def read(transport: str) -> int:
            code, out, err = await run(
                *("ffmpeg", "-nostdin", "-v", "warning", "-rtsp_transport", transport),
                *("-i", url, "-t", "4", "-f", "framecrc", "-"),
                timeout=40,
            )
            assert code == 0, err
            assert err == b"", err
            return len([ln for ln in out.splitlines() if ln and not ln.startswith(b"#")])

        counts = await asyncio.gather(read("tcp"), read("tcp"), read("udp"))
        assert all(n >= 4 * 15 * 0.8 for n in counts), counts
        counters = rtsp.encoders.counters
        assert counters.started == 1, counters  # one for ffprobe and the three readers
        await wait_for(lambda: counters.stopped == 1, 10, what="the encoder to stop")
        assert rtsp.encoders.running("porch") is None
        print(f"\nH.264: {counts} frames in 4 s; encoder {counters}")


@pytest.mark.requires("gst-launch-1.0")
async def test_gstreamer_plays_it_over_tcp_and_udp(
    settings: Settings, camera: CameraFactory
) -> None:
    """Must show 2: Debian's GStreamer (rtspsrc ! rtpjpegdepay ! jpegdec): 45 frames each
    way. (VLC: Debian builds it without live555, so it has no RTSP to test here.)"""
    cam = await camera("porch", fps=15, framesize=10)
    async with rtsp_server(settings) as server:
        await server.add_camera("porch", cam)
        await server.wait_state("porch", "streaming")
        url = rtsp_url(server, "porch")
        for protocols in ("tcp", "udp"):
            code, out, err = await run(
                *("gst-launch-1.0", "-q", "rtspsrc", f"location={url}", f"protocols={protocols}"),
                *("!", "rtpjpegdepay", "!", "jpegdec", "!", "fakesink", "num-buffers=45"),
                "sync=false",
                timeout=30,
            )
            assert code == 0, (protocols, out, err)
            assert b"ERROR" not in out + err, (protocols, out, err)
