"""ESPHome cameras found over mDNS (issue 30, Must show 3) across real hosts: network
namespaces this test creates and removes. The server's host has two links: eth0, where
discovery is allowed (three simulated ESPHome devices announce themselves there: one
plaintext with a camera, one encrypted, one without a camera), and eth1, where it is not
(a fourth device announces there). The server lists the two cameras, adds them (the
encrypted one with its key), reaches a camera by its ``.local`` name, and sends nothing at
all on eth1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.esphome import KEY
from tests.helpers.netns import bridged, link, tx_packets

pytestmark = pytest.mark.requires("root", "ip", "curl")

A, B = "10.254.81", "10.254.82"


@pytest.fixture
def lab() -> Iterator[str]:
    prefix = f"em{os.getpid() % 100000}"
    names = [f"{prefix}-{n}" for n in ("br", "srv", "porch", "garage", "nocam", "far")]
    with bridged(names, A, on_bridge=4):
        link(names[1], "eth1", f"{B}.1", names[5], "eth0", f"{B}.2")
        yield prefix


def device(ns: str, address: str, prefix: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *("ip", "netns", "exec", ns, sys.executable, "-m", "camserver", "sim"),
            *("--host", address, "--http-port", "8080", "--name-prefix", prefix),
            *("--discovery-port", "0", "--discovery-listen-port", "0", "--fps", "5"),
            *("--framesize", "QVGA", "--esphome", "--mdns-interface", address, *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def api(ns: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    args = ["-s", "-X", method, "-H", "Content-Type: application/json"]
    if body is not None:
        args += ["-d", json.dumps(body)]
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "curl", *args, f"http://127.0.0.1:8000{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_mdns_finds_esphome_cameras_only_where_allowed_and_adds_them(
    lab: str, tmp_path: Path
) -> None:
    srv = f"{lab}-srv"
    devices = [
        device(f"{lab}-porch", f"{A}.2", "porch-"),
        device(f"{lab}-garage", f"{A}.3", "garage-", "--encryption-key", KEY),
        device(f"{lab}-nocam", f"{A}.4", "nocam-", "--no-camera"),
        device(f"{lab}-far", f"{B}.2", "far-"),
    ]
    before = tx_packets(srv, "eth1")
    env = {
        **os.environ,
        "CAMSERVER_DISCOVERY_INTERFACES": "eth0",
        "CAMSERVER_RTSP_PORT": "0",
        "CAMSERVER_ONVIF_DISCOVERY": "false",
        "CAMSERVER_DB": str(tmp_path / "mdns.db"),
        "CAMSERVER_LOG_LEVEL": "info",
    }
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        server = subprocess.Popen(
            [
                *("ip", "netns", "exec", srv, sys.executable, "-m", "camserver", "serve"),
                *("--host", "0.0.0.0", "--port", "8000"),
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:

        def listed() -> dict[str, Any] | None:
            if server.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                found = api(srv, "GET", "/api/discovery")
            except (AssertionError, json.JSONDecodeError):
                return None
            names = {c["name"]: c for c in found if c["kind"] == "esphome"}
            return names if {"porch-1", "garage-1"} <= set(names) else None

        found = wait(listed, 40, "the ESPHome cameras on eth0")
        porch, garage = found["porch-1"], found["garage-1"]
        assert (porch["ip"], porch["port"], porch["camera"], porch["encrypted"]) == (
            f"{A}.2",
            6053,
            True,
            False,
        )
        assert porch["host"] == "porch-1.local"
        assert porch["model"] == "esp32cam"
        assert (garage["ip"], garage["camera"], garage["encrypted"]) == (f"{A}.3", None, True)
        time.sleep(2)  # the device without a camera, and the one on eth1: never listed
        names = {c["name"] for c in api(srv, "GET", "/api/discovery")}
        assert names == {"porch-1", "garage-1"}, names
        # Added by one call each (the encrypted one with its key); both stream.
        assert api(srv, "POST", "/api/discovery/porch-1/add")["source"] == "esphome"
        added = api(srv, "POST", "/api/discovery/garage-1/add", {"encryption_key": KEY})
        assert added["has_encryption_key"] is True
        # By its .local name, resolved from what it announced.
        created = api(
            srv,
            "POST",
            "/api/streams",
            {"name": "by-name", "source": "esphome", "host": "porch-1.local"},
        )
        assert created["host"] == "porch-1.local"
        for name in ("porch-1", "garage-1", "by-name"):
            wait(
                lambda n=name: api(srv, "GET", f"/api/streams/{n}/status")["state"] == "streaming",
                20,
                f"{name} streaming",
            )
        listed_now = {c["name"]: c["stream"] for c in api(srv, "GET", "/api/discovery")}
        assert listed_now["porch-1"] in ("porch-1", "by-name")
        assert listed_now["garage-1"] == "garage-1"
        # Nothing at all left the server on eth1, where discovery is not allowed.
        assert tx_packets(srv, "eth1") == before
    finally:
        server.terminate()
        server.wait(10)
        for d in devices:
            d.terminate()
            d.wait(10)
