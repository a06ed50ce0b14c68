"""ONVIF WS-Discovery across real hosts (issue 29, Must show 6, second half): network
namespaces this test creates and removes. The server's host has two links: eth0, where
discovery is allowed (an NVR probes there and finds it, then talks ONVIF to the address it
was given), and eth1, where it is not (a probe there gets nothing, and the server sends
nothing on eth1 at all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.netns import bridged, link, tx_packets

pytestmark = pytest.mark.requires("root", "ip")

A, B = "10.254.79", "10.254.80"

PROBE = r"""
import json, socket, sys, uuid
me = sys.argv[1]
probe = (
    '<?xml version="1.0"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
    'xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><e:Header>'
    f'<w:MessageID>urn:uuid:{uuid.uuid4()}</w:MessageID>'
    '<w:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>'
    '<w:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</w:Action></e:Header>'
    '<e:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></e:Body>'
    '</e:Envelope>'
)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
s.bind((me, 0))
s.settimeout(3)
s.sendto(probe.encode(), ("239.255.255.250", 3702))
try:
    data, _ = s.recvfrom(65536)
except TimeoutError:
    print(json.dumps(None))
else:
    text = data.decode()
    xaddr = text.split("<d:XAddrs>")[1].split("</d:XAddrs>")[0]
    out = {"xaddr": xaddr, "relates": "RelatesTo" in text}
    if len(sys.argv) > 2:  # then talk ONVIF to what was found, as an NVR would
        import asyncio, os, onvif
        from onvif import ONVIFCamera
        async def info():
            host, port = xaddr.split("//")[1].split("/")[0].split(":")
            wsdl = os.path.join(os.path.dirname(onvif.__file__), "wsdl")
            cam = ONVIFCamera(host, int(port), "nvr", "none", wsdl)
            try:
                mgmt = await cam.create_devicemgmt_service()
                return (await mgmt.GetDeviceInformation()).Manufacturer
            finally:
                await cam.close()
        out["manufacturer"] = asyncio.run(info())
    print(json.dumps(out))
"""


@pytest.fixture
def lab() -> Iterator[str]:
    prefix = f"ov{os.getpid() % 100000}"
    names = [f"{prefix}-{n}" for n in ("br", "srv", "nvr1", "nvr2")]
    with bridged(names, A, on_bridge=2):
        # eth1: the server's second link, to nvr2, where discovery is not allowed.
        link(names[1], "eth1", f"{B}.1", names[3], "eth0", f"{B}.2")
        yield prefix


def probe(ns: str, me: str, *extra: str) -> object:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, me, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_nvr_finds_camserver_only_where_discovery_is_allowed(lab: str, tmp_path: Path) -> None:
    srv = f"{lab}-srv"
    env = {
        **os.environ,
        "CAMSERVER_DISCOVERY_INTERFACES": "eth0",
        "CAMSERVER_RTSP_PORT": "8554",
        "CAMSERVER_DB": str(tmp_path / "onvif.db"),
        "CAMSERVER_LOG_LEVEL": "info",
    }
    log = tmp_path / "server.log"
    with log.open("w") as fh:  # (the child keeps its own copy of the descriptor)
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
        deadline = time.monotonic() + 30
        while "WS-Discovery answers probes on eth0" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(0.5)
        before = tx_packets(srv, "eth1")
        # Where discovery is allowed: found, and what was found answers ONVIF.
        found = probe(f"{lab}-nvr1", f"{A}.2", "talk")
        assert found == {
            "xaddr": f"http://{A}.1:8000/onvif/device_service",
            "relates": True,
            "manufacturer": "camserver",
        }
        # Where it is not: no answer, and nothing at all left the server on eth1.
        assert probe(f"{lab}-nvr2", f"{B}.2") is None
        assert tx_packets(srv, "eth1") == before
    finally:
        server.terminate()
        server.wait(10)
