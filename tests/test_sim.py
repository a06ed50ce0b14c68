"""The ESP32-CAM simulator answers like CameraWebServer, on real sockets."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from camserver.codecs.mjpeg import BadPart, Frame, MJPEGParser
from camserver.sim.camera import BOUNDARY, free_port_pair
from tests.conftest import CameraFactory, wait_for


async def raw_get(port: int, path: str, read_for: float = 0.6) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: cam\r\n\r\n".encode())
    await writer.drain()
    data = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + read_for
    try:
        while (left := end - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
    return data


def dechunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        nl = body.find(b"\r\n", pos)
        if nl < 0:
            return out
        size = int(body[pos:nl], 16)
        if nl + 2 + size + 2 > len(body):
            return out
        out += body[nl + 2 : nl + 2 + size]
        pos = nl + 2 + size + 2


async def test_capture_status_control(camera: CameraFactory) -> None:
    cam = await camera("c1", framesize=10)
    async with httpx.AsyncClient(base_url=f"http://{cam.address}", trust_env=False) as c:
        r = await c.get("/capture")
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["content-disposition"] == "inline; filename=capture.jpg"
        assert r.headers["access-control-allow-origin"] == "*"
        assert re.fullmatch(r"\d+\.\d{6}", r.headers["x-timestamp"])
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (640, 480)
        assert 10_000 < len(r.content) < 40_000

        status = (await c.get("/status")).json()
        for key in (
            "framesize",
            "quality",
            "brightness",
            "contrast",
            "saturation",
            "hmirror",
            "led_intensity",
        ):
            assert key in status
        assert "vflip" not in status  # the firmware does not report it

        r = await c.get("/control", params={"var": "framesize", "val": "6"})
        assert (r.status_code, r.content) == (200, b"")
        assert (await c.get("/status")).json()["framesize"] == 6
        img = Image.open(io.BytesIO((await c.get("/capture")).content))
        assert img.size == (320, 240)

        small = len((await c.get("/capture")).content)
        assert (await c.get("/control?var=quality&val=60")).status_code == 200
        assert len((await c.get("/capture")).content) < small

        assert (await c.get("/control?var=quality")).status_code == 404
        assert (await c.get("/control?val=3")).status_code == 404
        assert (await c.get("/control?var=nonsense&val=1")).status_code == 500
        assert (await c.get("/control?var=quality&val=99")).status_code == 500
        assert (await c.get("/nope")).status_code == 404


async def test_stream_bytes_match_the_firmware(camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    raw = await raw_get(cam.stream_port, "/stream", 0.5)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert f"Content-Type: multipart/x-mixed-replace;boundary={BOUNDARY}" in lines
    assert "Transfer-Encoding: chunked" in lines
    assert "Access-Control-Allow-Origin: *" in lines
    assert "Content-Length" not in head.decode()
    # Each frame is three chunks: boundary, part headers, JPEG. Chunk sizes in lower hex.
    assert body.startswith(b"24\r\n\r\n--" + BOUNDARY.encode() + b"\r\n\r\n")
    data = dechunk(body)
    part = re.compile(
        rb"\r\n--" + BOUNDARY.encode() + rb"\r\nContent-Type: image/jpeg\r\n"
        rb"Content-Length: (\d+)\r\nX-Timestamp: (\d+\.\d{6})\r\n\r\n"
    )
    matches = list(part.finditer(data))
    assert len(matches) >= 5
    first = matches[0]
    n = int(first.group(1))
    jpeg = data[first.end() : first.end() + n]
    assert jpeg[:2] == b"\xff\xd8"
    assert jpeg[-2:] == b"\xff\xd9"
    assert not data.rstrip().endswith(b"--")  # never a closing boundary
    frames = [data[m.end() : m.end() + int(m.group(1))] for m in matches[:-1]]
    assert len(set(frames)) == len(frames)  # every frame differs


async def test_stream_port_serves_one_client_at_a_time(camera: CameraFactory) -> None:
    cam = await camera("c1", fps=20)
    r1, w1 = await asyncio.open_connection("127.0.0.1", cam.stream_port)
    w1.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(r1.read(100), 2)).startswith(b"HTTP/1.1 200 OK")
    # The second connection is accepted but gets nothing while the first streams.
    r2, w2 = await asyncio.open_connection("127.0.0.1", cam.stream_port)
    w2.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r2.read(100), 1.0)
    assert cam.active_streams == 1
    w1.close()
    got = await asyncio.wait_for(r2.read(100), 3)
    assert got.startswith(b"HTTP/1.1 200 OK")
    w2.close()
    # Port 80 stays responsive meanwhile.
    assert (await raw_get(cam.http_port, "/status", 0.3)).startswith(b"HTTP/1.1 200 OK")


async def test_two_readers_at_once_count_and_one_that_closed_does_not(
    camera: CameraFactory,
) -> None:
    """``max_stream_clients`` (the cluster tests' "never two readers") counts readers that
    overlap, not one that closed before this busy loop ran its handler."""
    cam = await camera("c1", fps=20)
    request = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
    address = ("127.0.0.1", cam.stream_port)
    first = socket.create_connection(address)
    first.sendall(request)
    await wait_for(lambda: cam.active_streams == 1, what="the first reader served")
    # Closed, then another reader at once: no await between, so the simulator has not
    # run the first one's handler yet when it accepts the second.
    first.close()
    second = socket.create_connection(address)
    second.sendall(request)
    try:
        await wait_for(lambda: cam.stream_connections == 2, what="the second reader served")
        assert cam.max_stream_clients == 1
        third = socket.create_connection(address)  # while the second is open: two at once
        third.sendall(request)
        await wait_for(lambda: cam.stream_clients == 2, what="the third one waiting")
        assert cam.max_stream_clients == 2
        third.close()
    finally:
        second.close()


async def test_fault_http_500_and_refuse(camera: CameraFactory) -> None:
    cam = await camera("c1")
    await cam.set_faults(http_500=True)
    raw = await raw_get(cam.stream_port, "/stream", 0.3)
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error")
    await cam.set_faults(http_500=False, refuse=True)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", cam.stream_port)
    await cam.set_faults(refuse=False)
    assert (await raw_get(cam.stream_port, "/stream", 0.3)).startswith(b"HTTP/1.1 200")


async def test_fault_control_api_over_http(camera: CameraFactory) -> None:
    cam = await camera("c1")
    async with httpx.AsyncClient(base_url=f"http://{cam.address}", trust_env=False) as c:
        r = await c.post("/sim/faults", json={"truncate_every": 2, "garbage_every": 3})
        assert r.json()["truncate_every"] == 2
        assert (await c.post("/sim/faults", json={"bogus": 1})).status_code == 400
        assert (await c.post("/sim/faults", json={"drop_every": -1})).status_code == 400
        assert (await c.get("/sim/stats")).json()["stream_connections"] == 0


async def test_a_scene_that_tests_drive_over_http(camera: CameraFactory) -> None:
    cam = await camera("c1", framesize=6)  # QVGA

    async def grey(c: httpx.AsyncClient) -> np.ndarray:
        r = await c.get("/capture")
        assert r.status_code == 200
        return np.asarray(Image.open(io.BytesIO(r.content)).convert("L"), dtype=np.float32)

    async with httpx.AsyncClient(base_url=f"http://{cam.address}", trust_env=False) as c:
        assert (await c.get("/sim/scene")).json() == {"scene": None}  # the test pattern
        a, b = await grey(c), await grey(c)
        assert np.mean(np.abs(a - b) > 15) > 0.02  # the bar, the clock, the scroll
        r = await c.post("/sim/scene", json={})
        assert r.json()["scene"]["moving_object"] is False
        a, b = await grey(c), await grey(c)
        assert a.shape == (240, 320)
        # A still scene: only sensor noise (sigma 4) between two frames.
        assert np.mean(np.abs(a - b) > 15) < 0.01
        r = await c.post("/sim/scene", json={"moving_object": True, "object_speed": 1.0})
        assert r.json()["scene"]["moving_object"] is True
        await asyncio.sleep(0.3)
        a = await grey(c)
        await asyncio.sleep(0.2)
        b = await grey(c)
        changed = np.mean(np.abs(a - b) > 15)
        assert 0.03 < changed < 0.5, changed  # the object moved, the rest did not
        r = await c.post("/sim/scene", json={"moving_object": False, "exposure_jumps": True})
        levels = []
        for _ in range(14):
            levels.append(float(np.mean(await grey(c))))
            await asyncio.sleep(0.5)
        assert max(levels) / min(levels) > 1.2  # whole-picture brightness steps
        for bad in ({"bogus": 1}, {"noise": -1}, {"moving_object": 1}, [1]):
            assert (await c.post("/sim/scene", json=bad)).status_code == 400, bad
        assert (await c.delete("/sim/scene")).json() == {"scene": None}


async def parse_stream(port: int, seconds: float) -> tuple[list[Frame], list[BadPart]]:
    raw = await raw_get(port, "/stream", seconds)
    _, _, body = raw.partition(b"\r\n\r\n")
    p = MJPEGParser(BOUNDARY)
    p.receive_data(dechunk(body))
    out: list[Frame] = []
    bad: list[BadPart] = []
    while True:
        e = p.next_event()
        if isinstance(e, Frame):
            out.append(e)
        elif isinstance(e, BadPart):
            bad.append(e)
        else:
            return out, bad


async def test_fault_truncate_and_garbage_are_visible_to_a_parser(camera: CameraFactory) -> None:
    cam = await camera("c1", fps=30)
    await cam.set_faults(truncate_every=3, garbage_every=2)
    frames, bad = await parse_stream(cam.stream_port, 1.0)
    assert len(frames) >= 10
    assert len(bad) >= 3


async def test_fault_drop_and_stall(camera: CameraFactory) -> None:
    cam = await camera("c1", fps=30)
    await cam.set_faults(drop_every=4)
    raw = await raw_get(cam.stream_port, "/stream", 2.0)  # returns when the camera drops
    frames, _bad = await parse_stream(cam.stream_port, 2.0)
    assert len(frames) == 3
    assert raw.count(b"X-Timestamp") == 4
    await cam.set_faults(drop_every=0, stall_seconds=1.0)
    t0 = asyncio.get_running_loop().time()
    frames, _ = await parse_stream(cam.stream_port, 0.8)
    assert frames == []  # stalled
    assert asyncio.get_running_loop().time() - t0 < 1.5


async def test_sim_command_ports_and_ctrl_c() -> None:
    port = free_port_pair(span=4)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "camserver",
            "sim",
            "--count",
            "2",
            "--http-port",
            str(port),
            "--fps",
            "10",
            "--framesize",
            "QVGA",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient(trust_env=False) as c:

            async def up() -> bool:
                try:
                    return (await c.get(f"http://127.0.0.1:{port + 2}/status")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, 15, 0.1, what="sim to start")
            assert (await c.get(f"http://127.0.0.1:{port}/status")).json()["framesize"] == 6
        for p in (port + 1, port + 3):
            assert (await raw_get(p, "/stream", 0.3)).startswith(b"HTTP/1.1 200 OK")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert "stopped" in out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
