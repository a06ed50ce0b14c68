"""DiscoveryService's bounds, fed datagrams directly (no sockets): the camera table, the
spoofing warnings and the codec's per-source memory stay bounded whatever arrives; and the
port rule at the top of the port range."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from camserver.discovery.codec import NEED_DATA, Announcement, DiscoveryCodec, Rejected
from camserver.discovery.service import DiscoveryService
from camserver.errors import NameConflict


def service() -> DiscoveryService:
    return DiscoveryService(listen_port=0, camera_port=9, interfaces=[])


def announce(svc: DiscoveryService, i: int, **body: object) -> None:
    data = json.dumps({"camera": f"cam{i}", "port": 80, **body}).encode()
    svc.feed(data, (f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 5000))


def test_the_camera_table_stops_at_1024() -> None:
    svc = service()
    for i in range(1100):
        announce(svc, i)
    assert len(svc.cameras()) == 1024
    assert svc.counts["new_cameras"] == 1024
    assert svc.counts["rejected_too_many_cameras"] == 76
    announce(svc, 5)  # a known camera is still updated when the table is full
    assert svc.counts["announcements"] == 1101


def test_spoof_warnings_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    svc = service()
    with caplog.at_level(logging.WARNING, logger="camserver.discovery.service"):
        for i in range(1100):  # 1,100 sources, each claiming an address not its own
            announce(svc, i, ip="192.0.2.1")
        announce(svc, 0, ip="192.0.2.1")  # the same pair again: no second warning
    assert svc.counts["spoofed_claims"] == 1101
    claims = [r for r in caplog.records if "claims to be" in r.getMessage()]
    assert len(claims) == 1024


def test_codec_forgets_sources_beyond_its_limit_instead_of_growing() -> None:
    codec = DiscoveryCodec(rate=2, max_sources=100)
    for i in range(250):  # more sources than it remembers
        codec.receive_datagram(b"DISCOVER_CAMERAS", (f"10.0.{i // 256}.{i % 256}", 1), 0.0)
    assert len(codec._recent) <= 100  # the memory of who sent what is bounded
    for _ in range(3):
        codec.receive_datagram(b"DISCOVER_CAMERAS", ("10.9.9.9", 1), 0.0)
    events = []
    while (e := codec.next_event()) is not NEED_DATA:
        events.append(e)
    assert [e.reason for e in events if isinstance(e, Rejected)] == ["rate_limited"]


def _one(data: dict[str, object] | bytes) -> Announcement | Rejected:
    codec = DiscoveryCodec()
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    codec.receive_datagram(raw, ("10.0.0.9", 8888), 0.0)
    event = codec.next_event()
    assert isinstance(event, Announcement | Rejected), event
    return event


def test_port_rule_at_the_top_of_the_range() -> None:
    # Without a stream port the stream is on port + 1, so 65535 cannot be the HTTP port.
    assert isinstance(_one(b"ESP32_CAMERA:10.0.0.9:65535"), Rejected)
    assert isinstance(_one({"camera": "a", "port": 65535}), Rejected)
    ok = _one(b"ESP32_CAMERA:10.0.0.9:65534")
    assert isinstance(ok, Announcement)
    assert ok.stream_port == 65535
    # With one, any port will do, and the stream is read where the camera said.
    top = _one({"camera": "a", "port": 65535, "stream_port": 8081})
    assert isinstance(top, Announcement)
    svc = service()
    svc.feed(
        json.dumps({"camera": "a", "port": 65535, "stream_port": 8081}).encode(), ("10.0.0.9", 8888)
    )
    cfg = svc.cameras()[0].stream_config()
    assert cfg.snapshot_url == "http://10.0.0.9:65535/capture"
    assert cfg.stream_url == "http://10.0.0.9:8081/stream"
    assert isinstance(_one({"camera": "a", "port": 80, "stream_port": 65536}), Rejected)
    assert isinstance(_one({"camera": "a", "port": "80", "stream_port": True}), Rejected)
    # Found by the fuzz test: "²" is a digit to str.isdigit(), not to int().
    assert isinstance(_one({"camera": "a", "port": "²"}), Rejected)
    assert isinstance(_one(b"ESP32_CAMERA:10.0.0.9:\xc2\xb2"), Rejected)


def test_a_name_from_another_address_does_not_take_over_the_entry() -> None:
    svc = service()
    real = json.dumps({"camera": "porch", "port": 80}).encode()
    svc.feed(real, ("10.0.0.5", 8888))
    svc.feed(json.dumps({"camera": "porch", "port": 80}).encode(), ("10.0.0.66", 8888))
    cams = {c.ip: c for c in svc.cameras()}
    assert set(cams) == {"10.0.0.5", "10.0.0.66"}  # both kept, neither replaced
    assert all(c.conflict for c in cams.values())
    with pytest.raises(NameConflict, match=re.escape("10.0.0.5:80, 10.0.0.66:80")):
        svc.get("porch")
    svc.feed(real, ("10.0.0.5", 8888))  # the real camera again: still where it was
    assert {c.ip for c in svc.cameras()} == {"10.0.0.5", "10.0.0.66"}


def test_entries_per_source_are_capped_and_old_ones_expire() -> None:
    svc = DiscoveryService(listen_port=0, camera_port=9, interfaces=[], ttl=0.2, per_source=4)
    for port in range(80, 90):  # one host inventing ten cameras
        svc.feed(json.dumps({"camera": f"c{port}", "port": port}).encode(), ("10.0.0.9", 1))
    assert len(svc.cameras()) == 4
    assert svc.counts["rejected_too_many_per_source"] == 6
    time.sleep(0.3)
    assert svc.cameras() == []
    assert svc.counts["expired"] == 4
    assert svc.get("c80") is None
