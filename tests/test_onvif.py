"""ONVIF (issue 29, Must show 6, first half): Home Assistant's ONVIF library
(onvif-zeep-async) gets the device information, the profiles and a stream URI that ffprobe
then plays; WS-Security tokens; faults for what is not supported."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import onvif
import pytest
from onvif import ONVIFCamera
from pydantic import SecretStr
from zeep.exceptions import Fault

from camserver.config import Settings
from camserver.onvif import soap, wsdiscovery
from tests.conftest import CameraFactory, free_port, start_server, wait_for
from tests.helpers.auth import ADMIN, VIEW, auth

WSDL = os.path.join(os.path.dirname(onvif.__file__), "wsdl")


def uri_request(media: object, token: str) -> object:
    req = media.create_type("GetStreamUri")  # type: ignore[attr-defined]
    req.ProfileToken = token
    req.StreamSetup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
    return req


@pytest.mark.requires("ffprobe")
async def test_home_assistants_onvif_library_adds_the_cameras(
    settings: Settings, camera: CameraFactory
) -> None:
    cams = [await camera(f"c{i}", fps=10, framesize=10) for i in range(2)]
    tokens = {"api_token": SecretStr(ADMIN), "view_token": SecretStr(VIEW)}
    async with AsyncExitStack() as stack:
        server = await start_server(
            stack, settings.model_copy(update={"rtsp_port": free_port(), **tokens})
        )
        for i, cam in enumerate(cams):
            r = await server.client.post(
                "/api/streams", json={"name": f"c{i}", "host": cam.address}, headers=auth(ADMIN)
            )
            assert r.status_code == 201
        await wait_for(
            lambda: server.state.manager.status("c0").state.value == "streaming", 10, what="c0"
        )
        port = int(server.url.rsplit(":", 1)[1])
        # As Home Assistant does: PasswordDigest with the server's clock, a token as password.
        device = ONVIFCamera("127.0.0.1", port, "homeassistant", ADMIN, WSDL)
        stack.push_async_callback(device.close)
        await device.update_xaddrs()
        mgmt = await device.create_devicemgmt_service()
        info = await mgmt.GetDeviceInformation()
        assert (info.Manufacturer, info.Model) == ("camserver", "ESP32-CAM server")
        interfaces = await mgmt.GetNetworkInterfaces()
        assert len(interfaces[0].Info.HwAddress.split(":")) == 6  # Home Assistant's unique id
        clock = await mgmt.GetSystemDateAndTime()
        assert clock.UTCDateTime.Date.Year == datetime.now(UTC).year
        media = await device.create_media_service()
        profiles = await media.GetProfiles()
        kinds = {(p.token, p.VideoEncoderConfiguration.Encoding) for p in profiles}
        assert kinds == {
            ("c0_jpeg", "JPEG"),
            ("c0_h264", "H264"),
            ("c1_jpeg", "JPEG"),
            ("c1_h264", "H264"),
        }
        h264 = next(p for p in profiles if p.token == "c0_h264")
        size = h264.VideoEncoderConfiguration.Resolution
        assert (size.Width, size.Height) == (640, 480)
        uri = (await media.GetStreamUri(uri_request(media, "c0_h264"))).Uri
        assert uri == f"rtsp://127.0.0.1:{server.settings.rtsp_port}/c0/h264"
        req = media.create_type("GetSnapshotUri")
        req.ProfileToken = "c1_jpeg"
        snapshot = (await media.GetSnapshotUri(req)).Uri
        assert snapshot == f"{server.url}/api/streams/c1/snapshot"
        # What it gave plays: the H.264 profile in ffprobe, with the token as the password.
        with_login = uri.replace("rtsp://", f"rtsp://homeassistant:{ADMIN}@")
        probe = await asyncio.create_subprocess_exec(
            *("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries"),
            *("stream=codec_name,width,height", "-of", "csv=p=0", with_login),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(probe.communicate(), 40)
        assert out.decode().strip() == "h264,640,480"
        async with httpx.AsyncClient(trust_env=False) as c:
            assert (await c.get(snapshot, headers=auth(VIEW))).status_code == 200

        # A wrong password: a fault, nothing else learnt.
        wrong = ONVIFCamera("127.0.0.1", port, "x", "wrong-token", WSDL)
        stack.push_async_callback(wrong.close)
        wrong_mgmt = await wrong.create_devicemgmt_service()
        with pytest.raises(Fault):
            await wrong_mgmt.GetDeviceInformation()
        # A scoped token sees only its streams' profiles (PasswordText: managed tokens are
        # stored hashed, so a digest of one cannot be checked).
        r = await server.client.post(
            "/api/tokens",
            json={"name": "nvr", "role": "view", "streams": ["c1"]},
            headers=auth(ADMIN),
        )
        scoped = r.json()["token"]
        body = soap.envelope("<trt:GetProfiles/>").replace(
            b"<env:Body>", text_token("nvr", scoped) + b"<env:Body>"
        )
        async with httpx.AsyncClient(trust_env=False) as c:
            r = await c.post(
                f"{server.url}/onvif/media_service",
                content=body,
                headers={"Content-Type": "application/soap+xml"},
            )
            assert r.status_code == 200, r.text
            assert b"c1_jpeg" in r.content
            assert b"c0_" not in r.content
            # What is not supported: a SOAP fault that says so.
            r = await c.post(
                f"{server.url}/onvif/device_service",
                content=soap.envelope("<tds:SystemReboot/>"),
                headers={"Content-Type": "application/soap+xml"},
            )
            assert r.status_code == 400
            assert b"NotAuthorized" in r.content
            reboot = soap.envelope("<tds:SystemReboot/>").replace(
                b"<env:Body>", text_token("nvr", ADMIN) + b"<env:Body>"
            )
            r = await c.post(
                f"{server.url}/onvif/device_service",
                content=reboot,
                headers={"Content-Type": "application/soap+xml"},
            )
            assert r.status_code == 400
            assert b"ActionNotSupported" in r.content
            r = await c.post(
                f"{server.url}/onvif/device_service",
                content=b"<not-soap",
                headers={"Content-Type": "application/soap+xml"},
            )
            assert r.status_code == 400
            assert b"InvalidArgVal" in r.content


def text_token(user: str, password: str) -> bytes:
    return (
        f"<env:Header><wsse:Security><wsse:UsernameToken><wsse:Username>{user}</wsse:Username>"
        f"<wsse:Password>{password}</wsse:Password></wsse:UsernameToken></wsse:Security>"
        "</env:Header>"
    ).encode()


def test_password_digests() -> None:
    nonce = b"0123456789abcdef"
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    good = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"s3cret").digest())
    token = soap.UsernameToken("u", good.decode(), True, nonce, created)
    assert soap.check_username_token(token, ["other", "s3cret"]) == "s3cret"
    assert soap.check_username_token(token, ["other"]) is None
    stale = soap.UsernameToken("u", good.decode(), True, nonce, created)
    assert soap.check_username_token(stale, ["s3cret"], now=time.time() + 3600) is None
    text = soap.UsernameToken("u", "s3cret", False, b"", "")
    assert soap.check_username_token(text, ["s3cret"]) == "s3cret"
    for bad in (b"", b"<a/>", b"<x:Envelope xmlns:x='urn:x'/>"):
        with pytest.raises(soap.BadRequest):
            soap.parse(bad)


def test_ws_discovery_messages() -> None:
    probe = (
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        b'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
        b'xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><e:Header>'
        b"<w:MessageID>urn:uuid:42</w:MessageID>"
        b"<w:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</w:Action>"
        b"</e:Header><e:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types>"
        b"</d:Probe></e:Body></e:Envelope>"
    )
    got = wsdiscovery.parse_probe(probe)
    assert got == wsdiscovery.Probe("urn:uuid:42", ["NetworkVideoTransmitter"])
    assert wsdiscovery.wanted(got)
    assert not wsdiscovery.wanted(wsdiscovery.Probe("x", ["Printer"]))
    answer = wsdiscovery.probe_matches(got, "urn:uuid:1", "http://10.0.0.2:8000/onvif/x", [])
    assert b"<wsa:RelatesTo>urn:uuid:42</wsa:RelatesTo>" in answer
    assert b"<d:XAddrs>http://10.0.0.2:8000/onvif/x</d:XAddrs>" in answer
    for junk in (b"", b"<a/>", b"\x00" * 10, probe.replace(b"Probe>", b"Hello>")):
        assert wsdiscovery.parse_probe(junk) is None
    assert wsdiscovery.parse_probe(b" " * 10_000) is None
