"""Discovery over real UDP sockets on loopback only (network safety: never another interface)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import socketio

from camserver.config import Settings
from tests.conftest import CameraFactory, Server, start_server, wait_for

LO_BROADCAST = "127.255.255.255"


def send_udp(port: int, *payloads: bytes, source: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))  # any 127.x address is this machine's loopback
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))


async def discovered(server: Server) -> dict[str, dict[str, Any]]:
    r = await server.client.get("/api/discovery")
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()}


async def test_scan_finds_cameras_in_both_formats(server: Server, camera: CameraFactory) -> None:
    port = server.settings.discovery_port
    await camera("cam-a", discovery_port=port)
    await camera("cam-b", discovery_port=port)
    old = await camera("old", discovery_port=port, announce_format="legacy")
    r = await server.client.post("/api/discovery/scan", params={"timeout": 0.5})
    assert r.status_code == 200, r.text
    found = {c["name"]: c for c in r.json()}
    legacy_name = f"esp32-127-0-0-1-{old.http_port}"
    assert set(found) == {"cam-a", "cam-b", legacy_name}
    a = found["cam-a"]
    assert a["ip"] == "127.0.0.1"
    assert a["stream_port"] == a["port"] + 1
    assert a["model"] == "AI-Thinker ESP32-CAM (simulated)"
    assert a["legacy"] is False
    assert found[legacy_name]["legacy"] is True
    assert a["stream"] is None
    assert a["first_seen"] <= a["last_seen"]
    assert set(await discovered(server)) == set(found)


async def test_unprompted_announcement_and_socketio_event(
    server: Server, camera: CameraFactory
) -> None:
    listen = server.discovery.listen_port
    sio = socketio.AsyncClient(reconnection=False)
    events: list[dict[str, Any]] = []
    sio.on("camera_discovered", lambda data: events.append(data))
    await sio.connect(server.url, transports=["websocket"])
    try:
        # The camera boots and announces itself; the server sends nothing.
        probes_before = server.discovery.counts["probes_sent"]
        cam = await camera("porch", announce_to=(LO_BROADCAST, listen))
        await wait_for(lambda: bool(events), 5, what="camera_discovered")
        assert events[0]["name"] == "porch"
        assert events[0]["ip"] == "127.0.0.1"
        assert events[0]["port"] == cam.http_port
        assert events[0]["stream_port"] == cam.stream_port
        assert isinstance(events[0]["first_seen"], float)
        assert "porch" in await discovered(server)
        assert server.discovery.counts["probes_sent"] == probes_before
        # A second announcement updates last_seen, it is not a new camera.
        assert cam.responder is not None
        cam.responder.announce((LO_BROADCAST, listen))
        await asyncio.sleep(0.3)
        assert len(events) == 1
    finally:
        await sio.disconnect()


async def test_add_a_discovered_camera(server: Server, camera: CameraFactory) -> None:
    listen = server.discovery.listen_port
    cam = await camera("porch", announce_to=(LO_BROADCAST, listen), fps=15)
    await wait_for(lambda: _has(server, "porch"), 5, what="announcement")
    r = await server.client.post("/api/discovery/porch/add")
    assert r.status_code == 201, r.text
    assert r.json()["stream_url"] == f"http://127.0.0.1:{cam.stream_port}/stream"
    await server.wait_state("porch", "streaming")
    assert (await discovered(server))["porch"]["stream"] == "porch"
    assert (await server.client.post("/api/discovery/porch/add")).status_code == 409
    r = await server.client.post("/api/discovery/porch/add", json={"name": "Bad Name"})
    assert r.status_code == 422
    r = await server.client.post("/api/discovery/porch/add", json={"name": "porch2"})
    assert r.status_code == 201
    r = await server.client.post("/api/discovery/ghost/add")
    assert r.status_code == 404
    assert "no discovered camera" in r.json()["detail"]
    # Another host announces the same name: both are listed, flagged, and adding by that
    # name is refused rather than guessed.
    send_udp(listen, json.dumps({"camera": "porch", "port": 8080}).encode(), source="127.0.0.9")
    await wait_for(
        lambda: _conflict(server, "porch"), 5, what="the second porch to be listed, flagged"
    )
    r = await server.client.post("/api/discovery/porch/add", json={"name": "porch3"})
    assert r.status_code == 409
    assert "more than one camera announces the name 'porch'" in r.json()["detail"]


async def _conflict(server: Server, name: str) -> bool:
    listed = (await server.client.get("/api/discovery")).json()
    same = [c for c in listed if c["name"] == name]
    return len(same) == 2 and all(c["conflict"] for c in same)


async def _has(server: Server, name: str) -> bool:
    return name in await discovered(server)


async def test_auto_add(settings: Settings, camera: CameraFactory) -> None:
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"discovery_auto_add": True}))
        listen = server.discovery.listen_port
        await camera("yard", announce_to=(LO_BROADCAST, listen), fps=15)
        await wait_for(lambda: _stream_exists(server, "yard"), 5, what="auto-added stream")
        await server.wait_state("yard", "streaming")


async def _stream_exists(server: Server, name: str) -> bool:
    return (await server.client.get(f"/api/streams/{name}")).status_code == 200


async def test_periodic_probing(settings: Settings, camera: CameraFactory) -> None:
    async with AsyncExitStack() as stack:
        server = await start_server(stack, settings.model_copy(update={"discovery_interval": 0.3}))
        await camera("quiet", discovery_port=settings.discovery_port)  # never announces
        await wait_for(lambda: _has(server, "quiet"), 5, what="periodic probe answer")


async def test_bad_spoofed_and_flooding_datagrams(server: Server) -> None:
    listen = server.discovery.listen_port
    counts = server.discovery.counts
    send_udp(
        listen,
        b"x" * 5000,
        b"\xff\xfe\xfd",
        b"{bad json",
        b'{"camera": "p0", "port": 0}',
        b"ESP32_CAMERA:127.0.0.1:99999",
        b"hello",
    )
    send_udp(listen, json.dumps({"camera": "liar", "ip": "10.1.2.3", "port": 80}).encode())
    await wait_for(lambda: counts["announcements"] >= 1, 5, what="datagrams")
    await asyncio.sleep(0.2)
    for reason in ("oversize", "not_utf8", "bad_json", "bad_port", "unknown"):
        assert counts[f"rejected_{reason}"] >= 1, counts
    cams = await discovered(server)
    assert set(cams) == {"liar"}
    assert cams["liar"]["ip"] == "127.0.0.1"  # the source address, not the claim
    assert cams["liar"]["claimed_ip"] == "10.1.2.3"
    assert counts["spoofed_claims"] == 1

    # A flood from one source: the excess is dropped and counted; the server stays healthy.
    flood = [json.dumps({"camera": f"f{i}", "port": 80}).encode() for i in range(2000)]

    def heard() -> int:
        return counts["announcements"] + counts["rejected_rate_limited"]

    for i in range(0, len(flood), 50):
        # Each burst read before the next: on a busy machine the kernel dropped what the
        # server had not read yet, and those never reached its counters.
        want = heard() + 50
        send_udp(listen, *flood[i : i + 50])
        await wait_for(lambda w=want: heard() >= w, 10, 0.002, what="a burst read")
    assert counts["rejected_rate_limited"] > 1500, counts
    assert len(await discovered(server)) <= 1 + server.settings.discovery_rate
    assert (await server.client.get("/healthz")).status_code == 200
    assert (await server.client.get("/api/streams")).json() == []  # nothing was added


async def test_scan_validates_its_input(server: Server) -> None:
    r = await server.client.post("/api/discovery/scan", params={"interface": "nope0"})
    assert r.status_code == 422
    assert "nope0 is not enabled for discovery; enabled: lo" in r.json()["detail"]
    r = await server.client.post("/api/discovery/scan", params={"timeout": 60})
    assert r.status_code == 422
    r = await server.client.post("/api/discovery/scan", params={"interface": "lo", "timeout": 0.2})
    assert r.status_code == 200


async def test_server_runs_on_when_the_discovery_port_is_taken(
    settings: Settings,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        async with AsyncExitStack() as stack:
            server = await start_server(
                stack, settings.model_copy(update={"discovery_listen_port": port})
            )
            assert (await server.client.get("/healthz")).status_code == 200
            r = await server.client.get("/api/discovery")
            assert r.status_code == 503
            assert f"cannot listen on UDP port {port}" in r.json()["detail"]


async def discover(port: int, *extra: str) -> tuple[int, str]:
    """Run ``camserver discover`` on loopback; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "camserver",
        "discover",
        "--interface",
        "lo",
        "--port",
        str(port),
        *extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_discover_command(settings: Settings, camera: CameraFactory) -> None:
    port = settings.discovery_port
    cams = [await camera(f"cli-{i}", discovery_port=port) for i in range(2)]
    await camera("cli-old", discovery_port=port, announce_format="legacy")
    code, text = await discover(port, "--timeout", "0.7")
    assert code == 0, text
    assert "3 camera(s) answered on lo" in text
    for cam in cams:
        assert f"127.0.0.1:{cam.http_port}" in text
        assert f"http://127.0.0.1:{cam.stream_port}/stream" in text
    code, text = await discover(port, "--timeout", "0.5", "--json")
    assert code == 0, text
    assert {r["name"] for r in json.loads(text)} >= {"cli-0", "cli-1"}


def test_discover_command_rejects_unknown_interfaces() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "camserver", "discover", "--interface", "nope0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "no usable IPv4 interface named nope0" in out.stderr
